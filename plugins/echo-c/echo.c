/*
 * echo-c: sends every message back to its sender, text as text and binary
 * as binary. `cargo xtask build-plugins` builds it into handler.wasm (a
 * component) with build.sh; see docs/languages/c.md.
 */
#define WASMGATE_IMPLEMENTATION
#include "wasmgate.h"

static int echo(const wasmgate_context *ctx, const wasmgate_message *message) {
    wasmgate_str error;
    if (wasmgate_push(ctx->connection_id, message->binary, message->data, &error) != 0) {
        wasmgate_log(WASMGATE_WARN, "echo: push failed");
        return 1;
    }
    return 0;
}

const wasmgate_handler wasmgate_handler_callbacks = {.transfer = echo};
