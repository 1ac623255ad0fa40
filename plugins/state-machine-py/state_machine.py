"""Pattern validation as in the classic Flink state-machine example, in
Python: the same DFA, alerts and state encoding as plugins/state-machine
(Rust), so savepoints move between the two.

Per-key state is the state's index (0 INITIAL, 1 W, 2 X, 3 Y, 4 Z), stored
as one byte: the postcard encoding the Rust plugin uses.
"""

from weir_guest import Operator

NAMES = ("INITIAL", "W", "X", "Y", "Z", "TERMINAL")
TERMINAL = 5
# (state, event byte) -> next state
TRANSITIONS = {
    (0, 97): 1,  # INITIAL -a-> W
    (0, 99): 2,  # INITIAL -c-> X
    (1, 98): 3,  # W -b-> Y
    (2, 98): 3,  # X -b-> Y
    (2, 100): 4,  # X -d-> Z
    (3, 101): 4,  # Y -e-> Z
    (4, 103): TERMINAL,  # Z -g-> TERMINAL
}


class StateMachine(Operator):
    # The shape every language's state-machine plugin declares (wit/STATE.md).
    STATE_SHAPE = "weir.state-machine"

    def on_event(self, key, value, timestamp, state, ctx):
        fields = value.split(b",", 2)
        if len(fields) < 2:
            raise ValueError(f"expected `address,event`, got {value!r}")
        address = int(fields[0])
        if not 0 <= address <= 0xFFFFFFFF:
            raise ValueError(f"address {address} is not a u32")
        event = fields[1]
        if len(event) != 1 or not 97 <= event[0] <= 103:
            raise ValueError(f"unknown event {event.decode(errors='replace')!r} (expected a letter a-g)")
        current = state.get() or 0
        nxt = TRANSITIONS.get((current, event[0]))
        if nxt is None:
            alert = '{"address":%d,"state":"%s","event":"%s"}' % (address, NAMES[current], chr(event[0]))
            ctx.emit(key, alert.encode(), timestamp)
        elif nxt == TERMINAL:
            state.clear()
        else:
            state.set(nxt)

    def encode_state(self, value):
        return bytes((value,))

    def decode_state(self, data, version):
        if len(data) != 1 or data[0] > 4:
            raise ValueError(f"bad state-machine value {data!r}")
        return data[0]
