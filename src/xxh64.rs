//! XXH64 (Yann Collet's xxHash, 64-bit): a fast, well-mixed hash of a
//! whole body, here to tell whether an upstream sent the same bytes again
//! (an upstream without entity tags, such as UFM Telemetry) and to give
//! each snapshot an identity of its own. It reads 32 bytes a round, about
//! ten times faster than FNV-1a's byte at a time, so hashing a body costs
//! a small fraction of parsing it. Not a cryptographic hash, and seeded
//! with 0 so that every metrics_server gives the same body the same id: an
//! upstream could craft a body that collides with the one before it, but
//! it could as well send the one before it again.

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

fn read64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

fn read32(b: &[u8]) -> u64 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[..4]);
    u64::from(u32::from_le_bytes(w))
}

fn round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn merge(acc: u64, v: u64) -> u64 {
    (acc ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4)
}

/// XXH64 of `data` with `seed`.
pub fn hash(data: &[u8], seed: u64) -> u64 {
    let len = data.len() as u64;
    let mut rest = data;
    let mut h = if data.len() >= 32 {
        let mut v = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        let mut stripes = data.chunks_exact(32);
        for s in &mut stripes {
            for (i, lane) in v.iter_mut().enumerate() {
                *lane = round(*lane, read64(&s[i * 8..]));
            }
        }
        rest = stripes.remainder();
        let h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        v.iter().fold(h, |h, &lane| merge(h, lane))
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(len);
    while rest.len() >= 8 {
        h = (h ^ round(0, read64(rest)))
            .rotate_left(27)
            .wrapping_mul(P1)
            .wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        h = (h ^ read32(rest).wrapping_mul(P1))
            .rotate_left(23)
            .wrapping_mul(P2)
            .wrapping_add(P3);
        rest = &rest[4..];
    }
    for &b in rest {
        h = (h ^ u64::from(b).wrapping_mul(P5))
            .rotate_left(11)
            .wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_vectors() {
        // From the reference implementation (xxhsum -H64, python-xxhash).
        assert_eq!(hash(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(hash(b"abc", 0), 0x44BC_2CF5_AD77_0999);
        assert_eq!(
            hash(b"Nobody inspects the spammish repetition", 0),
            0xFBCE_A83C_8A37_8BF1
        );
    }

    #[test]
    fn every_byte_and_the_seed_count() {
        let body: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let h = hash(&body, 1);
        assert_eq!(
            h, 0x68B0_523A_81EF_A7F0,
            "python-xxhash's xxh64(body, seed=1)"
        );
        assert_ne!(h, hash(&body, 2));
        for i in [0, 31, 32, 500, 999] {
            let mut b = body.clone();
            b[i] ^= 1;
            assert_ne!(hash(&b, 1), h, "byte {i}");
        }
        assert_ne!(hash(&body[..999], 1), h);
    }
}
