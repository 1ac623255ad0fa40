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
//! into numbered files `events-000000.csv`, `events-000001.csv`, ...;
//! [`each_event`] hands the same events to another output (the command
//! line produces them to a Kafka topic).
//!
//! Files: `config.rs` (the settings), `model.rs` (the DFA and the pool of
//! machines), `rng.rs` (the random numbers), `output.rs` (the CSV files).

mod config;
mod model;
mod output;
mod rng;

pub use config::GenerateConfig;
pub use model::EventGenerator;
pub use output::{GenerateReport, each_event, generate};
