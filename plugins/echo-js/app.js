// Echo handler in JavaScript: sends every message back to its sender, text as
// text and binary as binary. Build: `bash build.sh OUTPUT` (or
// `cargo xtask build-plugins`); see docs/languages/javascript.md.
import { Event, push, serve } from "./wasmgate.js";

function mainHandler(event, context) {
  const message = new Event(event);
  if (message.action === "data send") {
    push(message.connectionId, message.data);
  }
}

export const handle = serve(mainHandler);
