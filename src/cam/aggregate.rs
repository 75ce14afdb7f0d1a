//! The official fusion of one class's localization maps (MCIS `scripts/test.py`, `aggregate`):
//! each map is ReLU'd and divided by its max; the first map (image 1's side of the flip pair)
//! is always kept, each further map only when sigmoid(mean of its raw logits) > 0.1; the kept
//! maps are summed and divided by the number of maps offered (dropped ones count as zero).

/// In place: negative values to 0, then divided by the max (+1e-8, as the official code).
pub fn relu_max_normalize(map: &mut [f32]) {
    let mut max = 0f32;
    for v in map.iter_mut() {
        *v = v.max(0.0);
        max = max.max(*v);
    }
    let s = 1.0 / (max + 1e-8);
    for v in map.iter_mut() {
        *v *= s;
    }
}

/// Whether a raw logit map passes the official quality filter sigmoid(mean) > 0.1.
pub fn passes_filter(raw: &[f32]) -> bool {
    let mean = raw.iter().map(|&v| v as f64).sum::<f64>() / raw.len().max(1) as f64;
    1.0 / (1.0 + (-mean).exp()) > 0.1
}

/// Fuses raw logit maps of one class on one grid into a map in [0, 1].
pub fn aggregate(raw_maps: &[Vec<f32>]) -> Vec<f32> {
    let Some(first) = raw_maps.first() else {
        return Vec::new();
    };
    let mut out = first.clone();
    relu_max_normalize(&mut out);
    for m in &raw_maps[1..] {
        assert_eq!(m.len(), out.len(), "aggregate: maps on different grids");
        if passes_filter(m) {
            let mut n = m.clone();
            relu_max_normalize(&mut n);
            for (o, v) in out.iter_mut().zip(&n) {
                *o += v;
            }
        }
    }
    let s = 1.0 / raw_maps.len() as f32;
    out.iter_mut().for_each(|v| *v *= s);
    out
}
