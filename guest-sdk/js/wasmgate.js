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
    fn(...args);
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
  const payload =
    typeof data === "string"
      ? { tag: "text", val: data }
      : { tag: "binary", val: data instanceof Uint8Array ? data : new Uint8Array(data) };
  call(host.push, connectionId, payload);
}

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
 * `service`, `role` ("register", "transfer", "cleanup"), `requestId`,
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
