//! The state-machine model: the DFA's states and transitions with the
//! probabilities Flink's generator picks them with, and the pool of live
//! machines advanced one event at a time ([`EventGenerator`]).

use std::collections::{HashSet, VecDeque};

use super::config::GenerateConfig;
use super::rng::Rng;

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
    /// Never panics: settings [`generate`](super::generate) would reject are clamped instead
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The default settings with `seed`.
    fn seeded(seed: u64) -> GenerateConfig {
        GenerateConfig {
            seed,
            ..GenerateConfig::default()
        }
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
    fn without_errors_the_stream_obeys_the_dfa() {
        let cfg = GenerateConfig {
            error_prob: 0.0,
            ..seeded(3)
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
            ..seeded(5)
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
            ..seeded(9)
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
            ..seeded(11)
        };
        let (violations, a, c) = replay(EventGenerator::new(&cfg).take(500_000));
        assert_eq!(violations, 0);
        let starts = (a + c) as f64;
        assert!(starts > 50_000.0, "{starts} machine starts");
        let freq_a = a as f64 / starts;
        assert!((freq_a - 0.6).abs() < 0.01, "P(a | Initial) = {freq_a}");
    }
}
