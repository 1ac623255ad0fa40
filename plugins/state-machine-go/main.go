// Pattern validation as in the classic Flink state-machine example, in Go:
// the same DFA, alerts and state encoding as plugins/state-machine (Rust),
// so savepoints move between them. Per-key state is the state's index
// (1 W, 2 X, 3 Y, 4 Z) as one byte, as postcard encodes the Rust enum;
// INITIAL is "no state".
package main

import (
	"errors"
	"fmt"
	"strconv"

	"weir.dev/guest"
)

var names = [...]string{"INITIAL", "W", "X", "Y", "Z", "TERMINAL"}

const terminal = 5

// transitions[state][event-'a']: the next state, or -1.
var transitions = [5][7]int8{
	{1, -1, 2, -1, -1, -1, -1},         // INITIAL: a -> W, c -> X
	{-1, 3, -1, -1, -1, -1, -1},        // W: b -> Y
	{-1, 3, -1, 4, -1, -1, -1},         // X: b -> Y, d -> Z
	{-1, -1, -1, -1, 4, -1, -1},        // Y: e -> Z
	{-1, -1, -1, -1, -1, -1, terminal}, // Z: g -> TERMINAL
}

type stateMachine struct{ alert []byte }

// encoded[s] is state s as stored: one byte, its index.
var encoded = [5][]byte{{0}, {1}, {2}, {3}, {4}}

// parse splits `address,event[,...]` into the address and the event letter.
func parse(v []byte) (uint32, byte, error) {
	comma := -1
	for i, b := range v {
		if b == ',' {
			comma = i
			break
		}
	}
	if comma < 0 {
		return 0, 0, fmt.Errorf("expected `address,event`, got %q", v)
	}
	if comma == 0 || comma > 10 {
		return 0, 0, fmt.Errorf("address %q is not a u32", v[:comma])
	}
	var address uint64
	for _, d := range v[:comma] {
		if d < '0' || d > '9' {
			return 0, 0, fmt.Errorf("address %q is not a u32", v[:comma])
		}
		address = address*10 + uint64(d-'0')
	}
	if address > 0xFFFFFFFF {
		return 0, 0, fmt.Errorf("address %q is not a u32", v[:comma])
	}
	rest := v[comma+1:]
	for i, b := range rest {
		if b == ',' {
			rest = rest[:i]
			break
		}
	}
	if len(rest) != 1 || rest[0] < 'a' || rest[0] > 'g' {
		return 0, 0, fmt.Errorf("unknown event %q (expected a letter a-g)", rest)
	}
	return uint32(address), rest[0], nil
}

func (m *stateMachine) OnEvent(rec *weir.Record, state *weir.KeyState, ctx *weir.Ctx) error {
	address, event, err := parse(rec.Value)
	if err != nil {
		return err
	}
	current := 0
	if v, ok := state.Get(); ok {
		if len(v) != 1 || v[0] < 1 || v[0] > 4 {
			return errors.New("corrupt state")
		}
		current = int(v[0])
	}
	switch next := transitions[current][event-'a']; {
	case next < 0:
		a := append(m.alert[:0], `{"address":`...)
		a = strconv.AppendUint(a, uint64(address), 10)
		a = append(a, `,"state":"`...)
		a = append(a, names[current]...)
		a = append(a, `","event":"`...)
		a = append(a, event, '"', '}')
		m.alert = a
		ctx.Emit(rec.Key, a, rec.Timestamp)
	case next == terminal:
		state.Clear()
	default:
		state.Set(encoded[next])
	}
	return nil
}

// CheckValue accepts exactly one byte, a state index 1-4.
func (*stateMachine) CheckValue(v []byte) error {
	if len(v) != 1 || v[0] < 1 || v[0] > 4 {
		return fmt.Errorf("a state is one byte (the state's index 1-4), got %d bytes", len(v))
	}
	return nil
}

// The shape every language's state-machine plugin declares (wit/STATE.md).
func init() {
	weir.Register(&stateMachine{}, weir.Options{StateVersion: 1, StateShape: "weir.state-machine"})
}

func main() {}
