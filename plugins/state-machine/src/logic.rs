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
    /// Every state, in the order of their codes (`State as u8`).
    pub const ALL: [State; 6] = [
        State::Initial,
        State::W,
        State::X,
        State::Y,
        State::Z,
        State::Terminal,
    ];

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
    #[inline]
    pub fn transition(self, event: u8) -> Option<State> {
        // One load from a table instead of a match: compiled to Wasm and
        // then by the host, the match became jump tables, an indirect
        // branch per event on a state and an event that vary from key to
        // key.
        NEXT[self as usize]
            .get(usize::from(event.wrapping_sub(b'a')))
            .copied()
            .flatten()
    }
}

/// [`State::transition`] as a table: the state after each event `a` to
/// `g`, by state.
const NEXT: [[Option<State>; 7]; 6] = {
    use State::*;
    const N: Option<State> = None;
    [
        // a        b        c        d        e        f  g
        [Some(W), N, Some(X), N, N, N, N],  // Initial
        [N, Some(Y), N, N, N, N, N],        // W
        [N, Some(Y), N, Some(Z), N, N, N],  // X
        [N, N, N, N, Some(Z), N, N],        // Y
        [N, N, N, N, N, N, Some(Terminal)], // Z
        [N, N, N, N, N, N, N],              // Terminal
    ]
};

/// The operator. It has no operator-wide state; all state is per address.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StateMachine;

/// Split `address,event[,...]` into the parsed address and event letter.
#[inline]
pub fn parse_event(line: &[u8]) -> Result<(u32, u8), String> {
    // The common line, an address of up to 7 digits, is read from one
    // 8-byte word without a loop. Compiled to Wasm and then by the host,
    // the digit loop kept its variables on the stack, storing and loading
    // them on every digit: the word parse made the whole job 10-15% faster.
    if let Some(parsed) = parse_short(line) {
        return Ok(parsed);
    }
    // Up to 10 digits, a comma, a letter, then the end or a comma. Anything
    // else takes the general path, which also words the error.
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

/// `address,event[,...]` with 1 to 7 digits, from the line's first 8 bytes
/// (a shorter line of at least 4 bytes is padded with zero bytes, which
/// are not digits); `None` for anything else.
#[inline(always)]
fn parse_short(line: &[u8]) -> Option<(u32, u8)> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let n = line.len();
    let w = if let Some(head) = line.first_chunk::<8>() {
        u64::from_le_bytes(*head)
    } else if n >= 4 {
        let lo = u64::from(u32::from_le_bytes(line[..4].try_into().ok()?));
        let hi = u64::from(u32::from_le_bytes(line[n - 4..].try_into().ok()?));
        lo | hi << ((n - 4) * 8)
    } else {
        return None;
    };
    // Each byte's digit value in its low nibble; a byte that is not a digit
    // has a high nibble after the xor, or after adding 6. (A carry out of
    // such a byte only changes the bytes after it, past the digits.)
    let t = w ^ (ONES * 0x30);
    let not_digit = (t | t.wrapping_add(ONES * 6)) & (ONES * 0xF0);
    let digits = (not_digit.trailing_zeros() / 8) as usize;
    if !(1..=7).contains(&digits) {
        return None;
    }
    // The digits to the top of the word (first digit most significant in
    // the number), then pairs, quads and the eight combined.
    let v = t << (8 * (8 - digits));
    let v = (v & (ONES * 0x0F)).wrapping_mul(10 << 8 | 1) >> 8;
    let v = (v & 0x00FF_00FF_00FF_00FF).wrapping_mul(100 << 16 | 1) >> 16;
    let v = (v & 0x0000_FFFF_0000_FFFF).wrapping_mul(10_000 << 32 | 1) >> 32;
    match line.get(digits..)? {
        [b',', e @ b'a'..=b'g'] | [b',', e @ b'a'..=b'g', b',', ..] => Some((v as u32, *e)),
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What the general path makes of `line`, as `(address, event)`.
    fn general(line: &[u8]) -> Option<(u32, u8)> {
        parse_event_slow(line).ok()
    }

    #[test]
    fn the_word_parse_agrees_with_the_general_path() {
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let addresses = [
            "0",
            "7",
            "12",
            "0012",
            "999",
            "1000",
            "520436",
            "999999",
            "1234567",
            "0000000",
            "9999999",
            "12345678",
            "4294967295",
            "",
        ];
        let tails = [
            ",a", ",g", ",h", ",a,", ",b,1000", ",ab", ",", "", ",A", ",`", ";a", ",a\0", "x,a",
        ];
        for a in addresses {
            for t in tails {
                lines.push(format!("{a}{t}").into_bytes());
            }
        }
        // Every byte in every position of lines of 3 to 10 bytes that the
        // word parse takes as they are (each change of one byte gives a
        // line it takes, refuses, or leaves to the general path).
        let bases: [&[u8]; 11] = [
            b"1,a",
            b"12,a",
            b"1,b,",
            b"123,c",
            b"1,d,7",
            b"1234,e",
            b"12,f,9",
            b"12345,g",
            b"123456,a",
            b"1234567,b",
            b"1234567,c,",
        ];
        for base in bases {
            assert!(base.len() < 4 || parse_short(base).is_some(), "{base:?}");
            for pos in 0..base.len() {
                for b in 0..=255u8 {
                    let mut line = base.to_vec();
                    line[pos] = b;
                    lines.push(line);
                }
            }
        }
        for line in &lines {
            let short = parse_short(line);
            if let Some(parsed) = short {
                assert_eq!(
                    Some(parsed),
                    general(line),
                    "{:?}",
                    String::from_utf8_lossy(line)
                );
            }
            assert_eq!(
                parse_event(line).ok(),
                general(line),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        // The usual lines take the word path.
        for line in [&b"520436,a"[..], b"1,b,17", b"9999999,g", b"0,c"] {
            let want = if line.len() >= 4 { general(line) } else { None };
            assert_eq!(
                parse_short(line),
                want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
