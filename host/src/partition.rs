//! Kafka's default key partitioner, bit-for-bit compatible with the Java client.
//!
//! The Java producer maps a keyed record to a partition with
//! `Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions`. This module
//! reproduces both steps so that records Weir routes by key land on the same
//! partition as records produced by any Kafka client using the default
//! partitioner (Java, librdkafka's `murmur2_random`, franz-go, Sarama's
//! `NewReferenceHashPartitioner`, ...).

/// Kafka's `Utils.murmur2`: the 32-bit MurmurHash2 of `data` as the Java
/// client computes it (seed `0x9747b28c`), returned as the Java `int` it yields.
///
/// All arithmetic wraps like Java `int` arithmetic and every right shift is
/// logical (Java's `>>>`), so the result is identical for every input,
/// including the signed value.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    let length = data.len();
    // Java takes `data.length`, an `int`; the truncating cast matches it for
    // every array Java could hold.
    let mut h: u32 = SEED ^ (length as u32);

    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }

    // The tail switch, with Java's fall-through from case 3 to 2 to 1.
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }

    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;

    // Reinterpret the bits as Java's signed `int`.
    h as i32
}

/// The partition Kafka's default partitioner picks for a record with `key`
/// in a topic of `partitions` partitions:
/// `(murmur2(key) & 0x7fffffff) % partitions` (Kafka's `toPositive`).
///
/// Never panics: `partitions == 0` is a caller bug (caught by a
/// `debug_assert!` in debug builds) and is treated as 1, yielding partition 0.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    debug_assert!(partitions != 0, "a topic has at least one partition");
    let partitions = partitions.max(1);
    // `& 0x7fffffff` is Kafka's `toPositive`; the result fits in 31 bits.
    let positive = (murmur2(key) & 0x7fff_ffff) as u32;
    positive % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of Kafka's own `UtilsTest.testMurmur2`
    /// (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java).
    #[test]
    fn murmur2_matches_kafka_utils_test() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            // Kafka spells this one `new byte[] {'a', 'b', 'c'}`.
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(
                murmur2(key),
                expected,
                "murmur2({:?})",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn murmur2_covers_every_tail_length() {
        // Lengths 0..=8 exercise every branch of the tail switch; the hash
        // must be deterministic and distinct inputs should (here) differ.
        let data = b"abcdefgh";
        let hashes: Vec<i32> = (0..=data.len()).map(|n| murmur2(&data[..n])).collect();
        for (n, h) in hashes.iter().enumerate() {
            assert_eq!(*h, murmur2(&data[..n]));
        }
        let mut sorted = hashes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), hashes.len());
    }

    #[test]
    fn partition_matches_to_positive_modulo() {
        // "21" hashes to a negative int; toPositive masks the sign bit.
        let h = murmur2(b"21");
        assert!(h < 0);
        let expected = ((h & 0x7fff_ffff) as u32) % 7;
        assert_eq!(partition_for_key(b"21", 7), expected);
        // Not the same as taking the absolute value.
        assert_eq!(
            partition_for_key(b"abc", 1000),
            (479_470_107_u32 & 0x7fff_ffff) % 1000
        );
    }

    #[test]
    fn partition_is_in_range_and_stable() {
        for partitions in [1_u32, 2, 3, 6, 12, 50, 1000, u32::MAX] {
            for i in 0..2000 {
                let key = format!("order-{i}");
                let p = partition_for_key(key.as_bytes(), partitions);
                assert!(p < partitions, "{key}: {p} >= {partitions}");
                assert_eq!(p, partition_for_key(key.as_bytes(), partitions));
            }
        }
        assert_eq!(partition_for_key(b"", 1), 0);
    }

    #[test]
    fn partition_spreads_keys() {
        let partitions = 8;
        let mut counts = [0_u32; 8];
        for i in 0..8000 {
            let key = format!("user-{i}");
            counts[partition_for_key(key.as_bytes(), partitions) as usize] += 1;
        }
        for c in counts {
            assert!((700..1300).contains(&c), "skewed: {counts:?}");
        }
    }
}
