//! Test plugin: passes records through, and loops forever on a record whose
//! value contains `spin`.

use serde::{Deserialize, Serialize};
use weir_guest::{Ctx, KeyState, Operator, Record};

#[derive(Default, Serialize, Deserialize)]
pub struct Spin;

impl Operator for Spin {
    type State = ();

    fn on_event(
        &mut self,
        r: &Record<'_>,
        _: &mut KeyState<'_, ()>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), String> {
        if r.value.windows(4).any(|w| w == b"spin") {
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        ctx.emit(r.key, r.value, r.timestamp);
        Ok(())
    }
}

weir_guest::export_operator!(Spin);
