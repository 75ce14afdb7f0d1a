//! Seeded randomness: every random draw of training and inference comes from a generator
//! seeded by (seed, position), so the same seed and inputs give the same result on the CPU.
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The generator of one seed.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}
