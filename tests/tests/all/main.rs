//! Weir's end-to-end tests: real pipelines over real files with plugins
//! built from source. One test binary, one module per area.

mod cache;
mod control;
mod dead_letter_topic;
mod dead_letters;
mod faults;
mod files;
mod follow;
mod fork;
mod group;
mod hardening;
mod hybrid;
mod hybrid_archive;
mod kafka;
mod kafka_epochs;
mod kafka_faults;
mod kafka_soak;
mod languages;
mod messages;
mod newcomer;
mod operate;
mod partitions;
mod probation;
mod progress;
mod rescale;
mod restart;
mod savepoints;
mod snapshots;
mod state_machine;
mod supervise;
mod swaps;
mod timelines;
mod wasi;
