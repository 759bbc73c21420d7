/**
 * Helpers for wasmgate handlers written in JavaScript (built with
 * componentize-js). A handler module writes one function in the
 * `main_handler(event, context)` style and registers it with one line:
 *
 *     import { serve, Event, push } from "./wasmgate.js";
 *
 *     function mainHandler(event, context) {
 *       const message = new Event(event);
 *       if (message.action === "data send") push(message.connectionId, message.data);
 *     }
 *
 *     export const handle = serve(mainHandler);
 *
 * `event` is the event object of docs/protocol.md, `context` a {@link Context};
 * the handler returns the answer as an object (sent as JSON), a string (sent
 * as is) or nothing (`{"errNo": 0, "errMsg": "ok"}`). A thrown error fails
 * the call. Host call failures throw a {@link GatewayError}.
 *
 * @module wasmgate
 */
import * as host from "wasmgate:gateway/host@0.1.0";
import * as kvImports from "wasmgate:gateway/kv@0.1.0";
import * as groupsImports from "wasmgate:gateway/groups@0.1.0";

/** A host call failed; `errNo`/`errMsg` as the reverse-push endpoint answers. */
export class GatewayError extends Error {
  constructor(errNo, errMsg) {
    super(`errNo ${errNo}: ${errMsg}`);
    /** @type {number} */
    this.errNo = errNo;
    /** @type {string} */
    this.errMsg = errMsg;
  }
}

function call(fn, ...args) {
  try {
    return fn(...args);
  } catch (error) {
    const failure = error && (error.payload || error.cause || error);
    if (failure && typeof failure.errNo === "number") {
      throw new GatewayError(failure.errNo, failure.errMsg);
    }
    throw error;
  }
}

/**
 * Sends data to a connection: a string as a text frame, a Uint8Array (or
 * ArrayBuffer) as a binary frame.
 * @param {string} connectionId
 * @param {string | Uint8Array | ArrayBuffer} data
 */
export function push(connectionId, data) {
  call(host.push, connectionId, payloadOf(data));
}

function payloadOf(data) {
  return typeof data === "string"
    ? { tag: "text", val: data }
    : { tag: "binary", val: bytesOf(data) };
}

function bytesOf(data) {
  if (typeof data === "string") return new TextEncoder().encode(data);
  return data instanceof Uint8Array ? data : new Uint8Array(data);
}

/**
 * Replaces the attributes of the connection this call is about (an object
 * of at most 4096 bytes as JSON); later events carry them as `attributes`.
 * @param {object} attributes
 */
export function setAttributes(attributes) {
  call(host.setAttributes, JSON.stringify(attributes));
}

// `delete` is a reserved word: the bindings may name it otherwise.
const kvDelete = kvImports["delete"] || kvImports["delete$"] || kvImports["delete_"];

/**
 * The service's durable key-value store: keys are strings, values
 * Uint8Arrays (a string is stored as UTF-8); counters are numbers.
 */
export const kv = {
  /** The value of `key`, or `undefined` when absent or expired. */
  get(key) {
    return call(kvImports.get, key);
  },
  /** Sets `key`; with `ttlMs` it expires that many milliseconds from now. */
  set(key, value, ttlMs) {
    call(kvImports.set, key, bytesOf(value), ttlMs === undefined ? undefined : BigInt(ttlMs));
  },
  /** Removes `key`; whether it existed. */
  delete(key) {
    return call(kvDelete, key);
  },
  /** Whether `key` holds a value. */
  exists(key) {
    return call(kvImports.exists, key);
  },
  /** Every key starting with `prefix`, page after page. */
  keys(prefix = "") {
    const keys = [];
    let cursor;
    do {
      const page = call(kvImports.listKeys, prefix, cursor);
      keys.push(...page.keys);
      cursor = page.cursor;
    } while (cursor !== undefined && cursor !== null);
    return keys;
  },
  /** Every key starting with `prefix` with its value, as an object. */
  entries(prefix = "") {
    const entries = {};
    let cursor;
    do {
      const page = call(kvImports.listEntries, prefix, cursor);
      for (const entry of page.entries) entries[entry.key] = entry.value;
      cursor = page.cursor;
    } while (cursor !== undefined && cursor !== null);
    return entries;
  },
  /** The values of `keys` in their order (`undefined`: absent), one snapshot. */
  getMany(keys) {
    return call(kvImports.getMany, keys);
  },
  /** Atomically adds `delta` to the counter at `key`; the new value. */
  increment(key, delta = 1) {
    return Number(call(kvImports.increment, key, BigInt(delta)));
  },
  /** Sets `key` to `value` if it holds `expected` (`undefined`: absent). */
  compareAndSwap(key, expected, value) {
    return call(
      kvImports.compareAndSwap,
      key,
      expected === undefined ? undefined : bytesOf(expected),
      bytesOf(value),
    );
  },
};

/** Named groups of the service's connections, for broadcast. */
export const groups = {
  /** Adds a live connection to `group`. */
  join(group, connectionId) {
    call(groupsImports.join, group, connectionId);
  },
  /** Takes a connection out of `group`; whether it was in. */
  leave(group, connectionId) {
    return call(groupsImports.leave, group, connectionId);
  },
  /** Every member of `group`, sorted, page after page. */
  members(group) {
    const members = [];
    let cursor;
    do {
      const page = call(groupsImports.membersPage, group, cursor, 1000);
      members.push(...page.members);
      cursor = page.cursor;
    } while (cursor !== undefined && cursor !== null);
    return members;
  },
  /** The groups a connection is in, sorted. */
  groupsOf(connectionId) {
    return call(groupsImports.groupsOf, connectionId);
  },
  /** Sends `data` to every member of `group` but `exceptId`; how many it reached. */
  broadcast(group, data, exceptId) {
    return call(groupsImports.broadcast, group, payloadOf(data), exceptId);
  },
};

/** Closes a connection of this service; its cleanup handler then runs. */
export function close(connectionId) {
  call(host.close, connectionId);
}

/**
 * Routes a reverse-push request (its JSON body, as a string or an object).
 * @param {string | object} request
 */
export function route(request) {
  call(host.route, typeof request === "string" ? request : JSON.stringify(request));
}

/**
 * Writes a line to the gateway's log.
 * @param {string} message
 * @param {"trace"|"debug"|"info"|"warn"|"error"} [level]
 */
export function log(message, level = "info") {
  host.log(level, message);
}

function decodeBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** Typed access to an event object; the object itself is `raw`. */
export class Event {
  constructor(event) {
    const websocket = event.websocket || {};
    /** The event as parsed from JSON. */
    this.raw = event;
    /** `"connecting"`, `"data send"` or `"closing"`. */
    this.action = websocket.action;
    /** The connection (`secConnectionID`). */
    this.connectionId = websocket.secConnectionID;
    /** `"text"` or `"binary"` for a data send. */
    this.dataType = websocket.dataType;
    /** The client's `Sec-WebSocket-Protocol` header, when it sent one. */
    this.protocol = websocket.secWebSocketProtocol;
    /** The connection's attributes (what register attached), if any. */
    this.attributes = event.attributes;
  }

  /** The message: a string for text, a Uint8Array for binary (Base64 decoded). */
  get data() {
    const data = this.raw.websocket && this.raw.websocket.data;
    if (data !== undefined && this.dataType === "binary") return decodeBase64(data);
    return data;
  }
}

/**
 * What the gateway tells a handler about the call besides the event:
 * `service`, `role` ("register", "transfer", "cleanup", "http", "timer"), `requestId`,
 * `connectionId` and `deadlineMs` (milliseconds since the Unix epoch).
 * @typedef {object} Context
 */

/**
 * Makes `mainHandler(event, context)` the handler; export the result as
 * `handle`.
 * @param {(event: object, context: Context) => object | string | void} mainHandler
 * @returns {(ctx: object, event: string) => string}
 */
export function serve(mainHandler) {
  return function handle(ctx, event) {
    const context = {
      service: ctx.service,
      role: ctx.role,
      requestId: ctx.requestId,
      connectionId: ctx.connectionId,
      deadlineMs: ctx.deadlineMs,
    };
    let answer;
    try {
      answer = mainHandler(JSON.parse(event), context);
    } catch (error) {
      // A thrown string becomes the call's `err` result.
      throw String(error && error.stack ? `${error}` : error);
    }
    if (answer === undefined || answer === null) return '{"errNo": 0, "errMsg": "ok"}';
    return typeof answer === "string" ? answer : JSON.stringify(answer);
  };
}
