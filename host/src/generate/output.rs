//! The output: events as CSV lines `address,event,timestamp_ms` in
//! numbered files rolled by size ([`generate`]), formatted without
//! allocating.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::config::GenerateConfig;
use super::model::EventGenerator;

/// What a run wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateReport {
    /// Number of events (lines) written.
    pub events: u64,
    /// How many of them are deliberately invalid transitions.
    pub injected_errors: u64,
    /// The files written, in write order (which is also name order).
    pub files: Vec<PathBuf>,
    /// Total bytes written over all files.
    pub bytes: u64,
}

/// Size of the write buffer of each output file.
const WRITE_BUFFER: usize = 1 << 20;

/// Write events into `dir` (created if missing) as files named
/// `events-000000.csv`, `events-000001.csv`, ... (zero-padded so name order is
/// write order). Each line: `address,event,timestamp_ms\n`, e.g.
/// `4711,a,1700000000000`.
///
/// A file is rolled once it reaches `config.file_size` bytes; no file is
/// created for zero events. Existing files with the same names are
/// overwritten; other files in `dir` are left alone (so a directory reused
/// for a smaller run may still hold higher-numbered files of an earlier one).
///
/// # Errors
///
/// `InvalidInput` if the configuration is invalid (`max_address <=
/// min_address`, `max_machines == 0`, `error_prob` outside `[0, 1]`,
/// `file_size == 0` or `events_per_ms == 0`); otherwise any I/O error of
/// creating the directory or writing the files.
pub fn generate(dir: &Path, config: &GenerateConfig) -> io::Result<GenerateReport> {
    config.validate()?;
    std::fs::create_dir_all(dir)?;

    let mut generator = EventGenerator::new(config);
    let mut files = Vec::new();
    let mut out: Option<BufWriter<File>> = None;
    let mut file_bytes = 0_u64;
    let mut total_bytes = 0_u64;
    let mut line = [0_u8; LINE_CAPACITY];

    for i in 0..config.events {
        let (address, letter) = generator.next_event();
        let timestamp = timestamp_of(config, i);
        let len = format_line(&mut line, address, letter, timestamp);

        let writer = match out.as_mut() {
            Some(writer) => writer,
            None => {
                let path = dir.join(format!("events-{:06}.csv", files.len()));
                let file = File::create(&path)?;
                files.push(path);
                file_bytes = 0;
                out.insert(BufWriter::with_capacity(WRITE_BUFFER, file))
            }
        };
        writer.write_all(&line[..len])?;
        file_bytes += len as u64;
        total_bytes += len as u64;

        if file_bytes >= config.file_size
            && let Some(writer) = out.take()
        {
            finish(writer)?;
        }
    }
    if let Some(writer) = out.take() {
        finish(writer)?;
    }

    Ok(GenerateReport {
        events: config.events,
        injected_errors: generator.injected_errors(),
        files,
        bytes: total_bytes,
    })
}

/// Call `each` with every event of `config` in order, as `(address,
/// event letter, timestamp)`: the events [`generate`] writes, for other
/// outputs (`weir generate --kafka`). Returns the number of injected
/// errors.
///
/// # Errors
///
/// `InvalidInput` for an invalid configuration (as [`generate`]), or the
/// first error `each` returns.
pub fn each_event(
    config: &GenerateConfig,
    mut each: impl FnMut(u32, u8, i64) -> io::Result<()>,
) -> io::Result<u64> {
    config.validate()?;
    let mut generator = EventGenerator::new(config);
    for i in 0..config.events {
        let (address, letter) = generator.next_event();
        each(address, letter, timestamp_of(config, i))?;
    }
    Ok(generator.injected_errors())
}

/// Flushes a finished file, surfacing errors a drop would swallow.
fn finish(writer: BufWriter<File>) -> io::Result<()> {
    writer
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?;
    Ok(())
}

/// `start_time_ms + i / events_per_ms`, saturating instead of overflowing.
fn timestamp_of(config: &GenerateConfig, i: u64) -> i64 {
    let offset = i / config.events_per_ms.max(1);
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    config.start_time_ms.saturating_add(offset)
}

/// Longest line: a u32 (10 digits), an i64 (20 chars), two commas, a letter
/// and a newline.
const LINE_CAPACITY: usize = 10 + 1 + 1 + 1 + 20 + 1;

/// Formats `address,letter,timestamp\n` into `buf`, returning its length.
fn format_line(buf: &mut [u8; LINE_CAPACITY], address: u32, letter: u8, timestamp: i64) -> usize {
    let mut len = write_u64(&mut buf[..], u64::from(address));
    buf[len] = b',';
    buf[len + 1] = letter;
    buf[len + 2] = b',';
    len += 3;
    if timestamp < 0 {
        buf[len] = b'-';
        len += 1;
    }
    len += write_u64(&mut buf[len..], timestamp.unsigned_abs());
    buf[len] = b'\n';
    len + 1
}

/// Writes the decimal digits of `value` at the start of `out`, returning how
/// many were written. `out` must hold at least 20 bytes.
fn write_u64(out: &mut [u8], mut value: u64) -> usize {
    let mut digits = [0_u8; 20];
    let mut pos = digits.len();
    loop {
        pos -= 1;
        digits[pos] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    let n = digits.len() - pos;
    out[..n].copy_from_slice(&digits[pos..]);
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    /// A fresh, empty scratch directory (std only, no tempfile crate).
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let dir = std::env::temp_dir().join(format!(
                "weir-generate-{name}-{}-{nanos}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn config(seed: u64, events: u64) -> GenerateConfig {
        GenerateConfig {
            seed,
            events,
            ..GenerateConfig::default()
        }
    }

    fn read_all(files: &[PathBuf]) -> Vec<u8> {
        files
            .iter()
            .flat_map(|f| std::fs::read(f).expect("read generated file"))
            .collect()
    }

    #[test]
    fn line_formatting() {
        let mut buf = [0_u8; LINE_CAPACITY];
        let n = format_line(&mut buf, 4711, b'a', 1_700_000_000_000);
        assert_eq!(&buf[..n], b"4711,a,1700000000000\n");
        let n = format_line(&mut buf, 0, b'g', 0);
        assert_eq!(&buf[..n], b"0,g,0\n");
        let n = format_line(&mut buf, u32::MAX, b'f', i64::MIN);
        assert_eq!(&buf[..n], b"4294967295,f,-9223372036854775808\n");
        assert_eq!(n, LINE_CAPACITY);
        let n = format_line(&mut buf, 10, b'b', i64::MAX);
        assert_eq!(&buf[..n], b"10,b,9223372036854775807\n");
    }

    #[test]
    fn same_seed_same_bytes_different_seed_different() {
        let (d1, d2, d3) = (
            Scratch::new("same1"),
            Scratch::new("same2"),
            Scratch::new("diff"),
        );
        let r1 = generate(&d1.0, &config(7, 20_000)).unwrap();
        let r2 = generate(&d2.0, &config(7, 20_000)).unwrap();
        let r3 = generate(&d3.0, &config(8, 20_000)).unwrap();
        let (b1, b2, b3) = (
            read_all(&r1.files),
            read_all(&r2.files),
            read_all(&r3.files),
        );
        assert_eq!(b1, b2);
        assert_eq!(r1.bytes, r2.bytes);
        assert_eq!(r1.injected_errors, r2.injected_errors);
        assert_ne!(b1, b3);
    }

    #[test]
    fn counts_rolling_and_line_shape() {
        let dir = Scratch::new("roll");
        let cfg = GenerateConfig {
            events: 10_000,
            file_size: 32 * 1024,
            events_per_ms: 3,
            ..GenerateConfig::default()
        };
        let report = generate(&dir.0, &cfg).unwrap();
        assert_eq!(report.events, 10_000);
        assert!(report.files.len() > 3, "{} files", report.files.len());

        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        assert_eq!(names, report.files);
        for (i, f) in report.files.iter().enumerate() {
            assert_eq!(
                f.file_name().unwrap().to_str().unwrap(),
                format!("events-{i:06}.csv")
            );
        }

        let mut lines = 0_u64;
        let mut bytes = 0_u64;
        let mut events = Vec::new();
        for (i, f) in report.files.iter().enumerate() {
            let data = std::fs::read(f).unwrap();
            bytes += data.len() as u64;
            assert_eq!(data.last(), Some(&b'\n'), "{f:?} ends mid-line");
            // Every file but the last reached the roll size, and only its
            // last line crossed it.
            if i + 1 < report.files.len() {
                assert!(data.len() as u64 >= cfg.file_size);
                assert!((data.len() as u64) < cfg.file_size + LINE_CAPACITY as u64);
            }
            let text = String::from_utf8(data).unwrap();
            for line in text.lines() {
                let mut parts = line.split(',');
                let address: u32 = parts.next().unwrap().parse().unwrap();
                let letter = parts.next().unwrap();
                let ts: i64 = parts.next().unwrap().parse().unwrap();
                assert!(parts.next().is_none(), "{line}");
                assert_eq!(letter.len(), 1);
                let letter = letter.as_bytes()[0];
                assert!((b'a'..=b'g').contains(&letter), "{line}");
                assert!((cfg.min_address..cfg.max_address).contains(&address));
                assert_eq!(ts, cfg.start_time_ms + (lines / 3) as i64, "{line}");
                events.push((address, letter));
                lines += 1;
            }
        }
        assert_eq!(lines, 10_000);
        assert_eq!(bytes, report.bytes);

        // The files hold exactly the generator's stream.
        let expected: Vec<(u32, u8)> = EventGenerator::new(&cfg).take(10_000).collect();
        assert_eq!(events, expected);
    }

    #[test]
    fn zero_events_write_no_files() {
        let dir = Scratch::new("empty");
        let report = generate(&dir.0, &config(1, 0)).unwrap();
        assert_eq!(
            report,
            GenerateReport {
                events: 0,
                injected_errors: 0,
                files: vec![],
                bytes: 0
            }
        );
        assert!(dir.0.is_dir());
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let dir = Scratch::new("invalid");
        let bad = [
            GenerateConfig {
                max_address: 5,
                min_address: 5,
                ..GenerateConfig::default()
            },
            GenerateConfig {
                max_machines: 0,
                ..GenerateConfig::default()
            },
            GenerateConfig {
                error_prob: 1.5,
                ..GenerateConfig::default()
            },
            GenerateConfig {
                error_prob: f64::NAN,
                ..GenerateConfig::default()
            },
            GenerateConfig {
                file_size: 0,
                ..GenerateConfig::default()
            },
            GenerateConfig {
                events_per_ms: 0,
                ..GenerateConfig::default()
            },
        ];
        for cfg in bad {
            let err = generate(&dir.0, &cfg).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{cfg:?}");
        }
        assert!(!dir.0.exists(), "nothing is created for a rejected config");
    }
}
