// wasmgate.ts: write a wasmgate handler in AssemblyScript as a plain core
// module, without JSON or ABI plumbing.
//
// The handler's entry file re-exports the entry points and registers the
// callbacks it needs (a missing one accepts every connection and ignores
// messages and cleanups):
//
//     import { Context, Message, onTransfer, push } from "../../guest-sdk/assemblyscript/wasmgate";
//     export { handle, cabi_realloc, cabi_post_handle } from "../../guest-sdk/assemblyscript/wasmgate";
//
//     onTransfer((ctx: Context, message: Message): bool => push(ctx.connectionId, message) == 0);
//
// A callback returns true for success; false fails the call (register: the
// connection is refused). `answer(json)` sets the answer JSON.
// Compile with `--runtime stub` (every event runs in a fresh instance, so
// nothing needs freeing) and `--use abort=` with this file's `wasmgateAbort`,
// since the gateway offers no `env.abort` import: see plugins/echo-as/build.sh
// and docs/languages/assemblyscript.md.

// @ts-ignore: decorator
@external("wasmgate:gateway/host@0.1.0", "push")
declare function hostPush(id: usize, idLen: usize, tag: i32, data: usize, dataLen: usize, ret: usize): void;
// @ts-ignore: decorator
@external("wasmgate:gateway/host@0.1.0", "close")
declare function hostClose(id: usize, idLen: usize, ret: usize): void;
// @ts-ignore: decorator
@external("wasmgate:gateway/host@0.1.0", "route")
declare function hostRoute(json: usize, jsonLen: usize, ret: usize): void;
// @ts-ignore: decorator
@external("wasmgate:gateway/host@0.1.0", "log")
declare function hostLog(level: i32, text: usize, textLen: usize): void;

/** The role a handler is called in (the WIT enum `role`). */
export enum Role { Register = 0, Transfer = 1, Cleanup = 2, Http = 3, Timer = 4 }

/** Log levels (the WIT enum `log-level`). */
export enum LogLevel { Trace = 0, Debug = 1, Info = 2, Warn = 3, Error = 4 }

/** What the gateway tells a handler about the call (the WIT record `context`). */
export class Context {
  constructor(
    public service: string,
    public role: Role,
    public requestId: string,
    public connectionId: string,
    public deadlineMs: u64,
  ) {}
}

/** A client's message, decoded: `data` holds UTF-8 text or the raw bytes. */
export class Message {
  constructor(public binary: bool, public data: Uint8Array, public event: string) {}

  /** The text of a text message. */
  text(): string {
    return String.UTF8.decodeUnsafe(this.data.dataStart, this.data.length);
  }
}

let registerCallback: ((ctx: Context, event: string) => bool) | null = null;
let transferCallback: ((ctx: Context, message: Message) => bool) | null = null;
let cleanupCallback: ((ctx: Context, event: string) => bool) | null = null;

/** Sets the register callback; `event` is the connecting event's JSON. */
export function onRegister(callback: (ctx: Context, event: string) => bool): void {
  registerCallback = callback;
}
/** Sets the transfer callback, called with the client's message. */
export function onTransfer(callback: (ctx: Context, message: Message) => bool): void {
  transferCallback = callback;
}
/** Sets the cleanup callback; `event` is the closing event's JSON. */
export function onCleanup(callback: (ctx: Context, event: string) => bool): void {
  cleanupCallback = callback;
}
let httpCallback: ((ctx: Context, event: string) => bool) | null = null;
let timerCallback: ((ctx: Context, event: string) => bool) | null = null;
/** Sets the HTTP callback: `event` is the integration request's JSON; set the
 * integration response with `answer`. Without one, an HTTP request gets 501
 * with errNo 2603. */
export function onHttp(callback: (ctx: Context, event: string) => bool): void {
  httpCallback = callback;
}
/** Sets the timer callback: `event` is the timer event's JSON. Without one, a
 * tick fails (the gateway logs it). */
export function onTimer(callback: (ctx: Context, event: string) => bool): void {
  timerCallback = callback;
}

// result<_, gateway-error> of a host call: tag, err-no, err-msg (pointer, length).
const HOST_RESULT = memory.data(16, 4);

/** The errMsg of the last failed host call. */
export let lastError: string = "";

function hostResult(): i32 {
  if (load<u8>(HOST_RESULT) == 0) return 0;
  lastError = String.UTF8.decodeUnsafe(load<u32>(HOST_RESULT, 8), load<u32>(HOST_RESULT, 12));
  const errNo = load<i32>(HOST_RESULT, 4);
  return errNo != 0 ? errNo : -1;
}

/** Sends a message back: text as a text frame, binary as a binary frame. Returns 0 or the errNo. */
export function push(connectionId: string, message: Message): i32 {
  return pushBytes(connectionId, message.data, message.binary);
}

/** Sends text as a text frame. Returns 0 or the gateway's errNo. */
export function pushText(connectionId: string, text: string): i32 {
  const bytes = Uint8Array.wrap(String.UTF8.encode(text));
  return pushBytes(connectionId, bytes, false);
}

/** Sends `data` as a binary frame, or as a text frame when `binary` is false (then it must be UTF-8). */
export function pushBytes(connectionId: string, data: Uint8Array, binary: bool = true): i32 {
  const id = String.UTF8.encode(connectionId);
  hostPush(changetype<usize>(id), id.byteLength, binary ? 1 : 0, data.dataStart, data.length, HOST_RESULT);
  return hostResult();
}

/** Closes a connection of this service; its cleanup then runs. */
export function close(connectionId: string): i32 {
  const id = String.UTF8.encode(connectionId);
  hostClose(changetype<usize>(id), id.byteLength, HOST_RESULT);
  return hostResult();
}

/** Routes a reverse-push request given as JSON, like `POST /push/<service>`. */
export function route(requestJson: string): i32 {
  const json = String.UTF8.encode(requestJson);
  hostRoute(changetype<usize>(json), json.byteLength, HOST_RESULT);
  return hostResult();
}

/** Writes a line to the gateway's log, tagged with the call. */
export function log(level: LogLevel, message: string): void {
  const text = String.UTF8.encode(message);
  hostLog(level, changetype<usize>(text), text.byteLength);
}

// --- attributes, key-value store and groups (layouts: docs/languages/wat.md) ---

@external("wasmgate:gateway/host@0.1.0", "set-attributes")
declare function hostSetAttributes(json: usize, jsonLen: usize, ret: usize): void;
@external("wasmgate:gateway/kv@0.1.0", "get")
declare function kvGetRaw(key: usize, keyLen: usize, ret: usize): void;
@external("wasmgate:gateway/kv@0.1.0", "set")
declare function kvSetRaw(key: usize, keyLen: usize, value: usize, valueLen: usize, hasTtl: i32, ttl: i64, ret: usize): void;
@external("wasmgate:gateway/kv@0.1.0", "delete")
declare function kvDeleteRaw(key: usize, keyLen: usize, ret: usize): void;
@external("wasmgate:gateway/kv@0.1.0", "increment")
declare function kvIncrementRaw(key: usize, keyLen: usize, delta: i64, ret: usize): void;
@external("wasmgate:gateway/groups@0.1.0", "join")
declare function groupsJoinRaw(group: usize, groupLen: usize, id: usize, idLen: usize, ret: usize): void;
@external("wasmgate:gateway/groups@0.1.0", "leave")
declare function groupsLeaveRaw(group: usize, groupLen: usize, id: usize, idLen: usize, ret: usize): void;
@external("wasmgate:gateway/groups@0.1.0", "members")
declare function groupsMembersRaw(group: usize, groupLen: usize, ret: usize): void;
@external("wasmgate:gateway/groups@0.1.0", "broadcast")
declare function groupsBroadcastRaw(group: usize, groupLen: usize, tag: i32, data: usize, dataLen: usize, hasExcept: i32, except: usize, exceptLen: usize, ret: usize): void;

// Room for any result: the tag, then the payload at +4 (or +8 for increment).
const RESULT = memory.data(24, 8);

/** The errNo of the last state call (0: it succeeded); its errMsg is `lastError`. */
export let lastErrNo: i32 = 0;

/** Reads the result at RESULT whose payload starts at `at`; true when it is ok. */
function resultOk(at: usize = 4): bool {
  if (load<u8>(RESULT) == 0) {
    lastErrNo = 0;
    return true;
  }
  lastError = String.UTF8.decodeUnsafe(load<u32>(RESULT + at + 4), load<u32>(RESULT + at + 8));
  const errNo = load<i32>(RESULT + at);
  lastErrNo = errNo != 0 ? errNo : -1;
  return false;
}

function utf8(text: string): ArrayBuffer {
  return String.UTF8.encode(text);
}

/** Replaces the attributes of the connection this call is about (a JSON object of at most 4096 bytes). Returns 0 or the errNo. */
export function setAttributes(json: string): i32 {
  const bytes = utf8(json);
  hostSetAttributes(changetype<usize>(bytes), bytes.byteLength, RESULT);
  return resultOk() ? 0 : lastErrNo;
}

/** The value of `key`, or null when absent or when the call failed (`lastErrNo`). */
export function kvGet(key: string): Uint8Array | null {
  const k = utf8(key);
  kvGetRaw(changetype<usize>(k), k.byteLength, RESULT);
  if (!resultOk() || load<u8>(RESULT, 4) == 0) return null;
  const length = load<u32>(RESULT, 12);
  const value = new Uint8Array(length);
  memory.copy(value.dataStart, load<u32>(RESULT, 8), length);
  return value;
}

/** Sets `key`; with `ttlMs` >= 0 it expires that many milliseconds from now. Returns 0 or the errNo. */
export function kvSet(key: string, value: Uint8Array, ttlMs: i64 = -1): i32 {
  const k = utf8(key);
  kvSetRaw(changetype<usize>(k), k.byteLength, value.dataStart, value.length, ttlMs >= 0 ? 1 : 0, ttlMs >= 0 ? ttlMs : 0, RESULT);
  return resultOk() ? 0 : lastErrNo;
}

/** Removes `key`; whether it existed (false also when the call failed: `lastErrNo`). */
export function kvDelete(key: string): bool {
  const k = utf8(key);
  kvDeleteRaw(changetype<usize>(k), k.byteLength, RESULT);
  return resultOk() && load<u8>(RESULT, 4) != 0;
}

/** Atomically adds `delta` to the counter at `key`; the new value (0 when the call failed: `lastErrNo`). */
export function kvIncrement(key: string, delta: i64): i64 {
  const k = utf8(key);
  kvIncrementRaw(changetype<usize>(k), k.byteLength, delta, RESULT);
  return resultOk(8) ? load<i64>(RESULT, 8) : 0;
}

/** Adds a live connection to `group`. Returns 0 or the errNo. */
export function groupsJoin(group: string, connectionId: string): i32 {
  const g = utf8(group);
  const id = utf8(connectionId);
  groupsJoinRaw(changetype<usize>(g), g.byteLength, changetype<usize>(id), id.byteLength, RESULT);
  return resultOk() ? 0 : lastErrNo;
}

/** Takes a connection out of `group`; whether it was in. */
export function groupsLeave(group: string, connectionId: string): bool {
  const g = utf8(group);
  const id = utf8(connectionId);
  groupsLeaveRaw(changetype<usize>(g), g.byteLength, changetype<usize>(id), id.byteLength, RESULT);
  return resultOk() && load<u8>(RESULT, 4) != 0;
}

/** The first 1000 members of `group`, sorted (empty when the call failed: `lastErrNo`). */
export function groupsMembers(group: string): string[] {
  const g = utf8(group);
  groupsMembersRaw(changetype<usize>(g), g.byteLength, RESULT);
  const members = new Array<string>();
  if (!resultOk()) return members;
  const list = load<u32>(RESULT, 4);
  const count = load<u32>(RESULT, 8);
  for (let i: u32 = 0; i < count; i++) {
    members.push(String.UTF8.decodeUnsafe(load<u32>(list + i * 8), load<u32>(list + i * 8 + 4)));
  }
  return members;
}

/** Sends `data` (text when `binary` is false) to every member of `group` but `exceptId`; how many it reached, or -1 when the call failed (`lastErrNo`). */
export function groupsBroadcast(group: string, data: Uint8Array, binary: bool, exceptId: string | null): i32 {
  const g = utf8(group);
  const except = exceptId !== null ? utf8(exceptId) : new ArrayBuffer(0);
  groupsBroadcastRaw(changetype<usize>(g), g.byteLength, binary ? 1 : 0, data.dataStart, data.length, exceptId !== null ? 1 : 0, changetype<usize>(except), except.byteLength, RESULT);
  return resultOk() ? load<i32>(RESULT, 4) : -1;
}

let answerJson: string | null = null;

/** Sets the answer JSON. Without it, register answers {"errNo":0,"errMsg":"ok"} and the other roles {}. */
export function answer(json: string): void {
  answerJson = json;
}

// --- a small JSON reader on the event's UTF-8 bytes ---

function isSpace(c: u8): bool {
  return c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d;
}

function skipString(s: usize, n: usize, i: usize): usize {
  for (i++; i < n; i++) {
    const c = load<u8>(s + i);
    if (c == 0x5c) i++;
    else if (c == 0x22) return i + 1;
  }
  return n;
}

function hex4(s: usize): i32 {
  let v = 0;
  for (let k = 0; k < 4; k++) {
    const c = <i32>load<u8>(s + k);
    v <<= 4;
    if (c >= 48 && c <= 57) v |= c - 48;
    else if (c >= 97 && c <= 102) v |= c - 87;
    else if (c >= 65 && c <= 70) v |= c - 55;
    else return -1;
  }
  return v;
}

function putUtf8(out: Uint8Array, len: i32, cp: u32): i32 {
  if (cp < 0x80) { out[len] = <u8>cp; return len + 1; }
  if (cp < 0x800) { out[len] = <u8>(0xc0 | (cp >> 6)); out[len + 1] = <u8>(0x80 | (cp & 0x3f)); return len + 2; }
  if (cp < 0x10000) {
    out[len] = <u8>(0xe0 | (cp >> 12)); out[len + 1] = <u8>(0x80 | ((cp >> 6) & 0x3f));
    out[len + 2] = <u8>(0x80 | (cp & 0x3f));
    return len + 3;
  }
  out[len] = <u8>(0xf0 | (cp >> 18)); out[len + 1] = <u8>(0x80 | ((cp >> 12) & 0x3f));
  out[len + 2] = <u8>(0x80 | ((cp >> 6) & 0x3f)); out[len + 3] = <u8>(0x80 | (cp & 0x3f));
  return len + 4;
}

function decodeString(s: usize, n: usize, i: usize): Uint8Array {
  const out = new Uint8Array(<i32>(n - i));
  let len = 0;
  for (i++; i < n; i++) {
    const c = load<u8>(s + i);
    if (c == 0x22) break;
    if (c != 0x5c) { out[len++] = c; continue; }
    if (++i >= n) break;
    const e = load<u8>(s + i);
    if (e == 0x6e) out[len++] = 0x0a;
    else if (e == 0x74) out[len++] = 0x09;
    else if (e == 0x72) out[len++] = 0x0d;
    else if (e == 0x62) out[len++] = 0x08;
    else if (e == 0x66) out[len++] = 0x0c;
    else if (e == 0x75 && i + 4 < n) {
      let cp = hex4(s + i + 1);
      i += 4;
      if (cp >= 0xd800 && cp < 0xdc00 && i + 6 < n && load<u8>(s + i + 1) == 0x5c && load<u8>(s + i + 2) == 0x75) {
        const low = hex4(s + i + 3);
        if (low >= 0xdc00 && low < 0xe000) {
          cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
          i += 6;
        }
      }
      len = putUtf8(out, len, <u32>cp);
    } else out[len++] = e; // \" \\ \/
  }
  return out.subarray(0, len);
}

/** The first string member called `key` (at any depth) of the JSON at `s` (`n` bytes), decoded to UTF-8, or null. */
export function jsonString(s: usize, n: usize, key: string): Uint8Array | null {
  const k = String.UTF8.encode(key);
  const kp = changetype<usize>(k);
  const kl = <usize>k.byteLength;
  let i: usize = 0;
  while (i < n) {
    if (load<u8>(s + i) != 0x22) { i++; continue; }
    const end = skipString(s, n, i);
    let j = end;
    while (j < n && isSpace(load<u8>(s + j))) j++;
    if (j < n && load<u8>(s + j) == 0x3a) {
      const match = end - i - 2 == kl && memory.compare(s + i + 1, kp, kl) == 0;
      for (j++; j < n && isSpace(load<u8>(s + j)); j++) {}
      if (match && j < n && load<u8>(s + j) == 0x22) return decodeString(s, n, j);
      i = j;
      continue;
    }
    i = end;
  }
  return null;
}

function base64Value(c: u8): i32 {
  if (c >= 65 && c <= 90) return c - 65;
  if (c >= 97 && c <= 122) return c - 71;
  if (c >= 48 && c <= 57) return c + 4;
  if (c == 0x2b) return 62;
  if (c == 0x2f) return 63;
  return -1;
}

function base64Decode(input: Uint8Array): Uint8Array | null {
  const out = new Uint8Array(input.length / 4 * 3 + 3);
  let len = 0;
  let acc: u32 = 0;
  let bits = 0;
  for (let i = 0; i < input.length; i++) {
    const c = input[i];
    if (c == 0x3d) break;
    const v = base64Value(c);
    if (v < 0) return null;
    acc = (acc << 6) | <u32>v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[len++] = <u8>(acc >> bits);
    }
  }
  return out.subarray(0, len);
}

// --- the canonical-ABI entry points ---

// result<string, string>: tag, then the string as pointer and length.
const RET = memory.data(12, 4);
let retBytes: ArrayBuffer = new ArrayBuffer(0);

function finish(ok: bool, error: string): usize {
  let json = answerJson;
  if (json === null) json = "{}";
  retBytes = String.UTF8.encode(ok ? json : error);
  store<u8>(RET, ok ? 0 : 1);
  store<u32>(RET, changetype<usize>(retBytes), 4);
  store<u32>(RET, retBytes.byteLength, 8);
  return RET;
}

/** Memory the gateway fills with the call's strings. */
export function cabi_realloc(old: usize, oldSize: usize, align: usize, newSize: usize): usize {
  if (newSize == 0) return align;
  const ptr = heap.alloc(newSize);
  if (old != 0) memory.copy(ptr, old, min(oldSize, newSize));
  return ptr;
}

/** handle: func(ctx: context, event: string) -> result<string, string> */
export function handle(
  servicePtr: usize, serviceLen: usize, role: i32,
  requestPtr: usize, requestLen: usize,
  connectionPtr: usize, connectionLen: usize,
  deadlineMs: i64, eventPtr: usize, eventLen: usize,
): usize {
  const ctx = new Context(
    String.UTF8.decodeUnsafe(servicePtr, serviceLen),
    <Role>role,
    String.UTF8.decodeUnsafe(requestPtr, requestLen),
    String.UTF8.decodeUnsafe(connectionPtr, connectionLen),
    <u64>deadlineMs,
  );
  if (role == Role.Register) {
    if (answerJson === null) answerJson = '{"errNo":0,"errMsg":"ok"}';
    const callback = registerCallback;
    return finish(callback === null || callback(ctx, String.UTF8.decodeUnsafe(eventPtr, eventLen)), "register refused");
  }
  if (role == Role.Transfer) {
    const callback = transferCallback;
    if (callback === null) return finish(true, "");
    const dataType = jsonString(eventPtr, eventLen, "dataType");
    let data = jsonString(eventPtr, eventLen, "data");
    if (dataType === null || data === null) return finish(false, "data-send event without dataType or data");
    const binary = dataType.length == 6 && String.UTF8.decodeUnsafe(dataType.dataStart, 6) == "binary";
    if (binary) {
      data = base64Decode(data);
      if (data === null) return finish(false, "binary data is not Base64");
    }
    const message = new Message(binary, data, String.UTF8.decodeUnsafe(eventPtr, eventLen));
    return finish(callback(ctx, message), "transfer failed");
  }
  if (role == Role.Http) {
    const callback = httpCallback;
    if (callback === null) {
      answerJson = '{"statusCode":501,"headers":{"Content-Type":"application/json"},'
        + '"body":"{\\"errNo\\":2603,\\"errMsg\\":\\"the service does not handle HTTP requests\\"}"}';
      return finish(true, "");
    }
    return finish(callback(ctx, String.UTF8.decodeUnsafe(eventPtr, eventLen)), "http failed");
  }
  if (role == Role.Timer) {
    const callback = timerCallback;
    return finish(callback !== null && callback(ctx, String.UTF8.decodeUnsafe(eventPtr, eventLen)),
      "a timer fired, but this handler has no timer callback, or it failed");
  }
  const callback = cleanupCallback;
  return finish(callback === null || callback(ctx, String.UTF8.decodeUnsafe(eventPtr, eventLen)), "cleanup failed");
}

/** Called after the gateway read the answer: nothing to free. */
export function cabi_post_handle(ret: usize): void {}

/** The `abort` of this library (`--use abort=...`): traps, since the gateway offers no `env.abort`. */
export function wasmgateAbort(message: string | null, file: string | null, line: u32, column: u32): void {
  unreachable();
}
