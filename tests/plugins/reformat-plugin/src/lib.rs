//! Test plugin for what-if forks: the state machine with another alert
//! format for one state: an invalid event in state `Y` says
//! `{"address":N,"state":"Y","event":"a","expected":"e"}`. Every other
//! alert is the state machine's, byte for byte.

#[allow(dead_code)] // the shared logic has more than this plugin uses
#[path = "../../../../plugins/state-machine/src/logic.rs"]
mod logic;

use logic::State;
use serde::{Deserialize, Serialize};
use weir_guest::{Ctx, KeyState, Operator, Record};

#[derive(Default, Serialize, Deserialize)]
pub struct Reformat;

impl Operator for Reformat {
    type State = State;
    const STATE_SHAPE: &'static str = logic::SHAPE;

    fn on_event(
        &mut self,
        record: &Record<'_>,
        state: &mut KeyState<'_, State>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), String> {
        logic::step(record, state, ctx, |out, address, current, event| {
            logic::write_alert(out, address, current, event);
            if current == State::Y {
                out.pop();
                out.extend_from_slice(b",\"expected\":\"e\"}");
            }
        })
    }
}

weir_guest::export_operator!(Reformat);
