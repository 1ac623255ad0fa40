//! @NAME@: a Weir operator. It counts the records of each key and emits
//! `{"count":N}` for each record, keyed as the record was.

use serde::{Deserialize, Serialize};
use weir_guest::{Ctx, KeyState, Operator, Record};

#[derive(Default, Serialize, Deserialize)]
struct Counter;

impl Operator for Counter {
    /// Per key: how many records it had.
    type State = u64;
    const STATE_SHAPE: &'static str = "@NAME@.count";

    fn on_event(
        &mut self,
        rec: &Record<'_>,
        state: &mut KeyState<'_, u64>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), String> {
        let n = state.get().copied().unwrap_or(0) + 1;
        state.set(n);
        ctx.emit(rec.key, format!(r#"{{"count":{n}}}"#).as_bytes(), rec.timestamp);
        // Err("reason") sends the record to the dead-letter output instead.
        Ok(())
    }
}

weir_guest::export_operator!(Counter);
