/*
 * Pattern validation as in the classic Flink state-machine example, in C:
 * the same DFA, alerts and state encoding as plugins/state-machine (Rust),
 * so savepoints move between them. Per-key state is the state's index
 * (1 W, 2 X, 3 Y, 4 Z) as one byte; INITIAL is "no state".
 */
#include <stddef.h>
#include <stdint.h>

/* A restored value is exactly one byte, a state index 1-4. */
static const char *check_value(const uint8_t *value, size_t len) {
    if (len != 1) return "a state is one byte (the state's index 1-4)";
    if (value[0] < 1 || value[0] > 4) return "not a state index (1-4)";
    return NULL;
}

#define WEIR_STATE_SHAPE "weir.state-machine"
#define WEIR_CHECK_VALUE check_value
#include "weir.h"

static const char *NAMES[] = {"INITIAL", "W", "X", "Y", "Z", "TERMINAL"};
#define TERMINAL 5

/* TRANSITIONS[state][event - 'a']: next state, or -1 */
static const signed char TRANSITIONS[5][7] = {
    {1, -1, 2, -1, -1, -1, -1},       /* INITIAL: a -> W, c -> X */
    {-1, 3, -1, -1, -1, -1, -1},      /* W: b -> Y */
    {-1, 3, -1, 4, -1, -1, -1},       /* X: b -> Y, d -> Z */
    {-1, -1, -1, -1, 4, -1, -1},      /* Y: e -> Z */
    {-1, -1, -1, -1, -1, -1, TERMINAL}, /* Z: g -> TERMINAL */
};

/* `address,event[,...]`: NULL and the address and event letter, or why not. */
static const char *parse_general(const uint8_t *value, size_t value_len, uint64_t *address, int *event) {
    size_t comma = 0;
    while (comma < value_len && value[comma] != ',') comma++;
    if (comma == value_len) return "expected `address,event`";
    if (comma == 0 || comma > 10) return "address is not a u32";
    uint64_t a = 0;
    for (size_t i = 0; i < comma; i++) {
        if (value[i] < '0' || value[i] > '9') return "address is not a u32";
        a = a * 10 + (uint64_t)(value[i] - '0');
    }
    if (a > 0xFFFFFFFFu) return "address is not a u32";
    size_t end = comma + 1;
    while (end < value_len && value[end] != ',') end++;
    int e = end - comma == 2 ? value[comma + 1] : -1;
    if (e < 'a' || e > 'g') return "unknown event (expected a letter a-g)";
    *address = a;
    *event = e;
    return NULL;
}

/*
 * The usual line, `address,event` with 1 to 7 digits and then the end or a
 * comma, read from one 8-byte word without a loop (a line of 4 to 7 bytes
 * is padded with zero bytes, which are not digits). Compiled to Wasm, the
 * byte loops of the general path cost more than the rest of the record.
 * Returns 0 for any other line, which the general path then reads (and
 * words its error).
 */
static inline int parse_short(const uint8_t *v, size_t len, uint64_t *address, int *event) {
    const uint64_t ones = 0x0101010101010101ull;
    uint64_t w;
    if (len >= 8) {
        memcpy(&w, v, 8);
    } else if (len >= 4) {
        w = weir_load_short(v, len);
    } else {
        return 0;
    }
    /* A digit's value in each byte's low nibble; any other byte has a high
     * nibble after the xor or after adding 6 (a carry out of such a byte
     * only reaches the bytes after it, past the digits). */
    uint64_t t = w ^ (ones * 0x30);
    uint64_t not_digit = (t | (t + ones * 6)) & (ones * 0xF0);
    if (!not_digit) return 0;
    size_t digits = (size_t)__builtin_ctzll(not_digit) / 8;
    if (digits == 0) return 0;
    if (digits + 2 > len || v[digits] != ',' || v[digits + 1] < 'a' || v[digits + 1] > 'g') return 0;
    if (digits + 2 < len && v[digits + 2] != ',') return 0;
    /* The digits to the top of the word, then pairs, quads and all. */
    uint64_t x = t << (8 * (8 - digits));
    x = ((x & (ones * 0x0F)) * (10 << 8 | 1)) >> 8;
    x = ((x & 0x00FF00FF00FF00FFull) * (100 << 16 | 1)) >> 16;
    x = ((x & 0x0000FFFF0000FFFFull) * (10000ull << 32 | 1)) >> 32;
    *address = x;
    *event = v[digits + 1];
    return 1;
}

int weir_on_event(weir_ctx *ctx, const uint8_t *key, size_t key_len, const uint8_t *value, size_t value_len,
                  int64_t timestamp) {
    uint64_t address = 0;
    int event = 0;
    if (!parse_short(value, value_len, &address, &event)) {
        const char *refused = parse_general(value, value_len, &address, &event);
        if (refused) { weir_reject(ctx, refused); return 1; }
    }

    size_t len = 0;
    const uint8_t *stored = weir_state_get(key, key_len, &len);
    int current = stored && len == 1 ? stored[0] : 0;
    int next = TRANSITIONS[current][event - 'a'];
    if (next < 0) {
        /* No stdio: it would import WASI. */
        char alert[96], digits[10];
        size_t n = 0, d = 0;
        uint64_t a = address;
        do { digits[d++] = (char)('0' + a % 10); a /= 10; } while (a);
        memcpy(alert, "{\"address\":", 11); n = 11;
        while (d) alert[n++] = digits[--d];
        memcpy(alert + n, ",\"state\":\"", 10); n += 10;
        size_t name_len = strlen(NAMES[current]);
        memcpy(alert + n, NAMES[current], name_len); n += name_len;
        memcpy(alert + n, "\",\"event\":\"", 11); n += 11;
        alert[n++] = (char)event;
        memcpy(alert + n, "\"}", 2); n += 2;
        weir_emit(ctx, key, key_len, (const uint8_t *)alert, n, timestamp);
    } else if (next == TERMINAL) {
        weir_state_del(key, key_len);
    } else {
        uint8_t s = (uint8_t)next;
        weir_state_put(key, key_len, &s, 1);
    }
    return 0;
}
