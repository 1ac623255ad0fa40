//! The generic driver behind a plugin's exports: owns the operator, its
//! per-key state map and the output buffers, and speaks the packed batch
//! format. [`glue`] adapts it to the `wit-bindgen` types; the benchmark drives
//! [`Runtime`] natively to compare the same logic with and without Wasm.

use crate::envelope;
use crate::map::{KeyHash, StateMap};

/// Records whose state buckets are fetched together, ahead of their
/// updates (see [`Runtime::process`]).
const GROUP: usize = 32;
use crate::{Config, Ctx, KeyState, NO_TIMESTAMP, Operator, Record};

/// Records in packed form (the shape of WIT `batch`), owned.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Packed {
    /// All keys, back to back.
    pub keys: Vec<u8>,
    /// End offset of each key in `keys`.
    pub key_ends: Vec<u32>,
    /// All values, back to back.
    pub values: Vec<u8>,
    /// End offset of each value in `values`.
    pub value_ends: Vec<u32>,
    /// Event time per record, [`NO_TIMESTAMP`] if none.
    pub timestamps: Vec<i64>,
}

impl Packed {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.key_ends.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.key_ends.is_empty()
    }

    /// A borrowed view.
    pub fn view(&self) -> BatchView<'_> {
        BatchView {
            keys: &self.keys,
            key_ends: &self.key_ends,
            values: &self.values,
            value_ends: &self.value_ends,
            timestamps: &self.timestamps,
        }
    }
}

/// A packed batch, borrowed: the SDK reads records out of it without copying.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    /// All keys, back to back.
    pub keys: &'a [u8],
    /// End offset of each key.
    pub key_ends: &'a [u32],
    /// All values, back to back.
    pub values: &'a [u8],
    /// End offset of each value.
    pub value_ends: &'a [u32],
    /// Event time per record.
    pub timestamps: &'a [i64],
}

impl<'a> BatchView<'a> {
    /// Number of records; an error if the lists disagree.
    pub fn checked_len(&self) -> Result<usize, String> {
        let n = self.key_ends.len();
        if self.value_ends.len() != n || self.timestamps.len() != n {
            return Err(format!(
                "malformed batch: {} key ends, {} value ends, {} timestamps",
                n,
                self.value_ends.len(),
                self.timestamps.len()
            ));
        }
        Ok(n)
    }

    /// Number of records, once every record's offsets are checked: an
    /// error if the lists disagree or an offset is out of range. After it,
    /// `record_unchecked` reads records without checks.
    pub fn checked_records(&self) -> Result<usize, String> {
        let n = self.checked_len()?;
        // Ends that never decrease, the last inside its buffer: every
        // record's range is then inside it.
        let fits = |ends: &[u32], len: usize| {
            nondecreasing(ends) && ends.last().is_none_or(|&e| e as usize <= len)
        };
        if !fits(self.key_ends, self.keys.len()) || !fits(self.value_ends, self.values.len()) {
            let bad = (0..n).find(|&i| self.record(i).is_err()).unwrap_or(0);
            return Err(format!(
                "malformed batch: record {bad} has offsets out of range"
            ));
        }
        Ok(n)
    }

    /// Record `i`, without checking its offsets.
    ///
    /// # Safety
    /// [`BatchView::checked_records`] returned `Ok(n)` for this batch, and
    /// `i < n`.
    #[inline(always)]
    pub(crate) unsafe fn record_unchecked(&self, i: usize) -> Record<'a> {
        debug_assert!(self.record(i).is_ok());
        // SAFETY (all four): by the caller's promise, `checked_records`
        // found the three lists `n` long with `i < n`, their ends
        // non-decreasing and the last inside its buffer, so `start <= end
        // <= len` for every `i` below the count. Unchecked, a record whose
        // fields the operator does not read costs nothing: no check is left
        // to keep its loads alive.
        let end = |e: &[u32]| unsafe { *e.get_unchecked(i) } as usize;
        let start = |e: &[u32]| {
            if i == 0 {
                0
            } else {
                unsafe { *e.get_unchecked(i - 1) as usize }
            }
        };
        let (key, value, ts) = unsafe {
            (
                self.keys
                    .get_unchecked(start(self.key_ends)..end(self.key_ends)),
                self.values
                    .get_unchecked(start(self.value_ends)..end(self.value_ends)),
                *self.timestamps.get_unchecked(i),
            )
        };
        Record {
            key,
            value,
            timestamp: (ts != NO_TIMESTAMP).then_some(ts),
        }
    }

    /// Iterate the records; an item is an error if offsets are out of range.
    pub fn records(&self) -> impl Iterator<Item = Result<Record<'a>, String>> + 'a {
        let this = *self;
        (0..self.key_ends.len()).map(move |i| this.record(i))
    }

    /// Record `i` (below [`BatchView::checked_len`]); an error if its
    /// offsets are out of range.
    #[inline(always)]
    pub fn record(&self, i: usize) -> Result<Record<'a>, String> {
        let ends = |e: &[u32]| {
            let start = if i == 0 { 0 } else { e[i - 1] as usize };
            start..e[i] as usize
        };
        match (
            self.keys.get(ends(self.key_ends)),
            self.values.get(ends(self.value_ends)),
        ) {
            (Some(key), Some(value)) => {
                let ts = self.timestamps[i];
                Ok(Record {
                    key,
                    value,
                    timestamp: (ts != NO_TIMESTAMP).then_some(ts),
                })
            }
            _ => Err(format!(
                "malformed batch: record {i} has offsets out of range"
            )),
        }
    }
}

/// What one call produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Records emitted.
    pub emitted: Packed,
    /// Timers to register: (key, time).
    pub timers: Vec<(Vec<u8>, i64)>,
    /// Rejected input records: (index in batch, reason).
    pub rejected: Vec<(u32, String)>,
}

/// Output accumulated during one call.
#[derive(Debug, Default)]
pub struct OutputBuf {
    emitted: Packed,
    pub(crate) timers: Vec<(Vec<u8>, i64)>,
    rejected: Vec<(u32, String)>,
}

impl OutputBuf {
    pub(crate) fn emit(&mut self, key: &[u8], value: &[u8], timestamp: i64) {
        self.emit_with(key, timestamp, |buf| buf.extend_from_slice(value));
    }

    pub(crate) fn emit_with(
        &mut self,
        key: &[u8],
        timestamp: i64,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let e = &mut self.emitted;
        e.keys.extend_from_slice(key);
        e.key_ends.push(offset(e.keys.len()));
        write(&mut e.values);
        e.value_ends.push(offset(e.values.len()));
        e.timestamps.push(timestamp);
    }

    fn take(&mut self) -> Outcome {
        Outcome {
            emitted: std::mem::take(&mut self.emitted),
            timers: std::mem::take(&mut self.timers),
            rejected: std::mem::take(&mut self.rejected),
        }
    }
}

/// Whether `ends` never decreases. Eight ends per loop pass: a compiled
/// plugin checks its deadline at the head of every pass, and a pass per end
/// cost more than the comparisons.
fn nondecreasing(ends: &[u32]) -> bool {
    let mut ok = true;
    let mut prev = 0;
    let mut chunks = ends.chunks_exact(8);
    for c in &mut chunks {
        ok &= (prev <= c[0])
            & (c[0] <= c[1])
            & (c[1] <= c[2])
            & (c[2] <= c[3])
            & (c[3] <= c[4])
            & (c[4] <= c[5])
            & (c[5] <= c[6])
            & (c[6] <= c[7]);
        prev = c[7];
    }
    for &e in chunks.remainder() {
        ok &= prev <= e;
        prev = e;
    }
    ok
}

fn offset(n: usize) -> u32 {
    u32::try_from(n).expect("batch output over 4 GiB")
}

/// The first 8 bytes of `key`, zero-padded, as a big-endian number: ordering
/// by it, then by the whole key, is the byte-wise order.
#[inline]
fn prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

/// Decode a postcard value that fills `bytes` exactly: bytes left over
/// mean the value was written as another type, and are an error.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(|e| e.to_string())?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(format!(
            "{} trailing bytes after the value ({} bytes in all): it was written as another type",
            rest.len(),
            bytes.len()
        ))
    }
}

/// The versions an operator's `restore` accepts.
pub fn accepted_versions<O: Operator>() -> Vec<u32> {
    let mut v: Vec<u32> = O::MIGRATES_FROM.to_vec();
    v.push(O::STATE_VERSION);
    v.sort_unstable();
    v.dedup();
    v
}

/// Errors of the runtime, mapped to WIT `error` by [`glue`].
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// `init` refused the configuration.
    Config(String),
    /// A state blob cannot be restored.
    State(String),
    /// Anything else (a malformed batch).
    Other(String),
}

/// Where a chunked snapshot stands.
enum Chunking {
    /// None open.
    Closed,
    /// Open; the envelope header goes first into the next chunk.
    Open { header: Option<Vec<u8>> },
    /// The last chunk was handed out; the next call says so and closes.
    Done,
}

/// One operator instance with its keyed state.
pub struct Runtime<O: Operator> {
    op: O,
    state: StateMap<O::State>,
    out: OutputBuf,
    chunking: Chunking,
}

impl<O: Operator> Default for Runtime<O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<O: Operator> Runtime<O> {
    /// A fresh instance with empty state.
    pub fn new() -> Self {
        Self {
            op: O::default(),
            state: StateMap::default(),
            out: OutputBuf::default(),
            chunking: Chunking::Closed,
        }
    }

    /// Apply the configuration.
    pub fn init(&mut self, config: &Config) -> Result<(), Error> {
        self.op.init(config).map_err(Error::Config)
    }

    /// Number of keys holding state.
    pub fn key_count(&self) -> usize {
        self.state.len()
    }

    /// Run `on_event` for every record of the batch.
    ///
    /// Records go in groups of [`GROUP`]: the keys of a group are hashed
    /// and their state buckets touched one after the other, then the
    /// records run in order. The touches do not depend on one another, so
    /// their cache misses overlap (a touch interleaved with the records'
    /// work would stall the core at each miss, as the lookup does); each
    /// key is hashed once.
    ///
    /// While no key holds state (a stateless operator, or a keyed one
    /// before its first value), every lookup would find nothing: records
    /// then run without hashing or looking up their keys, until one leaves
    /// a value.
    pub fn process(&mut self, batch: BatchView<'_>, watermark: i64) -> Result<Outcome, Error> {
        let n = batch.checked_records().map_err(Error::Other)?;
        // Only the hashes wait in an array between the passes: each pass
        // takes its records from the batch's offsets again. (A group of
        // records kept in an array was copied through memory in halves,
        // and reading a record back whole stalled on every one.)
        let mut hashes = [KeyHash::NONE; GROUP];
        let mut start = 0;
        while start < n {
            if self.state.is_empty() {
                start = self.run_while_stateless(batch, start, n, watermark)?;
                continue;
            }
            let len = GROUP.min(n - start);
            // SAFETY: `checked_records` passed and `start + j < n`.
            let hash = |j: usize| {
                StateMap::<O::State>::hash(unsafe { batch.record_unchecked(start + j) }.key)
            };
            let mut j = 0;
            while j + 4 <= len {
                hashes[j] = hash(j);
                hashes[j + 1] = hash(j + 1);
                hashes[j + 2] = hash(j + 2);
                hashes[j + 3] = hash(j + 3);
                j += 4;
            }
            while j < len {
                hashes[j] = hash(j);
                j += 1;
            }
            self.state.prefetch(&hashes[..len]);
            for (j, h) in hashes[..len].iter().enumerate() {
                // SAFETY: `checked_records` passed and `start + j < n`.
                let rec = unsafe { batch.record_unchecked(start + j) };
                let (op, out) = (&mut self.op, &mut self.out);
                let result = self.state.update_hashed(rec.key, h, |slot| {
                    let mut ctx = Ctx::new(out, rec.key, watermark);
                    op.on_event(&rec, &mut KeyState::new(slot), &mut ctx)
                });
                if let Err(reason) = result {
                    self.out.rejected.push(((start + j) as u32, reason));
                }
            }
            start += len;
        }
        Ok(self.out.take())
    }

    /// Run records `start..n` while the map is empty: each sees no state
    /// (as a lookup would have found); the first that leaves a value puts
    /// it in the map and ends the run. Returns the next record to run.
    fn run_while_stateless(
        &mut self,
        batch: BatchView<'_>,
        start: usize,
        n: usize,
        watermark: i64,
    ) -> Result<usize, Error> {
        for i in start..n {
            // SAFETY: `process` checked the batch, and `i < n`, its count.
            let rec = unsafe { batch.record_unchecked(i) };
            let mut slot = None;
            let mut ctx = Ctx::new(&mut self.out, rec.key, watermark);
            let result = self
                .op
                .on_event(&rec, &mut KeyState::new(&mut slot), &mut ctx);
            if let Err(reason) = result {
                self.out.rejected.push((i as u32, reason));
            }
            if let Some(value) = slot {
                self.state.insert(rec.key, value);
                return Ok(i + 1);
            }
        }
        Ok(n)
    }

    /// Run `on_timer` for every fired timer, in the order given.
    pub fn on_timers<'k>(
        &mut self,
        fired: impl IntoIterator<Item = (&'k [u8], i64)>,
        watermark: i64,
    ) -> Result<Outcome, Error> {
        for (key, time) in fired {
            let (op, out) = (&mut self.op, &mut self.out);
            self.state.update(key, |slot| {
                let mut ctx = Ctx::new(out, key, watermark);
                op.on_timer(key, time, &mut KeyState::new(slot), &mut ctx);
            });
        }
        Ok(self.out.take())
    }

    /// The operator-wide state as snapshots store it.
    fn encode_operator(&self) -> Result<Vec<u8>, Error> {
        postcard::to_allocvec(&self.op)
            .map_err(|e| Error::State(format!("cannot encode operator state: {e}")))
    }

    /// The whole state as a keyed state envelope (keys sorted).
    pub fn snapshot(&self) -> Result<Vec<u8>, Error> {
        let operator = self.encode_operator()?;
        // Sort by key bytes. Comparing an 8-byte big-endian prefix first
        // orders most keys without a byte-wise compare (slow in Wasm).
        let mut entries: Vec<(u64, &[u8], &O::State)> =
            self.state.iter().map(|(k, v)| (prefix(k), k, v)).collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        let mut w = envelope::Writer::new(
            O::STATE_VERSION,
            &crate::shape::<O>(),
            &operator,
            entries.len() * 16,
        );
        let mut failure = None;
        for (_, key, value) in entries {
            w.entry_with(key, |buf| {
                if let Err(e) = crate::map::encode_postcard(value, buf) {
                    failure.get_or_insert(e);
                }
            });
        }
        if let Some(e) = failure {
            return Err(Error::State(format!("cannot encode key state: {e}")));
        }
        Ok(w.finish())
    }

    /// Replace the state with a snapshot written by state version
    /// `from_version`. Nothing changes if the blob is refused.
    pub fn restore(&mut self, blob: &[u8], from_version: u32) -> Result<(), Error> {
        let env = envelope::Envelope::parse(blob).map_err(Error::State)?;
        let own = crate::state_shape::<O>();
        // A blob of another shape is read only through a declared
        // migration; one without a shape (format 1) is taken as this one.
        let foreign = env.shape.filter(|&s| s != own);
        if let Some(shape) = foreign {
            if !O::SHAPE_MIGRATES_FROM.contains(&(shape, from_version)) {
                return Err(Error::State(format!(
                    "the state has shape `{shape}` (version {from_version}); this operator's \
                     state is `{own}` (version {}) and it does not declare a migration from \
                     `{shape}` version {from_version}",
                    O::STATE_VERSION
                )));
            }
        } else {
            let accepted = accepted_versions::<O>();
            if !accepted.contains(&from_version) {
                return Err(Error::State(format!(
                    "state version {from_version} cannot be restored: this operator writes version {} and reads {:?}",
                    O::STATE_VERSION,
                    accepted
                )));
            }
        }
        if env.state_version != from_version {
            return Err(Error::State(format!(
                "the blob says state version {} but the host says {from_version}",
                env.state_version
            )));
        }
        let current = foreign.is_none() && from_version == O::STATE_VERSION;
        let op: O = if current {
            decode(env.operator)
                .map_err(|e| Error::State(format!("operator state does not decode: {e}")))?
        } else {
            O::migrate_operator(from_version, env.operator).map_err(Error::State)?
        };
        // Size each table for its keys, counted in a first pass (cheaper
        // than growing); the envelope's count is checked as entries are
        // read.
        let (mut short, mut wide) = (0, 0);
        for (key, _) in env.entries().flatten() {
            if StateMap::<O::State>::is_short(key) {
                short += 1;
            } else {
                wide += 1;
            }
        }
        let mut state = StateMap::with_capacities(short, wide);
        for entry in env.entries() {
            let (key, value) = entry.map_err(Error::State)?;
            let value = match foreign {
                _ if current => Some(decode(value).map_err(|e| {
                    Error::State(format!(
                        "state of key {:?} does not decode: {e}",
                        String::from_utf8_lossy(key)
                    ))
                })?),
                Some(shape) => {
                    O::migrate_shape(shape, from_version, value).map_err(Error::State)?
                }
                None => Some(O::migrate_state(from_version, value).map_err(Error::State)?),
            };
            if let Some(value) = value {
                state.insert(key, value);
            }
        }
        self.op = op;
        self.state = state;
        self.chunking = Chunking::Closed;
        Ok(())
    }

    /// Start a chunked snapshot: freeze the state as it is now, in
    /// constant time (a snapshot still open is dropped). `process` and
    /// `on_timers` may run before its last chunk; the chunks still hold the
    /// state as of this call.
    pub fn snapshot_begin(&mut self) -> Result<(), Error> {
        let operator = self.encode_operator()?;
        let count = self.state.freeze();
        let mut header = Vec::with_capacity(operator.len() + 21);
        envelope::write_header(
            &mut header,
            O::STATE_VERSION,
            &crate::shape::<O>(),
            &operator,
            count,
        );
        self.chunking = Chunking::Open {
            header: Some(header),
        };
        Ok(())
    }

    /// The next piece of the open chunked snapshot, about `max_bytes` long
    /// (a single entry may exceed it); `None` once every piece was handed
    /// out, which closes the snapshot. The pieces, concatenated, are a
    /// keyed state envelope with the entries in the map's order.
    pub fn snapshot_next(&mut self, max_bytes: usize) -> Result<Option<Vec<u8>>, Error> {
        match &mut self.chunking {
            Chunking::Closed => Err(Error::State(
                "no snapshot is open: call snapshot-begin first".into(),
            )),
            Chunking::Done => {
                self.chunking = Chunking::Closed;
                Ok(None)
            }
            Chunking::Open { header } => {
                let mut out = header.take().unwrap_or_default();
                match self.state.next_chunk(&mut out, max_bytes.max(1)) {
                    Ok(true) => {
                        self.chunking = Chunking::Done;
                        Ok(Some(out))
                    }
                    Ok(false) => Ok(Some(out)),
                    Err(e) => {
                        self.chunking = Chunking::Closed;
                        Err(Error::State(e))
                    }
                }
            }
        }
    }
}

/// Adapters between [`Runtime`] and the `wit-bindgen` types, used by
/// [`crate::export_operator!`].
#[doc(hidden)]
pub mod glue {
    use super::{BatchView, Error, Operator, Outcome, Packed, Runtime};
    use crate::Config;
    use crate::bindings::weir::plugin::types as wit;

    fn error(e: Error) -> wit::Error {
        match e {
            Error::Config(m) => wit::Error::Config(m),
            Error::State(m) => wit::Error::State(m),
            Error::Other(m) => wit::Error::Other(m),
        }
    }

    fn batch(p: Packed) -> wit::Batch {
        wit::Batch {
            keys: p.keys,
            key_ends: p.key_ends,
            values: p.values,
            value_ends: p.value_ends,
            timestamps: p.timestamps,
        }
    }

    fn outcome(o: Outcome) -> wit::Outcome {
        wit::Outcome {
            emitted: batch(o.emitted),
            timers: o
                .timers
                .into_iter()
                .map(|(key, time)| wit::Timer { key, time })
                .collect(),
            rejected: o
                .rejected
                .into_iter()
                .map(|(index, reason)| wit::Rejection { index, reason })
                .collect(),
        }
    }

    pub fn init<O: Operator>(
        rt: &mut Runtime<O>,
        config: Vec<(String, String)>,
    ) -> Result<(), wit::Error> {
        // A panic traps the instance; say why first, so the host's error
        // carries the message.
        std::panic::set_hook(Box::new(|info| {
            crate::log(crate::Level::Error, &format!("panicked: {info}"));
        }));
        rt.init(&Config::new(config)).map_err(error)
    }

    pub fn process<O: Operator>(
        rt: &mut Runtime<O>,
        input: wit::Batch,
        watermark: i64,
    ) -> Result<wit::Outcome, wit::Error> {
        let view = BatchView {
            keys: &input.keys,
            key_ends: &input.key_ends,
            values: &input.values,
            value_ends: &input.value_ends,
            timestamps: &input.timestamps,
        };
        rt.process(view, watermark).map(outcome).map_err(error)
    }

    pub fn on_timers<O: Operator>(
        rt: &mut Runtime<O>,
        fired: Vec<wit::Timer>,
        watermark: i64,
    ) -> Result<wit::Outcome, wit::Error> {
        rt.on_timers(fired.iter().map(|t| (&t.key[..], t.time)), watermark)
            .map(outcome)
            .map_err(error)
    }

    pub fn snapshot<O: Operator>(rt: &Runtime<O>) -> Result<Vec<u8>, wit::Error> {
        rt.snapshot().map_err(error)
    }

    pub fn restore<O: Operator>(
        rt: &mut Runtime<O>,
        bytes: &[u8],
        from_version: u32,
    ) -> Result<(), wit::Error> {
        rt.restore(bytes, from_version).map_err(error)
    }

    pub fn snapshot_begin<O: Operator>(rt: &mut Runtime<O>) -> Result<(), wit::Error> {
        rt.snapshot_begin().map_err(error)
    }

    pub fn snapshot_next<O: Operator>(
        rt: &mut Runtime<O>,
        max_bytes: u32,
    ) -> Result<Option<Vec<u8>>, wit::Error> {
        rt.snapshot_next(max_bytes as usize).map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_order_is_byte_order() {
        let mut keys: Vec<&[u8]> = vec![
            b"ab",
            b"ab\0",
            b"ab\x01",
            b"b",
            b"",
            b"abcdefghij",
            b"abcdefghi",
            b"abcdefgh\xff",
        ];
        let mut by_prefix = keys.clone();
        by_prefix.sort_unstable_by(|a, b| prefix(a).cmp(&prefix(b)).then_with(|| a.cmp(b)));
        keys.sort();
        assert_eq!(by_prefix, keys);
    }

    use crate::{Ctx, KeyState, Operator, Record};
    use serde::{Deserialize, Serialize};

    /// Counts per key (state `u64`, shape `counter`).
    #[derive(Default, Serialize, Deserialize)]
    struct Counter;
    impl Operator for Counter {
        type State = u64;
        const STATE_SHAPE: &'static str = "counter";
        fn on_event(
            &mut self,
            _: &Record<'_>,
            state: &mut KeyState<'_, u64>,
            _: &mut Ctx<'_>,
        ) -> Result<(), String> {
            let n = state.get().copied().unwrap_or(0);
            state.set(n + 1);
            Ok(())
        }
    }

    /// Keeps nothing (state `()`, shape by its type's name).
    #[derive(Default, Serialize, Deserialize)]
    struct Unit;
    impl Operator for Unit {
        type State = ();
        fn on_event(
            &mut self,
            _: &Record<'_>,
            _: &mut KeyState<'_, ()>,
            _: &mut Ctx<'_>,
        ) -> Result<(), String> {
            Ok(())
        }
    }

    /// Keeps nothing, and declares it takes over (drops) a counter's state.
    #[derive(Default, Serialize, Deserialize)]
    struct Drops;
    impl Operator for Drops {
        type State = ();
        const SHAPE_MIGRATES_FROM: &'static [(&'static str, u32)] = &[("counter", 1)];
        fn on_event(
            &mut self,
            _: &Record<'_>,
            _: &mut KeyState<'_, ()>,
            _: &mut Ctx<'_>,
        ) -> Result<(), String> {
            Ok(())
        }
        fn migrate_shape(_: &str, _: u32, _: &[u8]) -> Result<Option<()>, String> {
            Ok(None)
        }
    }

    /// Counts per key to 3, then clears the key; a value `x` is refused, a
    /// value `-` leaves the state alone.
    #[derive(Default, Serialize, Deserialize)]
    struct CountToThree;
    impl Operator for CountToThree {
        type State = u64;
        fn on_event(
            &mut self,
            record: &Record<'_>,
            state: &mut KeyState<'_, u64>,
            _: &mut Ctx<'_>,
        ) -> Result<(), String> {
            match record.value {
                b"x" => return Err("x".into()),
                b"-" => return Ok(()),
                _ => {}
            }
            match state.get().copied().unwrap_or(0) + 1 {
                3 => state.clear(),
                n => state.set(n),
            }
            Ok(())
        }
    }

    fn packed(records: &[(&str, &str)]) -> Packed {
        let mut p = Packed::default();
        for (k, v) in records {
            p.keys.extend_from_slice(k.as_bytes());
            p.key_ends.push(p.keys.len() as u32);
            p.values.extend_from_slice(v.as_bytes());
            p.value_ends.push(p.values.len() as u32);
            p.timestamps.push(NO_TIMESTAMP);
        }
        p
    }

    #[test]
    fn records_see_the_state_left_by_earlier_records_as_the_map_empties_and_fills() {
        // The map starts empty (records run without lookups), fills at the
        // first value, empties when `a` reaches 3 (inside a group of
        // GROUP records), stays empty to the next group, which starts
        // without lookups again, and fills again. Each record must see what
        // the records before it left, and a refused record keeps its index
        // in the batch.
        let mut input = vec![("a", "x"), ("a", ""), ("a", ""), ("a", "")];
        // Records 4.. keep the map empty to the end of the group that
        // started at record 2.
        input.extend(std::iter::repeat_n(("p", "-"), GROUP + 2 - input.len()));
        let again = input.len();
        input.extend([("a", "x"), ("a", ""), ("b", ""), ("b", "x"), ("a", "")]);
        // One call, and one record per call (the map is then empty at a
        // call's start).
        for split in [input.len(), 1] {
            let mut rt = Runtime::<CountToThree>::new();
            let mut rejected = Vec::new();
            for (at, chunk) in input.chunks(split).enumerate() {
                let out = rt.process(packed(chunk).view(), 0).unwrap();
                rejected.extend(
                    out.rejected
                        .into_iter()
                        .map(|(i, _)| i as usize + at * split),
                );
            }
            assert_eq!(rejected, vec![0, again, again + 3], "split {split}");
            assert_eq!(rt.state.get(b"a"), Some(&2), "split {split}");
            assert_eq!(rt.state.get(b"b"), Some(&1), "split {split}");
            assert_eq!(rt.key_count(), 2, "split {split}");
        }
    }

    #[test]
    fn a_decrease_anywhere_in_the_ends_is_found() {
        // Lengths across whole passes of eight and their remainders; a
        // decrease at each place, inside a pass and across two.
        for n in 0..27u32 {
            let ends: Vec<u32> = (0..n).map(|i| 3 * i + 1).collect();
            assert!(nondecreasing(&ends), "{n} rising ends");
            let flat = vec![5; n as usize];
            assert!(nondecreasing(&flat), "{n} equal ends");
            for at in 1..n as usize {
                let mut bad = ends.clone();
                bad[at] = bad[at - 1] - 1;
                assert!(!nondecreasing(&bad), "{n} ends, a decrease at {at}");
            }
        }
    }

    #[test]
    fn a_batch_with_offsets_out_of_range_is_refused_before_any_record_runs() {
        let good = packed(&[("a", "1"), ("bb", "22"), ("c", "3")]);
        type Spoil = fn(&mut Packed);
        let cases: [(&str, Spoil); 5] = [
            ("a key past its buffer", |p| {
                *p.key_ends.last_mut().unwrap() = 99
            }),
            ("a value past its buffer", |p| p.value_ends[2] = 99),
            ("a key end before the one before it", |p| p.key_ends[1] = 0),
            ("a value end before the one before it", |p| {
                p.value_ends[2] = 2
            }),
            ("a first key past its buffer", |p| p.key_ends[0] = 99),
        ];
        for (what, spoil) in cases {
            let mut batch = good.clone();
            spoil(&mut batch);
            let mut rt = Runtime::<Counter>::new();
            let e = rt.process(batch.view(), 0).unwrap_err();
            let Error::Other(e) = e else {
                panic!("{what}: {e:?}")
            };
            assert!(e.contains("offsets out of range"), "{what}: {e}");
            assert_eq!(rt.key_count(), 0, "{what}: no record ran");
        }
        let mut rt = Runtime::<Counter>::new();
        rt.process(good.view(), 0).unwrap();
        assert_eq!(rt.key_count(), 3);
    }

    fn counted() -> Vec<u8> {
        let mut rt = Runtime::<Counter>::new();
        rt.state.insert(b"k", 300);
        rt.snapshot().unwrap()
    }

    #[test]
    fn values_decode_exactly() {
        assert_eq!(decode::<u64>(&[5]), Ok(5));
        let e = decode::<()>(&[5]).unwrap_err();
        assert!(e.contains("1 trailing bytes"), "{e}");
        let e = decode::<u8>(&[5, 0, 0]).unwrap_err();
        assert!(e.contains("2 trailing bytes"), "{e}");
        // A counter's snapshot has its shape; a key whose value has a byte
        // too many is refused.
        let blob = counted();
        let env = envelope::Envelope::parse(&blob).unwrap();
        assert_eq!(env.shape, Some("counter"));
        let mut w = envelope::Writer::new(1, &crate::shape::<Counter>(), env.operator, 0);
        w.entry(b"k", &[5, 0]);
        let e = Runtime::<Counter>::new()
            .restore(&w.finish(), 1)
            .unwrap_err();
        assert!(
            matches!(&e, Error::State(m) if m.contains("state of key \"k\"") && m.contains("trailing")),
            "{e:?}"
        );
    }

    #[test]
    fn state_of_another_shape_restores_only_through_a_declared_migration() {
        let blob = counted();
        let mut unit = Runtime::<Unit>::new();
        let e = unit.restore(&blob, 1).unwrap_err();
        assert_eq!(
            e,
            Error::State(
                "the state has shape `counter` (version 1); this operator's state is `()` \
                 (version 1) and it does not declare a migration from `counter` version 1"
                    .into()
            )
        );
        let mut drops = Runtime::<Drops>::new();
        drops.restore(&blob, 1).unwrap();
        assert_eq!(drops.key_count(), 0);
        let mut again = Runtime::<Counter>::new();
        again.restore(&blob, 1).unwrap();
        assert_eq!(again.state.get(b"k"), Some(&300));
    }

    #[test]
    fn a_format_1_blob_restores_when_the_versions_match() {
        let mut blob = b"WEIR\x01".to_vec();
        blob.extend_from_slice(&1u32.to_le_bytes());
        blob.extend_from_slice(&0u32.to_le_bytes());
        blob.extend_from_slice(&1u64.to_le_bytes());
        blob.extend_from_slice(&1u32.to_le_bytes());
        blob.extend_from_slice(b"k");
        blob.extend_from_slice(&1u32.to_le_bytes());
        blob.push(7);
        let mut rt = Runtime::<Counter>::new();
        rt.restore(&blob, 1).unwrap();
        assert_eq!(rt.state.get(b"k"), Some(&7));
        assert!(rt.restore(&blob, 2).is_err(), "another version");
    }
}
