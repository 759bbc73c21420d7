//! echo-zig: sends every message back to its sender, text as text and
//! binary as binary. A plain core module: the gateway wraps it into a
//! component. `cargo xtask build-plugins` builds it with build.sh; see
//! docs/languages/zig.md.

const wasmgate = @import("wasmgate");

comptime {
    wasmgate.exportHandler(@This());
}

pub fn transfer(ctx: wasmgate.Context, message: wasmgate.Message) !void {
    try wasmgate.push(ctx.connection_id, message.binary, message.data);
}
