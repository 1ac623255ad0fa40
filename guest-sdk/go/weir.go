// Package weir is the Go SDK for Weir operators: standard Go (1.26, GOOS=wasip1
// GOARCH=wasm, -buildmode=c-shared), the same shape as the Rust SDK.
//
// An operator implements [Operator] and registers itself in an init function:
//
//	type counter struct{}
//
//	func (counter) OnEvent(rec *weir.Record, state *weir.KeyState, ctx *weir.Ctx) error {
//		n, _ := state.Get()
//		...
//		state.Set(next)
//		ctx.Emit(rec.Key, out, rec.Timestamp)
//		return nil // or an error: the record goes to the dead-letter output
//	}
//
//	func init() { weir.Register(counter{}, weir.Options{}) }
//	func main() {}
//
// The SDK implements every export of the `operator-plugin` world: it decodes
// packed batches without copying, keeps per-key state (bytes, in a Go map),
// builds the packed output, and writes and reads snapshots as the keyed
// state envelope of wit/STATE.md (entries sorted by key), so savepoints move
// between this SDK and the others.
//
// Build (from the operator's folder; `scripts/go-operator.sh` does both):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o op.core.wasm .
//	weir component new op.core.wasm -o op.wasm
//
// The component imports WASI through the preview1 adapter; the host gives
// it the deterministic WASI profile described in the README.
package weir

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
)

// NoTimestamp is the timestamp of a record that has none.
const NoTimestamp int64 = math.MinInt64

// Level is the severity of a log line.
type Level uint32

// Log levels, as in the WIT `level` enum.
const (
	LevelTrace Level = iota
	LevelDebug
	LevelInfo
	LevelWarn
	LevelError
)

// KV is one entry of the job's `config` table.
type KV struct{ Key, Value string }

// Config is the job's `config` table for the operator.
type Config []KV

// Get returns the value of key, if set.
func (c Config) Get(key string) (string, bool) {
	for _, kv := range c {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

// Int returns key's value as an integer, or def when it is not set.
func (c Config) Int(key string, def int64) (int64, error) {
	v, ok := c.Get(key)
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, &ConfigError{Msg: fmt.Sprintf("%s: %q is not an integer", key, v)}
	}
	return n, nil
}

// Record is one input record. Key and Value point into the batch the host
// sent, and the Record itself is reused for the next record: copy what you
// keep past the handler.
type Record struct {
	Key, Value []byte
	// Event time in ms since the Unix epoch, or NoTimestamp.
	Timestamp int64
}

// Timer is an event-time timer: fire for Key once the watermark reaches Time.
type Timer struct {
	Key  []byte
	Time int64
}

// Operator is a stream operator. Keyed state is bytes per key, encoded as
// the operator likes.
type Operator interface {
	// OnEvent handles one record with its key's state. A non-nil error
	// rejects the record (it goes to the dead-letter output with the
	// error's text) and the stream goes on.
	OnEvent(rec *Record, state *KeyState, ctx *Ctx) error
}

// Initializer is implemented by operators that read the job's config.
type Initializer interface {
	Init(config Config) error
}

// TimerHandler is implemented by operators that register timers.
type TimerHandler interface {
	OnTimer(key []byte, time int64, state *KeyState, ctx *Ctx) error
}

// OperatorState is implemented by operators with state not tied to a key;
// it is the envelope's operator bytes.
type OperatorState interface {
	SnapshotOperator() []byte
	RestoreOperator(b []byte, fromVersion uint32) error
}

// ValueMigrator is implemented by operators that restore per-key values
// written by an older state version.
type ValueMigrator interface {
	MigrateValue(value []byte, fromVersion uint32) ([]byte, error)
}

// ValueChecker is implemented by operators that check each restored value:
// a value the operator does not read exactly (a byte too many, another
// type's encoding) makes restore fail, naming the key.
type ValueChecker interface {
	CheckValue(value []byte) error
}

// ShapeMigrator is implemented by operators that take over state of
// another shape (one of Options.ShapeMigratesFrom): the value to keep, or
// keep=false to drop the key.
type ShapeMigrator interface {
	MigrateShape(shape string, version uint32, value []byte) (v []byte, keep bool, err error)
}

// ShapeRef names a state shape and version (wit/STATE.md).
type ShapeRef struct {
	Name    string
	Version uint32
}

// Options are the operator's state versions and shape.
type Options struct {
	// The state schema version snapshots are written with (default 1).
	StateVersion uint32
	// The versions restore accepts (default: StateVersion only).
	Accepts []uint32
	// The name of the state's shape, recorded in snapshots (default: the
	// operator's Go type, as %T prints it).
	StateShape string
	// Shapes of other operators' state that MigrateShape takes over.
	ShapeMigratesFrom []ShapeRef
}

// ConfigError is an error in the job's config (the WIT `config` error).
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

// StateError is a state blob that cannot be restored (the WIT `state` error).
type StateError struct{ Msg string }

func (e *StateError) Error() string { return e.Msg }

type errorString string

func (e errorString) Error() string { return string(e) }

var registered struct {
	op    Operator
	opts  Options
	state map[string][]byte
}

// Register makes op the plugin's operator. Call it from an init function.
func Register(op Operator, opts Options) {
	if opts.StateShape == "" {
		opts.StateShape = fmt.Sprintf("%T", op)
	}
	if opts.StateVersion == 0 {
		opts.StateVersion = 1
	}
	if !slices.Contains(opts.Accepts, opts.StateVersion) {
		opts.Accepts = append(opts.Accepts, opts.StateVersion)
	}
	registered.op = op
	registered.opts = opts
	registered.state = map[string][]byte{}
}

// KeyState is the state of the key being handled.
type KeyState struct {
	key   []byte
	value []byte
	ok    bool
	dirty bool
	// The stored value when the handler started (nil: none).
	stored []byte
}

// Key is the key this state belongs to.
func (s *KeyState) Key() []byte { return s.key }

// Get returns the key's value, if it has one.
func (s *KeyState) Get() ([]byte, bool) { return s.value, s.ok }

// Set replaces the key's value. The SDK copies v when the handler returns
// (into the old value's bytes when the length is the same), so v may be a
// shared or reused buffer, but must not change before the handler returns.
func (s *KeyState) Set(v []byte) {
	s.value, s.ok, s.dirty = v, true, true
}

// Clear removes the key's value: a key without state has no entry.
func (s *KeyState) Clear() { s.value, s.ok, s.dirty = nil, false, true }

func loadState(key []byte) KeyState {
	v, ok := registered.state[string(key)]
	return KeyState{key: key, value: v, ok: ok, stored: v}
}

func (s *KeyState) store() {
	if !s.dirty {
		return
	}
	if !s.ok {
		delete(registered.state, string(s.key))
		return
	}
	// An existing value of the same length is overwritten in place: no
	// allocation and no map write (the usual case for fixed-size states).
	if s.stored != nil && len(s.stored) == len(s.value) {
		copy(s.stored, s.value)
		return
	}
	v := bytes.Clone(s.value)
	if v == nil {
		v = []byte{}
	}
	registered.state[string(s.key)] = v
}

type rejection struct {
	index  uint32
	reason string
}

// Ctx collects what a call emits: records, timers, rejections.
type Ctx struct {
	keys, values       []byte
	keyEnds, valueEnds []uint32
	times              []int64
	timers             []Timer
	rejected           []rejection
	watermark          int64
	key                []byte
	// Reused for every record of a call: passed through an interface, a
	// fresh one per record would be a heap allocation per record.
	rec   Record
	state KeyState
}

// Emit passes a record downstream (timestamp NoTimestamp for none).
func (c *Ctx) Emit(key, value []byte, timestamp int64) {
	c.keys = append(c.keys, key...)
	c.keyEnds = append(c.keyEnds, uint32(len(c.keys)))
	c.values = append(c.values, value...)
	c.valueEnds = append(c.valueEnds, uint32(len(c.values)))
	c.times = append(c.times, timestamp)
}

// RegisterTimer fires OnTimer for the current key once the watermark
// reaches time (ms).
func (c *Ctx) RegisterTimer(time int64) {
	c.timers = append(c.timers, Timer{Key: bytes.Clone(c.key), Time: time})
}

// Watermark is the event-time watermark of the call (ms), or NoTimestamp
// before the first one.
func (c *Ctx) Watermark() int64 { return c.watermark }

type inBatch struct {
	keys, values       []byte
	keyEnds, valueEnds []uint32
	times              []int64
}

func initOperator(config []KV) error {
	if registered.op == nil {
		return errorString("no operator registered: call weir.Register in an init function")
	}
	if in, ok := registered.op.(Initializer); ok {
		return in.Init(Config(config))
	}
	return nil
}

func process(b *inBatch, watermark int64) (*Ctx, error) {
	ctx := &Ctx{watermark: watermark}
	var kStart, vStart uint32
	for i := range b.times {
		kEnd, vEnd := b.keyEnds[i], b.valueEnds[i]
		if kEnd < kStart || vEnd < vStart || int(kEnd) > len(b.keys) || int(vEnd) > len(b.values) {
			return nil, errorString("malformed batch: offsets out of range")
		}
		rec, st := &ctx.rec, &ctx.state
		*rec = Record{Key: b.keys[kStart:kEnd], Value: b.values[vStart:vEnd], Timestamp: b.times[i]}
		kStart, vStart = kEnd, vEnd
		ctx.key = rec.Key
		*st = loadState(rec.Key)
		if err := registered.op.OnEvent(rec, st, ctx); err != nil {
			ctx.rejected = append(ctx.rejected, rejection{index: uint32(i), reason: err.Error()})
			continue
		}
		st.store()
	}
	return ctx, nil
}

func onTimers(fired []Timer, watermark int64) (*Ctx, error) {
	ctx := &Ctx{watermark: watermark}
	h, ok := registered.op.(TimerHandler)
	if !ok {
		return ctx, nil
	}
	for _, t := range fired {
		ctx.key = t.Key
		st := &ctx.state
		*st = loadState(t.Key)
		if err := h.OnTimer(t.Key, t.Time, st, ctx); err != nil {
			return nil, err
		}
		st.store()
	}
	return ctx, nil
}

// snapshot writes the keyed state envelope (wit/STATE.md), entries sorted.
func snapshot() ([]byte, error) {
	var op []byte
	if s, ok := registered.op.(OperatorState); ok {
		op = s.SnapshotOperator()
	}
	keys := make([]string, 0, len(registered.state))
	size := 4 + 1 + 4 + 4 + len(op) + 8
	for k, v := range registered.state {
		keys = append(keys, k)
		size += 8 + len(k) + len(v)
	}
	slices.Sort(keys)
	out := make([]byte, 0, size)
	out = append(out, "WEIR"...)
	out = append(out, 2)
	out = appendU32(out, registered.opts.StateVersion)
	out = appendU32(out, uint32(len(registered.opts.StateShape)))
	out = append(out, registered.opts.StateShape...)
	out = appendU32(out, uint32(len(registered.opts.ShapeMigratesFrom)))
	for _, m := range registered.opts.ShapeMigratesFrom {
		out = appendU32(out, uint32(len(m.Name)))
		out = append(out, m.Name...)
		out = appendU32(out, m.Version)
	}
	out = appendU32(out, uint32(len(op)))
	out = append(out, op...)
	out = appendU64(out, uint64(len(keys)))
	for _, k := range keys {
		v := registered.state[k]
		out = appendU32(out, uint32(len(k)))
		out = append(out, k...)
		out = appendU32(out, uint32(len(v)))
		out = append(out, v...)
	}
	return out, nil
}

func restore(b []byte, fromVersion uint32) error {
	own := registered.opts.StateShape
	r := reader{b: b}
	if string(r.take(4)) != "WEIR" {
		return &StateError{Msg: "not a Weir state envelope (wrong magic)"}
	}
	format := r.take(1)
	if len(format) != 1 || (format[0] != 1 && format[0] != 2) {
		return &StateError{Msg: "unknown state envelope format version"}
	}
	r.u32() // the state version inside the blob; the host passes it too
	foreign := ""
	if format[0] == 2 {
		if shape := string(r.take(int(r.u32()))); shape != own {
			foreign = shape
		}
		for i, n := uint32(0), r.u32(); i < n && r.err == nil; i++ {
			r.take(int(r.u32()))
			r.u32()
		}
	}
	shapeMigrate, _ := registered.op.(ShapeMigrator)
	if foreign != "" {
		if !slices.Contains(registered.opts.ShapeMigratesFrom, ShapeRef{foreign, fromVersion}) || shapeMigrate == nil {
			return &StateError{Msg: fmt.Sprintf("the state has shape `%s` (version %d); this operator's state is `%s` (version %d) and it does not declare a migration from `%s` version %d", foreign, fromVersion, own, registered.opts.StateVersion, foreign, fromVersion)}
		}
	} else if !slices.Contains(registered.opts.Accepts, fromVersion) {
		return &StateError{Msg: fmt.Sprintf("state version %d is not one this operator restores (%v)", fromVersion, registered.opts.Accepts)}
	}
	op := r.take(int(r.u32()))
	n := r.u64()
	state := make(map[string][]byte, min(n, uint64(len(b))/8))
	migrate, _ := registered.op.(ValueMigrator)
	check, _ := registered.op.(ValueChecker)
	for i := uint64(0); i < n && r.err == nil; i++ {
		k := r.take(int(r.u32()))
		v := bytes.Clone(r.take(int(r.u32())))
		if r.err != nil {
			break
		}
		if foreign != "" {
			var keep bool
			var err error
			if v, keep, err = shapeMigrate.MigrateShape(foreign, fromVersion, v); err != nil {
				return &StateError{Msg: err.Error()}
			} else if !keep {
				continue
			}
		} else if migrate != nil && fromVersion != registered.opts.StateVersion {
			var err error
			if v, err = migrate.MigrateValue(v, fromVersion); err != nil {
				return &StateError{Msg: err.Error()}
			}
		}
		if check != nil {
			if err := check.CheckValue(v); err != nil {
				return &StateError{Msg: fmt.Sprintf("state of key %q does not decode: %v", k, err)}
			}
		}
		state[string(k)] = v
	}
	if r.err != nil {
		return &StateError{Msg: r.err.Error()}
	}
	if len(r.b) != 0 {
		return &StateError{Msg: fmt.Sprintf("%d trailing bytes after the last entry", len(r.b))}
	}
	if s, ok := registered.op.(OperatorState); ok {
		if err := s.RestoreOperator(bytes.Clone(op), fromVersion); err != nil {
			return &StateError{Msg: err.Error()}
		}
	}
	registered.state = state
	return nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = errors.New("a length runs past the end of the state blob")
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u32() uint32 {
	b := r.take(4)
	if b == nil {
		return 0
	}
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func (r *reader) u64() uint64 {
	lo := uint64(r.u32())
	return lo | uint64(r.u32())<<32
}

func appendU32(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

func appendU64(b []byte, v uint64) []byte {
	return appendU32(appendU32(b, uint32(v)), uint32(v>>32))
}

func describe(r any) string {
	if e, ok := r.(error); ok {
		return e.Error()
	}
	return fmt.Sprint(r)
}

func keepAlive(b []byte) { runtime.KeepAlive(b) }
