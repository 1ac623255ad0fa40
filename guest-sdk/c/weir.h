/*
 * weir.h: a header-only helper for Weir operators in C, over the bindings
 * `wit-bindgen c` generates for the `operator-plugin` world.
 *
 * An operator defines
 *
 *   int weir_on_event(weir_ctx *ctx, const uint8_t *key, size_t key_len,
 *                     const uint8_t *value, size_t value_len, int64_t timestamp);
 *
 * (return 0, or call weir_reject(ctx, "reason") and return nonzero to send the
 * record to the dead-letter output), optionally sets WEIR_STATE_VERSION,
 * WEIR_STATE_SHAPE (the name of its state's shape, wit/STATE.md; default
 * "bytes") and WEIR_CHECK_VALUE (the name of a function
 * `const char *f(const uint8_t *value, size_t len)` that returns NULL for a
 * value the operator reads exactly, or why not; restore refuses a blob with
 * such a value), and includes this header once. The helper implements every export: it decodes
 * packed batches, keeps per-key state (byte strings, in an open-addressing
 * hash table with short keys and values inline: weir_state_get /
 * weir_state_put / weir_state_del), builds the
 * packed output, and writes and reads snapshots as the keyed state envelope
 * of wit/STATE.md. Timers are not offered by this helper yet.
 *
 * Build: clang --target=wasm32-wasi --sysroot=/usr -mexec-model=reactor with
 * the generated operator_plugin.c and operator_plugin_component_type.o, then
 * turn the module into a component (build-support does all of it).
 */
#ifndef WEIR_H
#define WEIR_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "operator_plugin.h"

#ifndef WEIR_STATE_VERSION
#define WEIR_STATE_VERSION 1
#endif

#ifndef WEIR_STATE_SHAPE
#define WEIR_STATE_SHAPE "bytes"
#endif

#define WEIR_NO_TIMESTAMP INT64_MIN

/* ---- growable buffers ---- */

typedef struct { uint8_t *ptr; size_t len, cap; } weir_bytes;
typedef struct { uint32_t *ptr; size_t len, cap; } weir_u32s;
typedef struct { int64_t *ptr; size_t len, cap; } weir_i64s;

static void *weir_grow(void *ptr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return ptr;
    size_t c = *cap ? *cap * 2 : 64;
    while (c < need) c *= 2;
    void *p = realloc(ptr, c * elem);
    if (!p) abort();
    *cap = c;
    return p;
}

static void weir_bytes_push(weir_bytes *b, const void *src, size_t n) {
    b->ptr = weir_grow(b->ptr, &b->cap, b->len + n, 1);
    memcpy(b->ptr + b->len, src, n);
    b->len += n;
}

static void weir_bytes_u32(weir_bytes *b, uint32_t v) { weir_bytes_push(b, &v, 4); } /* wasm is little-endian */
static void weir_bytes_u64(weir_bytes *b, uint64_t v) { weir_bytes_push(b, &v, 8); }

static void weir_u32s_push(weir_u32s *b, uint32_t v) {
    b->ptr = weir_grow(b->ptr, &b->cap, b->len + 1, 4);
    b->ptr[b->len++] = v;
}

static void weir_i64s_push(weir_i64s *b, int64_t v) {
    b->ptr = weir_grow(b->ptr, &b->cap, b->len + 1, 8);
    b->ptr[b->len++] = v;
}

/* ---- keyed state ----
 * Open addressing with linear probing and backward-shift deletion (no
 * tombstones: a table with constant churn of keys neither slows down nor
 * grows). Each slot stores the key's hash (compared before the key; reused
 * when the table grows), keys up to 16 bytes and values up to 8 bytes
 * inline (no allocation per key for the usual short ids and small states),
 * longer ones on the heap. */

#define WEIR_KEY_INLINE 16
#define WEIR_VAL_INLINE 8

typedef struct {
    uint64_t hash; /* 0: empty */
    uint32_t key_len, val_len;
    union { uint8_t in[WEIR_KEY_INLINE]; uint8_t *ptr; } key;
    union { uint8_t in[WEIR_VAL_INLINE]; uint8_t *ptr; } val;
} weir_slot;

static weir_slot *weir_slots;
static size_t weir_cap, weir_live;

static const uint8_t *weir_slot_key(const weir_slot *s) {
    return s->key_len <= WEIR_KEY_INLINE ? s->key.in : s->key.ptr;
}

static const uint8_t *weir_slot_val(const weir_slot *s) {
    return s->val_len <= WEIR_VAL_INLINE ? s->val.in : s->val.ptr;
}

/* Up to 7 bytes as a little-endian number, zero-padded, in at most three
 * loads (overlapping loads OR the same bytes twice). */
static inline uint64_t weir_load_short(const uint8_t *p, size_t n) {
    if (n >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + n - 4, 4);
        return (uint64_t)lo | (uint64_t)hi << ((n - 4) * 8);
    }
    if (n > 0) return (uint64_t)p[0] | (uint64_t)p[n / 2] << (8 * (n / 2)) | (uint64_t)p[n - 1] << (8 * (n - 1));
    return 0;
}

/* A key of up to 16 bytes is hashed from two words, without a loop
 * (compiled to Wasm, a byte loop costs several times its bytes); a longer
 * one with FNV-1a. The last multiply makes the high bits, which pick the
 * slot, depend on every byte and on the length. Never 0. */
static uint64_t weir_hash(const uint8_t *k, size_t n) {
    uint64_t a, b;
    if (n <= 16) {
        if (n >= 8) {
            memcpy(&a, k, 8);
            if (n == 16) memcpy(&b, k + 8, 8);
            else b = weir_load_short(k + 8, n - 8);
        } else {
            a = weir_load_short(k, n);
            b = 0;
        }
    } else {
        a = 1469598103934665603ULL;
        for (size_t i = 0; i < n; i++) { a ^= k[i]; a *= 1099511628211ULL; }
        b = 0;
    }
    uint64_t h = (a ^ 0x243F6A8885A308D3ULL ^ (uint64_t)n * 0x9E3779B97F4A7C15ULL) * 0x9E3779B97F4A7C15ULL;
    h = (h ^ (h >> 29) ^ b) * 0xFF51AFD7ED558CCDULL;
    h = (h ^ (h >> 32)) * 0xC4CEB9FE1A85EC53ULL;
    return h | 1;
}

static size_t weir_home(uint64_t h) {
    return (size_t)(h >> 32) & (weir_cap - 1);
}

/* The record being processed: its key and the key's hash, computed once
 * (before the group's touches) for every state call on that key. */
static const uint8_t *weir_cur_key;
static size_t weir_cur_len;
static uint64_t weir_cur_hash;

/* Whether `key` is the record's key: its address and its length (a prefix
 * of it at the same address is another key). */
static int weir_is_cur(const uint8_t *key, size_t n) {
    return weir_cur_key && key == weir_cur_key && n == weir_cur_len;
}

static uint64_t weir_key_hash(const uint8_t *key, size_t n) {
    if (weir_is_cur(key, n)) return weir_cur_hash;
    return weir_hash(key, n);
}

/* Whether the n bytes at a and b are equal: keys up to 16 bytes by words
 * (in Wasm, memcmp is a call and a byte loop), longer ones by memcmp. */
static inline int weir_key_eq(const uint8_t *a, const uint8_t *b, size_t n) {
    uint64_t x, y;
    if (n > 16) return memcmp(a, b, n) == 0;
    if (n < 8) return weir_load_short(a, n) == weir_load_short(b, n);
    /* 8-16 bytes: the first 8 and the last 8 (overlapping below 16). */
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    if (x != y) return 0;
    memcpy(&x, a + n - 8, 8);
    memcpy(&y, b + n - 8, 8);
    return x == y;
}

/* The last lookup of the record's key, so that a get followed by a put or
 * a del of that key (a read-modify-write, the usual record) probes the
 * table once. Only for the key of the record being processed (its bytes
 * do not change during the record); dropped when the table changes shape
 * (an insertion, a deletion, a rehash) and when the next record starts. */
static int weir_memo_valid;
static size_t weir_memo_slot;
static int weir_memo_found;

/* The slot holding `key`, or the empty slot where it would go (*found 0). */
static size_t weir_probe(const uint8_t *key, size_t n, uint64_t h, int *found) {
    int current = weir_is_cur(key, n);
    if (current && weir_memo_valid) { *found = weir_memo_found; return weir_memo_slot; }
    size_t i = weir_home(h);
    for (;;) {
        const weir_slot *s = &weir_slots[i];
        if (!s->hash) { *found = 0; break; }
        if (s->hash == h && s->key_len == n && weir_key_eq(weir_slot_key(s), key, n)) { *found = 1; break; }
        i = (i + 1) & (weir_cap - 1);
    }
    if (current) {
        weir_memo_valid = 1;
        weir_memo_slot = i;
        weir_memo_found = *found;
    }
    return i;
}

static void weir_rehash(size_t cap) {
    weir_memo_valid = 0;
    weir_slot *old = weir_slots;
    size_t old_cap = weir_cap;
    weir_slots = calloc(cap, sizeof(weir_slot));
    if (!weir_slots) abort();
    weir_cap = cap;
    for (size_t j = 0; j < old_cap; j++) {
        if (!old[j].hash) continue;
        size_t i = weir_home(old[j].hash);
        while (weir_slots[i].hash) i = (i + 1) & (cap - 1);
        weir_slots[i] = old[j];
    }
    free(old);
}

static void weir_slot_free(weir_slot *s) {
    if (s->key_len > WEIR_KEY_INLINE) free(s->key.ptr);
    if (s->val_len > WEIR_VAL_INLINE) free(s->val.ptr);
}

/** The value of `key`, or NULL (its length in *len); valid until the next
 * weir_state_put or weir_state_del. */
static const uint8_t *weir_state_get(const uint8_t *key, size_t n, size_t *len) {
    if (!weir_cap) return NULL;
    int found;
    size_t i = weir_probe(key, n, weir_key_hash(key, n), &found);
    if (!found) return NULL;
    *len = weir_slots[i].val_len;
    return weir_slot_val(&weir_slots[i]);
}

/** Set the value of `key` (copied). */
static void weir_state_put(const uint8_t *key, size_t n, const uint8_t *val, size_t val_len) {
    /* Grow past 5/8 full: at 3/4 the uniform benchmark's 733k keys filled
     * 1M slots to 0.70 and the C state machine ran 13% slower (README,
     * "The guest alone, builds side by side"). */
    if ((weir_live + 1) * 8 > weir_cap * 5) weir_rehash(weir_cap ? weir_cap * 2 : 1024);
    uint64_t h = weir_key_hash(key, n);
    int found;
    weir_slot *s = &weir_slots[weir_probe(key, n, h, &found)];
    if (!found) {
        /* The key is now in this slot: the memo (if this is the record's
         * key) says so; another key's insertion drops it. */
        if (weir_is_cur(key, n)) weir_memo_found = 1;
        else weir_memo_valid = 0;
        s->hash = h;
        s->key_len = (uint32_t)n;
        if (n <= WEIR_KEY_INLINE) {
            memcpy(s->key.in, key, n);
        } else {
            s->key.ptr = malloc(n);
            if (!s->key.ptr) abort();
            memcpy(s->key.ptr, key, n);
        }
        s->val_len = 0;
        weir_live++;
    }
    if (s->val_len > WEIR_VAL_INLINE && val_len <= WEIR_VAL_INLINE) free(s->val.ptr);
    if (val_len <= WEIR_VAL_INLINE) {
        /* One 8-byte store (a copy of a variable length is a call in Wasm). */
        uint64_t w;
        if (val_len == 8) memcpy(&w, val, 8);
        else w = weir_load_short(val, val_len);
        memcpy(s->val.in, &w, 8);
    } else {
        uint8_t *p = realloc(s->val_len > WEIR_VAL_INLINE ? s->val.ptr : NULL, val_len);
        if (!p) abort();
        memcpy(p, val, val_len);
        s->val.ptr = p;
    }
    s->val_len = (uint32_t)val_len;
}

/** Forget `key`. */
static void weir_state_del(const uint8_t *key, size_t n) {
    if (!weir_cap) return;
    int found;
    size_t hole = weir_probe(key, n, weir_key_hash(key, n), &found);
    if (!found) return;
    weir_memo_valid = 0;
    weir_slot_free(&weir_slots[hole]);
    weir_slots[hole].hash = 0;
    weir_live--;
    /* Shift the entries after the hole back towards their home, so no probe
     * sequence is broken: the entry at j may move unless its home lies in
     * (hole, j] (cyclically). */
    size_t mask = weir_cap - 1;
    for (size_t j = (hole + 1) & mask; weir_slots[j].hash; j = (j + 1) & mask) {
        size_t home = weir_home(weir_slots[j].hash);
        int stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            weir_slots[hole] = weir_slots[j];
            weir_slots[j].hash = 0;
            hole = j;
        }
    }
}

static void weir_state_clear_all(void) {
    for (size_t i = 0; i < weir_cap; i++)
        if (weir_slots[i].hash) weir_slot_free(&weir_slots[i]);
    free(weir_slots);
    weir_slots = NULL;
    weir_memo_valid = 0;
    weir_cap = weir_live = 0;
}

/* ---- one call's output ---- */

typedef struct {
    weir_bytes keys, values;
    weir_u32s key_ends, value_ends;
    weir_i64s timestamps;
    weir_plugin_types_rejection_t *rejected;
    size_t rejected_len, rejected_cap;
    uint32_t index;
} weir_ctx;

/** Emit a record downstream. */
static void weir_emit(weir_ctx *ctx, const uint8_t *key, size_t key_len, const uint8_t *value, size_t value_len,
                      int64_t timestamp) {
    weir_bytes_push(&ctx->keys, key, key_len);
    weir_u32s_push(&ctx->key_ends, (uint32_t)ctx->keys.len);
    weir_bytes_push(&ctx->values, value, value_len);
    weir_u32s_push(&ctx->value_ends, (uint32_t)ctx->values.len);
    weir_i64s_push(&ctx->timestamps, timestamp);
}

/** Reject the current record with `reason` (copied). */
static void weir_reject(weir_ctx *ctx, const char *reason) {
    ctx->rejected = weir_grow(ctx->rejected, &ctx->rejected_cap, ctx->rejected_len + 1,
                              sizeof(weir_plugin_types_rejection_t));
    weir_plugin_types_rejection_t *r = &ctx->rejected[ctx->rejected_len++];
    r->index = ctx->index;
    operator_plugin_string_dup(&r->reason, reason);
}

int weir_on_event(weir_ctx *ctx, const uint8_t *key, size_t key_len, const uint8_t *value, size_t value_len,
                  int64_t timestamp);

static void weir_outcome(weir_ctx *ctx, exports_weir_plugin_operator_outcome_t *ret) {
    ret->emitted.keys.ptr = ctx->keys.ptr;
    ret->emitted.keys.len = ctx->keys.len;
    ret->emitted.key_ends.ptr = ctx->key_ends.ptr;
    ret->emitted.key_ends.len = ctx->key_ends.len;
    ret->emitted.values.ptr = ctx->values.ptr;
    ret->emitted.values.len = ctx->values.len;
    ret->emitted.value_ends.ptr = ctx->value_ends.ptr;
    ret->emitted.value_ends.len = ctx->value_ends.len;
    ret->emitted.timestamps.ptr = ctx->timestamps.ptr;
    ret->emitted.timestamps.len = ctx->timestamps.len;
    ret->timers.ptr = NULL;
    ret->timers.len = 0;
    ret->rejected.ptr = ctx->rejected;
    ret->rejected.len = ctx->rejected_len;
}

static void weir_error(weir_plugin_types_error_t *err, uint8_t tag, const char *msg) {
    err->tag = tag;
    operator_plugin_string_dup(&err->val.other, msg);
}

/* ---- exports ---- */

bool exports_weir_plugin_operator_init(operator_plugin_list_tuple2_string_string_t *config,
                                       exports_weir_plugin_operator_error_t *err) {
    (void)err;
    operator_plugin_list_tuple2_string_string_free(config);
    return true;
}

bool exports_weir_plugin_operator_process(exports_weir_plugin_operator_batch_t *input, int64_t watermark,
                                          exports_weir_plugin_operator_outcome_t *ret,
                                          exports_weir_plugin_operator_error_t *err) {
    (void)watermark;
    size_t n = input->key_ends.len;
    if (input->value_ends.len != n || input->timestamps.len != n) {
        weir_error(err, WEIR_PLUGIN_TYPES_ERROR_OTHER, "malformed batch");
        exports_weir_plugin_operator_batch_free(input);
        return false;
    }
    /* Records go in groups: the keys of a group are hashed and their home
     * slots touched one after the other, so the cache misses of a large
     * table overlap instead of following one another (Wasm has no
     * prefetch: a touch is a load nothing waits for), then the records run
     * in order, each key's hash reused by its state calls. */
    enum { GROUP = 32 };
    uint64_t hashes[GROUP];
    uint32_t starts[GROUP][2];
    weir_ctx ctx = {0};
    uint32_t ks = 0, vs = 0;
    for (size_t g = 0; g < n; g += GROUP) {
        size_t len = n - g < GROUP ? n - g : GROUP;
        for (size_t j = 0; j < len; j++) {
            uint32_t ke = input->key_ends.ptr[g + j], ve = input->value_ends.ptr[g + j];
            if (ke < ks || ke > input->keys.len || ve < vs || ve > input->values.len) {
                weir_error(err, WEIR_PLUGIN_TYPES_ERROR_OTHER, "malformed batch: offsets out of range");
                exports_weir_plugin_operator_batch_free(input);
                return false;
            }
            starts[j][0] = ks;
            starts[j][1] = vs;
            hashes[j] = weir_hash(input->keys.ptr + ks, ke - ks);
            ks = ke;
            vs = ve;
        }
        /* The touches back to back, after the hashing: hashing between them
         * would fill the core's reorder window while a miss is pending. */
        if (weir_cap) {
            for (size_t j = 0; j < len; j++) {
                const volatile uint8_t *slot = (const volatile uint8_t *)&weir_slots[weir_home(hashes[j])];
                (void)slot[0];
                (void)slot[sizeof(weir_slot) - 1];
            }
        }
        for (size_t j = 0; j < len; j++) {
            size_t i = g + j;
            uint32_t k0 = starts[j][0], v0 = starts[j][1];
            weir_cur_key = input->keys.ptr + k0;
            weir_cur_len = input->key_ends.ptr[i] - k0;
            weir_cur_hash = hashes[j];
            weir_memo_valid = 0;
            ctx.index = (uint32_t)i;
            weir_on_event(&ctx, weir_cur_key, weir_cur_len, input->values.ptr + v0,
                          input->value_ends.ptr[i] - v0, input->timestamps.ptr[i]);
        }
    }
    weir_cur_key = NULL;
    weir_cur_len = 0;
    weir_memo_valid = 0;
    exports_weir_plugin_operator_batch_free(input);
    weir_outcome(&ctx, ret);
    return true;
}

bool exports_weir_plugin_operator_on_timers(exports_weir_plugin_operator_list_timer_t *fired, int64_t watermark,
                                            exports_weir_plugin_operator_outcome_t *ret,
                                            exports_weir_plugin_operator_error_t *err) {
    (void)watermark;
    (void)err;
    exports_weir_plugin_operator_list_timer_free(fired);
    weir_ctx ctx = {0};
    weir_outcome(&ctx, ret);
    return true;
}

uint32_t exports_weir_plugin_state_version(void) { return WEIR_STATE_VERSION; }

void exports_weir_plugin_state_accepts(operator_plugin_list_u32_t *ret) {
    ret->ptr = malloc(sizeof(uint32_t));
    if (!ret->ptr) abort();
    ret->ptr[0] = WEIR_STATE_VERSION;
    ret->len = 1;
}

static int weir_cmp_slots(const void *a, const void *b) {
    const weir_slot *x = *(weir_slot *const *)a, *y = *(weir_slot *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(weir_slot_key(x), weir_slot_key(y), n);
    if (c) return c;
    return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}

/* A live slot to sort, with its key's first 8 bytes as a big-endian number
 * (zero-padded): comparing those numbers orders keys as their bytes do, so
 * the sort reads a slot's key only when two keys share their first 8 bytes. */
typedef struct {
    uint64_t prefix;
    weir_slot *slot;
} weir_sort_item;

static int weir_cmp_items(const void *a, const void *b) {
    const weir_sort_item *x = a, *y = b;
    if (x->prefix != y->prefix) return x->prefix < y->prefix ? -1 : 1;
    return weir_cmp_slots(&x->slot, &y->slot);
}

bool exports_weir_plugin_state_snapshot(operator_plugin_list_u8_t *ret, exports_weir_plugin_state_error_t *err) {
    (void)err;
    weir_sort_item *items = malloc((weir_live ? weir_live : 1) * sizeof(weir_sort_item));
    if (!items) abort();
    size_t n = 0;
    for (size_t i = 0; i < weir_cap; i++) {
        if (!weir_slots[i].hash) continue;
        const uint8_t *k = (const uint8_t *)weir_slot_key(&weir_slots[i]);
        size_t len = weir_slots[i].key_len;
        uint64_t prefix = 0;
        for (size_t j = 0; j < 8; j++) prefix = prefix << 8 | (j < len ? k[j] : 0);
        items[n].prefix = prefix;
        items[n].slot = &weir_slots[i];
        n++;
    }
    qsort(items, n, sizeof(weir_sort_item), weir_cmp_items);
    weir_bytes out = {0};
    weir_bytes_push(&out, "WEIR", 4);
    uint8_t format = 2;
    weir_bytes_push(&out, &format, 1);
    weir_bytes_u32(&out, WEIR_STATE_VERSION);
    weir_bytes_u32(&out, (uint32_t)strlen(WEIR_STATE_SHAPE));
    weir_bytes_push(&out, WEIR_STATE_SHAPE, strlen(WEIR_STATE_SHAPE));
    weir_bytes_u32(&out, 0); /* migrates from no other shape */
    weir_bytes_u32(&out, 0); /* no operator-wide bytes */
    weir_bytes_u64(&out, n);
    for (size_t i = 0; i < n; i++) {
        const weir_slot *s = items[i].slot;
        weir_bytes_u32(&out, (uint32_t)s->key_len);
        weir_bytes_push(&out, weir_slot_key(s), s->key_len);
        weir_bytes_u32(&out, (uint32_t)s->val_len);
        weir_bytes_push(&out, weir_slot_val(s), s->val_len);
    }
    free(items);
    ret->ptr = out.ptr;
    ret->len = out.len;
    return true;
}

static int weir_read(const uint8_t *p, size_t len, size_t *at, void *dst, size_t n) {
    if (*at + n > len) return 0;
    memcpy(dst, p + *at, n);
    *at += n;
    return 1;
}

/* `a` then `b` then `c` in one malloc'd string (no stdio: it would import WASI). */
static char *weir_concat3(const char *a, const uint8_t *b, size_t b_len, const char *c) {
    size_t na = strlen(a), nc = strlen(c);
    char *s = malloc(na + b_len + nc + 1);
    if (!s) abort();
    memcpy(s, a, na);
    memcpy(s + na, b, b_len);
    memcpy(s + na + b_len, c, nc + 1);
    return s;
}

bool exports_weir_plugin_state_restore(operator_plugin_list_u8_t *bytes, uint32_t from_version,
                                       exports_weir_plugin_state_error_t *err) {
    const uint8_t *p = bytes->ptr;
    size_t len = bytes->len, at = 0;
    uint8_t magic[4], format;
    uint32_t version, op_len, shape_len = 0, migrations = 0;
    uint64_t count;
    const char *problem = NULL;
    char *owned = NULL; /* a problem built here, freed below */
    if (from_version != WEIR_STATE_VERSION) problem = "state version not accepted by this operator";
    else if (!weir_read(p, len, &at, magic, 4) || memcmp(magic, "WEIR", 4)) problem = "not a Weir state envelope";
    else if (!weir_read(p, len, &at, &format, 1) || (format != 1 && format != 2)) problem = "unsupported envelope format";
    else if (!weir_read(p, len, &at, &version, 4) || version != from_version) problem = "state version mismatch";
    else if (format == 2 && (!weir_read(p, len, &at, &shape_len, 4) || shape_len > len - at)) problem = "state envelope truncated";
    else if (format == 2 && (shape_len != strlen(WEIR_STATE_SHAPE) || memcmp(p + at, WEIR_STATE_SHAPE, shape_len))) {
        problem = owned = weir_concat3("the state has shape `", p + at, shape_len,
                                       "`; this operator's state is `" WEIR_STATE_SHAPE
                                       "` and it does not declare a migration from it");
    } else {
        at += shape_len;
        if (format == 2 && !weir_read(p, len, &at, &migrations, 4)) problem = "state envelope truncated";
        for (uint32_t i = 0; i < migrations && !problem; i++) {
            uint32_t n;
            if (!weir_read(p, len, &at, &n, 4) || n > len - at || len - at - n < 4) problem = "state envelope truncated";
            else at += n + 4;
        }
        if (!problem && (!weir_read(p, len, &at, &op_len, 4) || op_len > len - at)) problem = "state envelope truncated";
        else if (!problem) {
            at += op_len;
            if (!weir_read(p, len, &at, &count, 8)) problem = "state envelope truncated";
        }
    }
    if (!problem) {
        weir_state_clear_all();
        for (uint64_t i = 0; i < count && !problem; i++) {
            uint32_t klen, vlen;
            if (!weir_read(p, len, &at, &klen, 4) || klen > len - at) { problem = "state envelope truncated"; break; }
            const uint8_t *key = p + at;
            at += klen;
            if (!weir_read(p, len, &at, &vlen, 4) || vlen > len - at) { problem = "state envelope truncated"; break; }
#ifdef WEIR_CHECK_VALUE
            const char *why = WEIR_CHECK_VALUE(p + at, vlen);
            if (why) {
                const char *tail = "\" does not decode: ";
                char *head = weir_concat3("state of key \"", key, klen, tail);
                problem = owned = weir_concat3(head, (const uint8_t *)why, strlen(why), "");
                free(head);
                break;
            }
#endif
            weir_state_put(key, klen, p + at, vlen);
            at += vlen;
        }
        if (!problem && at != len) problem = "trailing bytes after the last state entry";
        if (problem) weir_state_clear_all();
    }
    operator_plugin_list_u8_free(bytes);
    if (problem) {
        weir_error(err, WEIR_PLUGIN_TYPES_ERROR_STATE, problem);
        free(owned);
        return false;
    }
    return true;
}

#endif
