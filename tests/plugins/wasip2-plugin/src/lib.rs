//! Test plugin built for `wasm32-wasip2`: it uses what makes that target
//! import WASI, and puts it in its output. Each record becomes
//! `value,distinct,salt,clock,count`: `salt` hashes the value with the
//! `RandomState` made at `init` (seeded from `wasi:random`), `clock` is
//! `SystemTime::now()` in nanoseconds, `count` is the key's running count
//! (keyed state, so a restore is checked) and `distinct` the number of
//! distinct bytes in the value, counted in a `HashMap`. Under real WASI
//! two runs differ; under Weir's profile they are byte-identical.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use weir_guest::{Config, Ctx, KeyState, Operator, Record};

#[derive(Default, Serialize, Deserialize)]
pub struct Wasip2 {
    #[serde(skip)]
    hasher: Option<RandomState>,
}

impl Operator for Wasip2 {
    type State = u64;

    fn init(&mut self, _config: &Config) -> Result<(), String> {
        self.hasher = Some(RandomState::new());
        Ok(())
    }

    fn on_event(
        &mut self,
        record: &Record<'_>,
        state: &mut KeyState<'_, u64>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), String> {
        let salt = self
            .hasher
            .as_ref()
            .ok_or("init was not called")?
            .hash_one(record.value);
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let count = state.get().copied().unwrap_or(0) + 1;
        state.set(count);
        let mut bytes: HashMap<u8, u32> = HashMap::new();
        for b in record.value {
            *bytes.entry(*b).or_default() += 1;
        }
        let distinct = bytes.len();
        let value = String::from_utf8_lossy(record.value);
        let line = format!("{value},{distinct},{salt:016x},{clock},{count}");
        ctx.emit(record.key, line.as_bytes(), record.timestamp);
        Ok(())
    }
}

weir_guest::export_operator!(Wasip2);
