/*
 * Test plugin: runs a record's list of state calls on its key, to hold the
 * C SDK's map to what a map does when one record makes several calls.
 * A line is `key,ops[,time]`; each op, in order:
 *   p  put(key, the ops up to and including this one)
 *   g  get(key), emitted as `key=value` or `key=-`
 *   d  del(key)
 *   o  put(key + "~", "other"), an insertion of another key
 *   q  del(key + "~")
 *   s  put(the key without its last byte, "short"), an insertion of a key
 *      at the record key's own address
 */
#include <stddef.h>
#include <stdint.h>

#include "weir.h"

int weir_on_event(weir_ctx *ctx, const uint8_t *key, size_t key_len, const uint8_t *value, size_t value_len,
                  int64_t timestamp) {
    size_t comma = 0;
    while (comma < value_len && value[comma] != ',') comma++;
    if (comma == value_len) { weir_reject(ctx, "expected `key,ops`"); return 1; }
    const uint8_t *ops = value + comma + 1;
    size_t n_ops = 0;
    while (comma + 1 + n_ops < value_len && ops[n_ops] != ',') n_ops++;
    uint8_t other[80];
    if (key_len + 1 > sizeof other) { weir_reject(ctx, "key too long"); return 1; }
    for (size_t i = 0; i < key_len; i++) other[i] = key[i];
    other[key_len] = '~';
    for (size_t i = 0; i < n_ops; i++) {
        switch (ops[i]) {
        case 'p': weir_state_put(key, key_len, ops, i + 1); break;
        case 'd': weir_state_del(key, key_len); break;
        case 'o': weir_state_put(other, key_len + 1, (const uint8_t *)"other", 5); break;
        case 'q': weir_state_del(other, key_len + 1); break;
        case 's':
            if (key_len == 0) { weir_reject(ctx, "no shorter key"); return 1; }
            weir_state_put(key, key_len - 1, (const uint8_t *)"short", 5);
            break;
        case 'g': {
            uint8_t out[200];
            size_t n = 0, len = 0;
            for (size_t j = 0; j < key_len; j++) out[n++] = key[j];
            out[n++] = '=';
            const uint8_t *v = weir_state_get(key, key_len, &len);
            if (!v) out[n++] = '-';
            for (size_t j = 0; v && j < len && n < sizeof out; j++) out[n++] = v[j];
            weir_emit(ctx, key, key_len, out, n, timestamp);
            break;
        }
        default: weir_reject(ctx, "unknown op"); return 1;
        }
    }
    return 0;
}
