//! Test plugin: passes records through, and panics (a Wasm trap) on a record
//! whose value contains `boom`.

use serde::{Deserialize, Serialize};
use weir_guest::{Ctx, KeyState, Operator, Record};

#[derive(Default, Serialize, Deserialize)]
pub struct Trap;

impl Operator for Trap {
    type State = ();

    fn on_event(
        &mut self,
        r: &Record<'_>,
        _: &mut KeyState<'_, ()>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), String> {
        if r.value.windows(4).any(|w| w == b"boom") {
            panic!("boom: this plugin traps on purpose");
        }
        ctx.emit(r.key, r.value, r.timestamp);
        Ok(())
    }
}

weir_guest::export_operator!(Trap);
