//! Test plugin for hot swaps: writes and reads only state version 7, so it
//! cannot take over the state machine's state (version 1).

use serde::{Deserialize, Serialize};
use weir_guest::{Ctx, KeyState, Operator, Record};

#[derive(Default, Serialize, Deserialize)]
pub struct Incompatible;

impl Operator for Incompatible {
    type State = u64;
    const STATE_VERSION: u32 = 7;

    fn on_event(
        &mut self,
        r: &Record<'_>,
        _: &mut KeyState<'_, u64>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), String> {
        ctx.emit(r.key, r.value, r.timestamp);
        Ok(())
    }
}

weir_guest::export_operator!(Incompatible);
