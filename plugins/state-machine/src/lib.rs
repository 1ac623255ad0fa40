//! Pattern validation, as in the classic Flink state-machine example.
//!
//! Per key (an address), events must follow this state machine; any other
//! event raises an alert and leaves the state as it was:
//!
//! ```text
//! INITIAL -a-> W    INITIAL -c-> X
//! W -b-> Y          X -b-> Y        X -d-> Z
//! Y -e-> Z          Z -g-> TERMINAL (the key is cleared)
//! ```
//!
//! Input: CSV lines `address,event[,timestamp_ms]`, keyed by the address.
//! Output: one JSON alert per invalid event,
//! `{"address":N,"state":"W","event":"a"}`.

mod logic;

pub use logic::*;
use weir_guest::{Ctx, KeyState, Operator, Record};

impl Operator for StateMachine {
    type State = State;
    const STATE_SHAPE: &'static str = SHAPE;

    #[inline]
    fn on_event(
        &mut self,
        record: &Record<'_>,
        state: &mut KeyState<'_, State>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), String> {
        step(record, state, ctx, write_alert)
    }
}

weir_guest::export_operator!(StateMachine);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!(parse_event(b"12,a"), Ok((12, b'a')));
        assert_eq!(parse_event(b"12,g,1000"), Ok((12, b'g')));
        assert!(parse_event(b"12,h").unwrap_err().contains("unknown event"));
        assert!(parse_event(b"x,a").unwrap_err().contains("not a u32"));
        assert!(parse_event(b"12").is_err());
        assert!(parse_event(b"4294967296,a").is_err());
        assert_eq!(parse_event(b"4294967295,a"), Ok((u32::MAX, b'a')));
        assert!(parse_event(b",a").is_err());
        assert!(parse_event(b"12,ab").unwrap_err().contains("unknown event"));
        assert!(parse_event(b"12a,b").unwrap_err().contains("not a u32"));
        assert!(parse_event(b"12345678901,a").is_err());
        assert_eq!(parse_event(b"0012,a,"), Ok((12, b'a')));
    }

    #[test]
    fn the_table_is_the_state_machine() {
        // The transitions as the module's diagram draws them.
        let by_diagram = |s: State, e: u8| match (s, e) {
            (State::Initial, b'a') => Some(State::W),
            (State::Initial, b'c') => Some(State::X),
            (State::W, b'b') | (State::X, b'b') => Some(State::Y),
            (State::X, b'd') | (State::Y, b'e') => Some(State::Z),
            (State::Z, b'g') => Some(State::Terminal),
            _ => None,
        };
        for s in State::ALL {
            for e in 0..=u8::MAX {
                assert_eq!(s.transition(e), by_diagram(s, e), "{s:?} on {e}");
            }
        }
    }

    #[test]
    fn transitions() {
        assert_eq!(State::Initial.transition(b'a'), Some(State::W));
        assert_eq!(State::X.transition(b'd'), Some(State::Z));
        assert_eq!(State::Z.transition(b'g'), Some(State::Terminal));
        assert_eq!(State::W.transition(b'a'), None);
        for s in [State::Initial, State::W, State::X, State::Y, State::Z] {
            assert_eq!(s.transition(b'f'), None);
        }
    }
}
