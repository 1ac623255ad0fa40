// Test plugin: the Rust session plugin (tests/plugins/session-plugin) in
// Go, to hold the Go SDK's timers and config to the Rust SDK's. Per key, a
// session of events ends when no event arrives for `gap_ms` of event time;
// the plugin then emits {"key":K,"count":N,"start":S,"end":E}. Every event
// registers a timer at its time + gap.
package main

import (
	"encoding/binary"
	"errors"
	"fmt"

	"weir.dev/guest"
)

type sessions struct{ gap int64 }

// A session as stored: start, last, count (little-endian, 8 bytes each).
type session struct{ start, last, count int64 }

func get(state *weir.KeyState) (session, bool) {
	v, ok := state.Get()
	if !ok || len(v) != 24 {
		return session{}, false
	}
	return session{
		int64(binary.LittleEndian.Uint64(v)),
		int64(binary.LittleEndian.Uint64(v[8:])),
		int64(binary.LittleEndian.Uint64(v[16:])),
	}, true
}

func set(state *weir.KeyState, s session) {
	var b [24]byte
	binary.LittleEndian.PutUint64(b[:], uint64(s.start))
	binary.LittleEndian.PutUint64(b[8:], uint64(s.last))
	binary.LittleEndian.PutUint64(b[16:], uint64(s.count))
	state.Set(b[:])
}

func (p *sessions) Init(config weir.Config) error {
	gap, err := config.Int("gap_ms", 1000)
	p.gap = gap
	return err
}

func emit(key []byte, state *weir.KeyState, ctx *weir.Ctx) {
	if s, ok := get(state); ok {
		line := fmt.Sprintf(`{"key":"%s","count":%d,"start":%d,"end":%d}`, key, s.count, s.start, s.last)
		ctx.Emit(key, []byte(line), s.last)
	}
	state.Clear()
}

func (p *sessions) OnEvent(rec *weir.Record, state *weir.KeyState, ctx *weir.Ctx) error {
	ts := rec.Timestamp
	if ts == weir.NoTimestamp {
		return errors.New("record has no timestamp")
	}
	// A session whose gap has passed in event time ends here, whether or
	// not its timer fired yet.
	if s, ok := get(state); ok && s.last+p.gap <= ts {
		emit(rec.Key, state, ctx)
	}
	if s, ok := get(state); ok {
		s.last = max(s.last, ts)
		s.count++
		set(state, s)
	} else {
		set(state, session{start: ts, last: ts, count: 1})
	}
	ctx.RegisterTimer(ts + p.gap)
	return nil
}

func (p *sessions) OnTimer(key []byte, time int64, state *weir.KeyState, ctx *weir.Ctx) error {
	if s, ok := get(state); ok && s.last+p.gap <= time {
		emit(key, state, ctx)
	}
	return nil
}

func init() { weir.Register(&sessions{}, weir.Options{}) }

func main() {}
