//! The paper's co-attentive inference (MCIS `scripts/test.py`) as a pure function: from the
//! features of a batch of images, of their self-views and of their related images to the fused
//! maps on the feature grid. No disk and no dataset: `cams` (`infer.rs`) reads the images,
//! computes and caches the features and calls this.
use super::aggregate::aggregate;
use crate::error::Result;
use crate::nn::CoattHead;
use crate::tensor::Tensor;
use std::collections::HashMap;

/// The features one batch of co-attentive maps is made from.
pub struct CoattFeatures<'a> {
    /// (B, C, h, w): the images whose maps are made.
    pub images: &'a Tensor,
    /// The same images flipped horizontally (B, C, h, w).
    pub flipped: &'a Tensor,
    /// The same images resized by the classifier's small and large factors (any grid size:
    /// their maps are resized to h × w).
    pub small: &'a Tensor,
    pub large: &'a Tensor,
    /// Related images: (index b of the image they serve, class, features (1, C, h', w')).
    pub related: &'a [(usize, usize, Tensor)],
}

/// Raw logit maps (B, K, h, w) → host vectors, one per image and class.
pub fn host_maps(t: &Tensor) -> Vec<Vec<Vec<f32>>> {
    let d = t.dims().to_vec();
    let hw = d[2] * d[3];
    let v = t.to_vec_f32();
    (0..d[0])
        .map(|b| {
            (0..d[1])
                .map(|k| v[(b * d[1] + k) * hw..(b * d[1] + k + 1) * hw].to_vec())
                .collect()
        })
        .collect()
}

/// Per image b and each of its `classes[b]`: the fused map on the h × w grid, in [0, 1]. The
/// maps fused for a class are the four self-pair maps (image with its flip, each side; image
/// with its small and large views) and the mean of the image's maps against its related images
/// of that class, by [`aggregate`] (the official rule).
pub fn coattentive_maps(
    head: &CoattHead,
    f: &CoattFeatures,
    classes: &[Vec<usize>],
) -> Result<Vec<Vec<Vec<f32>>>> {
    let (h, w) = (f.images.dims()[2], f.images.dims()[3]);
    let [m_flip, n_flip] = head.pair_maps(f.images, f.flipped)?;
    let n_flip = n_flip.flip(3)?;
    let rescaled =
        |v: &Tensor| -> Result<Tensor> { head.pair_maps(f.images, v)?[1].resize_bilinear(h, w) };
    let self_maps = [
        host_maps(&m_flip),
        host_maps(&n_flip),
        host_maps(&rescaled(f.small)?),
        host_maps(&rescaled(f.large)?),
    ];
    // the related pairs of every (image, class) in one batched co-attention, averaged
    let mut related_sum: HashMap<(usize, usize), (Vec<f32>, usize)> = HashMap::new();
    if !f.related.is_empty() {
        let fm: Vec<Tensor> = f
            .related
            .iter()
            .map(|r| f.images.narrow(0, r.0, 1))
            .collect::<Result<_>>()?;
        let fm = Tensor::concat(&fm.iter().collect::<Vec<_>>(), 0)?;
        let fr: Vec<&Tensor> = f.related.iter().map(|r| &r.2).collect();
        let fr = Tensor::concat(&fr, 0)?;
        let maps = host_maps(&head.pair_maps(&fm, &fr)?[0]);
        for (k, &(b, c, _)) in f.related.iter().enumerate() {
            let e = related_sum.entry((b, c)).or_insert((vec![0.0; h * w], 0));
            for (o, v) in e.0.iter_mut().zip(&maps[k][c]) {
                *o += v;
            }
            e.1 += 1;
        }
    }
    Ok(classes
        .iter()
        .enumerate()
        .map(|(b, cs)| {
            cs.iter()
                .map(|&c| {
                    let mut list: Vec<Vec<f32>> =
                        self_maps.iter().map(|m| m[b][c].clone()).collect();
                    if let Some((sum, n)) = related_sum.get(&(b, c)) {
                        list.push(sum.iter().map(|v| v / *n as f32).collect());
                    }
                    aggregate(&list)
                })
                .collect()
        })
        .collect())
}
