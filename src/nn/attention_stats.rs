//! How peaked a co-attention is: the diagnostics behind the "hub" and "uniform" failure modes
//! (docs/results.md, docs/quality.md). Accumulated over the rows of softmax_j(S) of many pairs.
use crate::error::{Error, Result};
use crate::tensor::Tensor;

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttentionStats {
    /// Pairs and attention rows (positions of image m) seen.
    pub pairs: usize,
    pub rows: usize,
    entropy_sum: f64,
    top1_sum: f64,
    hub_sum: f64,
    attended_sum: f64,
    uniform_sum: f64,
}

impl AttentionStats {
    /// Adds the attention rows (B,N,M) of B pairs (each row sums to 1 over image n's M
    /// positions).
    pub fn add(&mut self, rows: &Tensor) -> Result<()> {
        let d = rows.dims();
        if d.len() != 3 || d[2] < 2 {
            return Err(Error::Msg(format!(
                "attention rows must be (B,N,M) with M ≥ 2, got {d:?}"
            )));
        }
        let (b, n, m) = (d[0], d[1], d[2]);
        let v = rows.to_vec_f64();
        let ln_m = (m as f64).ln();
        for pair in v.chunks(n * m).take(b) {
            let mut picked = vec![0usize; m];
            for r in pair.chunks(m) {
                let (arg, top) =
                    r.iter()
                        .enumerate()
                        .fold((0, f64::MIN), |a, (j, &w)| if w > a.1 { (j, w) } else { a });
                picked[arg] += 1;
                self.top1_sum += top;
                self.entropy_sum += -r
                    .iter()
                    .map(|&w| if w > 0.0 { w * w.ln() } else { 0.0 })
                    .sum::<f64>()
                    / ln_m;
            }
            self.hub_sum += *picked.iter().max().unwrap_or(&0) as f64 / n as f64;
            self.attended_sum += picked.iter().filter(|&&c| c > 0).count() as f64 / m as f64;
            self.uniform_sum += 1.0 / m as f64;
            self.rows += n;
            self.pairs += 1;
        }
        Ok(())
    }

    /// Mean normalised entropy of a row: 1 for uniform attention, 0 for one position.
    pub fn entropy(&self) -> f64 {
        self.entropy_sum / self.rows.max(1) as f64
    }
    /// Mean largest weight of a row (its top-1 mass).
    pub fn top1_mass(&self) -> f64 {
        self.top1_sum / self.rows.max(1) as f64
    }
    /// What the top-1 mass would be for uniform attention (1/M, averaged over pairs).
    pub fn uniform_top1(&self) -> f64 {
        self.uniform_sum / self.pairs.max(1) as f64
    }
    /// Mean share of image m's positions whose largest weight is on the single most popular
    /// position of n (a hub takes most of them).
    pub fn hub_share(&self) -> f64 {
        self.hub_sum / self.pairs.max(1) as f64
    }
    /// Mean share of image n's positions that are some position's top choice.
    pub fn attended_share(&self) -> f64 {
        self.attended_sum / self.pairs.max(1) as f64
    }

    /// One line for logs and reports.
    pub fn summary(&self) -> String {
        format!(
            "attention over {} pairs: normalised entropy {:.3}, top-1 mass {:.3} (uniform {:.3}), hub share {:.3}, positions attended {:.3}",
            self.pairs,
            self.entropy(),
            self.top1_mass(),
            self.uniform_top1(),
            self.hub_share(),
            self.attended_share()
        )
    }
}
