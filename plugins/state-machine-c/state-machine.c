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

int weir_on_event(weir_ctx *ctx, const uint8_t *key, size_t key_len, const uint8_t *value, size_t value_len,
                  int64_t timestamp) {
    size_t comma = 0;
    while (comma < value_len && value[comma] != ',') comma++;
    if (comma == value_len) { weir_reject(ctx, "expected `address,event`"); return 1; }
    uint64_t address = 0;
    if (comma == 0 || comma > 10) { weir_reject(ctx, "address is not a u32"); return 1; }
    for (size_t i = 0; i < comma; i++) {
        if (value[i] < '0' || value[i] > '9') { weir_reject(ctx, "address is not a u32"); return 1; }
        address = address * 10 + (uint64_t)(value[i] - '0');
    }
    if (address > 0xFFFFFFFFu) { weir_reject(ctx, "address is not a u32"); return 1; }
    size_t end = comma + 1;
    while (end < value_len && value[end] != ',') end++;
    int event = end - comma == 2 ? value[comma + 1] : -1;
    if (event < 'a' || event > 'g') { weir_reject(ctx, "unknown event (expected a letter a-g)"); return 1; }

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
