//! Test plugin for hot swaps: the state machine with state version 2, whose
//! migration from version 1 (the state machine's) traps, so `restore`
//! traps.

#[allow(dead_code)] // the shared logic has more than this plugin uses
#[path = "../../../../plugins/state-machine/src/logic.rs"]
mod logic;

use serde::{Deserialize, Serialize};
use weir_guest::{Ctx, KeyState, Operator, Record};

#[derive(Default, Serialize, Deserialize)]
pub struct RestoreTrap;

impl Operator for RestoreTrap {
    type State = logic::State;
    const STATE_SHAPE: &'static str = logic::SHAPE;
    const STATE_VERSION: u32 = 2;
    const MIGRATES_FROM: &'static [u32] = &[1];

    fn on_event(
        &mut self,
        record: &Record<'_>,
        state: &mut KeyState<'_, logic::State>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), String> {
        logic::step(record, state, ctx, logic::write_alert)
    }

    fn migrate_state(_from_version: u32, _bytes: &[u8]) -> Result<logic::State, String> {
        panic!("this plugin traps in restore on purpose")
    }
}

weir_guest::export_operator!(RestoreTrap);
