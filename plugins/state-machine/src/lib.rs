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

use serde::{Deserialize, Serialize};
use weir_guest::{Ctx, KeyState, Operator, Record};

/// A state of the machine. A key without state is `Initial`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    Initial,
    W,
    X,
    Y,
    Z,
    Terminal,
}

impl State {
    /// The state's name as it appears in alerts.
    pub fn name(self) -> &'static str {
        match self {
            State::Initial => "INITIAL",
            State::W => "W",
            State::X => "X",
            State::Y => "Y",
            State::Z => "Z",
            State::Terminal => "TERMINAL",
        }
    }

    /// The state after `event`, or `None` if the event is not valid here.
    pub fn transition(self, event: u8) -> Option<State> {
        match (self, event) {
            (State::Initial, b'a') => Some(State::W),
            (State::Initial, b'c') => Some(State::X),
            (State::W, b'b') | (State::X, b'b') => Some(State::Y),
            (State::X, b'd') | (State::Y, b'e') => Some(State::Z),
            (State::Z, b'g') => Some(State::Terminal),
            _ => None,
        }
    }
}

/// The operator. It has no operator-wide state; all state is per address.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StateMachine;

/// Split `address,event[,...]` into the parsed address and event letter.
pub fn parse_event(line: &[u8]) -> Result<(u32, u8), String> {
    let comma = line.iter().position(|&b| b == b',').ok_or_else(|| {
        format!(
            "expected `address,event`, got {:?}",
            String::from_utf8_lossy(line)
        )
    })?;
    let (address, rest) = (&line[..comma], &line[comma + 1..]);
    let event = match rest.iter().position(|&b| b == b',') {
        Some(end) => &rest[..end],
        None => rest,
    };
    let address = parse_u32(address).ok_or_else(|| {
        format!(
            "address {:?} is not a u32",
            String::from_utf8_lossy(address)
        )
    })?;
    match event {
        [e @ b'a'..=b'g'] => Ok((address, *e)),
        _ => Err(format!(
            "unknown event {:?} (expected a letter a-g)",
            String::from_utf8_lossy(event)
        )),
    }
}

fn parse_u32(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 10 {
        return None;
    }
    digits.iter().try_fold(0u32, |v, &d| {
        d.is_ascii_digit()
            .then(|| v.checked_mul(10)?.checked_add(u32::from(d - b'0')))
            .flatten()
    })
}

impl Operator for StateMachine {
    type State = State;

    fn on_event(
        &mut self,
        record: &Record<'_>,
        state: &mut KeyState<'_, State>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), String> {
        let (address, event) = parse_event(record.value)?;
        let current = state.get().copied().unwrap_or(State::Initial);
        match current.transition(event) {
            Some(State::Terminal) => state.clear(),
            Some(next) => state.set(next),
            None => ctx.emit_with(record.key, record.timestamp, |out| {
                out.extend_from_slice(b"{\"address\":");
                out.extend_from_slice(address.to_string().as_bytes());
                out.extend_from_slice(b",\"state\":\"");
                out.extend_from_slice(current.name().as_bytes());
                out.extend_from_slice(b"\",\"event\":\"");
                out.push(event);
                out.extend_from_slice(b"\"}");
            }),
        }
        Ok(())
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
