// echo-as: sends every message back to its sender, text as text and binary
// as binary. A plain core module: the gateway wraps it into a component.
// `cargo xtask build-plugins` builds it with build.sh; see
// docs/languages/assemblyscript.md.
//
// A text message that begins with `/` is a command that shows the helper's
// key-value store and groups instead: `/count` (a counter of the service),
// `/join GROUP`, `/say GROUP TEXT` (to the group but the sender),
// `/members GROUP` (how many), `/value KEY` (sets it to `1`, reads it back).

import {
  Context, Message, groupsBroadcast, groupsJoin, groupsMembers, kvDelete, kvGet, kvIncrement,
  kvSet, lastErrNo, onTransfer, push, pushText,
} from "../../guest-sdk/assemblyscript/wasmgate";
export { handle, cabi_realloc, cabi_post_handle } from "../../guest-sdk/assemblyscript/wasmgate";

function command(ctx: Context, text: string): string {
  const space = text.indexOf(" ");
  const name = space < 0 ? text.slice(1) : text.slice(1, space);
  const rest = space < 0 ? "" : text.slice(space + 1);
  let reply = "unknown command";
  if (name == "count") {
    reply = "count " + kvIncrement("count", 1).toString();
  } else if (name == "join") {
    groupsJoin(rest, ctx.connectionId);
    reply = "joined " + rest;
  } else if (name == "say") {
    const at = rest.indexOf(" ");
    const words = Uint8Array.wrap(String.UTF8.encode(rest.slice(at + 1)));
    reply = "delivered " + groupsBroadcast(rest.slice(0, at), words, false, ctx.connectionId).toString();
  } else if (name == "members") {
    reply = groupsMembers(rest).length.toString();
  } else if (name == "value") {
    kvSet(rest, Uint8Array.wrap(String.UTF8.encode("1")));
    const value = kvGet(rest);
    const shown = value !== null ? String.UTF8.decodeUnsafe(value.dataStart, value.length) : "absent";
    reply = rest + "=" + shown + " deleted=" + (kvDelete(rest) ? "true" : "false");
  }
  return lastErrNo != 0 ? "result:" + lastErrNo.toString() : reply;
}

onTransfer((ctx: Context, message: Message): bool => {
  if (!message.binary && message.data.length > 0 && message.data[0] == 0x2f) {
    return pushText(ctx.connectionId, command(ctx, message.text())) == 0;
  }
  return push(ctx.connectionId, message) == 0;
});
