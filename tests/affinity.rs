//! AffinityNet's ops: the local affinity's gradient, the random walk against a dense
//! matrix-power reference, and a walk on a hand-made two-region affinity.
use coatt::ops::half_disc_offsets;
use coatt::testing::{gradcheck, rand_nonzero, rng};
use coatt::{DType, Device, Tensor};

#[test]
fn half_disc_has_the_psa_pairs() {
    let o = half_disc_offsets(5);
    assert_eq!(o.len(), 34, "radius 5: 4 + 9 + 9 + 7 + 5 offsets");
    assert!(o
        .iter()
        .all(|&(dy, dx)| dy * dy + dx * dx < 25 && (dy > 0 || dx > 0)));
    // every unordered neighbour pair once: no offset's negation is in the set
    assert!(o.iter().all(|&(dy, dx)| !o.contains(&(-dy, -dx))));
    assert!(o.contains(&(0, 4)) && o.contains(&(4, 2)) && !o.contains(&(4, 3)));
}

#[test]
fn local_affinity_values_and_gradient() {
    let f = rand_nonzero(&[2, 3, 4, 5], &mut rng(3));
    let a = f.local_affinity(3).unwrap();
    let p = half_disc_offsets(3);
    assert_eq!(a.dims(), [2, p.len(), 4, 5]);
    // a direct value: pair (y, x) = (1, 2) → (1 + dy, 2 + dx) of the first offset
    let (v, fv) = (a.to_vec_f64(), f.to_vec_f64());
    let (dy, dx) = p[0];
    let (y, x) = (1isize, 2isize);
    let (i, j) = ((y * 5 + x) as usize, ((y + dy) * 5 + x + dx) as usize);
    let mean: f64 = (0..3)
        .map(|c| (fv[c * 20 + i] - fv[c * 20 + j]).abs())
        .sum::<f64>()
        / 3.0;
    assert!((v[i] - (-mean).exp()).abs() < 1e-12);
    // off the grid: 0 (the last column has no right neighbour for offset (0, 1))
    let right = p.iter().position(|&o| o == (0, 1)).unwrap();
    assert_eq!(v[right * 20 + 4], 0.0);
    let r = gradcheck(&[f], |x| {
        let a = x[0].local_affinity(3)?;
        // a loss that weighs every pair differently
        let w = rand_nonzero(a.dims(), &mut rng(4));
        a.mul(&w)?.sum_all()
    })
    .unwrap();
    assert!(r.checked > 0);
}

/// The walk as PSA computes it: dense W = a^β (symmetric, self-loop 1), T = W / column sums,
/// x · T^steps.
fn dense_walk(
    x: &[f64],
    a: &[f64],
    k: usize,
    h: usize,
    w: usize,
    r: usize,
    beta: f64,
    steps: usize,
) -> Vec<f64> {
    let n = h * w;
    let off = half_disc_offsets(r);
    let mut wm = vec![0.0; n * n];
    (0..n).for_each(|i| wm[i * n + i] = 1.0);
    for (p, &(dy, dx)) in off.iter().enumerate() {
        for y in 0..h as isize {
            for xx in 0..w as isize {
                let (ny, nx) = (y + dy, xx + dx);
                if ny < 0 || nx < 0 || ny >= h as isize || nx >= w as isize {
                    continue;
                }
                let (i, j) = (
                    (y * w as isize + xx) as usize,
                    (ny * w as isize + nx) as usize,
                );
                let v = a[p * n + i].powf(beta);
                wm[i * n + j] = v;
                wm[j * n + i] = v;
            }
        }
    }
    for j in 0..n {
        let d: f64 = (0..n).map(|i| wm[i * n + j]).sum();
        (0..n).for_each(|i| wm[i * n + j] /= d);
    }
    let mut cur = x.to_vec();
    for _ in 0..steps {
        let mut next = vec![0.0; k * n];
        for c in 0..k {
            for j in 0..n {
                next[c * n + j] = (0..n).map(|i| cur[c * n + i] * wm[i * n + j]).sum();
            }
        }
        cur = next;
    }
    cur
}

#[test]
fn random_walk_matches_the_dense_matrix_power() {
    let (h, w, k, r) = (5, 6, 2, 3);
    let f = rand_nonzero(&[1, 4, h, w], &mut rng(8));
    let a = f.local_affinity(r).unwrap();
    let x: Vec<f64> = (0..k * h * w)
        .map(|i| ((i * 37) % 11) as f64 / 10.0)
        .collect();
    let xt = Tensor::from_f64(&x, [1, k, h, w], DType::F64, Device::Cpu).unwrap();
    for (beta, steps) in [(1.0, 1), (8.0, 16), (3.0, 256)] {
        let got = xt.random_walk(&a, r, beta, steps).unwrap().to_vec_f64();
        let want = dense_walk(&x, &a.to_vec_f64(), k, h, w, r, beta, steps);
        let err = got
            .iter()
            .zip(&want)
            .map(|(g, e)| (g - e).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-10, "β {beta}, {steps} steps: max error {err}");
    }
    // repeated squaring, T^(2^3) = 8 steps: PSA's logt = 3
    let sq = dense_walk(&x, &a.to_vec_f64(), k, h, w, r, 8.0, 8);
    let got = xt.random_walk(&a, r, 8.0, 8).unwrap().to_vec_f64();
    assert!(got.iter().zip(&sq).all(|(g, e)| (g - e).abs() < 1e-10));
}

#[test]
fn random_walk_keeps_mass_inside_each_region() {
    // two regions (left 3 columns, right 3 columns) of a 4×6 grid: affinity 1 inside a region,
    // 0 across the boundary
    let (h, w, r) = (4, 6, 3);
    let off = half_disc_offsets(r);
    let n = h * w;
    let mut a = vec![0.0; off.len() * n];
    for (p, &(dy, dx)) in off.iter().enumerate() {
        for y in 0..h as isize {
            for x in 0..w as isize {
                let (ny, nx) = (y + dy, x + dx);
                if ny < 0 || nx < 0 || ny >= h as isize || nx >= w as isize {
                    continue;
                }
                if (x < 3) == (nx < 3) {
                    a[p * n + (y * w as isize + x) as usize] = 1.0;
                }
            }
        }
    }
    let a = Tensor::from_f64(&a, [1, off.len(), h, w], DType::F64, Device::Cpu).unwrap();
    // one hot spot in the left region
    let mut x = vec![0.0; n];
    x[w + 1] = 1.0;
    let xt = Tensor::from_f64(&x, [1, 1, h, w], DType::F64, Device::Cpu).unwrap();
    let y = xt.random_walk(&a, r, 8.0, 256).unwrap().to_vec_f64();
    for yy in 0..h {
        for xx in 0..w {
            let v = y[yy * w + xx];
            if xx >= 3 {
                assert_eq!(v, 0.0, "mass crossed into the right region at ({yy},{xx})");
            } else {
                assert!(v > 0.0, "the left region is reached at ({yy},{xx})");
            }
        }
    }
    // after many steps the left region is nearly uniform
    let left: Vec<f64> = (0..n).filter(|i| i % w < 3).map(|i| y[i]).collect();
    let (lo, hi) = left
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(hi - lo < 1e-3 * hi, "left region not mixed: {lo}..{hi}");
}

#[test]
fn random_walk_rejects_affinities_of_another_radius() {
    let f = rand_nonzero(&[1, 2, 4, 4], &mut rng(1));
    let a = f.local_affinity(3).unwrap();
    let x = rand_nonzero(&[1, 2, 4, 4], &mut rng(2));
    let e = x.random_walk(&a, 4, 8.0, 2).unwrap_err().to_string();
    assert!(e.contains("radius 4"), "{e}");
}

#[test]
fn pair_targets_on_a_hand_made_grid() {
    use coatt::affinity::PairTargets;
    // 1×3×4 grid: background, class 1, an ignored cell
    #[rustfmt::skip]
    let g: Vec<u8> = vec![
        0, 0, 1, 1,
        0, 255, 1, 1,
        0, 0, 0, 2,
    ];
    let r = 3; // offsets: (0,1), (0,2), (1,-2)..(1,2), (2,-1)..(2,1)
    let t = PairTargets::new(&g, 1, 3, 4, r);
    let off = half_disc_offsets(r);
    let at = |v: &[f32], dy: isize, dx: isize, y: usize, x: usize| {
        let p = off.iter().position(|&o| o == (dy, dx)).unwrap();
        v[p * 12 + y * 4 + x]
    };
    assert_eq!(at(&t.bg, 0, 1, 0, 0), 1.0, "bg-bg pair");
    assert_eq!(at(&t.fg, 0, 1, 0, 2), 1.0, "fg-fg pair of the same class");
    assert_eq!(at(&t.neg, 0, 1, 0, 1), 1.0, "bg-fg pair is negative");
    assert_eq!(
        at(&t.neg, 0, 1, 2, 2),
        1.0,
        "two labels, one of them class 2"
    );
    // an ignored end: in no set
    for v in [&t.bg, &t.fg, &t.neg] {
        assert_eq!(at(v, 0, 1, 1, 0), 0.0);
        assert_eq!(at(v, 1, 1, 0, 0), 0.0);
    }
    // the radius edge: dx² + dy² < r²: (2, 2) is inside radius 3 (8 < 9), (0, 3) and (3, 0)
    // are not
    assert!(off.contains(&(2, 2)) && !off.contains(&(0, 3)) && !off.contains(&(3, 0)));
    let fg_22 = at(&t.fg, 2, 2, 0, 0) + at(&t.bg, 2, 2, 0, 0) + at(&t.neg, 2, 2, 0, 0);
    assert_eq!(fg_22, 1.0, "(0,0) → (2,2) is a labelled pair (bg → bg)");
    // off the grid: the last column has no (0, 1) pair
    for v in [&t.bg, &t.fg, &t.neg] {
        assert_eq!(at(v, 0, 1, 0, 3), 0.0);
    }
    let (nb, nf, nn) = t.counts();
    assert!(nb > 0 && nf > 0 && nn > 0);
}

#[test]
fn affinity_labels_keep_confident_regions_only() {
    use coatt::affinity::affinity_labels;
    use coatt::cam::CamFile;
    // one class whose map is 1 in the middle, 0.5 around it, 0 outside
    let (h, w) = (6, 8);
    let mut m = vec![0f32; h * w];
    for y in 1..5 {
        for x in 1..7 {
            m[y * w + x] = if (2..4).contains(&y) && (3..5).contains(&x) {
                1.0
            } else {
                0.5
            };
        }
    }
    let cam = CamFile {
        id: "x".into(),
        height: h,
        width: w,
        classes: vec![2],
        maps: m.clone(),
        background: None,
    };
    let rgb = vec![128u8; h * w * 3];
    let l = affinity_labels(&cam, &rgb, 4.0, 32.0, None);
    // m = 1: confident class 2 (label 3); m = 0: confident background; m = 0.5: fg at α = 4
    // ((0.5)^4 < 0.5), and not background at α = 32 → class
    assert_eq!(l[2 * w + 3], 3);
    assert_eq!(l[0], 0);
    assert_eq!(l[w + 1], 3);
    // with a weak low power (α = 0.5: bg 0.71 > 0.5) the ring is neither: ignored
    let l = affinity_labels(&cam, &rgb, 0.5, 32.0, None);
    assert_eq!(l[w + 1], 255);
    assert_eq!(l[2 * w + 3], 3);
    assert_eq!(l[0], 0);
    // an image without classes is all background
    let none = CamFile {
        classes: vec![],
        maps: vec![],
        ..cam
    };
    assert!(affinity_labels(&none, &rgb, 4.0, 32.0, None)
        .iter()
        .all(|&v| v == 0));
}

#[test]
fn affinity_loss_gradient_and_empty_batches() {
    use coatt::affinity::{affinity_loss, PairTargets};
    let g: Vec<u8> = vec![0, 0, 1, 1, 0, 255, 1, 2, 0, 0, 0, 2];
    let t = PairTargets::new(&g, 1, 3, 4, 3);
    let np = half_disc_offsets(3).len();
    // affinities strictly inside (0, 1)
    let v: Vec<f64> = (0..np * 12)
        .map(|i| 0.1 + 0.8 * ((i * 7) % 13) as f64 / 13.0)
        .collect();
    let a = Tensor::from_f64(&v, [1, np, 3, 4], DType::F64, Device::Cpu).unwrap();
    let r = gradcheck(
        &[a],
        |x| Ok(affinity_loss(&x[0], &t)?.expect("pairs exist")),
    )
    .unwrap();
    assert!(r.checked > 0);
    // every cell ignored: no pair, no loss (not a NaN)
    let t = PairTargets::new(&[255u8; 12], 1, 3, 4, 3);
    let a = Tensor::from_f64(&v, [1, np, 3, 4], DType::F64, Device::Cpu).unwrap();
    assert!(affinity_loss(&a, &t).unwrap().is_none());
}
