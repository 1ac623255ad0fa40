//! Test plugin: consumes records and emits nothing, so a job with it
//! measures the host path alone (read, parse, route, cross the boundary).

use serde::{Deserialize, Serialize};
use weir_guest::{Ctx, KeyState, Operator, Record};

#[derive(Default, Serialize, Deserialize)]
pub struct Noop;

impl Operator for Noop {
    type State = ();

    fn on_event(
        &mut self,
        _: &Record<'_>,
        _: &mut KeyState<'_, ()>,
        _: &mut Ctx<'_>,
    ) -> Result<(), String> {
        Ok(())
    }
}

weir_guest::export_operator!(Noop);
