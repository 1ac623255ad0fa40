// Test plugin in Go that puts what WASI gives it in its output, and does
// what a plugin may not, as its config `mode` says.
//
// Each record becomes `value,salt,clock,count`: `salt` mixes bytes drawn
// when the instance starts from crypto/rand, math/rand/v2 (seeded by the Go runtime from
// WASI random) and the iteration order of a Go map (randomized by the
// runtime), `clock` is time.Now() in nanoseconds, and `count` the key's
// running count (keyed state, so a restore is checked).
//
// Modes: "" (just that), "flood" (writes 100 MB to stdout in the first
// batch), "exit" (calls os.Exit(3) on a record whose event is "exit"),
// "open" (tries to read and write files at init; logs what it got).
package main

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"weir.dev/guest"
)

type probe struct {
	mode    string
	salt    uint64
	flooded bool
}

// drawSalt runs at package init, when the instance starts: a restored
// instance calls restore before Init, which draws from the runtime's random
// stream too (every new map does), so draws in Init would follow another
// history there.
func drawSalt() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	salt := binary.LittleEndian.Uint64(b[:]) ^ mrand.Uint64()
	order := map[string]int{}
	for i := range 16 {
		order[strconv.Itoa(i)] = i
	}
	for k := range order {
		n, _ := strconv.Atoi(k)
		salt = salt*31 + uint64(n)
	}
	return salt
}

func (p *probe) Init(config weir.Config) error {
	p.mode, _ = config.Get("mode")
	if p.mode == "open" {
		if _, err := os.ReadFile("/etc/passwd"); err != nil {
			fmt.Fprintf(os.Stderr, "wasi-probe: reading /etc/passwd failed: %v\n", err)
		} else {
			fmt.Fprintln(os.Stderr, "wasi-probe: read /etc/passwd")
		}
		if err := os.WriteFile("escape.txt", []byte("x"), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "wasi-probe: writing escape.txt failed: %v\n", err)
		} else {
			fmt.Fprintln(os.Stderr, "wasi-probe: wrote escape.txt")
		}
	}
	return nil
}

func (p *probe) OnEvent(rec *weir.Record, state *weir.KeyState, ctx *weir.Ctx) error {
	if p.mode == "flood" && !p.flooded {
		p.flooded = true
		chunk := []byte(strings.Repeat("flood ", 1<<16/6) + "\n")
		for written := 0; written < 100<<20; written += len(chunk) {
			os.Stdout.Write(chunk)
		}
	}
	if p.mode == "exit" && strings.Contains(string(rec.Value), ",exit,") {
		os.Exit(3)
	}
	var count uint64
	if v, ok := state.Get(); ok && len(v) == 8 {
		count = binary.LittleEndian.Uint64(v)
	}
	count++
	state.Set(binary.LittleEndian.AppendUint64(nil, count))
	out := fmt.Sprintf("%s,%016x,%d,%d", rec.Value, p.salt, time.Now().UnixNano(), count)
	ctx.Emit(rec.Key, []byte(out), rec.Timestamp)
	return nil
}

func init() { weir.Register(&probe{salt: drawSalt()}, weir.Options{}) }

func main() {}
