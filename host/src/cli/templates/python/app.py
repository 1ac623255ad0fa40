"""@NAME@: a Weir operator. It counts the records of each key and emits
{"count":N} for each record, keyed as the record was."""

from weir_guest import Operator, export


class Counter(Operator):
    STATE_SHAPE = "@NAME@.count"

    def on_event(self, key, value, timestamp, state, ctx):
        n = (state.get() or 0) + 1  # raise to dead-letter the record
        state.set(n)
        ctx.emit(key, b'{"count":%d}' % n, timestamp)

    def encode_state(self, n):
        return n.to_bytes(8, "little")

    def decode_state(self, data, version):
        return int.from_bytes(data, "little")


Operator, State = export(Counter)
