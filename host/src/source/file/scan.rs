//! Byte searches over the read buffer, tuned for short records.

/// A cursor over newlines.
pub(crate) type Newlines = Cursor<b'\n'>;
/// The byte a mask stands for any byte of 0x80 or above (a byte outside
/// ASCII) with, as `mask_block::<NON_ASCII>`.
pub(crate) const NON_ASCII: u8 = 0x80;

/// The places of one byte (`B`) in one buffer, found 64 bytes at a time as a
/// bit mask and handed out by their bits: a run of short lines costs a mask
/// per 64 bytes and a bit scan per line, without a branch on where in a
/// word each line ends (which short lines of varying length mispredict).
pub(crate) struct Cursor<const B: u8> {
    /// Start of the block whose mask is kept (a multiple of 64), or
    /// `usize::MAX`.
    block: usize,
    /// Bit `i` set: `hay[block + i]` is one of the bytes looked for.
    mask: u64,
}

impl<const B: u8> Cursor<B> {
    /// A cursor over a buffer not yet looked at.
    pub(crate) fn new() -> Self {
        Self {
            block: usize::MAX,
            mask: 0,
        }
    }

    /// The first byte looked for in `hay[from..]`, as an index into `hay`.
    /// Every call on one cursor must pass the same `hay`.
    #[inline(always)]
    pub(crate) fn next(&mut self, hay: &[u8], from: usize) -> Option<usize> {
        self.next_before(hay, from, hay.len())
    }

    /// The first byte looked for in `hay[from..limit]` (`limit <=
    /// hay.len()`): the search stops at `limit`.
    #[inline(always)]
    pub(crate) fn next_before(&mut self, hay: &[u8], from: usize, limit: usize) -> Option<usize> {
        if from >= limit {
            return None;
        }
        let mut block = from & !63;
        if block != self.block {
            self.block = block;
            self.mask = mask64::<B>(hay, block);
        }
        let mut m = self.mask & (!0u64 << (from & 63));
        loop {
            if m != 0 {
                let at = block + m.trailing_zeros() as usize;
                return (at < limit).then_some(at);
            }
            block += 64;
            if block >= limit {
                return None;
            }
            self.block = block;
            self.mask = mask64::<B>(hay, block);
            m = self.mask;
        }
    }
}

/// The masks of one 64-byte block of a run of CSV lines, from one pass over
/// it: newlines, commas, bytes outside ASCII.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LineMasks {
    /// Start of the block in the buffer (a multiple of 64).
    pub(crate) at: usize,
    /// Newlines.
    pub(crate) newlines: u64,
    /// Commas.
    pub(crate) commas: u64,
    /// Bytes of 0x80 and above.
    pub(crate) non_ascii: u64,
}

impl LineMasks {
    /// The masks of `hay[at..at + 64]` (`at` a multiple of 64 inside `hay`;
    /// bytes past the end count as none).
    #[inline(always)]
    pub(crate) fn of(hay: &[u8], at: usize) -> Self {
        match hay.get(at..at + 64) {
            Some(block) => Self::of_block(at, block.try_into().expect("64 bytes")),
            None => {
                let mut tail = [0u8; 64];
                let rest = &hay[at..];
                tail[..rest.len()].copy_from_slice(rest);
                Self::of_block(at, &tail)
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn of_block(at: usize, block: &[u8; 64]) -> Self {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        let (mut newlines, mut commas, mut non_ascii) = (0u64, 0u64, 0u64);
        for (i, o) in [0usize, 16, 32, 48].into_iter().enumerate() {
            // SAFETY: SSE2 is part of x86_64; the load reads 16 bytes at
            // `o`, `o + 16 <= 64`, inside `block`.
            let (n, c, h) = unsafe {
                let v = _mm_loadu_si128(block.as_ptr().add(o).cast::<__m128i>());
                let n = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8)));
                let c = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b',' as i8)));
                (n, c, _mm_movemask_epi8(v))
            };
            let shift = 16 * i;
            newlines |= u64::from(n as u16) << shift;
            commas |= u64::from(c as u16) << shift;
            non_ascii |= u64::from(h as u16) << shift;
        }
        Self {
            at,
            newlines,
            commas,
            non_ascii,
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    fn of_block(at: usize, block: &[u8; 64]) -> Self {
        Self {
            at,
            newlines: mask_block_words::<b'\n'>(block),
            commas: mask_block_words::<b','>(block),
            non_ascii: mask_block_words::<NON_ASCII>(block),
        }
    }
}

/// How many of byte `B` `hay` holds, 64 bytes at a time.
pub(crate) fn count<const B: u8>(hay: &[u8]) -> usize {
    let mut blocks = hay.chunks_exact(64);
    let mut n = 0;
    for block in &mut blocks {
        n += mask_block::<B>(block.try_into().expect("64 bytes")).count_ones() as usize;
    }
    let rest = blocks.remainder();
    n + rest.iter().filter(|&&b| b == B).count()
}

/// Bit `i` set for each byte looked for at `hay[at + i]`, `i < 64` (bytes
/// past the end count as none).
#[inline(always)]
fn mask64<const B: u8>(hay: &[u8], at: usize) -> u64 {
    match hay.get(at..at + 64) {
        Some(block) => mask_block::<B>(block.try_into().expect("64 bytes")),
        None => {
            let mut tail = [0u8; 64];
            let rest = &hay[at..];
            tail[..rest.len()].copy_from_slice(rest);
            mask_block::<B>(&tail)
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn mask_block<const B: u8>(block: &[u8; 64]) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of x86_64; each load reads 16 bytes at `o`,
    // `o + 16 <= 64`, inside `block`.
    let bits = |o: usize| unsafe {
        let v = _mm_loadu_si128(block.as_ptr().add(o).cast::<__m128i>());
        let m = if B == NON_ASCII {
            // The high bit of each byte.
            _mm_movemask_epi8(v)
        } else {
            _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(B as i8)))
        };
        u64::from(m as u16)
    };
    bits(0) | bits(16) << 16 | bits(32) << 32 | bits(48) << 48
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn mask_block<const B: u8>(block: &[u8; 64]) -> u64 {
    mask_block_words::<B>(block)
}

/// [`mask_block`] a word at a time, for any machine.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn mask_block_words<const B: u8>(block: &[u8; 64]) -> u64 {
    let mut mask = 0u64;
    for (i, word) in block.chunks_exact(8).enumerate() {
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let found = if B == NON_ASCII {
            w & 0x8080_8080_8080_8080
        } else {
            crate::source::format::words::zero_bytes(w ^ (u64::from(B) * 0x0101_0101_0101_0101))
        } >> 7;
        // One bit per byte (bits 0, 8, .., 56) gathered into the top byte.
        let byte = found.wrapping_mul(0x0102_0408_1020_4080) >> 56;
        mask |= byte << (8 * i);
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_finds_every_newline_in_order() {
        let mut hay = Vec::new();
        let mut x = 12345u64;
        for _ in 0..3000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Mostly short lines, some empty, some over 64 bytes.
            let len = match x >> 60 {
                0 => 0,
                1 => 70 + (x >> 20) as usize % 200,
                _ => (x >> 32) as usize % 20,
            };
            hay.extend((0..len).map(|i| [b'x', 0x0B, 0x8A, 0x09, 0x00, 0xFF][i % 6]));
            hay.push(b'\n');
        }
        for cut in [hay.len(), hay.len() - 1, hay.len() - 37] {
            let hay = &hay[..cut];
            let want: Vec<usize> = (0..hay.len()).filter(|&i| hay[i] == b'\n').collect();
            let mut got = Vec::new();
            let mut cursor = Newlines::new();
            let mut from = 0;
            while let Some(nl) = cursor.next(hay, from) {
                got.push(nl);
                from = nl + 1;
            }
            assert_eq!(got, want);
            // Any starting point, on a fresh cursor and on a used one.
            for from in (0..hay.len()).step_by(7) {
                let want = want.iter().copied().find(|&i| i >= from);
                assert_eq!(Newlines::new().next(hay, from), want);
                assert_eq!(cursor.next(hay, from), want);
                // And stopping at a limit, before or past the match.
                for limit in [from, from + 1, from + 9, from + 64, from + 200] {
                    let limit = limit.min(hay.len());
                    let want = want.filter(|&i| i < limit);
                    assert_eq!(
                        cursor.next_before(hay, from, limit),
                        want,
                        "{from}..{limit}"
                    );
                }
            }
        }
    }

    #[test]
    fn line_masks_are_the_three_masks() {
        let hay: Vec<u8> = (0..300u32)
            .map(|i| [b'\n', b'x', b',', 0x8A, 0x2C, 0xFF, b'0', 0x0A][(i * i % 8) as usize])
            .collect();
        for at in (0..hay.len()).step_by(64) {
            let m = LineMasks::of(&hay, at);
            assert_eq!(m.at, at);
            assert_eq!(m.newlines, mask64::<b'\n'>(&hay, at));
            assert_eq!(m.commas, mask64::<b','>(&hay, at));
            assert_eq!(m.non_ascii, mask64::<NON_ASCII>(&hay, at));
        }
    }

    #[test]
    fn counts_are_of_every_newline() {
        let hay: Vec<u8> = (0..1000u32)
            .map(|i| {
                if i % 7 == 0 || i % 11 == 0 {
                    b'\n'
                } else {
                    b'x'
                }
            })
            .collect();
        for len in [0, 1, 63, 64, 65, 128, 500, 1000] {
            let hay = &hay[..len];
            assert_eq!(
                count::<b'\n'>(hay),
                hay.iter().filter(|&&b| b == b'\n').count(),
                "{len}"
            );
        }
    }

    #[test]
    fn block_masks_agree_across_ways() {
        let mut block = [0u8; 64];
        for seed in 0..500u64 {
            for (i, b) in block.iter_mut().enumerate() {
                let r = (seed * 131 + i as u64 * 7919) % 11;
                *b = [
                    b'\n', b'x', 0x0B, 0x8A, 0x09, 0x00, 0xFF, b'\n', 0x8A, 0x0A, b',',
                ][r as usize];
            }
            let bits = |f: &dyn Fn(u8) -> bool| {
                (0..64)
                    .filter(|&i| f(block[i]))
                    .fold(0u64, |m, i| m | 1 << i)
            };
            let want = bits(&|b| b == b'\n');
            assert_eq!(mask_block::<b'\n'>(&block), want);
            assert_eq!(mask_block_words::<b'\n'>(&block), want);
            let want = bits(&|b| b == b',');
            assert_eq!(mask_block::<b','>(&block), want);
            assert_eq!(mask_block_words::<b','>(&block), want);
            let want = bits(&|b| b >= 0x80);
            assert_eq!(mask_block::<NON_ASCII>(&block), want);
            assert_eq!(mask_block_words::<NON_ASCII>(&block), want);
        }
    }

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
                assert_eq!(
                    Newlines::new().next(&hay, 0),
                    want,
                    "newline at {at} of {len}"
                );
            }
        }
    }
}
