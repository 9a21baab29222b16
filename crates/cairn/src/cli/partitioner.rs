//! Kafka's default partitioner for keyed records, so that `cairn produce` puts a key on
//! the same partition as the Java client, librdkafka's `murmur2_random` and kafkajs do.
//!
//! A keyed record goes to `to_positive(murmur2(key)) % partition_count`, exactly as
//! `org.apache.kafka.clients.producer.internals.BuiltInPartitioner.partitionForKey`:
//! murmur2 with seed `0x9747b28c` over the key bytes, and the sign bit masked off (not
//! `abs`, which would overflow on `i32::MIN`). Keyless records are spread round-robin by
//! the caller. Pure functions: no state, no I/O.

/// Kafka's `Utils.murmur2`: 32-bit MurmurHash2 with Kafka's seed, as a signed `i32`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java's int arithmetic wraps; the length is an int there too.
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
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
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit.
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition Kafka's default partitioner picks for `key` among `partition_count`.
pub fn partition_for_key(key: &[u8], partition_count: i32) -> i32 {
    assert!(partition_count > 0, "a topic has at least one partition");
    to_positive(murmur2(key)) % partition_count
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of Kafka's `UtilsTest.testMurmur2`.
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
            (b"abc", 479_470_107),
        ];
        for (data, expected) in cases {
            assert_eq!(
                murmur2(data),
                expected,
                "murmur2({:?})",
                String::from_utf8_lossy(data)
            );
        }
    }

    /// Vectors the Akka/Pekko Kafka sharding tests took from Kafka's implementation: every
    /// tail length 0..=3 after zero or one whole word.
    #[test]
    fn murmur2_matches_other_clients() {
        let cases: [(&str, i32); 5] = [
            ("1", -1_993_445_489),
            ("12", 126_087_238),
            ("123", -267_702_483),
            ("1234", -1_614_185_708),
            ("12345", -1_188_365_604),
        ];
        for (data, expected) in cases {
            assert_eq!(murmur2(data.as_bytes()), expected, "murmur2({data:?})");
        }
    }

    #[test]
    fn partition_is_positive_modulo() {
        assert_eq!(to_positive(-1), i32::MAX);
        assert_eq!(to_positive(i32::MIN), 0);
        // -973932308 & 0x7fffffff = 1173551340; mod 3 = 0.
        assert_eq!(partition_for_key(b"21", 3), 1_173_551_340 % 3);
        for n in 1..20 {
            let p = partition_for_key(b"some key", n);
            assert!((0..n).contains(&p));
        }
    }

    #[test]
    fn empty_key_hashes() {
        // Kafka hashes an empty (non-null) key like any other.
        let p = partition_for_key(b"", 7);
        assert!((0..7).contains(&p));
    }
}
