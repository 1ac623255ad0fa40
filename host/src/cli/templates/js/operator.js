// @NAME@: a Weir operator. It counts the records of each key and emits
// {"count":N} for each record, keyed as the record was.
import { exportOperator } from './weir-guest.js';

class Counter {
  STATE_SHAPE = '@NAME@.count';

  onEvent(key, value, timestamp, state, ctx) { // throw to dead-letter the record
    const n = (state.get() ?? 0) + 1;
    state.set(n);
    ctx.emit(key, `{"count":${n}}`, timestamp);
  }
  encodeState(n) { return new Uint8Array(new Uint32Array([n]).buffer); }
  decodeState(bytes) { return new Uint32Array(bytes.slice(0, 4).buffer)[0]; }
}

export const { operator, state } = exportOperator(new Counter());
