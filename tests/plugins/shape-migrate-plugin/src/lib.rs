//! Test plugin for state shapes: the state machine, whose state has another
//! shape name (`weir.state-machine.renamed`) and which declares that it
//! migrates from the state machine's (`weir.state-machine`, version 1), so
//! a swap or a restore from the state machine goes through and keeps every
//! key's state.

#[allow(dead_code)] // the shared logic has more than this plugin uses
#[path = "../../../../plugins/state-machine/src/logic.rs"]
mod logic;

use weir_guest::{Ctx, KeyState, Operator, Record};

impl Operator for logic::StateMachine {
    type State = logic::State;
    const STATE_SHAPE: &'static str = "weir.state-machine.renamed";
    const SHAPE_MIGRATES_FROM: &'static [(&'static str, u32)] = &[(logic::SHAPE, 1)];

    fn on_event(
        &mut self,
        record: &Record<'_>,
        state: &mut KeyState<'_, logic::State>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), String> {
        logic::step(record, state, ctx, logic::write_alert)
    }

    fn migrate_shape(
        _shape: &str,
        _version: u32,
        bytes: &[u8],
    ) -> Result<Option<logic::State>, String> {
        // The same encoding under another name.
        weir_guest::runtime::decode(bytes).map(Some)
    }
}

weir_guest::export_operator!(logic::StateMachine);
