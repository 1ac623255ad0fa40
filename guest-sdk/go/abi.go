package weir

// The canonical-ABI glue between the host and a Go operator, written once:
// the exports of the `operator-plugin` world (weir:plugin@0.1.0), lowered by
// hand to `go:wasmexport` functions, and the `log` import.
//
// Memory the host writes arguments into comes from cabi_realloc and is kept
// alive (pinned) until the call that reads it returns; what a call returns
// is pinned until the next call starts, after the host has read it.

import (
	"runtime"
	"runtime/debug"
	"unsafe"
)

//go:wasmimport weir:plugin/host@0.1.0 log
func hostLog(level uint32, ptr uint32, n uint32)

// Memory handed to the host or received from it, kept alive while the host
// may read it.
var (
	argPins    [][]uint64
	resultPins [][]uint64
)

// Arguments are allocated from an arena the SDK reserves inside export
// calls, because cabi_realloc runs outside them: there the Go runtime may
// not call an import, and growing the heap can (it reads the clock). The
// arena starts at 2 MiB and 128 KiB (a default batch of 1 MiB of keys and
// values, twice, with the offsets and times of 8192 records) and is grown
// after a call to twice the largest set of arguments seen; arguments that
// do not fit are allocated from the heap (safe in a fresh instance, such as
// a restore's).
var (
	argArena []uint64
	argUsed  int
	argNeed  int
)

func init() { argArena = make([]uint64, (2<<20+128<<10)/8) }

func alloc(size, align uint32) uint32 {
	if size == 0 {
		return align
	}
	n := int((size + 7) / 8)
	argNeed += n
	if argUsed+n <= len(argArena) {
		p := uint32(uintptr(unsafe.Pointer(&argArena[argUsed])))
		argUsed += n
		return p
	}
	words := make([]uint64, n)
	argPins = append(argPins, words)
	return uint32(uintptr(unsafe.Pointer(&words[0])))
}

//go:wasmexport cabi_realloc
func cabiRealloc(old, oldSize, align, newSize uint32) uint32 {
	p := alloc(newSize, align)
	if old != 0 && oldSize != 0 {
		n := min(oldSize, newSize)
		copy(bytesAt(p, n), bytesAt(old, n))
	}
	return p
}

// bytesAt is the guest memory [p, p+n).
func bytesAt(p, n uint32) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(uintptr(p))), n)
}

func u32sAt(p, n uint32) []uint32 {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(uintptr(p))), n)
}

func i64sAt(p, n uint32) []int64 {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*int64)(unsafe.Pointer(uintptr(p))), n)
}

func stringAt(p, n uint32) string {
	return string(bytesAt(p, n))
}

// A return area of `words` 8-byte words, pinned until the next call.
type retArea []uint64

func newRet(words int) retArea {
	r := make(retArea, words)
	resultPins = append(resultPins, r)
	return r
}

func (r retArea) ptr() uint32 { return uint32(uintptr(unsafe.Pointer(&r[0]))) }

func (r retArea) bytes() []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&r[0])), len(r)*8)
}

func (r retArea) setU8(off int, v uint8) { r.bytes()[off] = v }

func (r retArea) setU32(off int, v uint32) {
	*(*uint32)(unsafe.Pointer(&r.bytes()[off])) = v
}

// lower pins the bytes of b for the host and returns (ptr, len).
func lowerBytes(b []byte) (uint32, uint32) {
	if len(b) == 0 {
		return 0, 0
	}
	words := make([]uint64, (len(b)+7)/8)
	dst := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(b))
	copy(dst, b)
	resultPins = append(resultPins, words)
	return uint32(uintptr(unsafe.Pointer(&words[0]))), uint32(len(b))
}

func lowerString(s string) (uint32, uint32) { return lowerBytes([]byte(s)) }

func lowerU32s(v []uint32) (uint32, uint32) {
	if len(v) == 0 {
		return 0, 0
	}
	words := make([]uint64, (len(v)+1)/2)
	copy(unsafe.Slice((*uint32)(unsafe.Pointer(&words[0])), len(v)), v)
	resultPins = append(resultPins, words)
	return uint32(uintptr(unsafe.Pointer(&words[0]))), uint32(len(v))
}

func lowerI64s(v []int64) (uint32, uint32) {
	if len(v) == 0 {
		return 0, 0
	}
	words := make([]uint64, len(v))
	copy(unsafe.Slice((*int64)(unsafe.Pointer(&words[0])), len(v)), v)
	resultPins = append(resultPins, words)
	return uint32(uintptr(unsafe.Pointer(&words[0]))), uint32(len(v))
}

// The garbage collector runs only inside export calls. Between them the host
// calls cabi_realloc to pass arguments, and a collection started there would
// read the clock, an import, which the component model forbids inside
// cabi_realloc. So the collector is off from the end of one call to the
// start of the next; a collection that is due starts at the next allocation
// inside a call. Memory profiling (which samples inside allocations) is off.
const gcPercent = 100

func init() {
	runtime.MemProfileRate = 0
	debug.SetGCPercent(-1)
}

// enter starts an export call: the previous call's results were read.
func enter() {
	resultPins = resultPins[:0]
	debug.SetGCPercent(gcPercent)
}

// leave ends an export call: its arguments are no longer needed.
func leave() {
	argPins = argPins[:0]
	if argNeed*2 > len(argArena) {
		argArena = make([]uint64, argNeed*2)
	}
	argUsed, argNeed = 0, 0
	debug.SetGCPercent(-1)
}

// setError writes `err(error)` into a result area whose payload starts at
// offset 4: variant `other`, or `config`/`state` for those error kinds.
func setError(r retArea, err error) {
	r.setU8(0, 1)
	kind := uint8(2)
	switch err.(type) {
	case *ConfigError:
		kind = 0
	case *StateError:
		kind = 1
	}
	r.setU8(4, kind)
	p, n := lowerString(err.Error())
	r.setU32(8, p)
	r.setU32(12, n)
}

// guard logs a panic's message at error level (the host quotes it), then
// lets it end the instance.
func guard() {
	if r := recover(); r != nil {
		Log(LevelError, "panicked: "+describe(r))
		panic(r)
	}
}

//go:wasmexport weir:plugin/operator@0.1.0#init
func exportInit(ptr, n uint32) uint32 {
	enter()
	defer leave()
	defer guard()
	words := u32sAt(ptr, n*4)
	config := make([]KV, n)
	for i := range config {
		w := words[i*4 : i*4+4]
		config[i] = KV{Key: stringAt(w[0], w[1]), Value: stringAt(w[2], w[3])}
	}
	r := newRet(2)
	if err := initOperator(config); err != nil {
		setError(r, err)
	}
	return r.ptr()
}

//go:wasmexport weir:plugin/operator@0.1.0#process
func exportProcess(kp, kn, kep, ken, vp, vn, vep, ven, tp, tn uint32, watermark int64) uint32 {
	enter()
	defer leave()
	defer guard()
	b := inBatch{
		keys:      bytesAt(kp, kn),
		keyEnds:   u32sAt(kep, ken),
		values:    bytesAt(vp, vn),
		valueEnds: u32sAt(vep, ven),
		times:     i64sAt(tp, tn),
	}
	if len(b.keyEnds) != len(b.times) || len(b.valueEnds) != len(b.times) {
		r := newRet(8)
		setError(r, errorString("malformed batch: the lists have different lengths"))
		return r.ptr()
	}
	out, err := process(&b, watermark)
	return lowerOutcome(out, err)
}

//go:wasmexport weir:plugin/operator@0.1.0#on-timers
func exportOnTimers(ptr, n uint32, watermark int64) uint32 {
	enter()
	defer leave()
	defer guard()
	fired := make([]Timer, n)
	raw := bytesAt(ptr, n*16)
	for i := range fired {
		e := raw[i*16 : i*16+16]
		kp := *(*uint32)(unsafe.Pointer(&e[0]))
		kn := *(*uint32)(unsafe.Pointer(&e[4]))
		fired[i] = Timer{Key: bytesAt(kp, kn), Time: *(*int64)(unsafe.Pointer(&e[8]))}
	}
	out, err := onTimers(fired, watermark)
	return lowerOutcome(out, err)
}

// lowerOutcome writes result<outcome, error>: 60 bytes, payload at 4.
func lowerOutcome(out *Ctx, err error) uint32 {
	r := newRet(8)
	if err != nil {
		setError(r, err)
		return r.ptr()
	}
	set := func(off int, p, n uint32) {
		r.setU32(off, p)
		r.setU32(off+4, n)
	}
	p, n := lowerBytes(out.keys)
	set(4, p, n)
	p, n = lowerU32s(out.keyEnds)
	set(12, p, n)
	p, n = lowerBytes(out.values)
	set(20, p, n)
	p, n = lowerU32s(out.valueEnds)
	set(28, p, n)
	p, n = lowerI64s(out.times)
	set(36, p, n)
	if len(out.timers) > 0 {
		words := make([]uint64, len(out.timers)*2)
		resultPins = append(resultPins, words)
		for i, t := range out.timers {
			kp, kn := lowerBytes(t.Key)
			words[i*2] = uint64(kp) | uint64(kn)<<32
			words[i*2+1] = uint64(t.Time)
		}
		set(44, uint32(uintptr(unsafe.Pointer(&words[0]))), uint32(len(out.timers)))
	} else {
		set(44, 0, 0)
	}
	if len(out.rejected) > 0 {
		words := make([]uint32, len(out.rejected)*3)
		for i, rj := range out.rejected {
			sp, sn := lowerString(rj.reason)
			words[i*3], words[i*3+1], words[i*3+2] = rj.index, sp, sn
		}
		p, _ := lowerU32s(words)
		set(52, p, uint32(len(out.rejected)))
	} else {
		set(52, 0, 0)
	}
	return r.ptr()
}

//go:wasmexport weir:plugin/state@0.1.0#version
func exportVersion() uint32 {
	enter()
	defer leave()
	defer guard()
	return registered.opts.StateVersion
}

//go:wasmexport weir:plugin/state@0.1.0#accepts
func exportAccepts() uint32 {
	enter()
	defer leave()
	defer guard()
	r := newRet(1)
	p, n := lowerU32s(registered.opts.Accepts)
	r.setU32(0, p)
	r.setU32(4, n)
	return r.ptr()
}

//go:wasmexport weir:plugin/state@0.1.0#snapshot
func exportSnapshot() uint32 {
	enter()
	defer leave()
	defer guard()
	r := newRet(2)
	blob, err := snapshot()
	if err != nil {
		setError(r, err)
		return r.ptr()
	}
	p, n := lowerBytes(blob)
	r.setU32(4, p)
	r.setU32(8, n)
	return r.ptr()
}

//go:wasmexport weir:plugin/state@0.1.0#restore
func exportRestore(ptr, n, fromVersion uint32) uint32 {
	enter()
	defer leave()
	defer guard()
	r := newRet(2)
	if err := restore(bytesAt(ptr, n), fromVersion); err != nil {
		setError(r, err)
	}
	return r.ptr()
}

// Log writes a line to the host's log, tagged with the plugin and task.
func Log(level Level, message string) {
	b := []byte(message)
	var p uint32
	if len(b) > 0 {
		p = uint32(uintptr(unsafe.Pointer(&b[0])))
	}
	hostLog(uint32(level), p, uint32(len(b)))
	keepAlive(b)
}
