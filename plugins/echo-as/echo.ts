// echo-as: sends every message back to its sender, text as text and binary
// as binary. A plain core module: the gateway wraps it into a component.
// `cargo xtask build-plugins` builds it with build.sh; see
// docs/languages/assemblyscript.md.

import { Context, Message, onTransfer, push } from "../../guest-sdk/assemblyscript/wasmgate";
export { handle, cabi_realloc, cabi_post_handle } from "../../guest-sdk/assemblyscript/wasmgate";

onTransfer((ctx: Context, message: Message): bool => push(ctx.connectionId, message) == 0);
