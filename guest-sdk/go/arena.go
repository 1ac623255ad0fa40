package weir

// The memory the WASI preview1 adapter allocates from.
//
// The adapter that turns a wasip1 module into a component allocates its
// state and stack lazily, on its first WASI call, through the main module's
// `cabi_realloc`. Go runs its first WASI calls (random seed, clock) while
// its runtime starts, when no `go:wasmexport` function may be called yet. So
// the adapter gets this arena instead: Weir's componentize step finds it by
// the magic at its start and adds a `cabi_realloc_adapter` export, a bump
// allocator over it, to the module (build-support `componentize`). The Go
// runtime never touches it (it holds no pointers and the SDK never writes it).

// arenaBytes is the arena's size: the adapter's state and its 64 KiB stack.
const arenaBytes = 256 << 10

// adapterArena starts with the magic and its size in decimal digits, ended
// by ';' (no zero bytes: the linker splits data segments at runs of zeros).
var adapterArena = [arenaBytes]byte{
	'W', 'E', 'I', 'R', '-', 'G', 'O', '-', 'A', 'D', 'A', 'P', 'T', 'E', 'R', '-',
	'A', 'R', 'E', 'N', 'A', '-', 'V', '1',
	'2', '6', '2', '1', '4', '4', ';', // arenaBytes
}

// arenaRef keeps the arena in the binary.
var arenaRef *[arenaBytes]byte

func init() { arenaRef = &adapterArena }
