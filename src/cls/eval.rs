//! Classification quality: average precision per class and its mean (mAP).
/// AP of one class: mean precision at the rank of each positive (scores sorted descending;
/// ties broken by order). None when the class has no positive.
pub fn average_precision(scores: &[f64], positives: &[bool]) -> Option<f64> {
    let n_pos = positives.iter().filter(|&&p| p).count();
    if n_pos == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut hits, mut sum) = (0usize, 0f64);
    for (rank, &i) in idx.iter().enumerate() {
        if positives[i] {
            hits += 1;
            sum += hits as f64 / (rank + 1) as f64;
        }
    }
    Some(sum / n_pos as f64)
}

/// Mean AP over classes with at least one positive; scores and labels are (N, K) row-major.
pub fn mean_average_precision(scores: &[f64], labels: &[f64], k: usize) -> (f64, Vec<Option<f64>>) {
    let n = scores.len() / k.max(1);
    let per: Vec<Option<f64>> = (0..k)
        .map(|c| {
            let s: Vec<f64> = (0..n).map(|i| scores[i * k + c]).collect();
            let p: Vec<bool> = (0..n).map(|i| labels[i * k + c] > 0.5).collect();
            average_precision(&s, &p)
        })
        .collect();
    let valid: Vec<f64> = per.iter().flatten().copied().collect();
    (
        if valid.is_empty() {
            0.0
        } else {
            valid.iter().sum::<f64>() / valid.len() as f64
        },
        per,
    )
}
