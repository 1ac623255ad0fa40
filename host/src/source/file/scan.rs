//! Byte searches over the read buffer, tuned for short records.

/// The first `\n` in `hay`. Lines are mostly short: the first 64 bytes are
/// searched a word at a time inline, which costs less than a call to
/// `memchr` and its set-up; a longer line goes on with `memchr`.
#[inline(always)]
pub(crate) fn find_newline(hay: &[u8]) -> Option<usize> {
    const NEWLINES: u64 = 0x0A0A_0A0A_0A0A_0A0A;
    let mut at = 0;
    for word in hay.chunks_exact(8).take(8) {
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let found = crate::source::format::words::zero_bytes(w ^ NEWLINES);
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    memchr::memchr(b'\n', &hay[at..]).map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_newline_is_found_wherever_it_is() {
        for len in 0..150 {
            for at in 0..=len {
                let mut hay = vec![b'x'; len];
                // Bytes that differ from a newline by one bit or by a borrow.
                for (i, b) in hay.iter_mut().enumerate() {
                    *b = [b'x', 0x0B, 0x8A, 0x09, 0x00, 0xFF][i % 6];
                }
                if at < len {
                    hay[at] = b'\n';
                    if at + 1 < len {
                        hay[at + 1] = b'\n';
                    }
                }
                let want = (at < len).then_some(at);
                assert_eq!(find_newline(&hay), want, "newline at {at} of {len}");
            }
        }
    }
}
