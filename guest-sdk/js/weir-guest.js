// weir-guest: write Weir operators in JavaScript.
//
// An operator is an object (or class instance) with `onEvent(key, value,
// timestamp, state, ctx)` and optionally `init(config)`, `onTimer(key,
// time, state, ctx)`, `encodeState(value) -> Uint8Array`,
// `decodeState(bytes, version)` (throw unless the bytes are exactly one
// value), `STATE_VERSION`, `MIGRATES_FROM`, `STATE_SHAPE` (the name of the
// state's shape, wit/STATE.md; default: the operator's class name),
// `SHAPE_MIGRATES_FROM` (a list of [shape name, state version] of other
// operators' state) and `migrateShape(shape, version, bytes)` (a value, or
// undefined to drop the key).
// `exportOperator(op)` returns the `operator` and `state` exports of the
// plugin:
//
//   import { exportOperator } from './weir-guest.js';
//   export const { operator, state } = exportOperator(new MyOperator());
//
// The SDK keeps the per-key state (a Map keyed by the key bytes as a latin1
// string), decodes each packed batch into records, turns an exception thrown
// by onEvent into a rejected record (dead-letter output with the error's
// name and message; the job goes on), and writes and reads snapshots as the
// keyed state envelope of wit/STATE.md.

import { log as hostLog } from 'weir:plugin/host@0.1.0';

const NO_TIMESTAMP = -(2n ** 63n);
const MAGIC = [0x57, 0x45, 0x49, 0x52]; // "WEIR"
const FORMAT_VERSION = 2;
const FORMAT_WITHOUT_SHAPE = 1;

function keyString(bytes) {
  // Keys are short; one call beats a concatenation per byte.
  return bytes.length <= 4096 ? String.fromCharCode.apply(null, bytes) : slowKeyString(bytes);
}

function slowKeyString(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

function keyBytes(s) {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
  return b;
}

class Bytes {
  constructor(capacity = 1024) {
    this.buf = new Uint8Array(capacity);
    this.len = 0;
  }
  reserve(n) {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
  push(bytes) {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  }
  u8(v) {
    this.reserve(1);
    this.buf[this.len++] = v;
  }
  u32(v) {
    this.reserve(4);
    new DataView(this.buf.buffer).setUint32(this.len, v, true);
    this.len += 4;
  }
  u64(v) {
    this.reserve(8);
    new DataView(this.buf.buffer).setBigUint64(this.len, BigInt(v), true);
    this.len += 8;
  }
  bytes() {
    return this.buf.slice(0, this.len);
  }
}

const encoder = new TextEncoder();

/** The state of the current key. */
class KeyState {
  constructor(states) {
    this.states = states;
    this.key = '';
  }
  get() {
    return this.states.get(this.key);
  }
  set(value) {
    if (value === undefined || value === null) this.states.delete(this.key);
    else this.states.set(this.key, value);
  }
  clear() {
    this.states.delete(this.key);
  }
}

/** Where an operator sends what it produces during one call. */
class Ctx {
  constructor(watermark) {
    this.keys = new Bytes();
    this.keyEnds = [];
    this.values = new Bytes();
    this.valueEnds = [];
    this.timestamps = [];
    this.timers = [];
    this.key = new Uint8Array(0);
    this.watermark = watermark;
  }
  /** Emit a record; `value` is a Uint8Array or a string (UTF-8). */
  emit(key, value, timestamp) {
    this.keys.push(key);
    this.keyEnds.push(this.keys.len);
    this.values.push(typeof value === 'string' ? encoder.encode(value) : value);
    this.valueEnds.push(this.values.len);
    this.timestamps.push(timestamp === undefined || timestamp === null ? NO_TIMESTAMP : BigInt(timestamp));
  }
  /** Fire onTimer for the current key once the watermark reaches `time`. */
  registerTimer(time) {
    this.timers.push({ key: this.key.slice(), time: BigInt(time) });
  }
  outcome(rejected) {
    return {
      emitted: {
        keys: this.keys.bytes(),
        keyEnds: new Uint32Array(this.keyEnds),
        values: this.values.bytes(),
        valueEnds: new Uint32Array(this.valueEnds),
        timestamps: new BigInt64Array(this.timestamps),
      },
      timers: this.timers,
      rejected,
    };
  }
}

function reason(e) {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** Write a line to the host's log; level: trace, debug, info, warn, error. */
export function log(level, message) {
  hostLog(level, message);
}

/** The `operator` and `state` exports for an operator object. */
export function exportOperator(op) {
  const states = new Map();
  const slot = new KeyState(states);
  const version = op.STATE_VERSION ?? 1;
  const accepts = [...new Set([...(op.MIGRATES_FROM ?? []), version])].sort((a, b) => a - b);
  const encodeState = op.encodeState ? op.encodeState.bind(op) : (v) => encoder.encode(String(v));
  const decodeState = op.decodeState ? op.decodeState.bind(op) : (b) => b;
  const shape = op.STATE_SHAPE ?? op.constructor?.name ?? 'Object';
  const shapeMigrations = op.SHAPE_MIGRATES_FROM ?? [];
  const putStr = (out, str) => {
    const b = encoder.encode(str);
    out.u32(b.length);
    out.push(b);
  };

  const operator = {
    init(config) {
      try {
        if (op.init) op.init(Object.fromEntries(config));
      } catch (e) {
        throw { tag: 'config', val: reason(e) };
      }
    },
    process(input, watermark) {
      const ctx = new Ctx(watermark);
      const rejected = [];
      const { keys, keyEnds, values, valueEnds, timestamps } = input;
      let ks = 0;
      let vs = 0;
      for (let i = 0; i < keyEnds.length; i++) {
        const ke = keyEnds[i];
        const ve = valueEnds[i];
        const key = keys.subarray(ks, ke);
        const value = values.subarray(vs, ve);
        ks = ke;
        vs = ve;
        const t = timestamps[i];
        slot.key = keyString(key);
        ctx.key = key;
        try {
          op.onEvent(key, value, t === NO_TIMESTAMP ? null : t, slot, ctx);
        } catch (e) {
          rejected.push({ index: i, reason: reason(e) });
        }
      }
      return ctx.outcome(rejected);
    },
    onTimers(fired, watermark) {
      const ctx = new Ctx(watermark);
      for (const t of fired) {
        slot.key = keyString(t.key);
        ctx.key = t.key;
        if (op.onTimer) op.onTimer(t.key, t.time, slot, ctx);
      }
      return ctx.outcome([]);
    },
  };

  const state = {
    version() {
      return version;
    },
    accepts() {
      return new Uint32Array(accepts);
    },
    snapshot() {
      const out = new Bytes(64 + states.size * 16);
      for (const b of MAGIC) out.u8(b);
      out.u8(FORMAT_VERSION);
      out.u32(version);
      putStr(out, shape);
      out.u32(shapeMigrations.length);
      for (const [name, v] of shapeMigrations) {
        putStr(out, name);
        out.u32(v);
      }
      const opBytes = op.encodeOperator ? op.encodeOperator() : new Uint8Array(0);
      out.u32(opBytes.length);
      out.push(opBytes);
      out.u64(states.size);
      // Sorted by key bytes: latin1 strings compare as their bytes.
      const keys = [...states.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      for (const k of keys) {
        const v = encodeState(states.get(k));
        out.u32(k.length);
        out.push(keyBytes(k));
        out.u32(v.length);
        out.push(v);
      }
      return out.bytes();
    },
    restore(blob, fromVersion) {
      try {
        const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
        for (let i = 0; i < 4; i++) if (blob[i] !== MAGIC[i]) throw new Error('not a Weir state envelope (bad magic)');
        const format = blob[4];
        if (format !== FORMAT_VERSION && format !== FORMAT_WITHOUT_SHAPE) throw new Error(`state envelope format ${format} is not supported`);
        const written = view.getUint32(5, true);
        let at = 9;
        const getStr = () => {
          const n = view.getUint32(at, true);
          at += 4;
          if (at + n > blob.length) throw new Error('state envelope truncated');
          const str = keyString(blob.subarray(at, at + n));
          at += n;
          return decodeURIComponent(escape(str));
        };
        let foreign = null;
        if (format === FORMAT_VERSION) {
          const blobShape = getStr();
          const n = view.getUint32(at, true);
          at += 4;
          for (let i = 0; i < n; i++) {
            getStr();
            at += 4;
          }
          if (blobShape !== shape) foreign = blobShape;
        }
        if (foreign !== null) {
          if (!shapeMigrations.some(([name, v]) => name === foreign && v === fromVersion)) {
            throw {
              tag: 'state',
              val: `the state has shape \`${foreign}\` (version ${fromVersion}); this operator's state is \`${shape}\` (version ${version}) and it does not declare a migration from \`${foreign}\` version ${fromVersion}`,
            };
          }
        } else if (!accepts.includes(fromVersion)) {
          throw {
            tag: 'state',
            val: `state version ${fromVersion} cannot be restored: this operator writes version ${version} and reads [${accepts.join(', ')}]`,
          };
        }
        if (written !== fromVersion) throw new Error(`the blob says state version ${written} but the host says ${fromVersion}`);
        const decode = foreign === null
          ? decodeState
          : (b, v) => {
              if (!op.migrateShape) throw new Error(`no migration from state shape \`${foreign}\` version ${v}`);
              return op.migrateShape(foreign, v, b);
            };
        const opLen = view.getUint32(at, true);
        at += 4;
        if (op.decodeOperator) op.decodeOperator(blob.subarray(at, at + opLen), fromVersion);
        at += opLen;
        const count = Number(view.getBigUint64(at, true));
        at += 8;
        const restored = new Map();
        for (let n = 0; n < count; n++) {
          const klen = view.getUint32(at, true);
          at += 4;
          const key = keyString(blob.subarray(at, at + klen));
          at += klen;
          const vlen = view.getUint32(at, true);
          at += 4;
          if (at + vlen > blob.length) throw new Error('state envelope truncated');
          let value;
          try {
            value = decode(blob.subarray(at, at + vlen), fromVersion);
          } catch (e) {
            throw new Error(`state of key ${JSON.stringify(key)} does not decode: ${reason(e)}`);
          }
          if (value !== undefined) restored.set(key, value);
          at += vlen;
        }
        if (at !== blob.length) throw new Error('trailing bytes after the last state entry');
        states.clear();
        for (const [k, v] of restored) states.set(k, v);
      } catch (e) {
        if (e && e.tag) throw e;
        throw { tag: 'state', val: reason(e) };
      }
    },
  };
  return { operator, state };
}
