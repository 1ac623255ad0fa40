//! One length-prefixed binary codec for the blobs the host writes itself
//! (the Kafka sink's epochs, timers in checkpoints): little-endian `u32`,
//! `u64` and `i64`, and byte strings prefixed by their `u32` length.
//! Writing appends to a `Vec<u8>`; reading goes through a [`Reader`],
//! which returns [`Truncated`] for a blob that ends early instead of
//! panicking, so a damaged blob is an error its caller can name.

/// Append `v` (4 bytes, little-endian).
pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Append `v` (8 bytes, little-endian).
pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Append `v` (8 bytes, little-endian).
pub(crate) fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Append `bytes` after its length (`u32`, little-endian). Byte strings
/// come from batches, whose offsets are `u32`, so the length fits.
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

/// A blob ended before the value being read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("truncated at byte {at}: {needed} bytes needed, {left} left")]
pub(crate) struct Truncated {
    /// Offset in the blob of the value that did not fit.
    pub at: usize,
    /// Bytes that value needs.
    pub needed: usize,
    /// Bytes the blob has left.
    pub left: usize,
}

/// Reads values written with the `put_*` functions, front to back.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    /// What is not read yet.
    rest: &'a [u8],
    /// Bytes read so far, for [`Truncated::at`].
    at: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes, at: 0 }
    }

    /// Whether everything was read.
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        if self.rest.len() < n {
            return Err(Truncated {
                at: self.at,
                needed: n,
                left: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        self.at += n;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// A `u32` written by [`put_u32`].
    pub(crate) fn u32(&mut self) -> Result<u32, Truncated> {
        self.array().map(u32::from_le_bytes)
    }

    /// A `u64` written by [`put_u64`].
    pub(crate) fn u64(&mut self) -> Result<u64, Truncated> {
        self.array().map(u64::from_le_bytes)
    }

    /// An `i64` written by [`put_i64`].
    pub(crate) fn i64(&mut self) -> Result<i64, Truncated> {
        self.array().map(i64::from_le_bytes)
    }

    /// A byte string written by [`put_bytes`].
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Truncated> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_truncation_is_an_error() {
        let mut out = Vec::new();
        put_u32(&mut out, 7);
        put_u64(&mut out, u64::MAX - 1);
        put_i64(&mut out, -42);
        put_bytes(&mut out, b"key");
        put_bytes(&mut out, b"");
        let mut r = Reader::new(&out);
        assert_eq!(r.u32(), Ok(7));
        assert_eq!(r.u64(), Ok(u64::MAX - 1));
        assert_eq!(r.i64(), Ok(-42));
        assert_eq!(r.bytes(), Ok(&b"key"[..]));
        assert_eq!(r.bytes(), Ok(&b""[..]));
        assert!(r.is_empty());

        // Cut inside the bytes of `key`.
        let mut r = Reader::new(&out[..26]);
        r.take(20).unwrap();
        assert_eq!(
            r.bytes(),
            Err(Truncated {
                at: 24,
                needed: 3,
                left: 2
            })
        );
        assert!(Reader::new(&[1, 2, 3]).u32().is_err());
    }
}
