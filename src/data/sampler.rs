//! The official pair sampler: for each image 1 (a seeded shuffle per epoch), pick one of its
//! classes uniformly, then a uniform image containing that class (another image when one
//! exists). So the two images of a pair always share at least one class.
//!
//! Optionally (not in the paper; docs/quality.md measures it) a share of the pairs is drawn
//! against an image that shares no class with image 1. Such a pair's co-attention target is
//! empty, so whatever image 1 attends to in image 2 is taught to carry no class; background
//! that merely co-occurs with a class (the same ground under the same class) is matched by
//! both kinds of pair, the object only by the pairs that share it.
use super::voc::VocDataset;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair {
    pub first: usize,
    pub second: usize,
    /// The class the partner was drawn for (for a negative pair: the class it must not have).
    pub class: usize,
    /// The partner shares no class with image 1.
    pub negative: bool,
}

/// Uniform draws among the labelled images until one shares no class with image 1: a bounded
/// search, so in a set where (almost) every image shares a class with it the pair falls back
/// to a positive one instead of looping.
const NEGATIVE_TRIES: usize = 64;

/// All pairs of one epoch, in order (the official sampler); images without labels cannot be
/// paired and are left out.
pub fn epoch_pairs(ds: &VocDataset, by_class: &[Vec<usize>], seed: u64, epoch: usize) -> Vec<Pair> {
    epoch_pairs_with_negatives(ds, by_class, seed, epoch, 0.0)
}

/// [`epoch_pairs`] where each pair is, with probability `negative`, drawn against an image
/// sharing no class with image 1 instead (a positive pair when none is found). At 0 the pairs
/// are the official sampler's, draw for draw.
pub fn epoch_pairs_with_negatives(
    ds: &VocDataset,
    by_class: &[Vec<usize>],
    seed: u64,
    epoch: usize,
    negative: f64,
) -> Vec<Pair> {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let labelled: Vec<usize> = (0..ds.items.len())
        .filter(|&i| !ds.items[i].labels.is_empty())
        .collect();
    let mut order = labelled.clone();
    order.shuffle(&mut rng);
    order
        .into_iter()
        .map(|i| {
            let labels = &ds.items[i].labels;
            let class = labels[rng.gen_range(0..labels.len())];
            // no draw at all when off, so the official pairs stay bit for bit
            if negative > 0.0 && rng.gen_bool(negative) {
                let disjoint = |j: usize| !ds.items[j].labels.iter().any(|c| labels.contains(c));
                for _ in 0..NEGATIVE_TRIES {
                    let j = labelled[rng.gen_range(0..labelled.len())];
                    if disjoint(j) {
                        return Pair {
                            first: i,
                            second: j,
                            class,
                            negative: true,
                        };
                    }
                }
            }
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
                negative: false,
            }
        })
        .collect()
}
