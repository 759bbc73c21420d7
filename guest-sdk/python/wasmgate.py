"""Helpers for wasmgate handlers written in Python (built with componentize-py).

A handler is one function in the familiar ``main_handler(event, context)``
style: ``event`` is the event of docs/protocol.md as a ``dict``, ``context`` a
:class:`Context`; it returns the answer as a ``dict`` (or ``None`` for "ok").
Register it with one line at the end of the handler module::

    import wasmgate

    def main_handler(event, context):
        ...

    WitWorld = wasmgate.serve(main_handler)

``WitWorld`` is the name componentize-py looks for in the application module.
For typed access to an event, wrap it: ``wasmgate.Event(event)``. To send to
or close connections use :func:`push`, :func:`close` or, with a reverse-push
request built by hand, :func:`route`. Host call failures raise
:class:`GatewayError` with the same ``errNo``/``errMsg`` as the reverse-push
endpoint.
"""

import base64
import json
from typing import Any, Callable, Dict, List, Optional, Union

from componentize_py_types import Err
from wit_world.imports import groups as _groups
from wit_world.imports import host
from wit_world.imports import kv as _kv
from wit_world.imports import types as _types

__all__ = [
    "Context",
    "Event",
    "GatewayError",
    "close",
    "log",
    "push",
    "route",
    "serve",
]


class GatewayError(Exception):
    """A host call failed; ``err_no``/``err_msg`` as the reverse-push endpoint answers."""

    def __init__(self, err_no: int, err_msg: str):
        super().__init__(f"errNo {err_no}: {err_msg}")
        self.err_no = err_no
        self.err_msg = err_msg


def _call(function: Callable[..., Any], *args: Any) -> Any:
    try:
        return function(*args)
    except Err as error:
        raise GatewayError(error.value.err_no, error.value.err_msg) from None


def push(connection_id: str, data: Union[str, bytes]) -> None:
    """Sends ``data`` to a connection: ``str`` as a text frame, ``bytes`` as a binary one."""
    _call(host.push, connection_id, _payload(data))


def close(connection_id: str) -> None:
    """Closes a connection of this service; its cleanup handler then runs."""
    _call(host.close, connection_id)


def route(request: Union[str, Dict[str, Any]]) -> None:
    """Routes a reverse-push request (its JSON body, as ``str`` or ``dict``)."""
    if not isinstance(request, str):
        request = json.dumps(request)
    _call(host.route, request)


_LEVELS = {
    "trace": _types.LogLevel.TRACE,
    "debug": _types.LogLevel.DEBUG,
    "info": _types.LogLevel.INFO,
    "warn": _types.LogLevel.WARN,
    "error": _types.LogLevel.ERROR,
}


def set_attributes(attributes: Dict[str, Any]) -> None:
    """Replaces the attributes of the connection this call is about (a JSON
    object of at most 4096 bytes), sent in every later event as ``attributes``."""
    _call(host.set_attributes, json.dumps(attributes))


def _payload(data: Union[str, bytes]) -> Any:
    if isinstance(data, str):
        return _types.Payload_Text(data)
    return _types.Payload_Binary(bytes(data))


class kv:
    """The service's durable key-value store (keys ``str``, values ``bytes``)."""

    @staticmethod
    def get(key: str) -> Optional[bytes]:
        """The value of ``key``, or ``None`` when it is absent or expired."""
        return _call(_kv.get, key)

    @staticmethod
    def set(key: str, value: Union[str, bytes], ttl_ms: Optional[int] = None) -> None:
        """Sets ``key`` (a ``str`` value is stored as UTF-8); expires after ``ttl_ms``."""
        if isinstance(value, str):
            value = value.encode()
        _call(_kv.set, key, bytes(value), ttl_ms)

    @staticmethod
    def delete(key: str) -> bool:
        """Removes ``key``; whether it existed."""
        return _call(_kv.delete, key)

    @staticmethod
    def exists(key: str) -> bool:
        """Whether ``key`` holds a value."""
        return _call(_kv.exists, key)

    @staticmethod
    def keys(prefix: str = "") -> List[str]:
        """Every key starting with ``prefix``, page after page."""
        keys: List[str] = []
        cursor = None
        while True:
            page = _call(_kv.list_keys, prefix, cursor)
            keys.extend(page.keys)
            cursor = page.cursor
            if cursor is None:
                return keys

    @staticmethod
    def entries(prefix: str = "") -> Dict[str, bytes]:
        """Every key starting with ``prefix`` with its value, page after page."""
        entries: Dict[str, bytes] = {}
        cursor = None
        while True:
            page = _call(_kv.list_entries, prefix, cursor)
            for entry in page.entries:
                entries[entry.key] = entry.value
            cursor = page.cursor
            if cursor is None:
                return entries

    @staticmethod
    def get_many(keys: List[str]) -> List[Optional[bytes]]:
        """The values of ``keys`` in their order (``None``: absent), from one snapshot."""
        return _call(_kv.get_many, list(keys))

    @staticmethod
    def increment(key: str, delta: int = 1) -> int:
        """Atomically adds ``delta`` to the counter at ``key``; the new value."""
        return _call(_kv.increment, key, delta)

    @staticmethod
    def compare_and_swap(key: str, expected: Optional[bytes], value: bytes) -> bool:
        """Sets ``key`` to ``value`` if it holds ``expected`` (``None``: absent)."""
        return _call(_kv.compare_and_swap, key, expected, value)


class groups:
    """Named groups of the service's connections, for broadcast."""

    @staticmethod
    def join(group: str, connection_id: str) -> None:
        """Adds a live connection to ``group``."""
        _call(_groups.join, group, connection_id)

    @staticmethod
    def leave(group: str, connection_id: str) -> bool:
        """Takes a connection out of ``group``; whether it was in."""
        return _call(_groups.leave, group, connection_id)

    @staticmethod
    def members(group: str) -> List[str]:
        """Every member of ``group``, sorted, page after page."""
        members: List[str] = []
        cursor = None
        while True:
            page = _call(_groups.members_page, group, cursor, 1000)
            members.extend(page.members)
            cursor = page.cursor
            if cursor is None:
                return members

    @staticmethod
    def groups_of(connection_id: str) -> List[str]:
        """The groups a connection is in, sorted."""
        return _call(_groups.groups_of, connection_id)

    @staticmethod
    def broadcast(group: str, data: Union[str, bytes], except_id: Optional[str] = None) -> int:
        """Sends ``data`` to every member of ``group`` but ``except_id``; how many it reached."""
        return _call(_groups.broadcast, group, _payload(data), except_id)


def log(message: str, level: str = "info") -> None:
    """Writes a line to the gateway's log (``level``: trace, debug, info, warn, error)."""
    host.log(_LEVELS[level], message)


class Context:
    """What the gateway tells a handler about the call besides the event."""

    def __init__(self, ctx: "_types.Context"):
        #: The service (plugin folder name).
        self.service: str = ctx.service
        #: ``"register"``, ``"transfer"``, ``"cleanup"``, ``"http"`` or ``"timer"``.
        self.role: str = ctx.role.name.lower()
        #: The id the gateway tags this call's log lines with.
        self.request_id: str = ctx.request_id
        #: The connection the event is about (``secConnectionID``).
        self.connection_id: str = ctx.connection_id
        #: When the call is stopped, in milliseconds since the Unix epoch.
        self.deadline_ms: int = ctx.deadline_ms


class Event:
    """Typed access to an event ``dict``; the ``dict`` itself is :attr:`raw`."""

    def __init__(self, event: Dict[str, Any]):
        #: The event as parsed from JSON.
        self.raw = event
        websocket = event.get("websocket", {})
        #: ``"connecting"``, ``"data send"`` or ``"closing"``.
        self.action: str = websocket.get("action", "")
        #: The connection (``secConnectionID``).
        self.connection_id: str = websocket.get("secConnectionID", "")
        #: ``"text"`` or ``"binary"`` for a data send, else ``None``.
        self.data_type: Optional[str] = websocket.get("dataType")
        #: The client's ``Sec-WebSocket-Protocol`` header, when it sent one.
        self.protocol: Optional[str] = websocket.get("secWebSocketProtocol")
        #: The connection's attributes (what register attached), or ``None``.
        self.attributes: Optional[Dict[str, Any]] = event.get("attributes")
        #: Why the connection ended (cleanup), when known.
        self.close_reason: Optional[str] = event.get("closeReason", websocket.get("closeReason"))

    @property
    def data(self) -> Union[str, bytes, None]:
        """The message: ``str`` for text, ``bytes`` for binary (Base64 decoded)."""
        data = self.raw.get("websocket", {}).get("data")
        if data is not None and self.data_type == "binary":
            return base64.b64decode(data)
        return data


def serve(main_handler: Callable[[Dict[str, Any], Context], Any]) -> type:
    """Makes ``main_handler(event, context)`` the handler; returns the class to
    bind to ``WitWorld``.

    The answer may be a ``dict`` (sent as JSON), a ``str`` (sent as is) or
    ``None`` (``{"errNo": 0, "errMsg": "ok"}``). An exception fails the call:
    register refuses the client, transfer closes its connection.
    """

    class WitWorld:
        def handle(self, ctx: "_types.Context", event: str) -> str:
            try:
                answer = main_handler(json.loads(event), Context(ctx))
            except Exception as error:  # reported to the gateway as the call's error
                raise Err(f"{type(error).__name__}: {error}") from None
            if answer is None:
                return '{"errNo": 0, "errMsg": "ok"}'
            if isinstance(answer, str):
                return answer
            return json.dumps(answer)

    return WitWorld
