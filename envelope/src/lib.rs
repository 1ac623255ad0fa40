//! The keyed state envelope: the language-neutral layout of a snapshot blob,
//! specified in `wit/STATE.md`. The Rust guest SDK writes and reads it; the
//! host reads it to count and list the keys of any savepoint without the
//! plugin.
//!
//! ```text
//! magic            4 bytes  "WEIR"
//! format version   u8       1
//! state version    u32 LE   the operator's state schema version
//! operator bytes   u32 LE length, then the bytes (operator-wide state)
//! entry count      u64 LE
//! entries          per entry: u32 LE key length, key, u32 LE value length, value
//! ```
//!
//! A blocking snapshot writes its entries sorted by key bytes, so equal state
//! gives equal bytes; a chunked snapshot writes them in the state map's
//! order (readers take entries in any order; keys are unique). Each operator
//! encodes its values as it likes (the Rust SDK uses postcard).

/// First four bytes of every envelope.
pub const MAGIC: &[u8; 4] = b"WEIR";
/// The envelope layout version this code reads and writes.
pub const FORMAT_VERSION: u8 = 1;

/// Accumulates an envelope.
#[derive(Debug)]
pub struct Writer {
    buf: Vec<u8>,
    count_at: usize,
    count: u64,
}

/// Append an envelope's header to `buf`: everything before the entries,
/// with the entry count `count` (a chunked writer knows it up front).
pub fn write_header(buf: &mut Vec<u8>, state_version: u32, operator: &[u8], count: u64) {
    buf.extend_from_slice(MAGIC);
    buf.push(FORMAT_VERSION);
    buf.extend_from_slice(&state_version.to_le_bytes());
    buf.extend_from_slice(&len32(operator.len()).to_le_bytes());
    buf.extend_from_slice(operator);
    buf.extend_from_slice(&count.to_le_bytes());
}

/// Append one entry to `buf`, its value written by `write`.
#[inline]
pub fn write_entry_with(buf: &mut Vec<u8>, key: &[u8], write: impl FnOnce(&mut Vec<u8>)) {
    buf.extend_from_slice(&len32(key.len()).to_le_bytes());
    buf.extend_from_slice(key);
    let len_at = buf.len();
    buf.extend_from_slice(&0u32.to_le_bytes());
    write(buf);
    let len = len32(buf.len() - len_at - 4);
    buf[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
}

impl Writer {
    /// Start an envelope with the operator-wide bytes.
    pub fn new(state_version: u32, operator: &[u8], capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + operator.len() + 21);
        write_header(&mut buf, state_version, operator, 0);
        let count_at = buf.len() - 8;
        Self {
            buf,
            count_at,
            count: 0,
        }
    }

    /// Append one entry; the caller appends in key order.
    pub fn entry(&mut self, key: &[u8], value: &[u8]) {
        self.buf.extend_from_slice(&len32(key.len()).to_le_bytes());
        self.buf.extend_from_slice(key);
        self.buf
            .extend_from_slice(&len32(value.len()).to_le_bytes());
        self.buf.extend_from_slice(value);
        self.count += 1;
    }

    /// Append one entry whose value is written by `write`.
    pub fn entry_with(&mut self, key: &[u8], write: impl FnOnce(&mut Vec<u8>)) {
        write_entry_with(&mut self.buf, key, write);
        self.count += 1;
    }

    /// The finished envelope.
    pub fn finish(mut self) -> Vec<u8> {
        let at = self.count_at;
        self.buf[at..at + 8].copy_from_slice(&self.count.to_le_bytes());
        self.buf
    }
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).expect("state value over 4 GiB")
}

/// A parsed envelope, borrowing the blob.
#[derive(Debug)]
pub struct Envelope<'a> {
    /// The state schema version the writer recorded.
    pub state_version: u32,
    /// Operator-wide bytes.
    pub operator: &'a [u8],
    /// Number of entries.
    pub count: u64,
    entries: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Parse the header; entries are checked as they are iterated.
    pub fn parse(blob: &'a [u8]) -> Result<Self, String> {
        let mut r = Reader { buf: blob, at: 0 };
        if r.take(4)? != MAGIC {
            return Err("not a Weir state envelope (bad magic)".into());
        }
        let format = r.take(1)?[0];
        if format != FORMAT_VERSION {
            return Err(format!(
                "state envelope format {format} is not supported (this SDK reads {FORMAT_VERSION})"
            ));
        }
        let state_version = r.u32()?;
        let op_len = r.u32()? as usize;
        let operator = r.take(op_len)?;
        let count = r.u64()?;
        Ok(Self {
            state_version,
            operator,
            count,
            entries: &blob[r.at..],
        })
    }

    /// The entries in stored order; an item is an error if the blob is cut.
    pub fn entries(&self) -> impl Iterator<Item = Result<(&'a [u8], &'a [u8]), String>> + 'a {
        let mut r = Reader {
            buf: self.entries,
            at: 0,
        };
        let mut left = self.count;
        let mut failed = false;
        std::iter::from_fn(move || {
            if left == 0 || failed {
                if !failed && left == 0 && r.at != r.buf.len() {
                    failed = true;
                    return Some(Err("trailing bytes after the last state entry".into()));
                }
                return None;
            }
            left -= 1;
            let item = (|| {
                let klen = r.u32()? as usize;
                let key = r.take(klen)?;
                let vlen = r.u32()? as usize;
                let value = r.take(vlen)?;
                Ok((key, value))
            })();
            failed = item.is_err();
            Some(item)
        })
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("state envelope truncated at byte {}", self.at))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut w = Writer::new(3, b"op", 0);
        w.entry(b"a", b"1");
        w.entry_with(b"bb", |v| v.extend_from_slice(b"22"));
        let blob = w.finish();
        let env = Envelope::parse(&blob).unwrap();
        assert_eq!(env.state_version, 3);
        assert_eq!(env.operator, b"op");
        let entries: Vec<_> = env.entries().collect::<Result<_, _>>().unwrap();
        assert_eq!(
            entries,
            vec![(&b"a"[..], &b"1"[..]), (&b"bb"[..], &b"22"[..])]
        );
    }

    #[test]
    fn truncated_and_trailing_are_errors() {
        let mut w = Writer::new(1, b"", 0);
        w.entry(b"key", b"value");
        let blob = w.finish();
        let cut = &blob[..blob.len() - 2];
        let env = Envelope::parse(cut).unwrap();
        assert!(env.entries().any(|e| e.is_err()));
        let mut long = blob.clone();
        long.push(0);
        let env = Envelope::parse(&long).unwrap();
        assert!(env.entries().any(|e| e.is_err()));
        assert!(Envelope::parse(b"NOPE").is_err());
    }
}
