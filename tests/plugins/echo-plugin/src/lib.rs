//! Test plugin: emits every record it receives, keyed as it came, with the
//! value `key=value`, so a test sees exactly which records a source read
//! and with which key.

use serde::{Deserialize, Serialize};
use weir_guest::{Ctx, KeyState, Operator, Record};

#[derive(Default, Serialize, Deserialize)]
pub struct Echo;

impl Operator for Echo {
    type State = ();

    fn on_event(
        &mut self,
        record: &Record<'_>,
        _: &mut KeyState<'_, ()>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), String> {
        ctx.emit_with(record.key, record.timestamp, |out| {
            out.extend_from_slice(record.key);
            out.push(b'=');
            out.extend_from_slice(record.value);
        });
        Ok(())
    }
}

weir_guest::export_operator!(Echo);
