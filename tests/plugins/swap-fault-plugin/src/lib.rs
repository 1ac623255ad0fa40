//! Test plugin for hot swaps: the state machine, reading its state as is,
//! that fails on its first record in the way its configuration's `fault`
//! names: `trap` (a panic), `hog` (allocates without bound) or `spin`
//! (loops forever); or, with `boom`, only on a record whose value holds
//! `boom` (a version that passes its probation and fails later). Without
//! `fault` it is the state machine.

#[allow(dead_code)] // the shared logic has more than this plugin uses
#[path = "../../../../plugins/state-machine/src/logic.rs"]
mod logic;

use serde::{Deserialize, Serialize};
use weir_guest::{Config, Ctx, KeyState, Operator, Record};

#[derive(Default, Serialize, Deserialize)]
pub struct Faulty {
    #[serde(skip)]
    fault: String,
    #[serde(skip)]
    hoard: Vec<Vec<u8>>,
}

impl Operator for Faulty {
    type State = logic::State;
    const STATE_SHAPE: &'static str = logic::SHAPE;

    fn init(&mut self, config: &Config) -> Result<(), String> {
        self.fault = config.get("fault").unwrap_or_default().to_string();
        Ok(())
    }

    fn on_event(
        &mut self,
        record: &Record<'_>,
        state: &mut KeyState<'_, logic::State>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), String> {
        match self.fault.as_str() {
            "trap" => panic!("this plugin traps on purpose"),
            "hog" => loop {
                self.hoard.push(vec![1u8; 1 << 20]);
            },
            "spin" => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "boom" if record.value.windows(4).any(|w| w == b"boom") => {
                panic!("boom: this version traps on purpose")
            }
            _ => logic::step(record, state, ctx, logic::write_alert),
        }
    }
}

weir_guest::export_operator!(Faulty);
