//! Arithmetic a machine word (eight bytes) at a time for the CSV fast path:
//! bytes equal to a value, and ASCII digits to numbers.

/// The high bit of each byte of `w` that is zero, and no other bit (exact:
/// no borrow runs from one byte into the next).
#[inline(always)]
pub(crate) fn zero_bytes(w: u64) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    !(((w & LOW7) + LOW7) | w | LOW7)
}

/// Milliseconds in `field` (optional sign, ASCII digits, spaces around).
#[inline]
pub(super) fn parse_ms(field: &[u8]) -> Option<i64> {
    let field = field.trim_ascii();
    let (neg, digits) = match field {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, field),
    };
    match digits_value(digits) {
        Some(v) => Some(if neg { -v } else { v }),
        // Long or unusual numbers: let std decide (it checks overflow).
        None => std::str::from_utf8(field).ok()?.parse().ok(),
    }
}

/// The value of 1 to 18 ASCII digits (`None` for anything else): eight at a
/// time where it can (see [`eight_digits`]), so a millisecond timestamp (13
/// digits) is not a chain of 13 dependent multiply-adds.
#[inline]
fn digits_value(digits: &[u8]) -> Option<i64> {
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v = 0u64;
    let mut rest = digits;
    while let Some((chunk, tail)) = rest.split_first_chunk::<8>() {
        v = v * 100_000_000 + eight_digits(u64::from_le_bytes(*chunk))?;
        rest = tail;
    }
    for &b in rest {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + u64::from(d);
    }
    // 18 digits stay below 10^18 < i64::MAX.
    Some(v as i64)
}

/// Eight ASCII digits, read as a little-endian word (the first digit in the
/// lowest byte), as a number; `None` unless every byte is `0`-`9`.
#[inline(always)]
fn eight_digits(word: u64) -> Option<u64> {
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    // Every byte is 0x30..=0x3F, and adding 6 leaves it there (no carry
    // out of a byte: at most 0x3F + 6).
    if word & HIGH != ZEROS || (word + 0x0606_0606_0606_0606) & HIGH != ZEROS {
        return None;
    }
    let v = word - ZEROS;
    // Pairs, then quadruples, then the whole: each step multiplies the
    // more significant half (the lower byte) and adds the other.
    let v = (v * 10) + (v >> 8);
    let v = ((v & 0x0000_00FF_0000_00FF) * (100 + (1_000_000 << 32))
        + ((v >> 16) & 0x0000_00FF_0000_00FF) * (1 + (10_000 << 32)))
        >> 32;
    Some(v)
}
