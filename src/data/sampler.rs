//! The official pair sampler: for each image 1 (a seeded shuffle per epoch), pick one of its
//! classes uniformly, then a uniform image containing that class (another image when one
//! exists). So the two images of a pair always share at least one class.
use super::voc::VocDataset;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair {
    pub first: usize,
    pub second: usize,
    /// The class the partner was drawn for.
    pub class: usize,
}

/// All pairs of one epoch, in order; images without labels cannot be paired and are left out.
pub fn epoch_pairs(ds: &VocDataset, by_class: &[Vec<usize>], seed: u64, epoch: usize) -> Vec<Pair> {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut order: Vec<usize> = (0..ds.items.len())
        .filter(|&i| !ds.items[i].labels.is_empty())
        .collect();
    order.shuffle(&mut rng);
    order
        .into_iter()
        .map(|i| {
            let labels = &ds.items[i].labels;
            let class = labels[rng.gen_range(0..labels.len())];
            let cands = &by_class[class];
            let second = if cands.len() > 1 {
                loop {
                    let j = cands[rng.gen_range(0..cands.len())];
                    if j != i {
                        break j;
                    }
                }
            } else {
                i
            };
            Pair {
                first: i,
                second,
                class,
            }
        })
        .collect()
}
