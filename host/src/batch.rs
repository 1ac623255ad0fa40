//! The packed batch that crosses the Wasm boundary (WIT `batch`): keys and
//! values each in one buffer with end offsets, timestamps beside them. One
//! batch costs a handful of guest allocations, whatever its record count.

pub use wit::weir::plugin::types::{Batch, Outcome, Rejection, Timer};

/// The types of the WIT contract (`weir:plugin/types`): the batch and what
/// a call returns. Generated here, below `plugin`; the plugin bindings
/// reuse them (`with` in their `bindgen!`), so the dependency runs
/// `plugin` -> `batch` only.
pub(crate) mod wit {
    wasmtime::component::bindgen!({
        path: "../wit",
        interfaces: "import weir:plugin/types@0.2.0;",
    });
}

/// Event time of a record without one (WIT: `i64::MIN`).
pub const NO_TIMESTAMP: i64 = i64::MIN;

/// The versions of the `weir:plugin` WIT package this host accepts, newest
/// first (the first is the one checkpoints record).
pub const ACCEPTED_WIT_VERSIONS: &[&str] = &["0.2.0", "0.1.0"];

/// A record borrowed from a [`Batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Key bytes.
    pub key: &'a [u8],
    /// Value bytes.
    pub value: &'a [u8],
    /// Event time in ms, [`NO_TIMESTAMP`] if none.
    pub timestamp: i64,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch {
            keys: Vec::new(),
            key_ends: Vec::new(),
            values: Vec::new(),
            value_ends: Vec::new(),
            timestamps: Vec::new(),
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.key_ends.len()
    }

    /// Whether the batch has no records.
    pub fn is_empty(&self) -> bool {
        self.key_ends.is_empty()
    }

    /// Key and value bytes held.
    pub fn byte_size(&self) -> usize {
        self.keys.len() + self.values.len()
    }

    /// Append a record.
    #[inline(always)]
    pub fn push(&mut self, key: &[u8], value: &[u8], timestamp: i64) {
        append(&mut self.keys, key);
        self.key_ends.push(self.keys.len() as u32);
        append(&mut self.values, value);
        self.value_ends.push(self.values.len() as u32);
        self.timestamps.push(timestamp);
    }

    /// Empty the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.key_ends.clear();
        self.values.clear();
        self.value_ends.clear();
        self.timestamps.clear();
    }

    /// Record `i`, or `None` if out of range or if a plugin returned
    /// inconsistent offsets.
    pub fn get(&self, i: usize) -> Option<RecordRef<'_>> {
        let start = |ends: &[u32]| {
            if i == 0 {
                Some(0)
            } else {
                ends.get(i - 1).map(|&e| e as usize)
            }
        };
        let key = self
            .keys
            .get(start(&self.key_ends)?..*self.key_ends.get(i)? as usize)?;
        let value = self
            .values
            .get(start(&self.value_ends)?..*self.value_ends.get(i)? as usize)?;
        Some(RecordRef {
            key,
            value,
            timestamp: *self.timestamps.get(i)?,
        })
    }

    /// Whether the offsets and list lengths are consistent (checked once on
    /// batches a plugin returns).
    pub fn is_well_formed(&self) -> bool {
        let n = self.key_ends.len();
        let monotonic = |ends: &[u32], len: usize| {
            ends.windows(2).all(|w| w[0] <= w[1])
                && ends.last().map_or(len == 0, |&e| e as usize == len)
        };
        self.value_ends.len() == n
            && self.timestamps.len() == n
            && monotonic(&self.key_ends, self.keys.len())
            && monotonic(&self.value_ends, self.values.len())
    }

    /// Iterate the records (the batch must be well formed).
    pub fn iter(&self) -> impl Iterator<Item = RecordRef<'_>> + '_ {
        let mut ks = 0usize;
        let mut vs = 0usize;
        (0..self.len()).map(move |i| {
            let (ke, ve) = (self.key_ends[i] as usize, self.value_ends[i] as usize);
            let r = RecordRef {
                key: &self.keys[ks..ke],
                value: &self.values[vs..ve],
                timestamp: self.timestamps[i],
            };
            ks = ke;
            vs = ve;
            r
        })
    }
}

/// Where a record came from, for dead letters. The runtime carries it
/// without looking inside; the source that made it says what it means
/// ([`Origins`]): for files, (file index, line); for Kafka, (partition,
/// offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The source's unit: a file index, a Kafka partition.
    pub unit: u32,
    /// The place in that unit: a line number, an offset.
    pub offset: u64,
}

/// Turns a source's [`Origin`]s into the fields of a dead letter.
pub trait Origins: Send + Sync {
    /// Add the fields that locate `origin` (e.g. `file` and `line`).
    fn describe(&self, origin: Origin, out: &mut serde_json::Map<String, serde_json::Value>);
}

/// A batch on its way from the source to one partition.
#[derive(Debug, Default)]
pub struct SourceBatch {
    /// The records.
    pub data: Batch,
    /// Origin of each record.
    pub origins: Vec<Origin>,
}

/// Append, for each of `items`, the bytes of `text` in its `range` to
/// `bytes` and their end in `bytes` to `ends`: one list filled in one loop.
/// Room for `hint` bytes is reserved first (more is reserved, rarely, when
/// a slice would not fit with 16 bytes to spare). A slice of up to 16
/// bytes with 16 bytes of `text` from its start moves as one 16-byte word
/// (the word's tail lands in spare room, and the next slice or nothing
/// covers it).
#[inline(always)]
pub(crate) fn append_ranges<T>(
    bytes: &mut Vec<u8>,
    ends: &mut Vec<u32>,
    text: &[u8],
    items: &[T],
    hint: usize,
    range: impl Fn(&T) -> std::ops::Range<usize>,
) {
    bytes.reserve(hint + 16);
    ends.reserve(items.len());
    let base = ends.len();
    // The buffer's pointer, length and room in locals: the stores through
    // the pointer could alias the `Vec`'s own fields as far as the
    // compiler knows, which would reload them after every record.
    let (mut dst, mut len, mut cap) = (bytes.as_mut_ptr(), bytes.len(), bytes.capacity());
    // SAFETY: every write to `bytes` stays in `len..len + n + 16` (a slice
    // of `n` bytes, or a 16-byte word for `n <= 16`), which the check
    // before it keeps inside the capacity; `bytes`' length is set before
    // it grows and after the loop, over written bytes only. `ends` has
    // room for `items.len()` more, and its length grows over written
    // elements only.
    unsafe {
        let end_dst = ends.as_mut_ptr().add(base);
        for (i, item) in items.iter().enumerate() {
            let r = range(item);
            let s = &text[r.clone()];
            let n = s.len();
            if cap - len < n + 16 {
                bytes.set_len(len);
                bytes.reserve(n + 16);
                (dst, cap) = (bytes.as_mut_ptr(), bytes.capacity());
            }
            if n <= 16 && r.start + 16 <= text.len() {
                let word = text
                    .as_ptr()
                    .add(r.start)
                    .cast::<[u8; 16]>()
                    .read_unaligned();
                dst.add(len).cast::<[u8; 16]>().write_unaligned(word);
            } else {
                std::ptr::copy_nonoverlapping(s.as_ptr(), dst.add(len), n);
            }
            len += n;
            end_dst.add(i).write(len as u32);
        }
        bytes.set_len(len);
        ends.set_len(base + items.len());
    }
}

/// `v.extend_from_slice(s)`, with a slice of up to 16 bytes (most keys
/// and lines of a batch) moved as two overlapping words instead of by a
/// call to `memcpy`, whose set-up costs more than such a copy.
#[inline(always)]
fn append(v: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if !(4..=16).contains(&n) {
        v.extend_from_slice(s);
        return;
    }
    v.reserve(16);
    let len = v.len();
    // SAFETY: `reserve(16)` leaves at least 16 bytes of spare capacity past
    // `len`; the writes below stay inside `len..len + n` (n <= 16), cover
    // all of it, and only then does the length grow over them.
    unsafe {
        let dst = v.as_mut_ptr().add(len);
        if n >= 8 {
            let head = u64::from_ne_bytes(s[..8].try_into().expect("8 bytes"));
            let tail = u64::from_ne_bytes(s[n - 8..].try_into().expect("8 bytes"));
            dst.cast::<u64>().write_unaligned(head);
            dst.add(n - 8).cast::<u64>().write_unaligned(tail);
        } else {
            let head = u32::from_ne_bytes(s[..4].try_into().expect("4 bytes"));
            let tail = u32::from_ne_bytes(s[n - 4..].try_into().expect("4 bytes"));
            dst.cast::<u32>().write_unaligned(head);
            dst.add(n - 4).cast::<u32>().write_unaligned(tail);
        }
        v.set_len(len + n);
    }
}

impl SourceBatch {
    /// Append a record.
    #[inline(always)]
    pub fn push(&mut self, key: &[u8], value: &[u8], timestamp: i64, origin: Origin) {
        self.data.push(key, value, timestamp);
        self.origins.push(origin);
    }

    /// Empty it, keeping buffers.
    pub fn clear(&mut self) {
        self.data.clear();
        self.origins.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_ranges_are_the_bytes_of_each_range_whatever_the_hint() {
        // Overlapping ranges of 0 to 40 bytes, some within 16 bytes of the
        // text's end; a hint of 0 makes the loop reserve as it goes.
        let text: Vec<u8> = (0..100u8).collect();
        let ranges: Vec<std::ops::Range<usize>> = (0..300)
            .map(|i| {
                let start = i * 13 % 97;
                start..(start + i % 41).min(text.len())
            })
            .collect();
        for hint in [0, 5, 10_000] {
            let (mut bytes, mut ends) = (vec![7u8; 3], vec![3u32]);
            append_ranges(&mut bytes, &mut ends, &text, &ranges, hint, |r| r.clone());
            let (mut want, mut want_ends) = (vec![7u8; 3], vec![3u32]);
            for r in &ranges {
                want.extend_from_slice(&text[r.clone()]);
                want_ends.push(want.len() as u32);
            }
            assert_eq!(bytes, want, "hint {hint}");
            assert_eq!(ends, want_ends, "hint {hint}");
        }
    }

    #[test]
    fn pushed_bytes_are_the_bytes_of_every_length() {
        let text: Vec<u8> = (0..40u8).collect();
        let mut b = Batch::new();
        for n in 0..=text.len() {
            b.push(&text[..n], &text[text.len() - n..], n as i64);
        }
        for n in 0..=text.len() {
            let r = b.get(n).unwrap();
            assert_eq!(r.key, &text[..n]);
            assert_eq!(r.value, &text[text.len() - n..]);
        }
    }

    #[test]
    fn push_get_iter() {
        let mut b = Batch::new();
        b.push(b"k1", b"v1", 5);
        b.push(b"", b"value2", NO_TIMESTAMP);
        assert_eq!(b.len(), 2);
        assert!(b.is_well_formed());
        let r = b.get(1).unwrap();
        assert_eq!(
            (r.key, r.value, r.timestamp),
            (&b""[..], &b"value2"[..], NO_TIMESTAMP)
        );
        assert_eq!(
            b.iter().map(|r| r.value).collect::<Vec<_>>(),
            vec![&b"v1"[..], b"value2"]
        );
        assert!(b.get(2).is_none());
        b.key_ends[0] = 9;
        assert!(!b.is_well_formed());
        assert!(b.get(0).is_none());
    }
}
