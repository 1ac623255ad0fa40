//! The timer blob of an operator in a checkpoint: count, then each timer's
//! time and key, length-prefixed, little-endian.

use crate::batch::Timer;
use crate::codec::{Reader, put_bytes, put_i64, put_u64};

/// Encode timers: count (u64 LE), then per timer time (i64 LE), key length
/// (u32 LE) and key.
pub fn encode_timers<'a>(
    timers: impl ExactSizeIterator<Item = (i64, &'a [u8])> + Clone,
) -> Vec<u8> {
    let size: usize = timers.clone().map(|(_, key)| 12 + key.len()).sum();
    let mut out = Vec::with_capacity(8 + size);
    put_u64(&mut out, timers.len() as u64);
    for (time, key) in timers {
        put_i64(&mut out, time);
        put_bytes(&mut out, key);
    }
    out
}

/// Decode [`encode_timers`] output.
pub fn decode_timers(bytes: &[u8]) -> Result<Vec<Timer>, String> {
    let damaged = |e: crate::codec::Truncated| format!("timer blob {e}");
    let mut r = Reader::new(bytes);
    let count = r.u64().map_err(damaged)?;
    let mut timers = Vec::with_capacity(count.min(1 << 20) as usize);
    for _ in 0..count {
        let time = r.i64().map_err(damaged)?;
        let key = r.bytes().map_err(damaged)?.to_vec();
        timers.push(Timer { key, time });
    }
    if !r.is_empty() {
        return Err("trailing bytes after the timers".into());
    }
    Ok(timers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_round_trip_and_refuse_damage() {
        let t = [
            Timer {
                key: b"a".to_vec(),
                time: 5,
            },
            Timer {
                key: b"bb".to_vec(),
                time: -1,
            },
        ];
        let bytes = encode_timers(t.iter().map(|t| (t.time, &t.key[..])));
        let back = decode_timers(&bytes).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!((back[1].key.as_slice(), back[1].time), (&b"bb"[..], -1));
        assert!(decode_timers(&bytes[..bytes.len() - 1]).is_err());
    }
}
