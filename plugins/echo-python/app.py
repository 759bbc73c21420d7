"""Echo handler in Python: sends every message back to its sender, text as
text and binary as binary. Build: ``bash build.sh OUTPUT`` (or
``cargo xtask build-plugins``); see docs/languages/python.md.

A text message that begins with ``/`` is a command that shows the helper's
key-value store and groups instead:

- ``/count``: adds one to the service's counter, answers ``count N``;
- ``/join GROUP``: joins the group, answers ``joined GROUP``;
- ``/say GROUP TEXT``: sends TEXT to the group but the sender, answers
  ``delivered N``;
- ``/members GROUP``: answers the number of members;
- ``/tally PREFIX``: answers the keys under PREFIX with their values, as
  ``key=value`` pairs joined by ``,``.
"""

import wasmgate
from wasmgate import groups, kv


def command(me, text):
    name, _, rest = text[1:].partition(" ")
    if name == "count":
        return "count %d" % kv.increment("count")
    if name == "join":
        groups.join(rest, me)
        return "joined " + rest
    if name == "say":
        group, _, words = rest.partition(" ")
        return "delivered %d" % groups.broadcast(group, words, except_id=me)
    if name == "members":
        return str(len(groups.members(rest)))
    if name == "tally":
        kv.set(rest + "a", "1")
        kv.set(rest + "b", b"2")
        entries = kv.entries(rest)
        return ",".join("%s=%s" % (key, value.decode()) for key, value in sorted(entries.items()))
    return "unknown command " + name


def main_handler(event, context):
    message = wasmgate.Event(event)
    if message.action == "data send":
        data = message.data
        if isinstance(data, str) and data.startswith("/"):
            wasmgate.push(message.connection_id, command(message.connection_id, data))
        else:
            wasmgate.push(message.connection_id, data)
    return None


WitWorld = wasmgate.serve(main_handler)
