//! The keyed state map: one value per key, built for millions of live keys
//! in a Wasm guest, with copy-on-write snapshots.
//!
//! # Layout
//! Two open-addressing tables with linear probing and backward-shift
//! deletion (no tombstones, so a table with a high churn of keys stays
//! short-probed). A bucket is the key and the value side by side: a lookup
//! reads one or two neighbouring buckets and compares whole words, with no
//! pointer to chase and no byte-wise compare. Keys up to 7 bytes (numbered
//! ids, the usual case) go to a table whose bucket key is one 8-byte word
//! (the bytes, then the length): 9 bytes a bucket for a one-byte value, so
//! more of the table stays in cache. Longer keys go to a table whose bucket
//! key is 16 bytes: keys up to 15 bytes inline (the 16th byte is the
//! length); a longer key lives in a side list and its bucket holds its index
//! and a hash of its bytes.
//!
//! # Snapshots without a pause
//! [`StateMap::freeze`] marks the current contents as the snapshot in
//! constant time; [`StateMap::next_chunk`] then writes the frozen entries out
//! a piece at a time while the map keeps changing. Before a bucket the
//! writer has not reached yet is changed (update, insert, delete, or an
//! entry moved by a deletion), its frozen entry is encoded into a side
//! buffer and the bucket is marked as handled, so the writer skips it: each
//! frozen entry is written exactly once, as it was at the freeze. When the
//! table grows during a snapshot (entries move), the frozen entries not yet
//! written are encoded into that buffer first: one extra encoding pass,
//! once per doubling of the table.

use serde::Serialize;

/// Keys up to this long go to the short table.
const SHORT: usize = 7;
/// Keys up to this long are stored inline in the wide table.
const INLINE: usize = 15;
/// The 16th byte of a key stored in the side list.
const LONG: u8 = 0xFF;
/// The table grows when more than 5/8 of its buckets are used. At 3/4,
/// 733k uniformly random keys filled a table of 1M buckets to 0.70, and
/// the Wasm state machine's guest work took 9-10% more per record than at
/// 5/8 (a table of 2M; `benches/guest_ab.rs`); on the generator's input,
/// whose 550k keys stay in 1M buckets either way, it was level.
const LOAD_NUM: usize = 5;
const LOAD_DEN: usize = 8;

/// A key as stored in a bucket of a table of `W`-byte keys (8 or 16).
///
/// Inline (up to `W - 1` bytes): the bytes, zero-padded, and the length in
/// the last byte. Long (16-byte table only): the index in the side list
/// (bytes 0..4), a hash of the bytes (4..12) and [`LONG`] in byte 15.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Repr<const W: usize>([u8; W]);

impl<const W: usize> Repr<W> {
    #[inline(always)]
    fn from_words(a: u64, b: u64) -> Self {
        let mut r = [0u8; W];
        r[..8].copy_from_slice(&a.to_le_bytes());
        if W == 16 {
            r[8..].copy_from_slice(&b.to_le_bytes());
        }
        Repr(r)
    }

    #[inline(always)]
    fn words(&self) -> (u64, u64) {
        let a = u64::from_le_bytes(self.0[..8].try_into().expect("8 bytes"));
        let b = if W == 16 {
            u64::from_le_bytes(self.0[8..].try_into().expect("8 bytes"))
        } else {
            0
        };
        (a, b)
    }

    #[inline(always)]
    fn is_long(&self) -> bool {
        self.0[W - 1] == LONG
    }

    #[inline(always)]
    fn long_index(&self) -> usize {
        u32::from_le_bytes(self.0[..4].try_into().expect("4 bytes")) as usize
    }

    /// The hash the table places this key by (independent of a long key's
    /// index, so a lookup can compute it from the bytes alone).
    #[inline(always)]
    fn hash(&self) -> u64 {
        let (a, b) = self.words();
        let a = if self.is_long() { a & !0xFFFF_FFFF } else { a };
        mix(a, b)
    }
}

/// Hash two words: every input bit reaches the top bits, which pick the
/// home bucket (keys that differ only in their last byte must not cluster).
#[inline(always)]
fn mix(a: u64, b: u64) -> u64 {
    let h = (a ^ 0x243F_6A88_85A3_08D3).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h ^ (h >> 29) ^ b).wrapping_mul(0xFF51_AFD7_ED55_8CCD)
}

/// Up to 7 bytes as a little-endian number, zero-padded, read with at most
/// three loads (overlapping loads OR the same bytes twice).
#[inline(always)]
fn partial_le(s: &[u8]) -> u64 {
    let n = s.len();
    debug_assert!(n < 8);
    if n >= 4 {
        let lo = u64::from(u32::from_le_bytes(s[..4].try_into().expect("4 bytes")));
        let hi = u64::from(u32::from_le_bytes(s[n - 4..].try_into().expect("4 bytes")));
        lo | hi << ((n - 4) * 8)
    } else if n > 0 {
        u64::from(s[0])
            | u64::from(s[n / 2]) << (8 * (n / 2))
            | u64::from(s[n - 1]) << (8 * (n - 1))
    } else {
        0
    }
}

/// 64-bit FNV-1a over a long key's bytes (long keys are the rare case).
fn bytes_hash(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A key being looked up in a table of `W`-byte keys.
struct Query<'k, const W: usize> {
    key: &'k [u8],
    /// Inline: the exact bucket key. Long: index 0 (compared apart).
    repr: Repr<W>,
    hash: u64,
}

impl<'k, const W: usize> Query<'k, W> {
    #[cfg(test)]
    fn new(key: &'k [u8]) -> Self {
        Self::with(key, key_hash(key))
    }

    #[inline(always)]
    fn with(key: &'k [u8], h: KeyHash) -> Self {
        Self {
            key,
            repr: Repr::from_words(h.a, h.b),
            hash: h.hash,
        }
    }
}

/// A key's bucket words and hash: for a key of up to [`SHORT`] bytes the
/// short table's one word (`b` is 0), for a longer one the wide table's two
/// (`b` is never 0: it holds the length or [`LONG`] in its top byte).
#[inline(always)]
fn key_hash(key: &[u8]) -> KeyHash {
    let n = key.len();
    // Word loads instead of a variable-length copy: in Wasm a copy of a few
    // bytes is a call (`memory.copy` or `memcpy`).
    let (a, b) = if n <= SHORT {
        (partial_le(key) | (n as u64) << 56, 0)
    } else if n <= INLINE {
        let (head, rest) = key.split_at(8);
        (
            u64::from_le_bytes(head.try_into().expect("8 bytes")),
            partial_le(rest) | (n as u64) << 56,
        )
    } else {
        // Bytes 4..12 the hash of the bytes, byte 15 LONG (the index, in
        // bytes 0..4, is set when the key is stored).
        let h = bytes_hash(key);
        ((h & 0xFFFF_FFFF) << 32, h >> 32 | u64::from(LONG) << 56)
    };
    KeyHash {
        a,
        b,
        hash: mix(a, b),
    }
}

/// A key's bucket form and hash, computed once for [`StateMap::prefetch`]
/// and [`StateMap::update_hashed`]: the runtime hashes a record's key
/// ahead of the record and fetches its bucket early.
#[derive(Clone, Copy)]
pub struct KeyHash {
    a: u64,
    b: u64,
    hash: u64,
}

impl KeyHash {
    /// A placeholder (the hash of no key in particular).
    pub const NONE: KeyHash = KeyHash {
        a: 0,
        b: 0,
        hash: 0,
    };

    /// Whether the key goes to the short table.
    #[inline(always)]
    fn is_short(&self) -> bool {
        self.b == 0
    }
}

struct Bucket<S, const W: usize> {
    key: Repr<W>,
    /// `None`: the bucket is empty.
    value: Option<S>,
}

/// Where a lookup ended.
#[derive(Clone, Copy)]
enum Probe {
    /// The key is in this bucket.
    Found(usize),
    /// The key is not in the map; this empty bucket is where it would go.
    Vacant(usize),
}

/// A snapshot in progress.
struct Frozen {
    /// Next bucket of the frozen table to write.
    cursor: usize,
    /// Buckets at or past `cursor` already handled (pre-image taken, or
    /// empty at the freeze), one bit each.
    handled: Vec<u64>,
    /// Set when the table grew during the snapshot: every frozen entry not
    /// written yet was encoded into `pending` then, and the table is done.
    flushed: bool,
    /// Encoded entries waiting to be written: pre-images of changed buckets.
    pending: Vec<u8>,
    /// Entries written or encoded into `pending` so far, and at the freeze.
    taken: u64,
    count: u64,
}

impl Frozen {
    #[inline(always)]
    fn is_handled(&self, i: usize) -> bool {
        self.handled[i / 64] & (1 << (i % 64)) != 0
    }
    #[inline(always)]
    fn set_handled(&mut self, i: usize) {
        self.handled[i / 64] |= 1 << (i % 64);
    }
}

/// One table of the map: its keys are `W` bytes in a bucket (8 or 16).
struct Table<S, const W: usize> {
    buckets: Vec<Bucket<S, W>>,
    /// `64 - log2(buckets.len())`: the hash's top bits pick the home bucket.
    shift: u32,
    len: usize,
    /// Keys longer than `W - 1` bytes, by index; `None` for a free index.
    long: Vec<Option<Box<[u8]>>>,
    long_free: Vec<u32>,
    frozen: Option<Frozen>,
    /// The first value that failed to encode into a snapshot.
    encode_error: Option<String>,
}

/// Append `value` to `buf` the way snapshots store values (postcard).
pub(crate) fn encode_postcard<S: Serialize>(value: &S, buf: &mut Vec<u8>) -> Result<(), String> {
    struct Append<'a>(&'a mut Vec<u8>);
    impl Extend<u8> for Append<'_> {
        fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
            self.0.extend(iter);
        }
    }
    postcard::to_extend(value, Append(buf))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Append one snapshot entry (envelope encoding) for `key` and `value`;
/// an error if the value does not encode.
fn write_entry<S: Serialize>(out: &mut Vec<u8>, key: &[u8], value: &S) -> Result<(), String> {
    let mut result = Ok(());
    weir_envelope::write_entry_with(out, key, |buf| result = encode_postcard(value, buf));
    result
}

impl<S: Serialize, const W: usize> Table<S, W> {
    /// An empty table with room for `n` keys before it grows.
    fn with_capacity(n: usize) -> Self {
        let size = (n * LOAD_DEN / LOAD_NUM + 1).next_power_of_two().max(16);
        Self {
            buckets: empty_table(size),
            shift: 64 - size.trailing_zeros(),
            len: 0,
            long: Vec::new(),
            long_free: Vec::new(),
            frozen: None,
            encode_error: None,
        }
    }

    #[inline(always)]
    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        (hash >> self.shift) as usize
    }

    fn key_bytes<'a>(long: &'a [Option<Box<[u8]>>], repr: &'a Repr<W>) -> &'a [u8] {
        if repr.is_long() {
            long[repr.long_index()].as_deref().unwrap_or_default()
        } else {
            &repr.0[..repr.0[W - 1] as usize]
        }
    }

    #[inline(always)]
    fn probe(&self, q: &Query<'_, W>) -> Probe {
        let mask = self.mask();
        let mut i = self.home(q.hash);
        if !q.repr.is_long() {
            let want = q.repr.words();
            // The home bucket ahead of the loop: most lookups end there,
            // and in Wasm each pass of a loop also checks the epoch.
            let b = &self.buckets[i];
            if b.value.is_none() {
                return Probe::Vacant(i);
            }
            if b.key.words() == want {
                return Probe::Found(i);
            }
            loop {
                i = (i + 1) & mask;
                let b = &self.buckets[i];
                if b.value.is_none() {
                    return Probe::Vacant(i);
                }
                if b.key.words() == want {
                    return Probe::Found(i);
                }
            }
        }
        loop {
            let b = &self.buckets[i];
            if b.value.is_none() {
                return Probe::Vacant(i);
            }
            if b.key.is_long()
                && b.key.0[4..W - 4] == q.repr.0[4..W - 4]
                && Self::key_bytes(&self.long, &b.key) == q.key
            {
                return Probe::Found(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// The value of `key`, hashed as `h`, if any.
    fn get(&self, key: &[u8], h: KeyHash) -> Option<&S> {
        match self.probe(&Query::with(key, h)) {
            Probe::Found(i) => self.buckets[i].value.as_ref(),
            Probe::Vacant(_) => None,
        }
    }

    /// Start loading the bucket where the lookup of a key hashed as `hash`
    /// begins (see [`StateMap::prefetch`]). A bucket is not aligned to a
    /// cache line (9 or 17 bytes for a one-byte value), so both its first
    /// and its last byte are touched: a bucket across two lines would
    /// otherwise miss again, alone, in the lookup.
    #[inline(always)]
    fn touch(&self, hash: u64) {
        let last = std::mem::size_of::<Bucket<S, W>>() - 1;
        let p = (&self.buckets[self.home(hash)] as *const Bucket<S, W>).cast::<u8>();
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch never faults and reads nothing visible.
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<{ _MM_HINT_T0 }>(p.cast::<i8>());
            _mm_prefetch::<{ _MM_HINT_T0 }>(p.add(last).cast::<i8>());
        }
        #[cfg(not(target_arch = "x86_64"))]
        // SAFETY: both bytes are inside the bucket; a volatile read of a
        // `MaybeUninit` byte is defined whatever the byte holds, and is
        // never removed (the load is the point).
        unsafe {
            let p = p.cast::<std::mem::MaybeUninit<u8>>();
            std::ptr::read_volatile(p);
            std::ptr::read_volatile(p.add(last));
        }
    }

    /// [`StateMap::update_hashed`] in this table.
    #[inline(always)]
    fn update_hashed<R>(
        &mut self,
        key: &[u8],
        h: &KeyHash,
        f: impl FnOnce(&mut Option<S>) -> R,
    ) -> R {
        let q = &Query::with(key, *h);
        let probe = self.probe(q);
        // One call of `f` for both outcomes: with a call in each branch the
        // Wasm state-machine job ran 2-10% slower (A/B, best of 3, 4 times).
        let mut vacant = None;
        let slot = match probe {
            Probe::Found(i) => {
                self.before_write(i);
                &mut self.buckets[i].value
            }
            Probe::Vacant(_) => &mut vacant,
        };
        let r = f(slot);
        match probe {
            Probe::Found(i) => {
                if self.buckets[i].value.is_none() {
                    self.remove_at(i);
                }
            }
            Probe::Vacant(i) => {
                if let Some(value) = vacant {
                    self.insert_vacant(q, i, value);
                }
            }
        }
        r
    }

    fn insert_vacant(&mut self, q: &Query<'_, W>, mut i: usize, value: S) {
        if (self.len + 1) * LOAD_DEN > self.buckets.len() * LOAD_NUM {
            self.grow();
            i = match self.probe(q) {
                Probe::Vacant(i) => i,
                Probe::Found(_) => unreachable!("the key was not in the map"),
            };
        }
        let mut repr = q.repr;
        if repr.is_long() {
            let index = match self.long_free.pop() {
                Some(x) => {
                    self.long[x as usize] = Some(q.key.into());
                    x
                }
                None => {
                    self.long.push(Some(q.key.into()));
                    u32::try_from(self.long.len() - 1).expect("fewer than 4G long keys")
                }
            };
            repr.0[..4].copy_from_slice(&index.to_le_bytes());
        }
        self.before_write(i);
        self.buckets[i] = Bucket {
            key: repr,
            value: Some(value),
        };
        self.len += 1;
    }

    /// Empty bucket `i` and shift the entries after it back towards their
    /// home, so no probe sequence is broken.
    fn remove_at(&mut self, mut hole: usize) {
        let key = self.buckets[hole].key;
        // `before_write` took the frozen pre-image (with the key's bytes)
        // when one was needed, so a long key's bytes can go now.
        if key.is_long() {
            let x = key.long_index() as u32;
            self.long[x as usize] = None;
            self.long_free.push(x);
        }
        self.buckets[hole].value = None;
        self.len -= 1;
        let mask = self.mask();
        let mut j = (hole + 1) & mask;
        // The entry at `j` moves to `hole` unless its home lies in
        // (hole, j], cyclically.
        let moves = |home: usize, hole: usize, j: usize| {
            home.wrapping_sub(hole + 1) & mask >= j.wrapping_sub(hole) & mask
        };
        if self.frozen.is_none() {
            // No snapshot open, so no pre-image to take: each step is free
            // of branches but the one at the cluster's end (an entry that
            // stays is swapped with itself).
            while self.buckets[j].value.is_some() {
                let m = moves(self.home(self.buckets[j].key.hash()), hole, j);
                let to = if m { hole } else { j };
                self.buckets.swap(to, j);
                hole = if m { j } else { hole };
                j = (j + 1) & mask;
            }
            return;
        }
        while self.buckets[j].value.is_some() {
            if moves(self.home(self.buckets[j].key.hash()), hole, j) {
                self.before_write(j);
                self.before_write(hole);
                self.buckets.swap(hole, j);
                hole = j;
            }
            j = (j + 1) & mask;
        }
    }

    fn grow(&mut self) {
        // During a snapshot, every frozen entry the writer has not reached
        // is encoded now: the entries are about to move. This costs one
        // encoding pass on top of the rehash, once per doubling.
        if let Some(cursor) = self
            .frozen
            .as_ref()
            .filter(|f| !f.flushed)
            .map(|f| f.cursor)
        {
            for i in cursor..self.buckets.len() {
                self.before_write(i);
            }
            if let Some(f) = self.frozen.as_mut() {
                f.flushed = true;
            }
        }
        let size = self.buckets.len() * 2;
        let old = std::mem::replace(&mut self.buckets, empty_table(size));
        self.shift = 64 - size.trailing_zeros();
        let mask = size - 1;
        for b in old {
            if let Some(v) = b.value {
                let mut i = self.home(b.key.hash());
                while self.buckets[i].value.is_some() {
                    i = (i + 1) & mask;
                }
                self.buckets[i] = Bucket {
                    key: b.key,
                    value: Some(v),
                };
            }
        }
    }

    /// Copy-on-write: before bucket `i` changes during a snapshot, take the
    /// pre-image of a frozen entry the writer has not reached yet.
    #[inline(always)]
    fn before_write(&mut self, i: usize) {
        let Some(f) = self.frozen.as_mut() else {
            return;
        };
        if f.flushed || i < f.cursor || f.is_handled(i) {
            return;
        }
        f.set_handled(i);
        let b = &self.buckets[i];
        if let Some(v) = &b.value {
            f.taken += 1;
            let key = Self::key_bytes(&self.long, &b.key);
            if let Err(e) = write_entry(&mut f.pending, key, v) {
                self.encode_error.get_or_insert(e);
            }
        }
    }

    /// Every entry, in table order.
    fn iter(&self) -> impl Iterator<Item = (&[u8], &S)> {
        self.buckets.iter().filter_map(|b| {
            b.value
                .as_ref()
                .map(|v| (Self::key_bytes(&self.long, &b.key), v))
        })
    }

    /// Freeze the current contents as a snapshot (constant time; a
    /// snapshot still open is dropped). Returns the number of entries.
    fn freeze(&mut self) -> u64 {
        self.thaw();
        self.frozen = Some(Frozen {
            cursor: 0,
            handled: vec![0; self.buckets.len().div_ceil(64)],
            flushed: false,
            pending: Vec::new(),
            taken: 0,
            count: self.len as u64,
        });
        self.len as u64
    }

    /// Whether a snapshot is open.
    fn is_frozen(&self) -> bool {
        self.frozen.is_some()
    }

    /// Drop the open snapshot, if any.
    fn thaw(&mut self) {
        if self.frozen.take().is_some() {
            self.encode_error = None;
        }
    }

    /// Append frozen entries (envelope encoding) to `out` until it holds at
    /// least `max_bytes` or the snapshot is complete. Returns whether it is
    /// complete (the snapshot is then closed); an error if a value did not
    /// encode or the entry count does not add up.
    fn next_chunk(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> Result<bool, String> {
        let Some(f) = self.frozen.as_mut() else {
            return Err("no snapshot is open".into());
        };
        // Pre-images first: entries the writer had not reached yet.
        if out.is_empty() {
            std::mem::swap(out, &mut f.pending);
        } else {
            out.append(&mut f.pending);
        }
        let mut failed = None;
        let end = if f.flushed {
            f.cursor
        } else {
            self.buckets.len()
        };
        while f.cursor < end && out.len() < max_bytes {
            let i = f.cursor;
            f.cursor += 1;
            if f.is_handled(i) {
                continue;
            }
            let b = &self.buckets[i];
            if let Some(v) = &b.value {
                f.taken += 1;
                let key = Self::key_bytes(&self.long, &b.key);
                if let Err(e) = write_entry(out, key, v) {
                    failed.get_or_insert(e);
                }
            }
        }
        let done = (f.flushed || f.cursor >= end) && f.pending.is_empty();
        let (taken, count) = (f.taken, f.count);
        if let Some(e) = failed.or_else(|| self.encode_error.take()) {
            self.thaw();
            return Err(format!("cannot encode key state: {e}"));
        }
        if done {
            self.thaw();
            if taken != count {
                return Err(format!(
                    "internal error: the snapshot wrote {taken} entries of the {count} frozen"
                ));
            }
        }
        Ok(done)
    }
}

/// The keyed state map of an operator: keys up to [`SHORT`] bytes in the
/// short table, longer ones in the wide table.
pub struct StateMap<S> {
    short: Table<S, 8>,
    wide: Table<S, 16>,
}

impl<S: Serialize> Default for StateMap<S> {
    fn default() -> Self {
        Self::with_capacities(0, 0)
    }
}

impl<S: Serialize> StateMap<S> {
    /// An empty map with room for `short` keys of up to 7 bytes and `wide`
    /// longer ones before it grows; values are encoded into snapshots with
    /// postcard.
    pub fn with_capacities(short: usize, wide: usize) -> Self {
        Self {
            short: Table::with_capacity(short),
            wide: Table::with_capacity(wide),
        }
    }

    /// Whether `key` goes to the short table.
    #[inline(always)]
    pub fn is_short(key: &[u8]) -> bool {
        key.len() <= SHORT
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.short.len + self.wide.len
    }

    /// Whether the map holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<&S> {
        let h = key_hash(key);
        if h.is_short() {
            self.short.get(key, h)
        } else {
            self.wide.get(key, h)
        }
    }

    /// Run `f` on `key`'s value (`None` if the key has none): a value left
    /// in the slot is kept, `None` removes the key.
    #[inline]
    pub fn update<R>(&mut self, key: &[u8], f: impl FnOnce(&mut Option<S>) -> R) -> R {
        self.update_hashed(key, &Self::hash(key), f)
    }

    /// Hash `key` for [`StateMap::prefetch`] and [`StateMap::update_hashed`].
    #[inline(always)]
    pub fn hash(key: &[u8]) -> KeyHash {
        key_hash(key)
    }

    /// Start loading the buckets where the lookups of the keys hashed as
    /// `hs` begin. A lookup is a cache miss when the table is large; the
    /// runtime touches the buckets of a group of records before it updates
    /// them, so the misses overlap instead of following one another. The
    /// keys are hashed before this call, so the touches come back to back
    /// and all of them are in flight at once (hashing between them would
    /// fill the core's reorder window while the first miss is pending).
    /// On x86-64 this is a prefetch instruction; Wasm has none, so there it
    /// is a plain load whose result nothing waits for.
    #[inline(always)]
    pub fn prefetch(&mut self, hs: &[KeyHash]) {
        let touch = |h: &KeyHash| {
            if h.is_short() {
                self.short.touch(h.hash);
            } else {
                self.wide.touch(h.hash);
            }
        };
        let mut quads = hs.chunks_exact(4);
        for q in &mut quads {
            touch(&q[0]);
            touch(&q[1]);
            touch(&q[2]);
            touch(&q[3]);
        }
        quads.remainder().iter().for_each(touch);
    }

    /// [`StateMap::update`] for `key`, hashed as `h` by [`StateMap::hash`].
    #[inline(always)]
    pub fn update_hashed<R>(
        &mut self,
        key: &[u8],
        h: &KeyHash,
        f: impl FnOnce(&mut Option<S>) -> R,
    ) -> R {
        if h.is_short() {
            self.short.update_hashed(key, h, f)
        } else {
            self.wide.update_hashed(key, h, f)
        }
    }

    /// Set `key`'s value.
    pub fn insert(&mut self, key: &[u8], value: S) {
        self.update(key, |slot| *slot = Some(value));
    }

    /// Remove `key`, returning its value.
    pub fn remove(&mut self, key: &[u8]) -> Option<S> {
        self.update(key, |slot| slot.take())
    }

    /// Every entry: the short table's, then the wide table's, each in
    /// table order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &S)> {
        self.short.iter().chain(self.wide.iter())
    }

    /// Freeze the current contents as a snapshot (constant time; a
    /// snapshot still open is dropped). Returns the number of entries.
    pub fn freeze(&mut self) -> u64 {
        self.short.freeze() + self.wide.freeze()
    }

    /// Whether a snapshot is open.
    pub fn is_frozen(&self) -> bool {
        self.short.is_frozen() || self.wide.is_frozen()
    }

    /// Drop the open snapshot, if any.
    pub fn thaw(&mut self) {
        self.short.thaw();
        self.wide.thaw();
    }

    /// Append frozen entries (envelope encoding) to `out` until it holds at
    /// least `max_bytes` or the snapshot is complete: the short table's
    /// entries, then the wide table's. Returns whether it is complete (the
    /// snapshot is then closed); an error if a value did not encode or an
    /// entry count does not add up.
    pub fn next_chunk(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> Result<bool, String> {
        if !self.is_frozen() {
            return Err("no snapshot is open".into());
        }
        if self.short.is_frozen() {
            match self.short.next_chunk(out, max_bytes) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(e) => {
                    self.wide.thaw();
                    return Err(e);
                }
            }
            if out.len() >= max_bytes || !self.wide.is_frozen() {
                return Ok(!self.wide.is_frozen());
            }
        }
        self.wide.next_chunk(out, max_bytes)
    }
}

fn empty_table<S, const W: usize>(size: usize) -> Vec<Bucket<S, W>> {
    let mut v = Vec::with_capacity(size);
    v.resize_with(size, || Bucket {
        key: Repr([0; W]),
        value: None,
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const SHAPE: weir_envelope::Shape<'static> = weir_envelope::Shape {
        name: "u64",
        migrates_from: &[],
    };

    /// xorshift: the tests need no dependency for randomness.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Keys of every length class: empty, short, exactly inline, long.
    fn key(rng: &mut Rng, space: u64) -> Vec<u8> {
        let n = rng.below(space);
        match n % 4 {
            0 => n.to_string().into_bytes(),
            1 => format!("{n:015}").into_bytes(),
            2 => format!("a-much-longer-key-{n:020}").into_bytes(),
            _ if n == 3 => Vec::new(),
            _ => format!("k{n}").into_bytes(),
        }
    }

    fn decode(blob: &[u8]) -> BTreeMap<Vec<u8>, u64> {
        let env = weir_envelope::Envelope::parse(blob).expect("envelope");
        let mut out = BTreeMap::new();
        for e in env.entries() {
            let (k, v) = e.expect("entry");
            let v: u64 = postcard::from_bytes(v).expect("value");
            assert!(
                out.insert(k.to_vec(), v).is_none(),
                "key {k:?} written twice"
            );
        }
        assert_eq!(out.len() as u64, env.count);
        out
    }

    fn contents(map: &StateMap<u64>) -> BTreeMap<Vec<u8>, u64> {
        map.iter().map(|(k, v)| (k.to_vec(), *v)).collect()
    }

    /// Keys that differ in one byte, anywhere, land in different buckets:
    /// no clusters for numbered keys, in either table.
    #[test]
    fn numbered_keys_spread_over_the_table() {
        for base in [1_000_000u64, 1_000_000_000] {
            let mut map = StateMap::<u64>::with_capacities(100_000, 100_000);
            let shift = if base < 10_000_000 {
                map.short.shift
            } else {
                map.wide.shift
            };
            let mut homes = std::collections::HashSet::new();
            for i in 0..100_000u64 {
                let key = format!("{}", base + i * 7);
                homes.insert(key_hash(key.as_bytes()).hash >> shift);
                map.insert(key.as_bytes(), i);
            }
            // 100k keys into 256k buckets: about 82k distinct homes if
            // spread at random.
            assert!(homes.len() > 75_000, "{} distinct homes", homes.len());
            assert_eq!(
                (map.short.len, map.wide.len),
                if base < 10_000_000 {
                    (100_000, 0)
                } else {
                    (0, 100_000)
                }
            );
        }
    }

    #[test]
    fn inline_keys_are_their_bytes_zero_padded_with_the_length_last() {
        for len in 0..=SHORT {
            let key: Vec<u8> = (1..=len as u8).collect();
            let mut want = [0u8; 8];
            want[..len].copy_from_slice(&key);
            want[7] = len as u8;
            assert_eq!(Query::<8>::new(&key).repr.0, want, "length {len}");
        }
        for len in SHORT + 1..=INLINE {
            let key: Vec<u8> = (1..=len as u8).collect();
            let mut want = [0u8; 16];
            want[..len].copy_from_slice(&key);
            want[15] = len as u8;
            assert_eq!(Query::<16>::new(&key).repr.0, want, "length {len}");
        }
    }

    #[test]
    fn behaves_like_a_map_under_churn() {
        let mut rng = Rng(7);
        let mut map = StateMap::<u64>::default();
        let mut model = BTreeMap::new();
        for step in 0..200_000u64 {
            let k = key(&mut rng, 5_000);
            match rng.below(3) {
                0 => {
                    assert_eq!(map.remove(&k), model.remove(&k), "step {step}");
                }
                _ => {
                    map.insert(&k, step);
                    model.insert(k.clone(), step);
                }
            }
            assert_eq!(map.get(&k), model.get(&k), "step {step}");
        }
        assert_eq!(map.len(), model.len());
        assert_eq!(contents(&map), model);
    }

    /// A deletion in a cluster that runs past the table's last bucket to
    /// its first shifts back only the entries it may: every other key is
    /// still found, from either end of the cluster, with or without a
    /// snapshot open.
    #[test]
    fn deletions_in_a_cluster_across_the_end_of_the_table_keep_every_key() {
        let size = StateMap::<u64>::default().short.buckets.len();
        let home = |k: &[u8]| key_hash(k).hash >> (64 - size.trailing_zeros());
        let keys = |at: std::ops::Range<usize>, n: usize| -> Vec<Vec<u8>> {
            (0u32..)
                .map(|i| i.to_string().into_bytes())
                .filter(|k| at.contains(&(home(k) as usize)))
                .take(n)
                .collect()
        };
        // Three keys homed in the last two buckets, two in the first two:
        // one cluster from bucket size - 2 round to bucket 2.
        let mut cluster = keys(size - 2..size, 3);
        cluster.extend(keys(0..2, 2));
        for frozen in [false, true] {
            for order in 0..cluster.len() {
                let mut map = StateMap::<u64>::default();
                for (v, k) in cluster.iter().enumerate() {
                    map.insert(k, v as u64);
                }
                if frozen {
                    map.freeze();
                }
                // Delete the keys one after the other, starting at `order`.
                for step in 0..cluster.len() {
                    let gone = (order + step) % cluster.len();
                    assert_eq!(map.remove(&cluster[gone]), Some(gone as u64));
                    for (v, k) in cluster.iter().enumerate() {
                        let deleted = (0..=step).any(|s| (order + s) % cluster.len() == v);
                        let want = (!deleted).then_some(v as u64);
                        assert_eq!(
                            map.get(k).copied(),
                            want,
                            "frozen {frozen}, order {order}, step {step}, key {v}"
                        );
                    }
                }
            }
        }
    }

    /// A snapshot frozen while the map keeps changing (updates, inserts,
    /// deletes that shift entries, growth) holds exactly the contents at
    /// the freeze.
    #[test]
    fn a_chunked_snapshot_holds_the_state_at_the_freeze() {
        for seed in 1..40u64 {
            let mut rng = Rng(seed * 7919);
            let mut map = StateMap::<u64>::default();
            let space = 50 + rng.below(3_000);
            for i in 0..rng.below(4_000) {
                map.insert(&key(&mut rng, space), i);
            }
            let frozen = contents(&map);
            let count = map.freeze();
            assert_eq!(count as usize, frozen.len());
            let mut blob = Vec::new();
            weir_envelope::write_header(&mut blob, 1, &SHAPE, b"", count);
            let chunk = 1 + rng.below(600) as usize;
            loop {
                // Change the map between chunks, sometimes a lot (growth).
                let burst = if rng.below(10) == 0 { 5_000 } else { 40 };
                for _ in 0..rng.below(burst) {
                    let k = key(&mut rng, space * 2);
                    if rng.below(2) == 0 {
                        map.remove(&k);
                    } else {
                        map.update(&k, |v| *v = Some(v.unwrap_or(0) + 1_000_000));
                    }
                }
                let mut out = Vec::new();
                let done = map.next_chunk(&mut out, chunk).expect("chunk");
                blob.extend_from_slice(&out);
                if done {
                    break;
                }
            }
            assert!(!map.is_frozen());
            assert_eq!(decode(&blob), frozen, "seed {seed}");
        }
    }

    #[test]
    fn freezing_again_drops_the_open_snapshot() {
        let mut map = StateMap::<u64>::default();
        map.insert(b"a", 1);
        map.freeze();
        map.insert(b"b", 2);
        assert_eq!(map.freeze(), 2);
        let mut blob = Vec::new();
        weir_envelope::write_header(&mut blob, 1, &SHAPE, b"", 2);
        while !map.next_chunk(&mut blob, 1 << 20).unwrap() {}
        assert_eq!(decode(&blob).len(), 2);
        assert!(map.next_chunk(&mut blob, 1).is_err(), "no snapshot open");
    }
}
