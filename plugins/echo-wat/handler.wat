;; echo-wat: the echo handler as a plain core module, written by hand.
;;
;; The gateway wraps a core module that follows the component model's
;; canonical ABI for the wasmgate:gateway/handler world into a component
;; itself. `cargo xtask build-plugins` turns this file into handler.wasm.
;;
;; Transfer echoes without parsing anything: a data-send event has exactly
;; the shape of a reverse-push request, so handing it to the `route` host
;; call sends the data back to its sender — text as text, binary as binary.
(module
  ;; route: func(request: string) -> result<_, gateway-error>
  ;; (string as pointer + length, then a pointer to space for the result)
  (import "wasmgate:gateway/host@0.1.0" "route" (func $route (param i32 i32 i32)))

  (memory (export "memory") 1)

  ;; Bump allocator for the strings the host passes in. Every event gets a
  ;; fresh instance, so nothing is ever freed.
  (global $heap (mut i32) (i32.const 1024))

  ;; Answers.
  (data (i32.const 16) "{\"errNo\":0,\"errMsg\":\"ok\"}") ;; 25 bytes: register accepts
  (data (i32.const 48) "{}")                          ;; 2 bytes: other roles

  ;; Return area of `handle`: result<string, string> = tag, pointer, length.
  (global $answer i32 (i32.const 64))
  ;; Space for route's result, which this handler does not need.
  (global $route_result i32 (i32.const 128))

  (func (export "cabi_realloc")
        (param $old_ptr i32) (param $old_size i32) (param $align i32) (param $size i32)
        (result i32)
    (local $ptr i32)
    (local $needed i32)
    ;; Align the bump pointer.
    (local.set $ptr
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $ptr) (local.get $size)))
    ;; Grow memory when the heap passes its end.
    (local.set $needed
      (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
    (if (i32.gt_s (local.get $needed) (i32.const 0))
      (then
        (if (i32.eq
              (memory.grow (i32.add (i32.shr_u (local.get $needed) (i32.const 16)) (i32.const 1)))
              (i32.const -1))
          (then unreachable))))
    (local.get $ptr))

  ;; handle: func(ctx: context, event: string) -> result<string, string>
  ;; ctx flattens to service (ptr, len), role, request-id (ptr, len),
  ;; connection-id (ptr, len), deadline-ms.
  (func (export "handle")
        (param $service_ptr i32) (param $service_len i32)
        (param $role i32)
        (param $request_ptr i32) (param $request_len i32)
        (param $connection_ptr i32) (param $connection_len i32)
        (param $deadline_ms i64)
        (param $event_ptr i32) (param $event_len i32)
        (result i32)
    ;; ok(...)
    (i32.store8 (global.get $answer) (i32.const 0))
    (if (i32.eqz (local.get $role))
      (then
        ;; register: accept
        (i32.store offset=4 (global.get $answer) (i32.const 16))
        (i32.store offset=8 (global.get $answer) (i32.const 25))
        (return (global.get $answer))))
    (if (i32.eq (local.get $role) (i32.const 1))
      (then
        ;; transfer: send the event back as a reverse-push request
        (call $route (local.get $event_ptr) (local.get $event_len) (global.get $route_result))))
    (i32.store offset=4 (global.get $answer) (i32.const 48))
    (i32.store offset=8 (global.get $answer) (i32.const 2))
    (global.get $answer))

  ;; The answer lives in static memory: nothing to free.
  (func (export "cabi_post_handle") (param i32))
)
