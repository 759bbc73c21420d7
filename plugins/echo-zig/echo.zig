//! echo-zig: sends every message back to its sender, text as text and
//! binary as binary. A plain core module: the gateway wraps it into a
//! component. `cargo xtask build-plugins` builds it with build.sh; see
//! docs/languages/zig.md.
//!
//! A text message that begins with `/` is a command that shows the helper's
//! key-value store and groups instead: `/count` (a counter of the service),
//! `/join GROUP`, `/say GROUP TEXT` (to the group but the sender),
//! `/members GROUP` (how many), `/value KEY` (sets it to `1`, reads it back).

const std = @import("std");
const wasmgate = @import("wasmgate");

comptime {
    wasmgate.exportHandler(@This());
}

var buffer: [128]u8 = undefined;

fn command(ctx: wasmgate.Context, text: []const u8) ![]const u8 {
    const space = std.mem.indexOfScalar(u8, text, ' ') orelse text.len;
    const name = text[1..space];
    const rest = if (space < text.len) text[space + 1 ..] else "";
    if (std.mem.eql(u8, name, "count")) {
        return std.fmt.bufPrint(&buffer, "count {d}", .{try wasmgate.kv.increment("count", 1)});
    } else if (std.mem.eql(u8, name, "join")) {
        try wasmgate.groups.join(rest, ctx.connection_id);
        return std.fmt.bufPrint(&buffer, "joined {s}", .{rest});
    } else if (std.mem.eql(u8, name, "say")) {
        const at = std.mem.indexOfScalar(u8, rest, ' ') orelse return "usage: /say GROUP TEXT";
        const delivered = try wasmgate.groups.broadcast(rest[0..at], false, rest[at + 1 ..], ctx.connection_id);
        return std.fmt.bufPrint(&buffer, "delivered {d}", .{delivered});
    } else if (std.mem.eql(u8, name, "members")) {
        return std.fmt.bufPrint(&buffer, "{d}", .{(try wasmgate.groups.members(rest)).len});
    } else if (std.mem.eql(u8, name, "value")) {
        try wasmgate.kv.set(rest, "1", null);
        const value = (try wasmgate.kv.get(rest)) orelse "absent";
        const deleted = try wasmgate.kv.delete(rest);
        return std.fmt.bufPrint(&buffer, "{s}={s} deleted={}", .{ rest, value, deleted });
    }
    return "unknown command";
}

pub fn transfer(ctx: wasmgate.Context, message: wasmgate.Message) !void {
    if (!message.binary and message.data.len > 0 and message.data[0] == '/') {
        const reply = command(ctx, message.data) catch |e| switch (e) {
            error.Gateway => try std.fmt.bufPrint(&buffer, "result:{d}", .{wasmgate.last_error.err_no}),
            else => return e,
        };
        return wasmgate.push(ctx.connection_id, false, reply);
    }
    try wasmgate.push(ctx.connection_id, message.binary, message.data);
}
