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
FORMAT_VERSION = 2
FORMAT_WITHOUT_SHAPE = 1


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
    # The name of the state's shape, recorded in snapshots (wit/STATE.md);
    # None: the operator class's name. Declare one for state meant to move
    # between versions or languages.
    STATE_SHAPE = None
    # Shapes of other operators' state, as (name, state version) pairs, that
    # `migrate_shape` takes over.
    SHAPE_MIGRATES_FROM = ()

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
        """Value of one key from `encode_state` bytes written by `version`
        (raise if the bytes are not exactly one value)."""
        return data

    def migrate_shape(self, shape, version, data):
        """Value of one key written by an operator whose state has another
        shape (one of SHAPE_MIGRATES_FROM); None drops the key."""
        raise ValueError(f"no migration from state shape `{shape}` version {version}")

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
            out += struct.pack("<BI", FORMAT_VERSION, operator_class.STATE_VERSION)
            _put_str(out, _shape(operator_class))
            out += struct.pack("<I", len(operator_class.SHAPE_MIGRATES_FROM))
            for name, version in operator_class.SHAPE_MIGRATES_FROM:
                _put_str(out, name)
                out += struct.pack("<I", version)
            out += struct.pack("<I", len(opb))
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
            shape = _blob_shape(blob)
            own = _shape(operator_class)
            if shape is not None and shape != own:
                if (shape, from_version) not in tuple(operator_class.SHAPE_MIGRATES_FROM):
                    raise Err(types.Error_State(
                        f"the state has shape `{shape}` (version {from_version}); this operator's state "
                        f"is `{own}` (version {operator_class.STATE_VERSION}) and it does not declare a "
                        f"migration from `{shape}` version {from_version}"))
            elif from_version not in self.accepts():
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


def _shape(operator_class):
    return operator_class.STATE_SHAPE or operator_class.__qualname__


def _put_str(out, s):
    b = s.encode()
    out += struct.pack("<I", len(b))
    out += b


def _get_str(blob, at):
    (n,) = struct.unpack_from("<I", blob, at)
    at += 4
    if at + n > len(blob):
        raise ValueError("state envelope truncated")
    return blob[at:at + n].decode(), at + n


def _blob_shape(blob):
    """The shape a blob records, or None (format 1, or not an envelope)."""
    try:
        if blob[:4] == MAGIC and blob[4] == FORMAT_VERSION:
            return _get_str(blob, 9)[0]
    except (IndexError, struct.error, ValueError, UnicodeDecodeError):
        pass
    return None


def _parse(blob, from_version, op):
    if blob[:4] != MAGIC:
        raise ValueError("not a Weir state envelope (bad magic)")
    fmt, version = struct.unpack_from("<BI", blob, 4)
    if fmt not in (FORMAT_VERSION, FORMAT_WITHOUT_SHAPE):
        raise ValueError(f"state envelope format {fmt} is not supported")
    if version != from_version:
        raise ValueError(f"the blob says state version {version} but the host says {from_version}")
    at = 9
    shape = None
    if fmt == FORMAT_VERSION:
        shape, at = _get_str(blob, at)
        (n,) = struct.unpack_from("<I", blob, at)
        at += 4
        for _ in range(n):
            _, at = _get_str(blob, at)
            at += 4
    own = _shape(type(op))
    (oplen,) = struct.unpack_from("<I", blob, at)
    at += 4
    op.decode_operator(blob[at:at + oplen], version)
    at += oplen
    (count,) = struct.unpack_from("<Q", blob, at)
    at += 8
    states = {}
    decode = op.decode_state
    if shape is not None and shape != own:
        def decode(data, version):
            return op.migrate_shape(shape, version, data)
    for _ in range(count):
        (klen,) = struct.unpack_from("<I", blob, at)
        at += 4
        key = blob[at:at + klen]
        at += klen
        (vlen,) = struct.unpack_from("<I", blob, at)
        at += 4
        if at + vlen > len(blob) or len(key) != klen:
            raise ValueError("state envelope truncated")
        try:
            value = decode(blob[at:at + vlen], version)
        except Exception as e:  # noqa: BLE001 - reported with the key
            raise ValueError(f"state of key {key!r} does not decode: {_reason(e)}") from e
        if value is not None:
            states[key] = value
        at += vlen
    if at != len(blob):
        raise ValueError("trailing bytes after the last state entry")
    return states


def log(level, message):
    """Write a line to the host's log; `level` is one of trace, debug, info, warn, error."""
    host.log(getattr(types.Level, level.upper()), message)
