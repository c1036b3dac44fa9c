//! Small, fast, unkeyed hashes for keys varco chooses itself (limiter buckets, quota ids,
//! rendezvous hashing). Never for anything a caller can use to flood a map unchecked.

/// A 64-bit finaliser (splitmix64): spreads keys evenly for rendezvous hashing.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a over bytes, then mixed.
pub fn hash_bytes(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &c in b {
        h ^= u64::from(c);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    mix(h)
}
