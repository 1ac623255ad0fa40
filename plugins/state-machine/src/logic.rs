//! The state machine's logic, without the plugin export: the plugin's
//! `lib.rs` exports it, and test plugins that change one thing about it
//! (a fault, an alert format) include this file with `#[path]`.

use serde::{Deserialize, Serialize};
use weir_guest::{Ctx, KeyState, Record};

/// The name of the state's shape in snapshots (wit/STATE.md): the same in
/// every language's state-machine plugin and every variant of this one, so
/// their savepoints restore into one another, and no other operator's state
/// is taken for theirs.
pub const SHAPE: &str = "weir.state-machine";

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
#[inline]
pub fn parse_event(line: &[u8]) -> Result<(u32, u8), String> {
    // The common line in one pass: up to 10 digits, a comma, a letter, then
    // the end or a comma. Anything else takes the general path, which
    // also words the error.
    let mut address = 0u64;
    let mut i = 0;
    while i < line.len().min(11) {
        let d = line[i].wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        address = address * 10 + u64::from(d);
        i += 1;
    }
    if (1..=10).contains(&i)
        && address <= u64::from(u32::MAX)
        && line.get(i) == Some(&b',')
        && let [e @ b'a'..=b'g'] | [e @ b'a'..=b'g', b',', ..] = &line[i + 1..]
    {
        return Ok((address as u32, *e));
    }
    parse_event_slow(line)
}

#[cold]
fn parse_event_slow(line: &[u8]) -> Result<(u32, u8), String> {
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

/// Run one event through the machine: a valid event moves the key's
/// state (the terminal state clears it); an invalid one leaves it and emits
/// the alert `alert(out, address, state, event)` writes.
#[inline]
pub fn step(
    record: &Record<'_>,
    state: &mut KeyState<'_, State>,
    ctx: &mut Ctx<'_>,
    alert: impl FnOnce(&mut Vec<u8>, u32, State, u8),
) -> Result<(), String> {
    let (address, event) = parse_event(record.value)?;
    let current = state.get().copied().unwrap_or(State::Initial);
    match current.transition(event) {
        Some(State::Terminal) => state.clear(),
        Some(next) => state.set(next),
        None => ctx.emit_with(record.key, record.timestamp, |out| {
            alert(out, address, current, event)
        }),
    }
    Ok(())
}

/// The alert: `{"address":N,"state":"W","event":"a"}`. Rare and kept out
/// of line, so the per-record path stays small enough to inline.
#[cold]
#[inline(never)]
pub fn write_alert(out: &mut Vec<u8>, address: u32, state: State, event: u8) {
    out.extend_from_slice(b"{\"address\":");
    out.extend_from_slice(address.to_string().as_bytes());
    out.extend_from_slice(b",\"state\":\"");
    out.extend_from_slice(state.name().as_bytes());
    out.extend_from_slice(b"\",\"event\":\"");
    out.push(event);
    out.extend_from_slice(b"\"}");
}
