//! Kafka's key hash (murmur2 as in the Java client's `Utils.murmur2`): the publisher picks a
//! key's partition with it, as every Kafka client does. aiokafka's version is pure Python and
//! costs several times an event's whole encoding.

/// The unsigned 32-bit murmur2 hash of `data` (aiokafka's `partitioner.murmur2` gives the same).
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    for chunk in data.chunks_exact(4) {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = &data[length & !3..];
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
    h
}

#[cfg(test)]
mod tests {
    use super::murmur2;

    #[test]
    fn known_values_of_the_java_client() {
        // org.apache.kafka.common.utils.UtilsTest: murmur2 of "21" and of the empty array
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"") as i32, 275646681);
    }
}
