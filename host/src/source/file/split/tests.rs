//! The splitter's tests: records as tools write them, read in chunks of
//! every size, one by one and in runs.

use super::*;

/// Every piece of `input` as (line, offset, text), read in `chunk`-byte
/// reads; with CSV, the same read in runs gives the same records.
fn pieces(input: &[u8], csv: bool, chunk: usize) -> Vec<(u64, u64, String)> {
    let one_by_one = pieces_of(input, csv, chunk, false);
    if csv {
        let runs = pieces_of(input, csv, chunk, true);
        assert_eq!(runs, one_by_one, "in runs, chunk {chunk}");
    }
    one_by_one
}

fn pieces_of(input: &[u8], csv: bool, chunk: usize, runs: bool) -> Vec<(u64, u64, String)> {
    struct Slow<'a>(&'a [u8], usize);
    impl Read for Slow<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let mut s = Splitter::new(0, 0, csv, true).runs(runs);
    let mut r = Slow(input, chunk);
    let mut out = Vec::new();
    loop {
        let f = s
            .fill(&mut r, &mut |p| -> Result<bool, ()> {
                match p {
                    Piece::Record {
                        bytes,
                        line,
                        offset,
                    } => out.push((line, offset, String::from_utf8_lossy(bytes).into())),
                    Piece::TooLong { line, len, .. } => {
                        out.push((line, 0, format!("too long: {len}")))
                    }
                    Piece::Run {
                        bytes,
                        line,
                        offset,
                    } => {
                        assert!(runs && bytes.ends_with(b"\n") && !bytes.contains(&b'"'));
                        let mut at = 0;
                        for (i, l) in bytes[..bytes.len() - 1].split(|&b| b == b'\n').enumerate() {
                            let text = String::from_utf8_lossy(trim_cr(l)).into();
                            out.push((line + i as u64, offset + at as u64, text));
                            at += l.len() + 1;
                        }
                    }
                }
                Ok(true)
            })
            .unwrap();
        if f.read == 0 {
            return out;
        }
    }
}

#[test]
fn crlf_bom_and_a_missing_last_newline() {
    for chunk in [1, 2, 3, 7, 1000] {
        let got = pieces(b"\xEF\xBB\xBFa,1\r\n\r\nb,2\r\nc,3", true, chunk);
        assert_eq!(
            got,
            vec![
                (1, 3, "a,1".to_string()),
                (2, 8, String::new()),
                (3, 10, "b,2".into()),
                (4, 15, "c,3".into()),
            ],
            "chunk {chunk}"
        );
    }
}

#[test]
fn quoted_newlines_stay_in_their_record_and_lines_count_on() {
    let input = b"1,\"two\nlines\",x\r\n2,\"a \"\"q\"\",\r\nb\",y\n3,plain,z\n";
    for chunk in [1, 4, 1000] {
        let got = pieces(input, true, chunk);
        assert_eq!(
            got,
            vec![
                (1, 0, "1,\"two\nlines\",x".to_string()),
                (3, 17, "2,\"a \"\"q\"\",\r\nb\",y".into()),
                (5, 35, "3,plain,z".into()),
            ],
            "chunk {chunk}"
        );
    }
    // An unterminated quote costs its own line only.
    for chunk in [1, 1000] {
        let got = pieces(b"1,\"a\n2,b\n3,\"c\nd\"\n4,e", true, chunk);
        assert_eq!(
            got,
            vec![
                (1, 0, "1,\"a".to_string()),
                (2, 5, "2,b".into()),
                (3, 9, "3,\"c\nd\"".into()),
                (5, 17, "4,e".into()),
            ],
            "chunk {chunk}"
        );
    }
    // Not CSV: every newline ends a record.
    assert_eq!(pieces(b"\"a\nb\"\n", false, 100).len(), 2);
    // A quote inside an unquoted field does not open a quoted field.
    assert_eq!(pieces(b"4\"2,x\n5,y\n", true, 100).len(), 2);
}

#[test]
fn utf16_is_recognised() {
    let mut s = Splitter::new(0, 0, true, true);
    let f = s
        .fill(&mut &b"\xFF\xFEa\x00"[..], &mut |_| -> Result<bool, ()> {
            panic!("nothing is a record")
        })
        .unwrap();
    assert_eq!(f.encoding, Some(Encoding::Utf16 { little: true }));
}

#[test]
fn an_over_long_record_is_one_piece_and_later_lines_keep_their_numbers() {
    let mut input = b"a\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', MAX_LINE * 2 + 5));
    input.extend(b"\r\nb\nc");
    let got = pieces(&input, false, CHUNK);
    assert_eq!(
        got,
        vec![
            (1, 0, "a".to_string()),
            (2, 0, format!("too long: {}", MAX_LINE * 2 + 5)),
            (3, (MAX_LINE * 2 + 9) as u64, "b".into()),
            (4, (MAX_LINE * 2 + 11) as u64, "c".into()),
        ]
    );
}
