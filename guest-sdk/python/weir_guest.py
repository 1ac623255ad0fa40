"""weir_guest: write Weir operators in Python.

An operator is a subclass of `Operator`; `export(MyOperator)` returns the
`Operator` and `State` classes componentize-py exports as the plugin:

    from weir_guest import Operator, export

    class Counter(Operator):
        def on_event(self, key, value, timestamp, state, ctx):
            n = (state.get() or 0) + 1
            state.set(n)
            ctx.emit(key, str(n).encode(), timestamp)

        def encode_state(self, n):
            return n.to_bytes(8, "little")

        def decode_state(self, data, version):
            return int.from_bytes(data, "little")

    Operator, State = export(Counter)

The SDK keeps the per-key state, decodes each packed batch into records,
turns an exception raised by `on_event` into a rejected record (it goes to
the dead-letter output with the exception's type and message; the job goes
on), and writes and reads snapshots as the keyed state envelope of
wit/STATE.md, so the host can inspect them and other languages can read
them.

Build: `componentize-py -d wit/v0.1.0 -w operator-plugin componentize app
-p <plugin dir> -p guest-sdk/python -s -o plugin.wasm` (`-s` stubs WASI out:
a plugin gets no WASI).
"""

import struct

from componentize_py_types import Err
from wit_world.imports import host, types

NO_TIMESTAMP = -(2**63)
MAGIC = b"WEIR"
FORMAT_VERSION = 1


class KeyState:
    """The state of the current key (reused across records)."""

    __slots__ = ("_states", "key")

    def __init__(self, states):
        self._states = states
        self.key = b""

    def get(self):
        """The current value, or None."""
        return self._states.get(self.key)

    def set(self, value):
        """Replace the value (None clears it)."""
        if value is None:
            self._states.pop(self.key, None)
        else:
            self._states[self.key] = value

    def clear(self):
        """Forget the key."""
        self._states.pop(self.key, None)


class Ctx:
    """Where an operator sends what it produces during one call."""

    __slots__ = ("keys", "key_ends", "values", "value_ends", "timestamps", "timers", "key", "watermark")

    def __init__(self):
        self.keys = bytearray()
        self.key_ends = []
        self.values = bytearray()
        self.value_ends = []
        self.timestamps = []
        self.timers = []
        self.key = b""
        self.watermark = NO_TIMESTAMP

    def emit(self, key, value, timestamp=None):
        """Emit a record downstream."""
        self.keys += key
        self.key_ends.append(len(self.keys))
        self.values += value
        self.value_ends.append(len(self.values))
        self.timestamps.append(NO_TIMESTAMP if timestamp is None else timestamp)

    def register_timer(self, time):
        """Fire `on_timer` for the current key once the watermark reaches `time`."""
        self.timers.append(types.Timer(key=bytes(self.key), time=time))


class Operator:
    """Base class of a Python operator. Override `on_event`; the rest is optional."""

    STATE_VERSION = 1
    MIGRATES_FROM = ()

    def init(self, config):
        """Apply the job's configuration (a dict of strings)."""

    def on_event(self, key, value, timestamp, state, ctx):
        """Handle one record; raise to reject it (dead-letter output)."""
        raise NotImplementedError

    def on_timer(self, key, time, state, ctx):
        """A timer registered for `key` fired at `time`."""

    def encode_state(self, value):
        """Bytes of one key's value (default: UTF-8 of repr-able str/bytes)."""
        return value if isinstance(value, bytes) else str(value).encode()

    def decode_state(self, data, version):
        """Value of one key from `encode_state` bytes written by `version`."""
        return data

    def encode_operator(self):
        """Operator-wide state bytes (default: none)."""
        return b""

    def decode_operator(self, data, version):
        """Restore operator-wide state."""


def _outcome(ctx, rejected):
    batch = types.Batch(
        keys=bytes(ctx.keys),
        key_ends=ctx.key_ends,
        values=bytes(ctx.values),
        value_ends=ctx.value_ends,
        timestamps=ctx.timestamps,
    )
    return types.Outcome(emitted=batch, timers=ctx.timers, rejected=rejected)


def _reason(e):
    return f"{type(e).__name__}: {e}"


def export(operator_class):
    """The `Operator` and `State` classes for componentize-py."""
    op = operator_class()
    states = {}
    slot = KeyState(states)

    class _Operator:
        def init(self, config):
            try:
                op.init(dict(config))
            except Exception as e:  # noqa: BLE001 - reported to the host
                raise Err(types.Error_Config(_reason(e)))
            return None

        def process(self, input, watermark):
            ctx = Ctx()
            ctx.watermark = watermark
            rejected = []
            keys, kends = input.keys, input.key_ends
            values, vends = input.values, input.value_ends
            stamps = input.timestamps
            ks = vs = 0
            on_event = op.on_event
            for i in range(len(kends)):
                ke = kends[i]
                ve = vends[i]
                key = keys[ks:ke]
                ks = ke
                value = values[vs:ve]
                vs = ve
                t = stamps[i]
                slot.key = key
                ctx.key = key
                try:
                    on_event(key, value, None if t == NO_TIMESTAMP else t, slot, ctx)
                except Exception as e:  # noqa: BLE001 - the record is rejected
                    rejected.append(types.Rejection(index=i, reason=_reason(e)))
            return _outcome(ctx, rejected)

        def on_timers(self, fired, watermark):
            ctx = Ctx()
            ctx.watermark = watermark
            for t in fired:
                slot.key = t.key
                ctx.key = t.key
                op.on_timer(t.key, t.time, slot, ctx)
            return _outcome(ctx, [])

    class _State:
        def version(self):
            return operator_class.STATE_VERSION

        def accepts(self):
            return sorted(set(operator_class.MIGRATES_FROM) | {operator_class.STATE_VERSION})

        def snapshot(self):
            out = bytearray(MAGIC)
            opb = op.encode_operator()
            out += struct.pack("<BII", FORMAT_VERSION, operator_class.STATE_VERSION, len(opb))
            out += opb
            out += struct.pack("<Q", len(states))
            encode = op.encode_state
            for key in sorted(states):
                value = encode(states[key])
                out += struct.pack("<I", len(key))
                out += key
                out += struct.pack("<I", len(value))
                out += value
            return bytes(out)

        def restore(self, blob, from_version):
            if from_version not in self.accepts():
                raise Err(types.Error_State(
                    f"state version {from_version} cannot be restored: this operator writes version "
                    f"{operator_class.STATE_VERSION} and reads {self.accepts()}"))
            try:
                restored = _parse(blob, from_version, op)
            except Exception as e:  # noqa: BLE001 - reported to the host
                raise Err(types.Error_State(_reason(e)))
            states.clear()
            states.update(restored)
            return None

    return _Operator, _State


def _parse(blob, from_version, op):
    if blob[:4] != MAGIC:
        raise ValueError("not a Weir state envelope (bad magic)")
    fmt, version, oplen = struct.unpack_from("<BII", blob, 4)
    if fmt != FORMAT_VERSION:
        raise ValueError(f"state envelope format {fmt} is not supported")
    if version != from_version:
        raise ValueError(f"the blob says state version {version} but the host says {from_version}")
    at = 13
    op.decode_operator(blob[at:at + oplen], version)
    at += oplen
    (count,) = struct.unpack_from("<Q", blob, at)
    at += 8
    states = {}
    decode = op.decode_state
    for _ in range(count):
        (klen,) = struct.unpack_from("<I", blob, at)
        at += 4
        key = blob[at:at + klen]
        at += klen
        (vlen,) = struct.unpack_from("<I", blob, at)
        at += 4
        if at + vlen > len(blob) or len(key) != klen:
            raise ValueError("state envelope truncated")
        states[key] = decode(blob[at:at + vlen], version)
        at += vlen
    if at != len(blob):
        raise ValueError("trailing bytes after the last state entry")
    return states


def log(level, message):
    """Write a line to the host's log; `level` is one of trace, debug, info, warn, error."""
    host.log(getattr(types.Level, level.upper()), message)
