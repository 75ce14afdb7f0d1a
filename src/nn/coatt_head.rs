//! The MCIS head (DESIGN §4-§5) on a pair of feature maps: the single-image classifier
//! (1×1 conv with bias + GAP), the co-attention (W_P, bias-free), the shared φ (1×1, no bias)
//! scoring the co-attentive and the contrastive features, and the gate W_B (1×1, no bias).
use super::Init;
use crate::error::Result;
use crate::tensor::{DType, Tensor};
use crate::{coattention, Device};
use rand::Rng;

/// How the co-attention affinity S is computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Affinity {
    /// S_ij = (W_P·f_i)·f_j on the raw features: the paper's (the fused co-attention op).
    #[default]
    Dot,
    /// The same on unit-length features, S_ij = (W_P·f̂_i)·f̂_j; the summaries still mix the
    /// raw features. Not in the paper: with unnormalised ReLU features of small networks, a
    /// few high-norm positions of one image win the softmax for every position of the other
    /// (docs/results.md, docs/history.md), which flattens φ·F∩.
    Cosine,
    /// Cosine on features centred per image (each channel's mean over the positions
    /// subtracted): ReLU features all lie in the positive orthant, so their plain cosine is
    /// high for every pair of positions; centring makes it contrast object with background.
    /// Not in the paper (docs/quality.md).
    Centered,
}

/// Which layer scores the co-attentive and contrastive features.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scorer {
    /// A layer φ of its own (1×1, no bias): the official code (`extra_gate` beside the
    /// single-image `extra_last_conv`).
    #[default]
    Separate,
    /// The single-image classifier itself (with its bias): the paper's text, whose Eq. 1 and
    /// Eq. 5 both write ϕ. The co-attention terms then train the layer the CAMs come from.
    Shared,
}

impl Scorer {
    pub fn is_separate(&self) -> bool {
        *self == Scorer::Separate
    }
}

/// How the affinity S is scaled before the two softmaxes: S/τ.
#[derive(Clone, Debug)]
pub enum Temperature {
    /// A fixed τ (1: the paper's unscaled S).
    Fixed(f64),
    /// A learned τ: the [1] parameter holds log(1/τ), trained outside weight decay (weight
    /// decay on W_P alone keeps a cosine affinity within ±‖W_P‖, which flattens the softmax).
    Learned(Tensor),
}

/// How W_P starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WpInit {
    /// The head's initialiser, like every other new layer (the paper's).
    #[default]
    Random,
    /// The identity: S starts as the feature similarity itself, so a position attends to
    /// the positions of the other image that look like it.
    Identity,
}

#[derive(Clone, Debug)]
pub struct CoattHead {
    /// W_P (C,C): Q = W_P·Fm.
    pub wp: Tensor,
    /// Single-image classifier (K,C) and bias (K).
    pub last_w: Tensor,
    pub last_b: Tensor,
    /// φ (K,C), shared by the co-attention and contrastive branches (unused when `scorer`
    /// is [`Scorer::Shared`]).
    pub phi: Tensor,
    /// Which layer scores F∩ and the contrastive features.
    pub scorer: Scorer,
    /// Gate W_B (1,C).
    pub wb: Tensor,
    pub affinity: Affinity,
    /// S/τ before the softmaxes.
    pub temperature: Temperature,
    /// With extra single-label data (paper §3.2): W_P for extra-extra pairs and for mixed
    /// pairs; `wp` stays the target-target one (the one CAM inference uses). Empty otherwise.
    pub wp_domains: Vec<Tensor>,
}

/// Logits of one pair forward; index 0 is image m, 1 is image n.
pub struct PairLogits {
    pub single: [Tensor; 2],
    pub coatt: [Tensor; 2],
    pub contrast: [Tensor; 2],
}

impl CoattHead {
    pub fn new(
        c: usize,
        k: usize,
        init: Init,
        dtype: DType,
        device: Device,
        rng: &mut impl Rng,
    ) -> CoattHead {
        let mut p = |dims: Vec<usize>| init_param(dims, c, init, dtype, device, rng);
        CoattHead {
            wp: p(vec![c, c]),
            last_w: p(vec![k, c]),
            last_b: p(vec![k]),
            phi: p(vec![k, c]),
            wb: p(vec![1, c]),
            scorer: Scorer::Separate,
            affinity: Affinity::Dot,
            temperature: Temperature::Fixed(1.0),
            wp_domains: Vec::new(),
        }
    }

    /// Sets τ: fixed, or learned from `tau` as its start (a new parameter, drawn from no rng).
    pub fn set_temperature(&mut self, tau: f64, learned: bool) {
        self.temperature = if learned {
            Temperature::Learned(
                Tensor::full((1.0 / tau).ln(), [1], self.wp.dtype(), self.wp.device()).into_param(),
            )
        } else {
            Temperature::Fixed(tau)
        };
    }

    /// The current τ.
    pub fn tau(&self) -> f64 {
        match &self.temperature {
            Temperature::Fixed(t) => *t,
            Temperature::Learned(p) => (-p.to_vec_f64()[0]).exp(),
        }
    }

    /// Sets every W_P to the identity (after they were drawn, so the other parameters keep
    /// the values they would have with a random W_P).
    pub fn set_wp_identity(&self) -> Result<()> {
        let c = self.channels();
        let mut eye = vec![0.0; c * c];
        (0..c).for_each(|i| eye[i * c + i] = 1.0);
        let t = Tensor::from_f64(&eye, [c, c], self.wp.dtype(), self.wp.device())?;
        std::iter::once(&self.wp)
            .chain(&self.wp_domains)
            .try_for_each(|w| w.assign(&t))
    }

    /// W_P/τ: S/τ = ((W_P/τ)·Fm)ᵀ·Fn, so the scale rides on W_P and the fused op is unchanged.
    fn scaled_wp(&self, wp: &Tensor) -> Result<Tensor> {
        match &self.temperature {
            Temperature::Fixed(t) if *t == 1.0 => Ok(wp.clone()),
            Temperature::Fixed(t) => Ok(wp.mul_scalar(1.0 / t)),
            Temperature::Learned(p) => wp.mul(&p.exp()),
        }
    }

    /// Adds the extra-extra and mixed-pair W_P (initialised like W_P; drawn after every
    /// other parameter, so single-domain models initialise exactly as before).
    pub fn add_domain_wp(&mut self, init: Init, rng: &mut impl Rng) {
        let (c, dt, dev) = (self.channels(), self.wp.dtype(), self.wp.device());
        self.wp_domains = (0..2)
            .map(|_| init_param(vec![c, c], c, init, dt, dev, rng))
            .collect();
    }

    /// Whether `t` is one of the head's W_P (the same tensor, not an equal one).
    pub fn is_wp(&self, t: &Tensor) -> bool {
        t.id() == self.wp.id() || self.wp_domains.iter().any(|w| w.id() == t.id())
    }

    /// W_P number `i` ([`crate::data::Domain::wp_index`]): 0 target pairs, 1 extra pairs, 2 mixed.
    pub fn wp_at(&self, i: usize) -> Result<&Tensor> {
        match i {
            0 => Ok(&self.wp),
            _ => self.wp_domains.get(i - 1).ok_or_else(|| {
                crate::Error::Msg(format!(
                    "W_P {i} asked of a head without domain-specific W_P (single-label extra data needs them)"
                ))
            }),
        }
    }

    pub fn channels(&self) -> usize {
        self.wp.dims()[0]
    }

    /// 1×1 conv (no bias) then GAP = W · mean over positions: (B,C,N) → (B,K).
    fn score(f: &Tensor, w: &Tensor) -> Result<Tensor> {
        f.mean_axes(&[2], false)?.matmul_t(w, false, true)
    }
    fn flat(f: &Tensor) -> Result<Tensor> {
        let d = f.dims();
        f.reshape(&[d[0], d[1], d[2] * d[3]])
    }

    /// The weights and bias that score F∩ and the contrastive features.
    fn co_scorer(&self) -> (&Tensor, Option<&Tensor>) {
        match self.scorer {
            Scorer::Separate => (&self.phi, None),
            Scorer::Shared => (&self.last_w, Some(&self.last_b)),
        }
    }

    /// GAP scores (B,K) of flat features (B,C,N) under the co-attention scorer.
    fn co_score(&self, f: &Tensor) -> Result<Tensor> {
        let (w, b) = self.co_scorer();
        let s = Self::score(f, w)?;
        match b {
            Some(b) => s.add(b),
            None => Ok(s),
        }
    }

    /// Single-image logits (B,K) of features (B,C,H,W).
    pub fn single(&self, f: &Tensor) -> Result<Tensor> {
        Self::score(&Self::flat(f)?, &self.last_w)?.add(&self.last_b)
    }

    /// Per-position logits W·F (+ bias): the class maps that GAP turns into scores.
    /// (B,C,H,W) → (B,K,H,W).
    fn class_maps(f: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let d = f.dims().to_vec();
        let mut m = Self::flat(f)?.transpose(1, 2)?.matmul_t(w, false, true)?;
        if let Some(b) = bias {
            m = m.add(b)?;
        }
        m.transpose(1, 2)?.reshape(&[d[0], w.dims()[0], d[2], d[3]])
    }

    /// The single-image head's class activation maps (with its bias, as the official CAM).
    pub fn single_maps(&self, f: &Tensor) -> Result<Tensor> {
        Self::class_maps(f, &self.last_w, Some(&self.last_b))
    }

    /// The co-attention class maps φ·F∩ of a pair, before GAP: index 0 on image m's grid
    /// (image n's features re-indexed there), index 1 on image n's grid.
    pub fn pair_maps(&self, f1: &Tensor, f2: &Tensor) -> Result<[Tensor; 2]> {
        let (fm_att, fn_att) = self.attend(&Self::flat(f1)?, &Self::flat(f2)?, &self.wp)?;
        let grid = |att: &Tensor, f: &Tensor| {
            let d = f.dims();
            att.reshape(&[d[0], d[1], d[2], d[3]])
        };
        let (w, b) = self.co_scorer();
        Ok([
            Self::class_maps(&grid(&fm_att, f1)?, w, b)?,
            Self::class_maps(&grid(&fn_att, f2)?, w, b)?,
        ])
    }

    /// The affinity S/τ (B,N,M) of flat features (B,C,N), (B,C,M) (the cosine affinities
    /// only; the dot product runs inside the fused op).
    fn cosine_affinity(&self, fm: &Tensor, fnn: &Tensor, wp: &Tensor) -> Result<Tensor> {
        let centre = self.affinity == Affinity::Centered;
        let unit = |x: &Tensor| -> Result<Tensor> {
            let x = if centre {
                x.sub(&x.mean_axes(&[2], true)?)?
            } else {
                x.clone()
            };
            x.div(&x.sqr().sum_axes(&[1], true)?.add_scalar(1e-12).sqrt())
        };
        unit(fm)?
            .transpose(1, 2)?
            .matmul_t(wp, false, true)?
            .matmul(&unit(fnn)?)
    }

    /// softmax_j(S/τ) (B,N,M): how each position of image m spreads its attention over image
    /// n (the rows that make Fm∩), for diagnostics ([`crate::nn::AttentionStats`]).
    pub fn attention_rows(&self, f1: &Tensor, f2: &Tensor) -> Result<Tensor> {
        let (fm, fnn) = (Self::flat(f1)?, Self::flat(f2)?);
        let wp = self.scaled_wp(&self.wp)?;
        let s = match self.affinity {
            Affinity::Dot => fm
                .transpose(1, 2)?
                .matmul_t(&wp, false, true)?
                .matmul(&fnn)?,
            Affinity::Cosine | Affinity::Centered => self.cosine_affinity(&fm, &fnn, &wp)?,
        };
        s.softmax(2)
    }

    /// (Fm∩, Fn∩) of flat features (B,C,N), (B,C,M) under the head's affinity and τ.
    fn attend(&self, fm: &Tensor, fnn: &Tensor, wp: &Tensor) -> Result<(Tensor, Tensor)> {
        let wp = self.scaled_wp(wp)?;
        match self.affinity {
            Affinity::Dot => coattention(fm, fnn, &wp),
            Affinity::Cosine | Affinity::Centered => {
                // composed from differentiable ops (the fused op is for the paper's affinity)
                let s = self.cosine_affinity(fm, fnn, &wp)?;
                Ok((
                    fnn.matmul_t(&s.softmax(2)?, false, true)?,
                    fm.matmul(&s.softmax(1)?)?,
                ))
            }
        }
    }

    /// The gate σ(W_B·F∩): (B,C,N) → (B,1,N).
    pub fn gate(&self, att: &Tensor) -> Result<Tensor> {
        Ok(att
            .transpose(1, 2)?
            .matmul_t(&self.wb, false, true)?
            .transpose(1, 2)?
            .sigmoid())
    }

    /// Co-attention and contrastive logits of a pair (the single-image logits are separate,
    /// since image 1 takes part in several pairs). `contrastive` false skips that branch.
    pub fn pair(
        &self,
        f1: &Tensor,
        f2: &Tensor,
        contrastive: bool,
    ) -> Result<([Tensor; 2], Option<[Tensor; 2]>)> {
        self.pair_with(f1, f2, contrastive, 0)
    }

    /// [`Self::pair`] with W_P number `wp` ([`Self::wp_at`]).
    pub fn pair_with(
        &self,
        f1: &Tensor,
        f2: &Tensor,
        contrastive: bool,
        wp: usize,
    ) -> Result<([Tensor; 2], Option<[Tensor; 2]>)> {
        let (fm, fnn) = (Self::flat(f1)?, Self::flat(f2)?);
        let (fm_att, fn_att) = self.attend(&fm, &fnn, self.wp_at(wp)?)?;
        let co = [self.co_score(&fm_att)?, self.co_score(&fn_att)?];
        if !contrastive {
            return Ok((co, None));
        }
        let (g1, g2) = (self.gate(&fm_att)?, self.gate(&fn_att)?);
        let cx = [
            self.co_score(&fm.mul(&g1.neg().add_scalar(1.0))?)?,
            self.co_score(&fnn.mul(&g2.neg().add_scalar(1.0))?)?,
        ];
        Ok((co, Some(cx)))
    }

    pub fn named_params(&self) -> Vec<(String, Tensor)> {
        vec![
            ("head.wp".into(), self.wp.clone()),
            ("head.last_w".into(), self.last_w.clone()),
            ("head.last_b".into(), self.last_b.clone()),
            ("head.phi".into(), self.phi.clone()),
            ("head.wb".into(), self.wb.clone()),
        ]
        .into_iter()
        .chain(
            ["head.wp_extra", "head.wp_mixed"]
                .iter()
                .zip(&self.wp_domains)
                .map(|(n, t)| (n.to_string(), t.clone())),
        )
        .chain(match &self.temperature {
            Temperature::Learned(p) => Some(("head.log_inv_tau".to_string(), p.clone())),
            Temperature::Fixed(_) => None,
        })
        .collect()
    }
}

/// A new head parameter with fan-in `c` (every head layer reads C channels).
fn init_param(
    dims: Vec<usize>,
    c: usize,
    init: Init,
    dtype: DType,
    device: Device,
    rng: &mut impl Rng,
) -> Tensor {
    let t = match init {
        Init::TorchDefault => Tensor::rand_uniform(
            dims,
            -1.0 / (c as f64).sqrt(),
            1.0 / (c as f64).sqrt(),
            dtype,
            device,
            rng,
        ),
        Init::KaimingNormal => Tensor::randn(dims, (2.0 / c as f64).sqrt(), dtype, device, rng),
    };
    t.into_param()
}
