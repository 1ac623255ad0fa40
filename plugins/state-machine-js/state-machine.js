// Pattern validation as in the classic Flink state-machine example, in
// JavaScript: the same DFA, alerts and state encoding as
// plugins/state-machine (Rust), so savepoints move between them. Per-key
// state is the state's index (0 INITIAL, 1 W, 2 X, 3 Y, 4 Z) as one byte.

import { exportOperator } from './weir-guest.js';

const NAMES = ['INITIAL', 'W', 'X', 'Y', 'Z', 'TERMINAL'];
const TERMINAL = 5;
// TRANSITIONS[state][event letter - 'a'] = next state, or -1.
const TRANSITIONS = [
  [1, -1, 2, -1, -1, -1, -1], // INITIAL: a -> W, c -> X
  [-1, 3, -1, -1, -1, -1, -1], // W: b -> Y
  [-1, 3, -1, 4, -1, -1, -1], // X: b -> Y, d -> Z
  [-1, -1, -1, -1, 4, -1, -1], // Y: e -> Z
  [-1, -1, -1, -1, -1, -1, TERMINAL], // Z: g -> TERMINAL
];

class StateMachine {
  // The shape every language's state-machine plugin declares (wit/STATE.md).
  STATE_SHAPE = 'weir.state-machine';

  onEvent(key, value, timestamp, state, ctx) {
    const comma = value.indexOf(44);
    if (comma < 0) throw new Error('expected `address,event`');
    let address = 0;
    if (comma === 0 || comma > 10) throw new Error('address is not a u32');
    for (let i = 0; i < comma; i++) {
      const d = value[i] - 48;
      if (d < 0 || d > 9) throw new Error('address is not a u32');
      address = address * 10 + d;
    }
    if (address > 0xffffffff) throw new Error('address is not a u32');
    let end = value.indexOf(44, comma + 1);
    if (end < 0) end = value.length;
    const event = end - comma === 2 ? value[comma + 1] : -1;
    if (event < 97 || event > 103) {
      throw new Error(`unknown event '${String.fromCharCode(...value.subarray(comma + 1, end))}' (expected a letter a-g)`);
    }
    const current = state.get() ?? 0;
    const next = TRANSITIONS[current][event - 97];
    if (next < 0) {
      ctx.emit(key, `{"address":${address},"state":"${NAMES[current]}","event":"${String.fromCharCode(event)}"}`, timestamp);
    } else if (next === TERMINAL) {
      state.clear();
    } else {
      state.set(next);
    }
  }
  encodeState(value) {
    return Uint8Array.of(value);
  }
  decodeState(bytes) {
    if (bytes.length !== 1 || bytes[0] > 4) throw new Error('bad state-machine value');
    return bytes[0];
  }
}

export const { operator, state } = exportOperator(new StateMachine());
