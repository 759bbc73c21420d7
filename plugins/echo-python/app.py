"""Echo handler in Python: sends every message back to its sender, text as
text and binary as binary. Build: ``bash build.sh OUTPUT`` (or
``cargo xtask build-plugins``); see docs/languages/python.md."""

import wasmgate


def main_handler(event, context):
    message = wasmgate.Event(event)
    if message.action == "data send":
        wasmgate.push(message.connection_id, message.data)
    return None


WitWorld = wasmgate.serve(main_handler)
