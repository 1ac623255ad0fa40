//! Test plugin with event-time timers: per key, a session of events ends
//! when no event arrives for `gap_ms` of event time; the plugin then emits
//! `{"key":K,"count":N,"start":S,"end":E}`. Every event registers a timer
//! at its time + gap, so a snapshot usually holds pending timers.

use serde::{Deserialize, Serialize};
use weir_guest::{Config, Ctx, KeyState, Operator, Record};

#[derive(Default, Serialize, Deserialize)]
pub struct Sessions {
    #[serde(skip)]
    gap: i64,
}

#[derive(Serialize, Deserialize)]
pub struct Session {
    start: i64,
    last: i64,
    count: u64,
}

impl Operator for Sessions {
    type State = Session;

    fn init(&mut self, config: &Config) -> Result<(), String> {
        self.gap = config.parse_or("gap_ms", 1000)?;
        Ok(())
    }

    fn on_event(
        &mut self,
        r: &Record<'_>,
        state: &mut KeyState<'_, Session>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), String> {
        let ts = r.timestamp.ok_or("record has no timestamp")?;
        // A session whose gap has passed in event time ends here, whether or
        // not its timer fired yet (timers fire at batch boundaries, so the
        // output must not depend on when exactly they fire).
        if state.get().is_some_and(|s| s.last + self.gap <= ts) {
            emit(r.key, state, ctx);
        }
        match state.get_mut() {
            Some(s) => {
                s.last = s.last.max(ts);
                s.count += 1;
            }
            None => state.set(Session {
                start: ts,
                last: ts,
                count: 1,
            }),
        }
        ctx.register_timer(ts + self.gap);
        Ok(())
    }

    fn on_timer(
        &mut self,
        key: &[u8],
        time: i64,
        state: &mut KeyState<'_, Session>,
        ctx: &mut Ctx<'_>,
    ) {
        if state.get().is_some_and(|s| s.last + self.gap <= time) {
            emit(key, state, ctx);
        }
    }
}

fn emit(key: &[u8], state: &mut KeyState<'_, Session>, ctx: &mut Ctx<'_>) {
    if let Some(s) = state.get() {
        let line = format!(
            r#"{{"key":"{}","count":{},"start":{},"end":{}}}"#,
            String::from_utf8_lossy(key),
            s.count,
            s.start,
            s.last
        );
        ctx.emit(key, line.as_bytes(), Some(s.last));
    }
    state.clear();
}

weir_guest::export_operator!(Sessions);
