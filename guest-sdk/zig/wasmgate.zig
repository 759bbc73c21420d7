//! wasmgate.zig: write a wasmgate handler in Zig as a plain core module.
//!
//! The handler's root file declares the callbacks it needs and exports
//! the canonical-ABI entry points with `exportHandler`:
//!
//!     const wasmgate = @import("wasmgate");
//!     comptime {
//!         wasmgate.exportHandler(@This());
//!     }
//!     pub fn transfer(ctx: wasmgate.Context, message: wasmgate.Message) !void {
//!         try wasmgate.push(ctx.connection_id, message.binary, message.data);
//!     }
//!
//! Optional callbacks: `register(ctx, event_json) !void` (a missing one
//! accepts every connection), `transfer(ctx, message) !void`,
//! `cleanup(ctx, event_json) !void`. An error fails the call (register:
//! the connection is refused). `answer(json)` sets the answer JSON.
//! Build for `wasm32-freestanding` (no WASI needed); the gateway wraps the
//! core module into a component. See docs/languages/zig.md.

const std = @import("std");

/// The allocator for everything a handler allocates: every event runs in a
/// fresh instance, so memory lives only as long as the call.
pub const allocator = std.heap.wasm_allocator;

/// The role a handler is called in (the WIT enum `role`).
/// `http`: an HTTP request (the event is the integration request; answer the
/// integration response with `answer`); `timer`: a timer fired.
pub const Role = enum(i32) { register = 0, transfer = 1, cleanup = 2, http = 3, timer = 4 };

/// The answer of a handler without `http`: 501 with errNo 2603.
const not_handled = "{\"statusCode\":501,\"headers\":{\"Content-Type\":\"application/json\"}," ++
    "\"body\":\"{\\\"errNo\\\":2603,\\\"errMsg\\\":\\\"the service does not handle HTTP requests\\\"}\"}";

/// What the gateway tells a handler about the call (the WIT record `context`).
pub const Context = struct {
    service: []const u8,
    role: Role,
    request_id: []const u8,
    connection_id: []const u8,
    deadline_ms: u64,
};

/// A client's message, decoded: text is UTF-8, binary the raw bytes.
pub const Message = struct {
    binary: bool,
    data: []const u8,
    /// The whole data-send event JSON.
    event: []const u8,
};

/// Log levels (the WIT enum `log-level`).
pub const LogLevel = enum(i32) { trace = 0, debug = 1, info = 2, warn = 3, err = 4 };

/// A host call failed; `last_error` holds the gateway's errNo and errMsg.
pub const GatewayError = error{Gateway};

/// The errNo and errMsg of the last failed host call.
pub var last_error: struct { err_no: i32 = 0, err_msg: []const u8 = "" } = .{};

const HostResult = extern struct { is_err: u8, err_no: i32, msg_ptr: [*]const u8, msg_len: usize };

const host = struct {
    extern "wasmgate:gateway/host@0.1.0" fn push(id: [*]const u8, id_len: usize, tag: i32, data: [*]const u8, data_len: usize, ret: *HostResult) void;
    extern "wasmgate:gateway/host@0.1.0" fn close(id: [*]const u8, id_len: usize, ret: *HostResult) void;
    extern "wasmgate:gateway/host@0.1.0" fn route(json: [*]const u8, json_len: usize, ret: *HostResult) void;
    extern "wasmgate:gateway/host@0.1.0" fn log(level: i32, text: [*]const u8, text_len: usize) void;
};

/// The pointer of a slice for the host: an empty slice's pointer may lie
/// outside memory, which the canonical ABI refuses even for length 0.
fn ptr(slice: []const u8) [*]const u8 {
    return if (slice.len == 0) "".ptr else slice.ptr;
}

fn check(result: HostResult) GatewayError!void {
    if (result.is_err == 0) return;
    last_error = .{ .err_no = result.err_no, .err_msg = result.msg_ptr[0..result.msg_len] };
    return error.Gateway;
}

/// Sends text (a text frame) or bytes (`binary`: a binary frame) to a
/// connection of this service.
pub fn push(connection_id: []const u8, binary: bool, data: []const u8) GatewayError!void {
    var result: HostResult = undefined;
    host.push(ptr(connection_id), connection_id.len, @intFromBool(binary), ptr(data), data.len, &result);
    return check(result);
}

/// Closes a connection of this service; its cleanup then runs.
pub fn close(connection_id: []const u8) GatewayError!void {
    var result: HostResult = undefined;
    host.close(ptr(connection_id), connection_id.len, &result);
    return check(result);
}

/// Routes a reverse-push request given as JSON, like `POST /push/<service>`.
pub fn route(request_json: []const u8) GatewayError!void {
    var result: HostResult = undefined;
    host.route(ptr(request_json), request_json.len, &result);
    return check(result);
}

/// Writes a line to the gateway's log, tagged with the call.
pub fn log(level: LogLevel, message: []const u8) void {
    host.log(@intFromEnum(level), ptr(message), message.len);
}

/// Replaces the attributes of the connection this call is about: a JSON
/// object of at most 4096 bytes, sent as `attributes` in its later events.
pub fn setAttributes(json: []const u8) GatewayError!void {
    var result: HostResult = undefined;
    state.set_attributes(ptr(json), json.len, &result);
    return check(result);
}

/// The other imports; see docs/languages/wat.md for their signatures and
/// result layouts.
const state = struct {
    extern "wasmgate:gateway/host@0.1.0" fn @"set-attributes"(json: [*]const u8, len: usize, ret: *HostResult) void;
    const set_attributes = @"set-attributes";
    extern "wasmgate:gateway/kv@0.1.0" fn get(key: [*]const u8, len: usize, ret: *Result4) void;
    extern "wasmgate:gateway/kv@0.1.0" fn set(key: [*]const u8, len: usize, value: [*]const u8, value_len: usize, has_ttl: i32, ttl: i64, ret: *HostResult) void;
    extern "wasmgate:gateway/kv@0.1.0" fn delete(key: [*]const u8, len: usize, ret: *Result4) void;
    extern "wasmgate:gateway/kv@0.1.0" fn increment(key: [*]const u8, len: usize, delta: i64, ret: *Result8) void;
    extern "wasmgate:gateway/groups@0.1.0" fn join(group: [*]const u8, len: usize, id: [*]const u8, id_len: usize, ret: *HostResult) void;
    extern "wasmgate:gateway/groups@0.1.0" fn leave(group: [*]const u8, len: usize, id: [*]const u8, id_len: usize, ret: *Result4) void;
    extern "wasmgate:gateway/groups@0.1.0" fn members(group: [*]const u8, len: usize, ret: *Result4) void;
    extern "wasmgate:gateway/groups@0.1.0" fn broadcast(group: [*]const u8, len: usize, tag: i32, data: [*]const u8, data_len: usize, has_except: i32, except: [*]const u8, except_len: usize, ret: *Result4) void;
};

/// A string or byte list the host wrote into memory: pointer, length.
const Slice = extern struct { ptr: [*]const u8, len: usize };

/// A result whose payload is 4-aligned: the tag, then at +4 the payload
/// (`a`..`d` are its words: err-no or a value, then pointers and lengths).
const Result4 = extern struct { is_err: u8, a: u32, b: usize, c: usize };
/// A result whose payload is 8-aligned (`increment`'s s64).
const Result8 = extern struct { is_err: u8, value: i64, msg_len: usize };

fn failed4(result: Result4) GatewayError {
    last_error = .{ .err_no = @bitCast(result.a), .err_msg = @as([*]const u8, @ptrFromInt(result.b))[0..result.c] };
    return error.Gateway;
}

/// The service's key-value store.
pub const kv = struct {
    /// The value of `key` (memory of the instance), or null when absent.
    pub fn get(key: []const u8) GatewayError!?[]const u8 {
        var result: Result4 = undefined;
        state.get(ptr(key), key.len, &result);
        if (result.is_err != 0) return failed4(result);
        if (result.a & 0xff == 0) return null;
        return @as([*]const u8, @ptrFromInt(result.b))[0..result.c];
    }

    /// Sets `key`; with `ttl_ms` it expires that many milliseconds from now.
    pub fn set(key: []const u8, value: []const u8, ttl_ms: ?u64) GatewayError!void {
        var result: HostResult = undefined;
        state.set(ptr(key), key.len, ptr(value), value.len, @intFromBool(ttl_ms != null), @bitCast(ttl_ms orelse 0), &result);
        return check(result);
    }

    /// Removes `key`; whether it existed.
    pub fn delete(key: []const u8) GatewayError!bool {
        var result: Result4 = undefined;
        state.delete(ptr(key), key.len, &result);
        if (result.is_err != 0) return failed4(result);
        return result.a & 0xff != 0;
    }

    /// Atomically adds `delta` to the counter at `key`; the new value.
    pub fn increment(key: []const u8, delta: i64) GatewayError!i64 {
        var result: Result8 = undefined;
        state.increment(ptr(key), key.len, delta, &result);
        if (result.is_err != 0) {
            // The error's fields sit at +8 (err-no), +12 and +16 (message).
            const words: [*]const u32 = @ptrCast(@alignCast(&result));
            last_error = .{ .err_no = @bitCast(words[2]), .err_msg = @as([*]const u8, @ptrFromInt(words[3]))[0..words[4]] };
            return error.Gateway;
        }
        return result.value;
    }
};

/// Groups of the service's connections.
pub const groups = struct {
    /// Adds a live connection to `group`.
    pub fn join(group: []const u8, connection_id: []const u8) GatewayError!void {
        var result: HostResult = undefined;
        state.join(ptr(group), group.len, ptr(connection_id), connection_id.len, &result);
        return check(result);
    }

    /// Takes a connection out of `group`; whether it was in.
    pub fn leave(group: []const u8, connection_id: []const u8) GatewayError!bool {
        var result: Result4 = undefined;
        state.leave(ptr(group), group.len, ptr(connection_id), connection_id.len, &result);
        if (result.is_err != 0) return failed4(result);
        return result.a & 0xff != 0;
    }

    /// The first 1000 members of `group`, sorted (memory of the instance).
    pub fn members(group: []const u8) GatewayError![]const Slice {
        var result: Result4 = undefined;
        state.members(ptr(group), group.len, &result);
        if (result.is_err != 0) return failed4(result);
        if (result.b == 0) return &.{};
        return @as([*]const Slice, @ptrFromInt(result.a))[0..result.b];
    }

    /// Sends to every member of `group` but `except_id`; how many it reached.
    pub fn broadcast(group: []const u8, binary: bool, data: []const u8, except_id: ?[]const u8) GatewayError!u32 {
        var result: Result4 = undefined;
        const except = except_id orelse "";
        state.broadcast(ptr(group), group.len, @intFromBool(binary), ptr(data), data.len, @intFromBool(except_id != null), ptr(except), except.len, &result);
        if (result.is_err != 0) return failed4(result);
        return result.a;
    }
};

var answer_json: ?[]const u8 = null;

/// Sets the answer JSON of this call. Without it, register answers
/// `{"errNo":0,"errMsg":"ok"}` and the other roles `{}`.
pub fn answer(json: []const u8) void {
    answer_json = json;
}

/// result<string, string>: tag, then the string as pointer and length.
const Ret = extern struct { is_err: u8, ptr: [*]const u8, len: usize };
var ret: Ret = undefined;

fn finish(outcome: anyerror!void) *Ret {
    if (outcome) |_| {
        const json = answer_json orelse "{}";
        ret = .{ .is_err = 0, .ptr = json.ptr, .len = json.len };
    } else |e| {
        const name = @errorName(e);
        ret = .{ .is_err = 1, .ptr = name.ptr, .len = name.len };
    }
    return &ret;
}

const DataSend = struct { websocket: struct { dataType: []const u8, data: []const u8 } };

fn decodeMessage(event: []const u8) !Message {
    const parsed = try std.json.parseFromSliceLeaky(DataSend, allocator, event, .{ .ignore_unknown_fields = true });
    const ws = parsed.websocket;
    if (!std.mem.eql(u8, ws.dataType, "binary")) {
        return .{ .binary = false, .data = ws.data, .event = event };
    }
    const decoder = std.base64.standard.Decoder;
    const bytes = try allocator.alloc(u8, try decoder.calcSizeForSlice(ws.data));
    try decoder.decode(bytes, ws.data);
    return .{ .binary = true, .data = bytes, .event = event };
}

/// Exports `handle`, `cabi_post_handle` and `cabi_realloc` for the handler
/// type `H` (usually the root file, `@This()`).
pub fn exportHandler(comptime H: type) void {
    const Exports = struct {
        fn handle(
            service_ptr: [*]const u8,
            service_len: usize,
            role: i32,
            request_ptr: [*]const u8,
            request_len: usize,
            connection_ptr: [*]const u8,
            connection_len: usize,
            deadline_ms: i64,
            event_ptr: [*]const u8,
            event_len: usize,
        ) callconv(.c) *Ret {
            const ctx = Context{
                .service = service_ptr[0..service_len],
                .role = @enumFromInt(role),
                .request_id = request_ptr[0..request_len],
                .connection_id = connection_ptr[0..connection_len],
                .deadline_ms = @bitCast(deadline_ms),
            };
            const event = event_ptr[0..event_len];
            return switch (ctx.role) {
                .register => blk: {
                    if (answer_json == null) answer_json = "{\"errNo\":0,\"errMsg\":\"ok\"}";
                    break :blk finish(if (@hasDecl(H, "register")) H.register(ctx, event) else {});
                },
                .transfer => finish(if (@hasDecl(H, "transfer")) transfer(ctx, event) else {}),
                .cleanup => finish(if (@hasDecl(H, "cleanup")) H.cleanup(ctx, event) else {}),
                .http => blk: {
                    if (!@hasDecl(H, "http")) answer_json = not_handled;
                    break :blk finish(if (@hasDecl(H, "http")) H.http(ctx, event) else {});
                },
                .timer => finish(if (@hasDecl(H, "timer")) H.timer(ctx, event) else error.NoTimerHandler),
            };
        }

        fn transfer(ctx: Context, event: []const u8) anyerror!void {
            return H.transfer(ctx, try decodeMessage(event));
        }

        fn postHandle(_: *Ret) callconv(.c) void {}

        fn realloc(old: ?[*]u8, old_size: usize, alignment: usize, new_size: usize) callconv(.c) [*]u8 {
            const a = std.mem.Alignment.fromByteUnits(alignment);
            const new = allocator.rawAlloc(new_size, a, @returnAddress()) orelse @trap();
            if (old) |o| @memcpy(new[0..@min(old_size, new_size)], o[0..@min(old_size, new_size)]);
            return new;
        }
    };
    @export(&Exports.handle, .{ .name = "handle" });
    @export(&Exports.postHandle, .{ .name = "cabi_post_handle" });
    @export(&Exports.realloc, .{ .name = "cabi_realloc" });
}
