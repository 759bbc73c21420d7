/*
 * wasmgate.h: write a wasmgate handler in C without JSON or ABI plumbing.
 *
 * A single-header library. In exactly one C file of the handler:
 *
 *     #define WASMGATE_IMPLEMENTATION
 *     #include "wasmgate.h"
 *
 * then define the handler: a table of the callbacks it needs (a missing one
 * accepts every connection, ignores messages or cleanups, answers an HTTP
 * request 501, fails a timer tick):
 *
 *     static int echo(const wasmgate_context *ctx, const wasmgate_message *message) {
 *         return wasmgate_push(ctx->connection_id, message->binary, message->data, NULL);
 *     }
 *     const wasmgate_handler wasmgate_handler_callbacks = { .transfer = echo };
 *
 * Return 0 for success; anything else fails the call (for register: the
 * connection is refused). `event` is the event JSON of docs/protocol.md; a
 * handler that wants more than the message of a data-send event reads it
 * with wasmgate_json_string(). Set an answer JSON of your own (e.g. a
 * register answer with a sub-protocol) with wasmgate_answer().
 *
 * Build for wasm32-wasi with wasi-libc (clang --target=wasm32-wasi
 * -mexec-model=reactor) and turn the core module into a component with
 * `cargo run -p xtask --features componentize -- componentize`; see
 * docs/languages/c.md and plugins/echo-c/build.sh.
 */
#ifndef WASMGATE_H
#define WASMGATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A string or byte buffer: not NUL-terminated. */
typedef struct {
    const uint8_t *ptr;
    size_t len;
} wasmgate_str;

/* The role a handler is called in (the WIT enum `role`). */
typedef enum {
    WASMGATE_REGISTER = 0,
    WASMGATE_TRANSFER = 1,
    WASMGATE_CLEANUP = 2,
    WASMGATE_HTTP = 3,  /* an HTTP request: the integration request */
    WASMGATE_TIMER = 4, /* a timer fired: the timer event */
} wasmgate_role;

/* What the gateway tells a handler about the call (the WIT record `context`). */
typedef struct {
    wasmgate_str service;
    wasmgate_role role;
    wasmgate_str request_id;
    wasmgate_str connection_id;
    uint64_t deadline_ms;
} wasmgate_context;

/* A client's message, decoded: text is UTF-8, binary the raw bytes. */
typedef struct {
    bool binary;
    wasmgate_str data;
    /* The whole event JSON. */
    wasmgate_str event;
} wasmgate_message;

/* Log levels of wasmgate_log (the WIT enum `log-level`). */
typedef enum {
    WASMGATE_TRACE = 0,
    WASMGATE_DEBUG = 1,
    WASMGATE_INFO = 2,
    WASMGATE_WARN = 3,
    WASMGATE_ERROR = 4,
} wasmgate_log_level;

/* The handler's callbacks; NULL ones do the default (see above). */
typedef struct {
    /* register: `event` is the connecting event's JSON */
    int (*register_)(const wasmgate_context *ctx, const wasmgate_str *event);
    /* transfer: the client's message */
    int (*transfer)(const wasmgate_context *ctx, const wasmgate_message *message);
    /* cleanup: `event` is the closing event's JSON */
    int (*cleanup)(const wasmgate_context *ctx, const wasmgate_str *event);
    /* http: `event` is the integration request's JSON; set the integration
     * response with wasmgate_answer(), e.g.
     * {"statusCode":200,"headers":{"Content-Type":"text/plain"},"body":"hi"}.
     * Without it the answer is 501 with errNo 2603. */
    int (*http)(const wasmgate_context *ctx, const wasmgate_str *event);
    /* timer: `event` is the timer event's JSON ({"Type":"Timer",
     * "TriggerName","Time","Message"}); the answer is not used. Without it
     * a tick fails (logged by the gateway). */
    int (*timer)(const wasmgate_context *ctx, const wasmgate_str *event);
} wasmgate_handler;

/* Defined by the handler. */
extern const wasmgate_handler wasmgate_handler_callbacks;

/* Sends text (a text frame) or bytes (a binary frame) to a connection of this
 * service. Returns 0 or the gateway's errNo; `err_msg` (may be NULL) gets the
 * error message, valid until the call ends. */
int wasmgate_push(wasmgate_str connection_id, bool binary, wasmgate_str data, wasmgate_str *err_msg);
/* Closes a connection of this service; its cleanup then runs. */
int wasmgate_close(wasmgate_str connection_id, wasmgate_str *err_msg);
/* Routes a reverse-push request given as JSON, like POST /push/<service>. */
int wasmgate_route(wasmgate_str request_json, wasmgate_str *err_msg);
/* Writes a line to the gateway's log, tagged with the call. */
void wasmgate_log(wasmgate_log_level level, const char *message);

/* Replaces the attributes of the connection this call is about: a JSON
 * object of at most 4096 bytes, sent as `attributes` in its later events. */
int wasmgate_set_attributes(wasmgate_str json, wasmgate_str *err_msg);

/* The key-value store of the service. Each returns 0 or the errNo; buffers
 * it hands back (values, key and member lists) are malloc()ed: free() them
 * (a list: each element's ptr, then the array). */
int wasmgate_kv_get(wasmgate_str key, bool *found, wasmgate_str *value, wasmgate_str *err_msg);
/* ttl_ms < 0: the key never expires. */
int wasmgate_kv_set(wasmgate_str key, wasmgate_str value, int64_t ttl_ms, wasmgate_str *err_msg);
int wasmgate_kv_delete(wasmgate_str key, bool *existed, wasmgate_str *err_msg);
int wasmgate_kv_exists(wasmgate_str key, bool *exists, wasmgate_str *err_msg);
int wasmgate_kv_increment(wasmgate_str key, int64_t delta, int64_t *value, wasmgate_str *err_msg);
/* expected == NULL: swap only if the key is absent. */
int wasmgate_kv_compare_and_swap(wasmgate_str key, const wasmgate_str *expected, wasmgate_str value,
                                 bool *swapped, wasmgate_str *err_msg);
/* One page (at most 1000) of the keys starting with `prefix` after `cursor`
 * (NULL: the first page); `next` gets the next page's cursor, or len 0 and
 * ptr NULL on the last page. */
int wasmgate_kv_list_keys(wasmgate_str prefix, const wasmgate_str *cursor, wasmgate_str **keys,
                          size_t *count, wasmgate_str *next, wasmgate_str *err_msg);

/* Groups of the service's connections. */
int wasmgate_groups_join(wasmgate_str group, wasmgate_str connection_id, wasmgate_str *err_msg);
int wasmgate_groups_leave(wasmgate_str group, wasmgate_str connection_id, bool *was_member,
                          wasmgate_str *err_msg);
/* The first 1000 members of `group`, sorted. */
int wasmgate_groups_members(wasmgate_str group, wasmgate_str **members, size_t *count,
                            wasmgate_str *err_msg);
/* To every member of `group` but `except_id` (NULL: none). */
int wasmgate_groups_broadcast(wasmgate_str group, bool binary, wasmgate_str data,
                              const wasmgate_str *except_id, uint32_t *delivered,
                              wasmgate_str *err_msg);

/* Sets the answer JSON of this call (copied). Without it, register answers
 * {"errNo":0,"errMsg":"ok"} and the other roles {}. */
void wasmgate_answer(const char *json);

/* Finds the first object member called `key` (at any depth) whose value is
 * a string, and decodes its JSON escapes into UTF-8 in a new buffer (free()
 * it). Returns false when there is none. */
bool wasmgate_json_string(wasmgate_str json, const char *key, wasmgate_str *out);

/* A wasmgate_str for a C string. */
static inline wasmgate_str wasmgate_cstr(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return (wasmgate_str){(const uint8_t *)s, n};
}

#ifdef WASMGATE_IMPLEMENTATION

#include <stdlib.h>
#include <string.h>

#define WASMGATE_IMPORT(name) \
    __attribute__((import_module("wasmgate:gateway/host@0.1.0"), import_name(name)))

/* The host calls, in the canonical ABI: strings as pointer and length, then
 * a pointer to where result<_, gateway-error> goes. */
WASMGATE_IMPORT("push")
extern void wasmgate__push(const uint8_t *, size_t, int32_t, const uint8_t *, size_t, void *);
WASMGATE_IMPORT("close")
extern void wasmgate__close(const uint8_t *, size_t, void *);
WASMGATE_IMPORT("route")
extern void wasmgate__route(const uint8_t *, size_t, void *);
WASMGATE_IMPORT("log")
extern void wasmgate__log(int32_t, const uint8_t *, size_t);

/* result<_, gateway-error>: tag, err-no, err-msg (pointer, length). */
typedef struct {
    uint8_t is_err;
    int32_t err_no;
    const uint8_t *msg_ptr;
    size_t msg_len;
} wasmgate__host_result;

static int wasmgate__result(const wasmgate__host_result *r, wasmgate_str *err_msg) {
    if (!r->is_err) return 0;
    if (err_msg) *err_msg = (wasmgate_str){r->msg_ptr, r->msg_len};
    return r->err_no ? r->err_no : -1;
}

int wasmgate_push(wasmgate_str id, bool binary, wasmgate_str data, wasmgate_str *err_msg) {
    wasmgate__host_result r;
    wasmgate__push(id.ptr, id.len, binary ? 1 : 0, data.ptr, data.len, &r);
    return wasmgate__result(&r, err_msg);
}

int wasmgate_close(wasmgate_str id, wasmgate_str *err_msg) {
    wasmgate__host_result r;
    wasmgate__close(id.ptr, id.len, &r);
    return wasmgate__result(&r, err_msg);
}

int wasmgate_route(wasmgate_str request, wasmgate_str *err_msg) {
    wasmgate__host_result r;
    wasmgate__route(request.ptr, request.len, &r);
    return wasmgate__result(&r, err_msg);
}

void wasmgate_log(wasmgate_log_level level, const char *message) {
    wasmgate__log((int32_t)level, (const uint8_t *)message, strlen(message));
}

/* The other imports; see docs/languages/wat.md for their signatures and
 * result layouts. */
WASMGATE_IMPORT("set-attributes")
extern void wasmgate__set_attributes(const uint8_t *, size_t, void *);

#define WASMGATE_KV(name) \
    __attribute__((import_module("wasmgate:gateway/kv@0.1.0"), import_name(name)))
#define WASMGATE_GROUPS(name) \
    __attribute__((import_module("wasmgate:gateway/groups@0.1.0"), import_name(name)))

WASMGATE_KV("get") extern void wasmgate__kv_get(const uint8_t *, size_t, void *);
WASMGATE_KV("set")
extern void wasmgate__kv_set(const uint8_t *, size_t, const uint8_t *, size_t, int32_t, int64_t, void *);
WASMGATE_KV("delete") extern void wasmgate__kv_delete(const uint8_t *, size_t, void *);
WASMGATE_KV("exists") extern void wasmgate__kv_exists(const uint8_t *, size_t, void *);
WASMGATE_KV("increment") extern void wasmgate__kv_increment(const uint8_t *, size_t, int64_t, void *);
WASMGATE_KV("compare-and-swap")
extern void wasmgate__kv_cas(const uint8_t *, size_t, int32_t, const uint8_t *, size_t,
                             const uint8_t *, size_t, void *);
WASMGATE_KV("list-keys")
extern void wasmgate__kv_list_keys(const uint8_t *, size_t, int32_t, const uint8_t *, size_t, void *);
WASMGATE_GROUPS("join")
extern void wasmgate__groups_join(const uint8_t *, size_t, const uint8_t *, size_t, void *);
WASMGATE_GROUPS("leave")
extern void wasmgate__groups_leave(const uint8_t *, size_t, const uint8_t *, size_t, void *);
WASMGATE_GROUPS("members") extern void wasmgate__groups_members(const uint8_t *, size_t, void *);
WASMGATE_GROUPS("broadcast")
extern void wasmgate__groups_broadcast(const uint8_t *, size_t, int32_t, const uint8_t *, size_t,
                                       int32_t, const uint8_t *, size_t, void *);

/* The error case shared by every result: err-no, err-msg. */
typedef struct {
    int32_t err_no;
    const uint8_t *msg_ptr;
    size_t msg_len;
} wasmgate__error;

/* A result whose payload is 4-aligned: the tag, then at +4 the payload. */
typedef struct {
    uint8_t is_err;
    union {
        wasmgate__error err;
        uint8_t flag;     /* bool */
        uint32_t number;  /* u32 */
        struct {
            uint8_t some;
            const uint8_t *ptr;
            size_t len;
        } value;          /* option<list<u8>> */
        struct {
            wasmgate_str *ptr;
            size_t len;
            uint8_t has_cursor;
            const uint8_t *cursor_ptr;
            size_t cursor_len;
        } page;           /* key-page; list<string> uses ptr and len only */
    } u;
} wasmgate__result4;

/* A result whose payload is 8-aligned (increment's s64). */
typedef struct {
    uint8_t is_err;
    union {
        wasmgate__error err;
        int64_t number;
    } u;
} wasmgate__result8;

static int wasmgate__error_of(uint8_t is_err, const wasmgate__error *e, wasmgate_str *err_msg) {
    if (!is_err) return 0;
    if (err_msg) *err_msg = (wasmgate_str){e->msg_ptr, e->msg_len};
    return e->err_no ? e->err_no : -1;
}

int wasmgate_set_attributes(wasmgate_str json, wasmgate_str *err_msg) {
    wasmgate__host_result r;
    wasmgate__set_attributes(json.ptr, json.len, &r);
    return wasmgate__result(&r, err_msg);
}

int wasmgate_kv_get(wasmgate_str key, bool *found, wasmgate_str *value, wasmgate_str *err_msg) {
    wasmgate__result4 r;
    wasmgate__kv_get(key.ptr, key.len, &r);
    if (r.is_err) return wasmgate__error_of(1, &r.u.err, err_msg);
    *found = r.u.value.some != 0;
    *value = *found ? (wasmgate_str){r.u.value.ptr, r.u.value.len} : (wasmgate_str){0, 0};
    return 0;
}

int wasmgate_kv_set(wasmgate_str key, wasmgate_str value, int64_t ttl_ms, wasmgate_str *err_msg) {
    wasmgate__host_result r;
    wasmgate__kv_set(key.ptr, key.len, value.ptr, value.len, ttl_ms >= 0, ttl_ms >= 0 ? ttl_ms : 0, &r);
    return wasmgate__result(&r, err_msg);
}

static int wasmgate__flag(wasmgate__result4 *r, bool *out, wasmgate_str *err_msg) {
    if (r->is_err) return wasmgate__error_of(1, &r->u.err, err_msg);
    if (out) *out = r->u.flag != 0;
    return 0;
}

int wasmgate_kv_delete(wasmgate_str key, bool *existed, wasmgate_str *err_msg) {
    wasmgate__result4 r;
    wasmgate__kv_delete(key.ptr, key.len, &r);
    return wasmgate__flag(&r, existed, err_msg);
}

int wasmgate_kv_exists(wasmgate_str key, bool *exists, wasmgate_str *err_msg) {
    wasmgate__result4 r;
    wasmgate__kv_exists(key.ptr, key.len, &r);
    return wasmgate__flag(&r, exists, err_msg);
}

int wasmgate_kv_increment(wasmgate_str key, int64_t delta, int64_t *value, wasmgate_str *err_msg) {
    wasmgate__result8 r;
    wasmgate__kv_increment(key.ptr, key.len, delta, &r);
    if (r.is_err) return wasmgate__error_of(1, &r.u.err, err_msg);
    if (value) *value = r.u.number;
    return 0;
}

int wasmgate_kv_compare_and_swap(wasmgate_str key, const wasmgate_str *expected, wasmgate_str value,
                                 bool *swapped, wasmgate_str *err_msg) {
    wasmgate__result4 r;
    wasmgate__kv_cas(key.ptr, key.len, expected != NULL, expected ? expected->ptr : NULL,
                     expected ? expected->len : 0, value.ptr, value.len, &r);
    return wasmgate__flag(&r, swapped, err_msg);
}

int wasmgate_kv_list_keys(wasmgate_str prefix, const wasmgate_str *cursor, wasmgate_str **keys,
                          size_t *count, wasmgate_str *next, wasmgate_str *err_msg) {
    wasmgate__result4 r;
    wasmgate__kv_list_keys(prefix.ptr, prefix.len, cursor != NULL, cursor ? cursor->ptr : NULL,
                           cursor ? cursor->len : 0, &r);
    if (r.is_err) return wasmgate__error_of(1, &r.u.err, err_msg);
    *keys = r.u.page.ptr;
    *count = r.u.page.len;
    if (next)
        *next = r.u.page.has_cursor ? (wasmgate_str){r.u.page.cursor_ptr, r.u.page.cursor_len}
                                    : (wasmgate_str){0, 0};
    return 0;
}

int wasmgate_groups_join(wasmgate_str group, wasmgate_str id, wasmgate_str *err_msg) {
    wasmgate__host_result r;
    wasmgate__groups_join(group.ptr, group.len, id.ptr, id.len, &r);
    return wasmgate__result(&r, err_msg);
}

int wasmgate_groups_leave(wasmgate_str group, wasmgate_str id, bool *was_member, wasmgate_str *err_msg) {
    wasmgate__result4 r;
    wasmgate__groups_leave(group.ptr, group.len, id.ptr, id.len, &r);
    return wasmgate__flag(&r, was_member, err_msg);
}

int wasmgate_groups_members(wasmgate_str group, wasmgate_str **members, size_t *count,
                            wasmgate_str *err_msg) {
    wasmgate__result4 r;
    wasmgate__groups_members(group.ptr, group.len, &r);
    if (r.is_err) return wasmgate__error_of(1, &r.u.err, err_msg);
    *members = r.u.page.ptr;
    *count = r.u.page.len;
    return 0;
}

int wasmgate_groups_broadcast(wasmgate_str group, bool binary, wasmgate_str data,
                              const wasmgate_str *except_id, uint32_t *delivered,
                              wasmgate_str *err_msg) {
    wasmgate__result4 r;
    wasmgate__groups_broadcast(group.ptr, group.len, binary ? 1 : 0, data.ptr, data.len,
                               except_id != NULL, except_id ? except_id->ptr : NULL,
                               except_id ? except_id->len : 0, &r);
    if (r.is_err) return wasmgate__error_of(1, &r.u.err, err_msg);
    if (delivered) *delivered = r.u.number;
    return 0;
}

/* Memory the host fills with the call's strings. */
__attribute__((export_name("cabi_realloc")))
void *wasmgate__cabi_realloc(void *old, size_t old_size, size_t align, size_t new_size) {
    (void)old_size;
    if (new_size == 0) return (void *)align;
    void *p = realloc(old, new_size);
    if (!p) abort();
    return p;
}

static char *wasmgate__answer_json;

void wasmgate_answer(const char *json) {
    free(wasmgate__answer_json);
    wasmgate__answer_json = strdup(json);
}

/* --- a small JSON reader: enough to find a string member and decode it --- */

static size_t wasmgate__skip_string(const uint8_t *s, size_t n, size_t i) {
    /* s[i] is the opening quote; returns the index after the closing one. */
    for (i++; i < n; i++) {
        if (s[i] == '\\') i++;
        else if (s[i] == '"') return i + 1;
    }
    return n;
}

static int wasmgate__hex(const uint8_t *s) {
    int v = 0;
    for (int k = 0; k < 4; k++) {
        uint8_t c = s[k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return -1;
    }
    return v;
}

static size_t wasmgate__utf8(uint8_t *out, uint32_t cp) {
    if (cp < 0x80) { out[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { out[0] = 0xC0 | (cp >> 6); out[1] = 0x80 | (cp & 0x3F); return 2; }
    if (cp < 0x10000) {
        out[0] = 0xE0 | (cp >> 12); out[1] = 0x80 | ((cp >> 6) & 0x3F); out[2] = 0x80 | (cp & 0x3F);
        return 3;
    }
    out[0] = 0xF0 | (cp >> 18); out[1] = 0x80 | ((cp >> 12) & 0x3F);
    out[2] = 0x80 | ((cp >> 6) & 0x3F); out[3] = 0x80 | (cp & 0x3F);
    return 4;
}

/* Decodes the JSON string starting at s[i] (a quote) into a new buffer. */
static bool wasmgate__decode_string(const uint8_t *s, size_t n, size_t i, wasmgate_str *out) {
    uint8_t *buf = malloc(n - i + 1);
    if (!buf) return false;
    size_t len = 0;
    for (i++; i < n && s[i] != '"'; i++) {
        if (s[i] != '\\') { buf[len++] = s[i]; continue; }
        if (++i >= n) break;
        switch (s[i]) {
        case 'n': buf[len++] = '\n'; break;
        case 't': buf[len++] = '\t'; break;
        case 'r': buf[len++] = '\r'; break;
        case 'b': buf[len++] = '\b'; break;
        case 'f': buf[len++] = '\f'; break;
        case 'u': {
            if (i + 4 >= n) { free(buf); return false; }
            int cp = wasmgate__hex(s + i + 1);
            if (cp < 0) { free(buf); return false; }
            i += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < n && s[i + 1] == '\\' && s[i + 2] == 'u') {
                int low = wasmgate__hex(s + i + 3);
                if (low >= 0xDC00 && low < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    i += 6;
                }
            }
            len += wasmgate__utf8(buf + len, (uint32_t)cp);
            break;
        }
        default: buf[len++] = s[i]; break; /* \" \\ \/ */
        }
    }
    *out = (wasmgate_str){buf, len};
    return true;
}

bool wasmgate_json_string(wasmgate_str json, const char *key, wasmgate_str *out) {
    const uint8_t *s = json.ptr;
    size_t n = json.len, key_len = strlen(key);
    for (size_t i = 0; i < n;) {
        if (s[i] != '"') { i++; continue; }
        size_t end = wasmgate__skip_string(s, n, i);
        size_t j = end;
        while (j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r')) j++;
        if (j < n && s[j] == ':') {
            /* a member name: compare it, then look at its value */
            bool match = end - i - 2 == key_len && memcmp(s + i + 1, key, key_len) == 0;
            for (j++; j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r'); j++) {}
            if (match && j < n && s[j] == '"') return wasmgate__decode_string(s, n, j, out);
            i = j;
            continue;
        }
        i = end;
    }
    return false;
}

/* Standard Base64 into a new buffer; false on a bad character. */
static bool wasmgate__base64(wasmgate_str in, wasmgate_str *out) {
    uint8_t *buf = malloc(in.len / 4 * 3 + 3);
    if (!buf) return false;
    size_t len = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < in.len; i++) {
        uint8_t c = in.ptr[i];
        int v;
        if (c >= 'A' && c <= 'Z') v = c - 'A';
        else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
        else if (c >= '0' && c <= '9') v = c - '0' + 52;
        else if (c == '+') v = 62;
        else if (c == '/') v = 63;
        else if (c == '=') break;
        else { free(buf); return false; }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[len++] = (uint8_t)(acc >> bits);
        }
    }
    *out = (wasmgate_str){buf, len};
    return true;
}

/* result<string, string>: tag, then the string as pointer and length. */
static struct {
    uint8_t is_err;
    const char *ptr;
    size_t len;
} wasmgate__ret;

static uint8_t *wasmgate__finish(int status, const char *error) {
    const char *json = wasmgate__answer_json;
    if (status != 0) {
        wasmgate__ret.is_err = 1;
        json = error;
    } else {
        wasmgate__ret.is_err = 0;
        if (!json) json = "{}";
    }
    wasmgate__ret.ptr = json;
    wasmgate__ret.len = strlen(json);
    return (uint8_t *)&wasmgate__ret;
}

static int wasmgate__call(int (*f)(const wasmgate_context *, const wasmgate_str *),
                          const wasmgate_context *ctx, const wasmgate_str *event) {
    return f ? f(ctx, event) : 0;
}

/* handle: func(ctx: context, event: string) -> result<string, string> */
__attribute__((export_name("handle")))
uint8_t *wasmgate__handle(uint8_t *service, size_t service_len, int32_t role,
                          uint8_t *request_id, size_t request_id_len,
                          uint8_t *connection_id, size_t connection_id_len,
                          int64_t deadline_ms, uint8_t *event, size_t event_len) {
    wasmgate_context ctx = {
        {service, service_len}, (wasmgate_role)role, {request_id, request_id_len},
        {connection_id, connection_id_len}, (uint64_t)deadline_ms,
    };
    wasmgate_str json = {event, event_len};
    switch (role) {
    case WASMGATE_REGISTER:
        if (!wasmgate__answer_json) wasmgate__answer_json = strdup("{\"errNo\":0,\"errMsg\":\"ok\"}");
        return wasmgate__finish(wasmgate__call(wasmgate_handler_callbacks.register_, &ctx, &json), "register refused");
    case WASMGATE_TRANSFER: {
        wasmgate_message message = {false, {0, 0}, json};
        wasmgate_str type, data;
        if (!wasmgate_json_string(json, "dataType", &type) || !wasmgate_json_string(json, "data", &data))
            return wasmgate__finish(1, "data-send event without dataType or data");
        message.binary = type.len == 6 && memcmp(type.ptr, "binary", 6) == 0;
        free((void *)type.ptr);
        message.data = data;
        if (message.binary) {
            if (!wasmgate__base64(data, &message.data))
                return wasmgate__finish(1, "binary data is not Base64");
            free((void *)data.ptr);
        }
        int status = wasmgate_handler_callbacks.transfer
            ? wasmgate_handler_callbacks.transfer(&ctx, &message) : 0;
        free((void *)message.data.ptr);
        return wasmgate__finish(status, "transfer failed");
    }
    case WASMGATE_HTTP:
        if (!wasmgate_handler_callbacks.http)
            wasmgate_answer("{\"statusCode\":501,\"headers\":{\"Content-Type\":\"application/json\"},"
                            "\"body\":\"{\\\"errNo\\\":2603,\\\"errMsg\\\":\\\"the service does not handle HTTP requests\\\"}\"}");
        return wasmgate__finish(wasmgate__call(wasmgate_handler_callbacks.http, &ctx, &json), "http failed");
    case WASMGATE_TIMER:
        if (!wasmgate_handler_callbacks.timer)
            return wasmgate__finish(1, "a timer fired, but this handler has no timer callback");
        return wasmgate__finish(wasmgate__call(wasmgate_handler_callbacks.timer, &ctx, &json), "timer failed");
    default:
        return wasmgate__finish(wasmgate__call(wasmgate_handler_callbacks.cleanup, &ctx, &json), "cleanup failed");
    }
}

/* The answer stays valid until the host has copied it; then nothing to do:
 * every event runs in a fresh instance. */
__attribute__((export_name("cabi_post_handle")))
void wasmgate__cabi_post_handle(uint8_t *ret) {
    (void)ret;
}

#endif /* WASMGATE_IMPLEMENTATION */
#endif /* WASMGATE_H */
