//! The pieces the state-machine benchmark times to split an event's cost
//! into stages: the plain native program grown one stage at a time (read,
//! split, parse, map), the host's file source alone (with and without the
//! routing hash), a job with a native operator that does nothing (the host
//! path without Wasm), and the guest's work over packed batches built in
//! the same process (plain loops, the SDK natively, the Wasm plugins).
//! Each stage's cost is the difference between two of these runs over the
//! same input; the benchmark prints them.

use std::collections::HashMap;
use std::hint::black_box;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use rustc_hash::FxBuildHasher;
use state_machine::State;
use weir::batch::{Batch, NO_TIMESTAMP, Origin, Outcome, Timer};
use weir::config::Plan;
use weir::plugin::{Operator, OperatorFactory};
use weir::source::{Output, Position};
use weir_guest::runtime::{BatchView, Runtime};

/// Events and the CPU and wall time they took.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    /// Events handled.
    pub events: u64,
    /// CPU time of the process.
    pub cpu: Duration,
    /// Wall time.
    pub wall: Duration,
}

impl Timed {
    /// Run `f` (which returns the events it handled) and time it.
    pub fn run(f: impl FnOnce() -> u64) -> Self {
        let (t, cpu) = (Instant::now(), weir::runtime::process_cpu_time());
        let events = f();
        Self {
            events,
            cpu: weir::runtime::process_cpu_time().saturating_sub(cpu),
            wall: t.elapsed(),
        }
    }

    /// The best (least CPU per event) of `n` runs of `f`.
    pub fn best_of(n: usize, mut f: impl FnMut() -> u64) -> Self {
        (0..n)
            .map(|_| Self::run(&mut f))
            .min_by(|a, b| a.ns_per_event().total_cmp(&b.ns_per_event()))
            .expect("at least one run")
    }

    /// CPU nanoseconds per event.
    pub fn ns_per_event(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e9 / self.events.max(1) as f64
    }

    /// Events per CPU-second.
    pub fn per_cpu_sec(&self) -> f64 {
        self.events as f64 / self.cpu.as_secs_f64().max(1e-9)
    }
}

/// One step of a xorshift generator (its next value, also left in `x`):
/// the benchmarks' inputs and the tests' kill times need no dependency for
/// randomness.
pub fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// A chain of dependent loads at random through a table: a random order of
/// its slots, each linked to the next and the last to the first, so a walk
/// goes once through all of them, each load's address the value of the
/// load before it.
pub struct LoadChain(Vec<u64>);

impl LoadChain {
    /// A chain through `mib` MiB.
    pub fn new(mib: usize) -> Self {
        Self::of_slots((mib << 20) / 8)
    }

    fn of_slots(slots: usize) -> Self {
        let mut order: Vec<u32> = (0..slots as u32).collect();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in (1..slots).rev() {
            order.swap(i, (xorshift(&mut x) % (i as u64 + 1)) as usize);
        }
        let mut next = vec![0u64; slots];
        for w in 0..slots {
            next[order[w] as usize] = u64::from(order[(w + 1) % slots]);
        }
        Self(next)
    }

    /// The machine's memory latency now: CPU ns per load of a walk of
    /// `steps` loads along the chain, best of 3. The plain program's map
    /// (about 9 MiB) is one such miss per event with nothing to overlap
    /// it, so its speed follows this figure, which moves with what the
    /// machine's other tenants leave of the shared L3; the benchmark prints
    /// it beside each input's table.
    pub fn latency_ns(&self, steps: u64) -> f64 {
        let t = Timed::best_of(3, || {
            let mut at = 0u64;
            for _ in 0..steps {
                at = self.0[at as usize];
            }
            black_box(at);
            steps
        });
        t.ns_per_event()
    }
}

/// The files of `dir`, in name order.
pub fn files_of(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("input folder")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
}

/// Write `events` state-machine events over `addresses` addresses picked
/// uniformly at random (the hard case for a state map: nearly every
/// address holds state, and consecutive events hit unrelated keys). Each
/// address follows the state machine; about one event in 1000 is invalid.
/// Lines are `address,event`, without timestamps: the input the issues'
/// figures are measured on (see [`write_generated_events`]).
pub fn write_uniform_events(dir: &Path, events: u64, addresses: u32, seed: u64) {
    use std::io::Write;
    std::fs::create_dir_all(dir).expect("events folder");
    let file = std::fs::File::create(dir.join("events-000000.csv")).expect("events file");
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    // 0 INITIAL, 1 W, 2 X, 3 Y, 4 Z.
    let mut states = vec![0u8; addresses as usize];
    let mut rng = seed.max(1);
    let mut next = || xorshift(&mut rng);
    for _ in 0..events {
        let r = next();
        let address = (((r >> 32) * u64::from(addresses)) >> 32) as u32;
        let s = &mut states[address as usize];
        let (event, after) = if r % 1000 == 0 {
            (b'f', *s)
        } else {
            match (*s, r & 0x100 != 0) {
                (0, false) => (b'a', 1),
                (0, true) => (b'c', 2),
                (1, _) => (b'b', 3),
                (2, false) => (b'b', 3),
                (2, true) => (b'd', 4),
                (3, _) => (b'e', 4),
                _ => (b'g', 0),
            }
        };
        *s = after;
        writeln!(w, "{address},{}", event as char).expect("write events");
    }
    w.flush().expect("flush events");
}

/// Write the events of the state-machine generator (`config`) as
/// `address,event` lines, without the timestamp column `weir generate`
/// adds, into files of about `config.file_size` bytes: the input of the
/// plain program the issues' figures come from (Flink's generator,
/// `address,event` lines). Returns the number of events.
pub fn write_generated_events(dir: &Path, config: &weir::generate::GenerateConfig) -> u64 {
    use std::io::Write;
    std::fs::create_dir_all(dir).expect("events folder");
    let create = |n: usize| {
        let file =
            std::fs::File::create(dir.join(format!("events-{n:06}.csv"))).expect("events file");
        std::io::BufWriter::with_capacity(1 << 20, file)
    };
    let (mut file, mut w, mut bytes, mut events) = (0, create(0), 0u64, 0u64);
    let mut line = Vec::with_capacity(16);
    weir::generate::each_event(config, |address, letter, _| {
        if bytes >= config.file_size {
            w.flush()?;
            file += 1;
            w = create(file);
            bytes = 0;
        }
        line.clear();
        writeln!(line, "{address},{}", letter as char)?;
        w.write_all(&line)?;
        bytes += line.len() as u64;
        events += 1;
        Ok(())
    })
    .expect("generating events");
    w.flush().expect("flush events");
    events
}

/// The plain program's stages, each including the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainStage {
    /// Read every file whole.
    Read,
    /// And split it into lines with `memchr`.
    Split,
    /// And parse each line's address to a `u32` and take its event byte.
    Parse,
}

/// The address and event byte of an `address,event[,...]` line, the plain
/// program's way (no validation beyond what the event needs).
#[inline(always)]
fn parse_line(line: &[u8]) -> Option<(u32, u8)> {
    let comma = memchr::memchr(b',', line)?;
    let mut a = 0u32;
    for &d in &line[..comma] {
        a = a
            .wrapping_mul(10)
            .wrapping_add(u32::from(d.wrapping_sub(b'0')));
    }
    Some((a, *line.get(comma + 1)?))
}

/// The plain program up to `stage`; returns the events (lines) seen.
pub fn plain_stage(files: &[PathBuf], stage: PlainStage) -> u64 {
    let mut events = 0u64;
    let mut sum = 0u64;
    for file in files {
        let data = std::fs::read(file).expect("read input");
        if stage == PlainStage::Read {
            events += data.len() as u64;
            black_box(&data);
            continue;
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &data) {
            let line = &data[start..end];
            start = end + 1;
            events += 1;
            if stage == PlainStage::Parse
                && let Some((a, e)) = parse_line(line)
            {
                sum = sum.wrapping_add(u64::from(a) ^ u64::from(e));
            }
        }
    }
    black_box(sum);
    events
}

/// What [`plain_state_machine`] did.
#[derive(Debug, Clone, Copy)]
pub struct PlainRun {
    /// Events read.
    pub events: u64,
    /// Alerts written.
    pub alerts: u64,
    /// Addresses holding state at the end.
    pub live_keys: usize,
}

/// The state-machine job as a plain single-threaded program would write it,
/// with no Weir in it: read each file of `input` whole (in name order),
/// split lines with `memchr`, parse the address to a `u32`, keep the state
/// in an `FxHashMap<u32, State>` (the plugin's one-byte state, stepped by
/// its transition table) and write the same JSON alerts to `out`. The
/// benchmark's yardstick.
pub fn plain_state_machine(files: &[PathBuf], out: &Path) -> PlainRun {
    use std::io::Write;
    let mut states: HashMap<u32, State, FxBuildHasher> = HashMap::default();
    let mut w =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out).expect("out"));
    let (mut events, mut alerts) = (0u64, 0u64);
    for file in files {
        let data = std::fs::read(file).expect("read input");
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &data) {
            let line = &data[start..end];
            start = end + 1;
            events += 1;
            let Some((address, event)) = parse_line(line) else {
                continue;
            };
            let current = states.get(&address).copied().unwrap_or(State::Initial);
            match current.transition(event) {
                Some(State::Terminal) => {
                    states.remove(&address);
                }
                Some(next) => {
                    states.insert(address, next);
                }
                None => {
                    alerts += 1;
                    writeln!(
                        w,
                        "{{\"address\":{address},\"state\":\"{}\",\"event\":\"{}\"}}",
                        current.name(),
                        event as char
                    )
                    .expect("write");
                }
            }
        }
    }
    w.flush().expect("flush");
    PlainRun {
        events,
        alerts,
        live_keys: states.len(),
    }
}

/// An [`Output`] that counts records (and, with `partitions > 1`, computes
/// each key's partition as the router does): the host's file source alone.
pub struct CountingOutput {
    /// Records seen.
    pub records: u64,
    partitions: u32,
    sum: u64,
}

impl CountingOutput {
    /// Count records; hash keys to `partitions` when more than one.
    pub fn new(partitions: u32) -> Self {
        Self {
            records: 0,
            partitions,
            sum: 0,
        }
    }
}

impl Output for CountingOutput {
    fn record(&mut self, key: Option<&[u8]>, value: &[u8], ts: i64, _: Origin) -> ControlFlow<()> {
        self.records += 1;
        let p = match key {
            Some(k) if self.partitions > 1 => {
                weir::partition::partition_for_key(k, self.partitions)
            }
            _ => 0,
        };
        self.sum = self
            .sum
            .wrapping_add(u64::from(p) ^ value.len() as u64 ^ ts as u64);
        ControlFlow::Continue(())
    }
    fn record_in(&mut self, _: usize, k: &[u8], v: &[u8], t: i64, o: Origin) -> ControlFlow<()> {
        self.record(Some(k), v, t, o)
    }
    fn malformed(&mut self, _: Origin, _: &str, _: &[u8]) -> weir::Result<()> {
        Ok(())
    }
    fn tick(&mut self) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    fn flush(&mut self) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    fn barrier_due(&mut self) -> Option<weir::source::Barrier> {
        None
    }
    fn event_time_barrier(&mut self, _: i64) -> Option<weir::source::Barrier> {
        None
    }
    fn barrier(&mut self, _: weir::source::Barrier, _: Position) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    fn end_of_input(&mut self, _: Position) -> ControlFlow<()> {
        black_box(self.sum);
        ControlFlow::Continue(())
    }
    fn next_barrier_id(&self) -> Option<u64> {
        None
    }
    fn committed_checkpoint(&self) -> Option<u64> {
        None
    }
    fn is_stopping(&self) -> bool {
        false
    }
    fn read_bytes(&mut self, _: u64) {}
    fn unit_done(&mut self) {}
    fn report_lag(&mut self, _: &[i64], _: &[i64]) {}
}

/// The plan's source read into a [`CountingOutput`]; returns the records.
pub fn host_source(plan: &Plan, partitions: u32) -> u64 {
    let mut source =
        weir::source::open(&plan.source, Arc::new(AtomicBool::new(false)), None).expect("source");
    let mut out = CountingOutput::new(partitions);
    source.run(&mut out).expect("source run");
    out.records
}

/// An operator that does nothing, natively: a job with it is the host
/// path without Wasm (source, router, batches, hand-off, sink).
pub struct NativeNoop;

fn empty_outcome() -> Outcome {
    Outcome {
        emitted: Batch::new(),
        timers: Vec::new(),
        rejected: Vec::new(),
    }
}

impl Operator for NativeNoop {
    fn name(&self) -> &str {
        "native-noop"
    }
    fn process(&mut self, batch: &Batch, _: i64) -> weir::Result<Outcome> {
        black_box(batch.len());
        Ok(empty_outcome())
    }
    fn on_timers(&mut self, _: &[Timer], _: i64) -> weir::Result<Outcome> {
        Ok(empty_outcome())
    }
    fn snapshot(&mut self) -> weir::Result<Vec<u8>> {
        Ok(Vec::new())
    }
    fn restore(&mut self, _: &[u8], _: u32) -> weir::Result<()> {
        Ok(())
    }
    fn init_with(&mut self, _: &[(String, String)]) -> weir::Result<()> {
        Ok(())
    }
    fn digest(&self) -> &str {
        "native-noop"
    }
    fn state_version(&mut self) -> weir::Result<u32> {
        Ok(1)
    }
    fn accepted_versions(&mut self) -> weir::Result<Vec<u32>> {
        Ok(vec![1])
    }
}

/// Makes [`NativeNoop`]s.
pub struct NativeNoopFactory;

impl OperatorFactory for NativeNoopFactory {
    fn name(&self) -> &str {
        "state-machine"
    }
    fn create(&self, _task: usize) -> weir::Result<Box<dyn Operator>> {
        Ok(Box::new(NativeNoop))
    }
    fn init(&self, _: &mut dyn Operator) -> weir::Result<()> {
        Ok(())
    }
}

/// Split every file of `files` into lines and pack them into batches of
/// `size` records as the router does for the state-machine job (key: the
/// first column; value: the line; timestamp: none), calling `each` on every
/// full batch and the last one. Returns the records.
pub fn for_each_batch(files: &[PathBuf], size: usize, mut each: impl FnMut(&Batch)) -> u64 {
    let mut batch = Batch::new();
    let mut records = 0u64;
    for file in files {
        let data = std::fs::read(file).expect("read input");
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &data) {
            let line = &data[start..end];
            start = end + 1;
            let key = memchr::memchr(b',', line).map_or(line, |c| &line[..c]);
            batch.push(key, line, NO_TIMESTAMP);
            records += 1;
            if batch.len() == size {
                each(&batch);
                batch.clear();
            }
        }
    }
    if !batch.is_empty() {
        each(&batch);
    }
    records
}

/// A borrowed view of `batch` for the SDK's runtime.
pub fn view(batch: &Batch) -> BatchView<'_> {
    BatchView {
        keys: &batch.keys,
        key_ends: &batch.key_ends,
        values: &batch.values,
        value_ends: &batch.value_ends,
        timestamps: &batch.timestamps,
    }
}

/// Parse every record of `batch` as the state-machine operator does, with
/// no SDK and no state: the guest's parsing alone.
pub fn parse_batch(batch: &Batch) {
    let mut sum = 0u64;
    for r in batch.iter() {
        if let Ok((a, e)) = state_machine::parse_event(r.value) {
            sum = sum.wrapping_add(u64::from(a) ^ u64::from(e));
        }
    }
    black_box(sum);
}

/// The state-machine step over `batch` with a plain `FxHashMap<u32, State>`
/// (no SDK); returns the alerts.
pub fn plain_map_batch(batch: &Batch, states: &mut HashMap<u32, State, FxBuildHasher>) -> u64 {
    let mut alerts = 0;
    for r in batch.iter() {
        let Ok((address, event)) = state_machine::parse_event(r.value) else {
            continue;
        };
        let current = states.get(&address).copied().unwrap_or(State::Initial);
        match current.transition(event) {
            Some(State::Terminal) => {
                states.remove(&address);
            }
            Some(next) => {
                states.insert(address, next);
            }
            None => alerts += 1,
        }
    }
    alerts
}

/// An SDK operator that parses each record as the state machine does and
/// keeps no state: the SDK's per-record plumbing around the parse.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct ParseOnly;

impl weir_guest::Operator for ParseOnly {
    type State = ();
    fn on_event(
        &mut self,
        record: &weir_guest::Record<'_>,
        _: &mut weir_guest::KeyState<'_, ()>,
        _: &mut weir_guest::Ctx<'_>,
    ) -> Result<(), String> {
        black_box(state_machine::parse_event(record.value)?);
        Ok(())
    }
}

/// The SDK's runtime for `O`, natively, over `batch`.
pub fn sdk_batch<O: weir_guest::Operator>(rt: &mut Runtime<O>, batch: &Batch) {
    black_box(rt.process(view(batch), 0).expect("native process"));
}

#[cfg(test)]
mod tests {
    /// The latency probe visits every slot once before it comes back.
    #[test]
    fn the_load_chain_is_one_cycle_through_every_slot() {
        for slots in [1usize, 2, 3, 1000, 4096] {
            let next = super::LoadChain::of_slots(slots).0;
            let mut seen = vec![false; slots];
            let mut at = 0usize;
            for _ in 0..slots {
                assert!(!seen[at], "slot {at} visited twice ({slots} slots)");
                seen[at] = true;
                at = next[at] as usize;
            }
            assert_eq!(at, 0, "back at the start after {slots} loads");
        }
    }
}
