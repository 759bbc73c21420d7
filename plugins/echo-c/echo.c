/*
 * echo-c: sends every message back to its sender, text as text and binary
 * as binary. `cargo xtask build-plugins` builds it into handler.wasm (a
 * component) with build.sh; see docs/languages/c.md.
 *
 * A text message that begins with `/` is a command that shows the helper's
 * key-value store and groups instead: `/count` (a counter of the service),
 * `/join GROUP`, `/say GROUP TEXT` (to the group but the sender),
 * `/members GROUP` (how many), `/keys PREFIX` (how many keys).
 */
#define WASMGATE_IMPLEMENTATION
#include "wasmgate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool starts(wasmgate_str s, const char *prefix, wasmgate_str *rest) {
    size_t n = strlen(prefix);
    if (s.len < n || memcmp(s.ptr, prefix, n) != 0) return false;
    *rest = (wasmgate_str){s.ptr + n, s.len - n};
    return true;
}

static int reply(const wasmgate_context *ctx, const char *text) {
    return wasmgate_push(ctx->connection_id, false, wasmgate_cstr(text), NULL) != 0;
}

static void free_list(wasmgate_str *items, size_t count) {
    for (size_t i = 0; i < count; i++) free((void *)items[i].ptr);
    free(items);
}

static int command(const wasmgate_context *ctx, wasmgate_str text) {
    char out[96];
    wasmgate_str rest;
    int err = 0;
    if (starts(text, "/count", &rest)) {
        int64_t n = 0;
        err = wasmgate_kv_increment(wasmgate_cstr("count"), 1, &n, NULL);
        snprintf(out, sizeof out, "count %lld", (long long)n);
    } else if (starts(text, "/join ", &rest)) {
        err = wasmgate_groups_join(rest, ctx->connection_id, NULL);
        snprintf(out, sizeof out, "joined %.*s", (int)rest.len, (const char *)rest.ptr);
    } else if (starts(text, "/say ", &rest)) {
        const uint8_t *space = memchr(rest.ptr, ' ', rest.len);
        if (!space) return reply(ctx, "usage: /say GROUP TEXT");
        wasmgate_str group = {rest.ptr, (size_t)(space - rest.ptr)};
        wasmgate_str words = {space + 1, rest.len - group.len - 1};
        uint32_t delivered = 0;
        err = wasmgate_groups_broadcast(group, false, words, &ctx->connection_id, &delivered, NULL);
        snprintf(out, sizeof out, "delivered %u", delivered);
    } else if (starts(text, "/members ", &rest)) {
        wasmgate_str *members = NULL;
        size_t count = 0;
        err = wasmgate_groups_members(rest, &members, &count, NULL);
        if (!err) free_list(members, count);
        snprintf(out, sizeof out, "%zu", count);
    } else if (starts(text, "/keys ", &rest)) {
        wasmgate_str *keys = NULL, next;
        size_t count = 0;
        bool found = false;
        wasmgate_str value = {0, 0};
        err = wasmgate_kv_set(wasmgate_cstr("keys/a"), wasmgate_cstr("1"), -1, NULL);
        if (!err) err = wasmgate_kv_get(wasmgate_cstr("keys/a"), &found, &value, NULL);
        if (!err) err = wasmgate_kv_list_keys(rest, NULL, &keys, &count, &next, NULL);
        if (!err) free_list(keys, count);
        snprintf(out, sizeof out, "%zu keys, keys/a=%.*s", count, (int)value.len,
                 found ? (const char *)value.ptr : "");
        free((void *)value.ptr);
    } else {
        snprintf(out, sizeof out, "unknown command");
    }
    if (err) snprintf(out, sizeof out, "result:%d", err);
    return reply(ctx, out);
}

static int echo(const wasmgate_context *ctx, const wasmgate_message *message) {
    if (!message->binary && message->data.len > 0 && message->data.ptr[0] == '/')
        return command(ctx, message->data);
    wasmgate_str error;
    if (wasmgate_push(ctx->connection_id, message->binary, message->data, &error) != 0) {
        wasmgate_log(WASMGATE_WARN, "echo: push failed");
        return 1;
    }
    return 0;
}

const wasmgate_handler wasmgate_handler_callbacks = {.transfer = echo};
