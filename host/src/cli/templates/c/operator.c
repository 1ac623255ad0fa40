/*
 * @NAME@: a Weir operator. It counts the records of each key and emits
 * {"count":N} for each record, keyed as the record was. Per-key state: the
 * count, 8 bytes little-endian. No stdio (it would import WASI).
 */
#include <stddef.h>
#include <stdint.h>

#define WEIR_STATE_SHAPE "@NAME@.count"
#include "weir.h"

int weir_on_event(weir_ctx *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                  size_t value_len, int64_t timestamp) {
    (void)value;
    (void)value_len;
    size_t len = 0;
    const uint8_t *stored = weir_state_get(key, key_len, &len);
    uint64_t n = 0;
    if (stored && len == 8) memcpy(&n, stored, 8);
    n++;
    weir_state_put(key, key_len, (const uint8_t *)&n, 8);
    char out[40], digits[20];
    size_t o = 0, d = 0;
    uint64_t v = n;
    do { digits[d++] = (char)('0' + v % 10); v /= 10; } while (v);
    memcpy(out, "{\"count\":", 9); o = 9;
    while (d) out[o++] = digits[--d];
    out[o++] = '}';
    weir_emit(ctx, key, key_len, (const uint8_t *)out, o, timestamp);
    /* weir_reject(ctx, "reason"); return 1; sends the record to dead letters. */
    return 0;
}
