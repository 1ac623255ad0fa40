//! `weir generate`: a seeded, deterministic event generator for the classic
//! Apache Flink state-machine example.
//!
//! It mirrors `EventsGenerator.next` from Flink's
//! `flink-examples-streaming` (`statemachine/generator/EventsGenerator.java`):
//! a pool of live state machines (one per address) is advanced one random
//! transition at a time, new machines are started at random addresses, and
//! with a small probability an *invalid* transition is emitted and the machine
//! is forgotten. The DFA is:
//!
//! ```text
//!           +--[a]--> W --[b]--> Y --[e]---+
//!           |                    ^         |
//!   Initial-+                    |         +--> Z --[g]--> Terminal
//!           |                    |         |
//!           +--[c]--> X --[b]----+         |
//!                     |                    |
//!                     +--------[d]---------+
//! ```
//!
//! with the generator picking `a`/`c` from Initial with probability 0.6/0.4 and
//! `b`/`d` from X with 0.2/0.8; every other (state, letter) pair is invalid
//! (`f` is never valid).
//!
//! The random numbers come from a self-contained xoshiro256** generator seeded
//! through SplitMix64, so the output for a given seed and configuration never
//! changes with dependency versions or platforms.
//!
//! [`generate`] writes the events as CSV lines `address,event,timestamp_ms`
//! into numbered files `events-000000.csv`, `events-000001.csv`, ...

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Settings of `weir generate`.
#[derive(Debug, Clone)]
pub struct GenerateConfig {
    /// Seed of the random generator; equal seeds (and settings) give
    /// byte-identical output. Default 42.
    pub seed: u64,
    /// Total number of events to write. Default 1,000,000.
    pub events: u64,
    /// Cap of the pool of concurrently live state machines (Flink hard-codes
    /// 1000). Must be at least 1. Default 1000.
    pub max_machines: usize,
    /// Smallest address a new state machine may get (inclusive). Default 0.
    pub min_address: u32,
    /// Bound of the addresses new state machines may get (exclusive); must be
    /// greater than `min_address`. Default 10,000.
    pub max_address: u32,
    /// Probability, in `[0, 1]`, that an advanced machine emits an invalid
    /// transition instead of a valid one (and is then forgotten).
    /// Default 0.001.
    pub error_prob: f64,
    /// A file is closed, and the next line goes to a new file, once it holds
    /// at least this many bytes; lines are never split across files. Must be
    /// positive. Default 64 MiB.
    pub file_size: u64,
    /// Timestamp (milliseconds since the Unix epoch) of the first event.
    /// Default 1,700,000,000,000.
    pub start_time_ms: i64,
    /// Event time advances by 1 ms every this many events: event `i`
    /// (0-based) gets `start_time_ms + i / events_per_ms`. Must be at least 1.
    /// Default 1.
    pub events_per_ms: u64,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            events: 1_000_000,
            max_machines: 1000,
            min_address: 0,
            max_address: 10_000,
            error_prob: 0.001,
            file_size: 64 * 1024 * 1024,
            start_time_ms: 1_700_000_000_000,
            events_per_ms: 1,
        }
    }
}

impl GenerateConfig {
    /// Rejects settings `generate` cannot honour, as `InvalidInput` errors.
    fn validate(&self) -> io::Result<()> {
        let invalid = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        if self.max_address <= self.min_address {
            return invalid(format!(
                "generate: max_address ({}) must be greater than min_address ({})",
                self.max_address, self.min_address
            ));
        }
        if self.max_machines == 0 {
            return invalid("generate: max_machines must be at least 1".to_owned());
        }
        if !(0.0..=1.0).contains(&self.error_prob) {
            return invalid(format!(
                "generate: error_prob ({}) must be between 0 and 1",
                self.error_prob
            ));
        }
        if self.file_size == 0 {
            return invalid("generate: file_size must be greater than 0 bytes".to_owned());
        }
        if self.events_per_ms == 0 {
            return invalid("generate: events_per_ms must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// What a run wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateReport {
    /// Number of events (lines) written.
    pub events: u64,
    /// How many of them are deliberately invalid transitions.
    pub injected_errors: u64,
    /// The files written, in write order (which is also name order).
    pub files: Vec<PathBuf>,
    /// Total bytes written over all files.
    pub bytes: u64,
}

/// Size of the write buffer of each output file.
const WRITE_BUFFER: usize = 1 << 20;

/// Write events into `dir` (created if missing) as files named
/// `events-000000.csv`, `events-000001.csv`, ... (zero-padded so name order is
/// write order). Each line: `address,event,timestamp_ms\n`, e.g.
/// `4711,a,1700000000000`.
///
/// A file is rolled once it reaches `config.file_size` bytes; no file is
/// created for zero events. Existing files with the same names are
/// overwritten; other files in `dir` are left alone (so a directory reused
/// for a smaller run may still hold higher-numbered files of an earlier one).
///
/// # Errors
///
/// `InvalidInput` if the configuration is invalid (`max_address <=
/// min_address`, `max_machines == 0`, `error_prob` outside `[0, 1]`,
/// `file_size == 0` or `events_per_ms == 0`); otherwise any I/O error of
/// creating the directory or writing the files.
pub fn generate(dir: &Path, config: &GenerateConfig) -> io::Result<GenerateReport> {
    config.validate()?;
    std::fs::create_dir_all(dir)?;

    let mut generator = EventGenerator::new(config);
    let mut files = Vec::new();
    let mut out: Option<BufWriter<File>> = None;
    let mut file_bytes = 0_u64;
    let mut total_bytes = 0_u64;
    let mut line = [0_u8; LINE_CAPACITY];

    for i in 0..config.events {
        let (address, letter) = generator.next_event();
        let timestamp = timestamp_of(config, i);
        let len = format_line(&mut line, address, letter, timestamp);

        let writer = match out.as_mut() {
            Some(writer) => writer,
            None => {
                let path = dir.join(format!("events-{:06}.csv", files.len()));
                let file = File::create(&path)?;
                files.push(path);
                file_bytes = 0;
                out.insert(BufWriter::with_capacity(WRITE_BUFFER, file))
            }
        };
        writer.write_all(&line[..len])?;
        file_bytes += len as u64;
        total_bytes += len as u64;

        if file_bytes >= config.file_size
            && let Some(writer) = out.take()
        {
            finish(writer)?;
        }
    }
    if let Some(writer) = out.take() {
        finish(writer)?;
    }

    Ok(GenerateReport {
        events: config.events,
        injected_errors: generator.injected_errors(),
        files,
        bytes: total_bytes,
    })
}

/// Flushes a finished file, surfacing errors a drop would swallow.
fn finish(writer: BufWriter<File>) -> io::Result<()> {
    writer
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?;
    Ok(())
}

/// `start_time_ms + i / events_per_ms`, saturating instead of overflowing.
fn timestamp_of(config: &GenerateConfig, i: u64) -> i64 {
    let offset = i / config.events_per_ms.max(1);
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    config.start_time_ms.saturating_add(offset)
}

/// Longest line: a u32 (10 digits), an i64 (20 chars), two commas, a letter
/// and a newline.
const LINE_CAPACITY: usize = 10 + 1 + 1 + 1 + 20 + 1;

/// Formats `address,letter,timestamp\n` into `buf`, returning its length.
fn format_line(buf: &mut [u8; LINE_CAPACITY], address: u32, letter: u8, timestamp: i64) -> usize {
    let mut len = write_u64(&mut buf[..], u64::from(address));
    buf[len] = b',';
    buf[len + 1] = letter;
    buf[len + 2] = b',';
    len += 3;
    if timestamp < 0 {
        buf[len] = b'-';
        len += 1;
    }
    len += write_u64(&mut buf[len..], timestamp.unsigned_abs());
    buf[len] = b'\n';
    len + 1
}

/// Writes the decimal digits of `value` at the start of `out`, returning how
/// many were written. `out` must hold at least 20 bytes.
fn write_u64(out: &mut [u8], mut value: u64) -> usize {
    let mut digits = [0_u8; 20];
    let mut pos = digits.len();
    loop {
        pos -= 1;
        digits[pos] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    let n = digits.len() - pos;
    out[..n].copy_from_slice(&digits[pos..]);
    n
}

/// A state of the DFA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum State {
    Initial,
    W,
    X,
    Y,
    Z,
    Terminal,
}

/// An outgoing transition: event letter, target state, probability.
type Transition = (u8, State, f64);

impl State {
    /// The valid transitions and the probabilities the generator picks them
    /// with (they sum to 1 for every non-terminal state).
    fn transitions(self) -> &'static [Transition] {
        match self {
            State::Initial => &[(b'a', State::W, 0.6), (b'c', State::X, 0.4)],
            State::W => &[(b'b', State::Y, 1.0)],
            State::X => &[(b'b', State::Y, 0.2), (b'd', State::Z, 0.8)],
            State::Y => &[(b'e', State::Z, 1.0)],
            State::Z => &[(b'g', State::Terminal, 1.0)],
            State::Terminal => &[],
        }
    }

    /// The letters `a..=g` that are invalid from this state.
    fn invalid_letters(self) -> &'static [u8] {
        match self {
            State::Initial => b"bdefg",
            State::W => b"acdefg",
            State::X => b"acefg",
            State::Y => b"abcdfg",
            State::Z => b"abcdef",
            State::Terminal => b"abcdefg",
        }
    }

    /// Picks a valid transition with the DFA's probabilities, like Flink's
    /// `State.randomTransition`. Must not be called on `Terminal`.
    fn random_transition(self, rng: &mut Rng) -> (u8, State) {
        match self.transitions() {
            [] => unreachable!("no transition from the terminal state"),
            [(letter, next, _)] => (*letter, *next),
            transitions => {
                let p = rng.next_f64();
                let mut mass = 0.0;
                for &(letter, next, prob) in transitions {
                    mass += prob;
                    if p < mass {
                        return (letter, next);
                    }
                }
                // Rounding left `p` above the summed mass: take the last one.
                let &(letter, next, _) = transitions.last().expect("non-empty");
                (letter, next)
            }
        }
    }

    /// Picks a letter uniformly among those invalid from this state, like
    /// Flink's `State.randomInvalidTransition`.
    fn random_invalid(self, rng: &mut Rng) -> u8 {
        let letters = self.invalid_letters();
        letters[rng.below(letters.len() as u64) as usize]
    }
}

/// The generator as an iterator of (address, event letter as u8) without
/// files, for tests and benchmarks; `injected_errors()` tells how many invalid
/// events it produced so far.
pub struct EventGenerator {
    rng: Rng,
    /// Live machines in insertion order (Flink's `LinkedHashMap`).
    pool: VecDeque<(u32, State)>,
    /// Addresses present in `pool`.
    members: HashSet<u32>,
    max_machines: f64,
    min_address: u32,
    address_span: u64,
    error_prob: f64,
    injected_errors: u64,
}

impl EventGenerator {
    /// A generator for `config` (only `seed`, `max_machines`, the address
    /// range and `error_prob` matter here).
    ///
    /// Never panics: settings [`generate`] would reject are clamped instead
    /// (`max_machines` to at least 1, an empty address range to the single
    /// address `min_address`, `error_prob` into `[0, 1]`, NaN to 0).
    pub fn new(config: &GenerateConfig) -> Self {
        let max_machines = config.max_machines.max(1);
        let address_span = u64::from(config.max_address.saturating_sub(config.min_address)).max(1);
        let error_prob = if config.error_prob.is_nan() {
            0.0
        } else {
            config.error_prob.clamp(0.0, 1.0)
        };
        Self {
            rng: Rng::new(config.seed),
            pool: VecDeque::with_capacity(max_machines.min(1 << 20)),
            members: HashSet::with_capacity(max_machines.min(1 << 20)),
            max_machines: max_machines as f64,
            min_address: config.min_address,
            address_span,
            error_prob,
            injected_errors: 0,
        }
    }

    /// The next event as `(address, letter)`, the letter one of `b'a'..=b'g'`.
    pub fn next_event(&mut self) -> (u32, u8) {
        loop {
            let p = self.rng.next_f64();
            if p * self.max_machines >= self.pool.len() as f64 {
                // Start a new state machine at a random address.
                let offset = self.rng.below(self.address_span);
                // `offset < max_address - min_address`, so this cannot wrap.
                let address = self.min_address.wrapping_add(offset as u32);
                if self.members.contains(&address) {
                    // Collision with a live machine: try again (Flink recurses).
                    continue;
                }
                let (letter, next) = State::Initial.random_transition(&mut self.rng);
                self.pool.push_back((address, next));
                self.members.insert(address);
                return (address, letter);
            }

            // Advance an existing machine: skip a few, take the next.
            let skip = self.rng.below(self.pool.len() as u64).min(20) as usize;
            let (address, state) = self
                .pool
                .remove(skip)
                .expect("skip is below the pool length");
            if p < self.error_prob {
                // Invalid transition; the machine is forgotten.
                self.members.remove(&address);
                self.injected_errors += 1;
                return (address, state.random_invalid(&mut self.rng));
            }
            let (letter, next) = state.random_transition(&mut self.rng);
            if next == State::Terminal {
                self.members.remove(&address);
            } else {
                self.pool.push_back((address, next));
            }
            return (address, letter);
        }
    }

    /// How many invalid events this generator has produced so far.
    pub fn injected_errors(&self) -> u64 {
        self.injected_errors
    }
}

impl Iterator for EventGenerator {
    type Item = (u32, u8);

    fn next(&mut self) -> Option<(u32, u8)> {
        Some(self.next_event())
    }
}

/// xoshiro256** seeded through SplitMix64: small, fast, and fixed forever, so
/// a seed always yields the same events.
struct Rng {
    s: [u64; 4],
}

impl Rng {
    fn new(seed: u64) -> Self {
        let mut sm = seed;
        let mut s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        if s == [0; 4] {
            // The one state xoshiro cannot leave; SplitMix64 practically never
            // produces it, but guard anyway.
            s[0] = 1;
        }
        Self { s }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` from the top 53 bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1_u64 << 53) as f64)
    }

    /// Uniform in `[0, n)` without bias (Lemire's multiply-and-reject);
    /// `n` must be positive.
    fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }
}

/// One step of SplitMix64, used to expand the seed into xoshiro's state.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::{SystemTime, UNIX_EPOCH};

    /// A fresh, empty scratch directory (std only, no tempfile crate).
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let dir = std::env::temp_dir().join(format!(
                "weir-generate-{name}-{}-{nanos}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn config(seed: u64, events: u64) -> GenerateConfig {
        GenerateConfig {
            seed,
            events,
            ..GenerateConfig::default()
        }
    }

    fn read_all(files: &[PathBuf]) -> Vec<u8> {
        files
            .iter()
            .flat_map(|f| std::fs::read(f).expect("read generated file"))
            .collect()
    }

    /// The DFA step: `None` for an invalid transition.
    fn step(state: State, letter: u8) -> Option<State> {
        state
            .transitions()
            .iter()
            .find(|(l, _, _)| *l == letter)
            .map(|&(_, next, _)| next)
    }

    /// Replays events through the DFA per address, as the Flink job does;
    /// an invalid transition or Terminal clears the address. Returns the
    /// number of violations and the (a, c) counts of machine starts.
    fn replay(events: impl IntoIterator<Item = (u32, u8)>) -> (u64, u64, u64) {
        let mut states: HashMap<u32, State> = HashMap::new();
        let (mut violations, mut a, mut c) = (0, 0, 0);
        for (address, letter) in events {
            let current = states.remove(&address).unwrap_or(State::Initial);
            if current == State::Initial {
                match letter {
                    b'a' => a += 1,
                    b'c' => c += 1,
                    _ => {}
                }
            }
            match step(current, letter) {
                None => violations += 1,
                Some(State::Terminal) => {}
                Some(next) => {
                    states.insert(address, next);
                }
            }
        }
        (violations, a, c)
    }

    #[test]
    fn invalid_letter_tables_match_the_dfa() {
        for state in [
            State::Initial,
            State::W,
            State::X,
            State::Y,
            State::Z,
            State::Terminal,
        ] {
            let expected: Vec<u8> = (b'a'..=b'g')
                .filter(|&l| step(state, l).is_none())
                .collect();
            assert_eq!(state.invalid_letters(), &expected[..], "{state:?}");
            let mass: f64 = state.transitions().iter().map(|t| t.2).sum();
            if state != State::Terminal {
                assert!((mass - 1.0).abs() < 1e-12, "{state:?}");
            }
        }
        assert_eq!(step(State::Initial, b'f'), None);
    }

    #[test]
    fn rng_is_fixed_and_below_is_in_range() {
        // SplitMix64's reference output for seed 0.
        let mut sm = 0;
        assert_eq!(splitmix64(&mut sm), 0xe220_a839_7b1d_cdaf);
        // xoshiro256**'s published reference outputs from the state {1, 2, 3, 4}.
        let mut reference = Rng { s: [1, 2, 3, 4] };
        let out: Vec<u64> = (0..4).map(|_| reference.next_u64()).collect();
        assert_eq!(out, [11520, 0, 1_509_978_240, 1_215_971_899_390_074_240]);
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut rng = Rng::new(1);
        for n in [1_u64, 2, 3, 7, 1000, u64::MAX] {
            for _ in 0..1000 {
                assert!(rng.below(n) < n);
            }
        }
        for _ in 0..10_000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
        // Pin the stream so accidental changes to the generator are caught.
        let mut rng = Rng::new(42);
        let first: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(
            first,
            [
                0x1578_0b2e_0c2e_c716,
                0x6104_d986_6d11_3a7e,
                0xae17_5332_39e4_99a1
            ]
        );
        assert_ne!(Rng::new(42).next_u64(), Rng::new(43).next_u64());
    }

    #[test]
    fn line_formatting() {
        let mut buf = [0_u8; LINE_CAPACITY];
        let n = format_line(&mut buf, 4711, b'a', 1_700_000_000_000);
        assert_eq!(&buf[..n], b"4711,a,1700000000000\n");
        let n = format_line(&mut buf, 0, b'g', 0);
        assert_eq!(&buf[..n], b"0,g,0\n");
        let n = format_line(&mut buf, u32::MAX, b'f', i64::MIN);
        assert_eq!(&buf[..n], b"4294967295,f,-9223372036854775808\n");
        assert_eq!(n, LINE_CAPACITY);
        let n = format_line(&mut buf, 10, b'b', i64::MAX);
        assert_eq!(&buf[..n], b"10,b,9223372036854775807\n");
    }

    #[test]
    fn same_seed_same_bytes_different_seed_different() {
        let (d1, d2, d3) = (
            Scratch::new("same1"),
            Scratch::new("same2"),
            Scratch::new("diff"),
        );
        let r1 = generate(&d1.0, &config(7, 20_000)).unwrap();
        let r2 = generate(&d2.0, &config(7, 20_000)).unwrap();
        let r3 = generate(&d3.0, &config(8, 20_000)).unwrap();
        let (b1, b2, b3) = (
            read_all(&r1.files),
            read_all(&r2.files),
            read_all(&r3.files),
        );
        assert_eq!(b1, b2);
        assert_eq!(r1.bytes, r2.bytes);
        assert_eq!(r1.injected_errors, r2.injected_errors);
        assert_ne!(b1, b3);
    }

    #[test]
    fn counts_rolling_and_line_shape() {
        let dir = Scratch::new("roll");
        let cfg = GenerateConfig {
            events: 10_000,
            file_size: 32 * 1024,
            events_per_ms: 3,
            ..GenerateConfig::default()
        };
        let report = generate(&dir.0, &cfg).unwrap();
        assert_eq!(report.events, 10_000);
        assert!(report.files.len() > 3, "{} files", report.files.len());

        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        assert_eq!(names, report.files);
        for (i, f) in report.files.iter().enumerate() {
            assert_eq!(
                f.file_name().unwrap().to_str().unwrap(),
                format!("events-{i:06}.csv")
            );
        }

        let mut lines = 0_u64;
        let mut bytes = 0_u64;
        let mut events = Vec::new();
        for (i, f) in report.files.iter().enumerate() {
            let data = std::fs::read(f).unwrap();
            bytes += data.len() as u64;
            assert_eq!(data.last(), Some(&b'\n'), "{f:?} ends mid-line");
            // Every file but the last reached the roll size, and only its
            // last line crossed it.
            if i + 1 < report.files.len() {
                assert!(data.len() as u64 >= cfg.file_size);
                assert!((data.len() as u64) < cfg.file_size + LINE_CAPACITY as u64);
            }
            let text = String::from_utf8(data).unwrap();
            for line in text.lines() {
                let mut parts = line.split(',');
                let address: u32 = parts.next().unwrap().parse().unwrap();
                let letter = parts.next().unwrap();
                let ts: i64 = parts.next().unwrap().parse().unwrap();
                assert!(parts.next().is_none(), "{line}");
                assert_eq!(letter.len(), 1);
                let letter = letter.as_bytes()[0];
                assert!((b'a'..=b'g').contains(&letter), "{line}");
                assert!((cfg.min_address..cfg.max_address).contains(&address));
                assert_eq!(ts, cfg.start_time_ms + (lines / 3) as i64, "{line}");
                events.push((address, letter));
                lines += 1;
            }
        }
        assert_eq!(lines, 10_000);
        assert_eq!(bytes, report.bytes);

        // The files hold exactly the generator's stream.
        let expected: Vec<(u32, u8)> = EventGenerator::new(&cfg).take(10_000).collect();
        assert_eq!(events, expected);
    }

    #[test]
    fn zero_events_write_no_files() {
        let dir = Scratch::new("empty");
        let report = generate(&dir.0, &config(1, 0)).unwrap();
        assert_eq!(
            report,
            GenerateReport {
                events: 0,
                injected_errors: 0,
                files: vec![],
                bytes: 0
            }
        );
        assert!(dir.0.is_dir());
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let dir = Scratch::new("invalid");
        let bad = [
            GenerateConfig {
                max_address: 5,
                min_address: 5,
                ..GenerateConfig::default()
            },
            GenerateConfig {
                max_machines: 0,
                ..GenerateConfig::default()
            },
            GenerateConfig {
                error_prob: 1.5,
                ..GenerateConfig::default()
            },
            GenerateConfig {
                error_prob: f64::NAN,
                ..GenerateConfig::default()
            },
            GenerateConfig {
                file_size: 0,
                ..GenerateConfig::default()
            },
            GenerateConfig {
                events_per_ms: 0,
                ..GenerateConfig::default()
            },
        ];
        for cfg in bad {
            let err = generate(&dir.0, &cfg).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{cfg:?}");
        }
        assert!(!dir.0.exists(), "nothing is created for a rejected config");
    }

    #[test]
    fn without_errors_the_stream_obeys_the_dfa() {
        let cfg = GenerateConfig {
            error_prob: 0.0,
            ..config(3, 0)
        };
        let mut generator = EventGenerator::new(&cfg);
        let events: Vec<(u32, u8)> = (&mut generator).take(300_000).collect();
        assert_eq!(generator.injected_errors(), 0);
        let (violations, _, _) = replay(events);
        assert_eq!(violations, 0);
        assert!(generator.pool.len() <= cfg.max_machines);
        assert_eq!(generator.pool.len(), generator.members.len());
    }

    #[test]
    fn injected_errors_show_up_as_violations() {
        let cfg = GenerateConfig {
            error_prob: 0.01,
            ..config(5, 0)
        };
        let mut generator = EventGenerator::new(&cfg);
        let events: Vec<(u32, u8)> = (&mut generator).take(300_000).collect();
        let injected = generator.injected_errors();
        assert!(injected > 0);
        let (violations, _, _) = replay(events);
        assert!(violations >= injected, "{violations} < {injected}");
        // The replay tracks the generator's own state, so each injected
        // error is exactly one violation.
        assert_eq!(violations, injected);
    }

    #[test]
    fn pool_respects_a_small_cap_and_a_small_address_range() {
        let cfg = GenerateConfig {
            max_machines: 5,
            min_address: 100,
            max_address: 103,
            error_prob: 0.05,
            ..config(9, 0)
        };
        let mut generator = EventGenerator::new(&cfg);
        for _ in 0..50_000 {
            let (address, _) = generator.next_event();
            assert!((100..103).contains(&address));
            assert!(generator.pool.len() <= 3);
            assert_eq!(generator.pool.len(), generator.members.len());
        }
    }

    #[test]
    fn initial_transitions_follow_the_probabilities() {
        let cfg = GenerateConfig {
            error_prob: 0.0,
            ..config(11, 0)
        };
        let (violations, a, c) = replay(EventGenerator::new(&cfg).take(500_000));
        assert_eq!(violations, 0);
        let starts = (a + c) as f64;
        assert!(starts > 50_000.0, "{starts} machine starts");
        let freq_a = a as f64 / starts;
        assert!((freq_a - 0.6).abs() < 0.01, "P(a | Initial) = {freq_a}");
    }
}
