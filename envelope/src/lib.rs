//! The keyed state envelope: the language-neutral layout of a snapshot blob,
//! specified in `wit/STATE.md`. The guest SDKs write and read it; the host
//! reads it to count and list the keys of any savepoint without the plugin,
//! and to compare the state's shape before a swap or a restore into another
//! plugin.
//!
//! ```text
//! magic            4 bytes  "WEIR"
//! format version   u8       2 (1: no shape fields, still read)
//! state version    u32 LE   the operator's state schema version
//! shape            u32 LE length, then UTF-8: the name of the state's shape  (format 2)
//! migrates from    u32 LE count, then per shape: u32 LE length, UTF-8 name,
//!                  u32 LE state version                                        (format 2)
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
/// The envelope layout version this code writes (it also reads
/// [`FORMAT_WITHOUT_SHAPE`]).
pub const FORMAT_VERSION: u8 = 2;
/// The first layout: no shape fields. Its state has an unknown shape.
pub const FORMAT_WITHOUT_SHAPE: u8 = 1;

/// What a writer declares about its state's shape: its name, and the other
/// shapes (name, state version) its `restore` takes over.
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    /// The name of the state's shape (the operator declares it; the Rust
    /// SDK defaults to the state type's name).
    pub name: &'a str,
    /// Shapes of other operators whose state this one's `restore` reads.
    pub migrates_from: &'a [(&'a str, u32)],
}

/// Accumulates an envelope.
#[derive(Debug)]
pub struct Writer {
    buf: Vec<u8>,
    count_at: usize,
    count: u64,
}

/// Append an envelope's header to `buf`: everything before the entries,
/// with the entry count `count` (a chunked writer knows it up front).
pub fn write_header(
    buf: &mut Vec<u8>,
    state_version: u32,
    shape: &Shape<'_>,
    operator: &[u8],
    count: u64,
) {
    buf.extend_from_slice(MAGIC);
    buf.push(FORMAT_VERSION);
    buf.extend_from_slice(&state_version.to_le_bytes());
    write_str(buf, shape.name);
    buf.extend_from_slice(&len32(shape.migrates_from.len()).to_le_bytes());
    for (name, version) in shape.migrates_from {
        write_str(buf, name);
        buf.extend_from_slice(&version.to_le_bytes());
    }
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
    /// Start an envelope with the state's shape and the operator-wide
    /// bytes.
    pub fn new(state_version: u32, shape: &Shape<'_>, operator: &[u8], capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + operator.len() + shape.name.len() + 29);
        write_header(&mut buf, state_version, shape, operator, 0);
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

fn write_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&len32(s.len()).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).expect("state value over 4 GiB")
}

/// A parsed envelope, borrowing the blob.
#[derive(Debug)]
pub struct Envelope<'a> {
    /// The state schema version the writer recorded.
    pub state_version: u32,
    /// The name of the state's shape (`None`: a format 1 envelope, whose
    /// shape is unknown).
    pub shape: Option<&'a str>,
    /// The shapes (name, state version) the writer declared its `restore`
    /// takes over (empty in format 1).
    pub migrates_from: Vec<(&'a str, u32)>,
    /// Operator-wide bytes.
    pub operator: &'a [u8],
    /// Number of entries.
    pub count: u64,
    /// Everything before the entry count (magic to operator bytes).
    header: &'a [u8],
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
        if format != FORMAT_VERSION && format != FORMAT_WITHOUT_SHAPE {
            return Err(format!(
                "state envelope format {format} is not supported (this SDK reads \
                 {FORMAT_WITHOUT_SHAPE} and {FORMAT_VERSION})"
            ));
        }
        let state_version = r.u32()?;
        let mut shape = None;
        let mut migrates_from = Vec::new();
        if format == FORMAT_VERSION {
            shape = Some(r.str()?);
            let n = r.u32()?;
            for _ in 0..n {
                let name = r.str()?;
                migrates_from.push((name, r.u32()?));
            }
        }
        let op_len = r.u32()? as usize;
        let operator = r.take(op_len)?;
        let header = &blob[..r.at];
        let count = r.u64()?;
        Ok(Self {
            state_version,
            shape,
            migrates_from,
            operator,
            count,
            header,
            entries: &blob[r.at..],
        })
    }

    /// The bytes before the entry count, as written: magic, format, state
    /// version, shape and operator bytes. Two blobs with the same header
    /// hold state of the same operator, version and operator-wide state, so
    /// their entries may be put into one envelope behind that header (the
    /// host does when it rescales a savepoint).
    pub fn header(&self) -> &'a [u8] {
        self.header
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
    fn str(&mut self) -> Result<&'a str, String> {
        let at = self.at;
        let len = self.u32()? as usize;
        std::str::from_utf8(self.take(len)?)
            .map_err(|_| format!("state envelope: the shape name at byte {at} is not UTF-8"))
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

    const SHAPE: Shape<'static> = Shape {
        name: "counter",
        migrates_from: &[("tally", 2)],
    };

    #[test]
    fn round_trip() {
        let mut w = Writer::new(3, &SHAPE, b"op", 0);
        w.entry(b"a", b"1");
        w.entry_with(b"bb", |v| v.extend_from_slice(b"22"));
        let blob = w.finish();
        let env = Envelope::parse(&blob).unwrap();
        assert_eq!(env.state_version, 3);
        assert_eq!(env.shape, Some("counter"));
        assert_eq!(env.migrates_from, vec![("tally", 2)]);
        assert_eq!(env.operator, b"op");
        let entries: Vec<_> = env.entries().collect::<Result<_, _>>().unwrap();
        assert_eq!(
            entries,
            vec![(&b"a"[..], &b"1"[..]), (&b"bb"[..], &b"22"[..])]
        );
        // The header, then the count and the entries, rebuild the blob.
        let mut again = env.header().to_vec();
        again.extend_from_slice(&2u64.to_le_bytes());
        for (k, v) in entries {
            write_entry_with(&mut again, k, |b| b.extend_from_slice(v));
        }
        assert_eq!(again, blob);
    }

    #[test]
    fn truncated_and_trailing_are_errors() {
        let mut w = Writer::new(1, &SHAPE, b"", 0);
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

    #[test]
    fn a_format_1_envelope_has_an_unknown_shape() {
        let mut blob = b"WEIR\x01".to_vec();
        blob.extend_from_slice(&4u32.to_le_bytes());
        blob.extend_from_slice(&2u32.to_le_bytes());
        blob.extend_from_slice(b"op");
        blob.extend_from_slice(&1u64.to_le_bytes());
        for part in [&b"k"[..], b"v"] {
            blob.extend_from_slice(&(part.len() as u32).to_le_bytes());
            blob.extend_from_slice(part);
        }
        let env = Envelope::parse(&blob).unwrap();
        assert_eq!((env.state_version, env.shape), (4, None));
        assert!(env.migrates_from.is_empty());
        assert_eq!(env.operator, b"op");
        let entries: Vec<_> = env.entries().collect::<Result<_, _>>().unwrap();
        assert_eq!(entries, vec![(&b"k"[..], &b"v"[..])]);
        blob[4] = 3;
        assert!(Envelope::parse(&blob).unwrap_err().contains("format 3"));
    }
}
