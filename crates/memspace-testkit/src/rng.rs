//! Randomness that replays: every randomised test prints its seed, and a failing run repeats
//! from it.

use std::time::{SystemTime, UNIX_EPOCH};

/// The seed in the environment variable `variable` if set (to replay a run), else one from the
/// clock; printed either way.
///
/// # Panics
///
/// If the variable holds something else than a number.
pub fn seed_from_env(variable: &str) -> u64 {
    let seed = match std::env::var(variable) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{variable}={text} is not a u64")),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_nanos() as u64),
    };
    eprintln!("seed = {seed} (replay with {variable}={seed})");
    seed
}

/// A small deterministic generator (splitmix64-seeded xorshift64), so that a failing run
/// replays from its printed seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The generator of `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// The generator of the seed in `MEMSPACE_TEST_SEED` if set, else from the clock; the seed
    /// is printed either way.
    pub fn from_env() -> Self {
        Rng::new(seed_from_env("MEMSPACE_TEST_SEED"))
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}
