//! The timer blob of an operator in a checkpoint: count, then each timer's
//! time and key, length-prefixed, little-endian.

use crate::batch::Timer;

/// Encode timers: count (u64 LE), then per timer time (i64 LE), key length
/// (u32 LE) and key.
pub fn encode_timers<'a>(
    timers: impl ExactSizeIterator<Item = (i64, &'a [u8])> + Clone,
) -> Vec<u8> {
    let size: usize = timers.clone().map(|(_, key)| 12 + key.len()).sum();
    let mut out = Vec::with_capacity(8 + size);
    out.extend_from_slice(&(timers.len() as u64).to_le_bytes());
    for (time, key) in timers {
        out.extend_from_slice(&time.to_le_bytes());
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
    }
    out
}

/// Decode [`encode_timers`] output.
pub fn decode_timers(bytes: &[u8]) -> Result<Vec<Timer>, String> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let s = bytes
            .get(at..at + n)
            .ok_or_else(|| "timer blob truncated".to_string())?;
        at += n;
        Ok(s)
    };
    let count = u64::from_le_bytes(take(8)?.try_into().map_err(|_| "bad count")?);
    let mut timers = Vec::with_capacity(count.min(1 << 20) as usize);
    for _ in 0..count {
        let time = i64::from_le_bytes(take(8)?.try_into().map_err(|_| "bad time")?);
        let len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "bad length")?) as usize;
        timers.push(Timer {
            key: take(len)?.to_vec(),
            time,
        });
    }
    if at != bytes.len() {
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
