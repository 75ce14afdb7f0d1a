//! Loader threads: decode + augment batches ahead of the training step through bounded
//! channels. Batch b is built by worker b mod W and read back in order, and every sample's
//! randomness is seeded by (seed, epoch, position), so the result does not depend on thread
//! timing. A corrupt image is reported and its pair skipped, never a crash.
use super::augment::{prepare, Jitter};
use super::sampler::Pair;
use super::voc::{load_rgb, Domain, VocDataset};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// One batch of pairs, as host arrays (B,3,S,S) and multi-hot labels (B,K).
#[derive(Clone, Debug, Default)]
pub struct PairBatch {
    pub index: usize,
    pub size: usize,
    pub img1: Vec<f32>,
    pub img2: Vec<f32>,
    pub l1: Vec<f32>,
    pub l2: Vec<f32>,
    pub ids: Vec<(String, String)>,
    /// Images that could not be read (pair skipped), with the reason.
    pub skipped: Vec<String>,
    /// Per pair: the W_P of (image 1, image 2) and of image 1's self pairs ([`Domain::wp_index`]).
    /// Pairs are grouped by these (a stable sort), so the head can run once per group.
    pub wp: Vec<(usize, usize)>,
}

impl PairBatch {
    /// Stable sort of the pairs by their W_P indices (a no-op on single-domain data).
    fn group_by_wp(&mut self) {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by_key(|&i| self.wp[i]);
        if order.iter().enumerate().all(|(a, &b)| a == b) {
            return;
        }
        let (img, k) = (3 * self.size * self.size, self.l1.len() / self.len().max(1));
        let pick = |v: &[f32], n: usize| -> Vec<f32> {
            order
                .iter()
                .flat_map(|&i| v[i * n..(i + 1) * n].iter().copied())
                .collect()
        };
        self.img1 = pick(&self.img1, img);
        self.img2 = pick(&self.img2, img);
        self.l1 = pick(&self.l1, k);
        self.l2 = pick(&self.l2, k);
        self.ids = order.iter().map(|&i| self.ids[i].clone()).collect();
        self.wp = order.iter().map(|&i| self.wp[i]).collect();
    }

    /// Runs of consecutive pairs with the same W_P indices.
    pub fn wp_runs(&self) -> Vec<WpRun> {
        wp_runs(&self.wp)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[derive(Clone, Debug)]
pub struct LoaderConfig {
    pub size: usize,
    pub batch: usize,
    pub workers: usize,
    pub prefetch: usize,
    pub jitter: Option<Jitter>,
    pub seed: u64,
    pub epoch: usize,
}

/// Consecutive pairs of a batch that use the same W_P ([`Domain::wp_index`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WpRun {
    pub start: usize,
    pub len: usize,
    /// W_P of the pair (image 1, image 2).
    pub pair_wp: usize,
    /// W_P of image 1's self pairs (flip, small, large view).
    pub self_wp: usize,
}

impl WpRun {
    /// The whole batch of `len` pairs with the target W_P (single-domain training).
    pub fn whole(len: usize) -> WpRun {
        WpRun {
            start: 0,
            len,
            pair_wp: 0,
            self_wp: 0,
        }
    }
}

/// Runs of equal consecutive (pair W_P, self W_P) keys.
pub fn wp_runs(wp: &[(usize, usize)]) -> Vec<WpRun> {
    let mut runs: Vec<WpRun> = Vec::new();
    for (i, &(pair_wp, self_wp)) in wp.iter().enumerate() {
        match runs.last_mut() {
            Some(r) if (r.pair_wp, r.self_wp) == (pair_wp, self_wp) => r.len += 1,
            _ => runs.push(WpRun {
                start: i,
                len: 1,
                pair_wp,
                self_wp,
            }),
        }
    }
    runs
}

pub fn multi_hot(labels: &[usize], k: usize) -> Vec<f32> {
    let mut v = vec![0f32; k];
    for &c in labels {
        v[c] = 1.0;
    }
    v
}

fn build(ds: &VocDataset, pairs: &[Pair], b: usize, cfg: &LoaderConfig) -> PairBatch {
    let k = ds.num_classes();
    let mut out = PairBatch {
        index: b,
        size: cfg.size,
        ..Default::default()
    };
    for (pos, p) in pairs.iter().enumerate().skip(b * cfg.batch).take(cfg.batch) {
        let mut rng = ChaCha8Rng::seed_from_u64(
            cfg.seed
                ^ ((cfg.epoch as u64) << 40)
                ^ (pos as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let (a, c) = (&ds.items[p.first], &ds.items[p.second]);
        let (ia, ic) = match (load_rgb(&a.image), load_rgb(&c.image)) {
            (Ok(x), Ok(y)) => (x, y),
            (Err(e), _) | (_, Err(e)) => {
                out.skipped.push(e.to_string());
                continue;
            }
        };
        out.img1
            .extend(prepare(&ia, cfg.size, cfg.jitter.as_ref(), &mut rng));
        out.img2
            .extend(prepare(&ic, cfg.size, cfg.jitter.as_ref(), &mut rng));
        out.l1.extend(multi_hot(&a.labels, k));
        out.l2.extend(multi_hot(&c.labels, k));
        out.ids.push((a.id.clone(), c.id.clone()));
        out.wp.push((
            Domain::wp_index(a.domain, c.domain),
            Domain::wp_index(a.domain, a.domain),
        ));
    }
    out.group_by_wp();
    out
}

/// Batches of one epoch, produced ahead by `cfg.workers` threads; iterate to consume in order.
pub struct PairLoader {
    rx: Vec<Receiver<PairBatch>>,
    handles: Vec<JoinHandle<()>>,
    next: usize,
    count: usize,
}

impl PairLoader {
    /// Starts the workers at batch `start` (for resuming mid-epoch).
    pub fn start(
        ds: Arc<VocDataset>,
        pairs: Arc<Vec<Pair>>,
        cfg: LoaderConfig,
        start: usize,
    ) -> PairLoader {
        let count = pairs.len().div_ceil(cfg.batch.max(1));
        let w = cfg.workers.max(1);
        let mut rx = Vec::new();
        let mut handles = Vec::new();
        for wi in 0..w {
            let (tx, r) = sync_channel(cfg.prefetch.max(1));
            let (ds, pairs, cfg) = (ds.clone(), pairs.clone(), cfg.clone());
            handles.push(std::thread::spawn(move || {
                let mut b = start + (wi + w - start % w) % w;
                while b < count {
                    if tx.send(build(&ds, &pairs, b, &cfg)).is_err() {
                        return; // the consumer stopped early
                    }
                    b += w;
                }
            }));
            rx.push(r);
        }
        PairLoader {
            rx,
            handles,
            next: start,
            count,
        }
    }
    pub fn len(&self) -> usize {
        self.count
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl Iterator for PairLoader {
    type Item = PairBatch;
    fn next(&mut self) -> Option<PairBatch> {
        if self.next >= self.count {
            return None;
        }
        let w = self.rx.len();
        let b = self.rx[self.next % w].recv().ok()?;
        debug_assert_eq!(b.index, self.next);
        self.next += 1;
        Some(b)
    }
}

impl Drop for PairLoader {
    fn drop(&mut self) {
        self.rx.clear(); // closes the channels so blocked workers return
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
