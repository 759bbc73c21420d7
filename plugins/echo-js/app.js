// Echo handler in JavaScript: sends every message back to its sender, text as
// text and binary as binary. Build: `bash build.sh OUTPUT` (or
// `cargo xtask build-plugins`); see docs/languages/javascript.md.
//
// A text message that begins with `/` is a command that shows the helper's
// key-value store and groups instead: `/count` (a counter of the service),
// `/join GROUP`, `/say GROUP TEXT` (to the group but the sender),
// `/members GROUP` (how many), `/tally PREFIX` (keys with their values).
import { Event, groups, kv, push, serve } from "./wasmgate.js";

function command(me, text) {
  const space = text.indexOf(" ");
  const name = space < 0 ? text.slice(1) : text.slice(1, space);
  const rest = space < 0 ? "" : text.slice(space + 1);
  switch (name) {
    case "count":
      return `count ${kv.increment("count")}`;
    case "join":
      groups.join(rest, me);
      return `joined ${rest}`;
    case "say": {
      const at = rest.indexOf(" ");
      return `delivered ${groups.broadcast(rest.slice(0, at), rest.slice(at + 1), me)}`;
    }
    case "members":
      return String(groups.members(rest).length);
    case "tally": {
      kv.set(`${rest}a`, "1");
      kv.set(`${rest}b`, new Uint8Array([50]));
      const entries = kv.entries(rest);
      const removed = kv.delete(`${rest}b`);
      const decoder = new TextDecoder();
      const pairs = Object.keys(entries)
        .sort()
        .map((key) => `${key}=${decoder.decode(entries[key])}`);
      return `${pairs.join(",")} deleted=${removed}`;
    }
    default:
      return `unknown command ${name}`;
  }
}

function mainHandler(event, context) {
  const message = new Event(event);
  if (message.action === "data send") {
    const data = message.data;
    if (typeof data === "string" && data.startsWith("/")) {
      push(message.connectionId, command(message.connectionId, data));
    } else {
      push(message.connectionId, data);
    }
  }
}

export const handle = serve(mainHandler);
