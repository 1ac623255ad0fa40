//! Test plugin: keeps 1 MiB of memory per record, forever, so it allocates
//! without bound.

use serde::{Deserialize, Serialize};
use weir_guest::{Ctx, KeyState, Operator, Record};

#[derive(Default, Serialize, Deserialize)]
pub struct Hog {
    #[serde(skip)]
    hoard: Vec<Vec<u8>>,
}

impl Operator for Hog {
    type State = ();

    fn on_event(
        &mut self,
        r: &Record<'_>,
        _: &mut KeyState<'_, ()>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), String> {
        self.hoard.push(vec![1u8; 1 << 20]);
        ctx.emit(r.key, r.value, r.timestamp);
        Ok(())
    }
}

weir_guest::export_operator!(Hog);
