//! The dense CRF: the permutohedral lattice against exact Gaussian sums, mean field against the
//! brute-force CRF, and a boundary the CRF must pull onto a colour edge.
use coatt::crf::{argmax_planar, dense_crf, exact_filter, CrfParams, CrfPreset, Filter, Lattice};
use rand::Rng;

/// A w×h image: left half dark red, right half light blue, with ±10 noise.
fn two_regions(h: usize, w: usize, edge: impl Fn(usize, usize) -> bool) -> Vec<u8> {
    let mut rng = coatt::testing::rng(5);
    let mut img = Vec::with_capacity(h * w * 3);
    for y in 0..h {
        for x in 0..w {
            let base = if edge(x, y) {
                [150, 40, 40]
            } else {
                [60, 120, 200]
            };
            img.extend(
                base.iter()
                    .map(|&c: &i32| (c + rng.gen_range(-10..=10)) as u8),
            );
        }
    }
    img
}

#[test]
fn lattice_filter_matches_exact_gaussian_sums_after_normalisation() {
    // The lattice's [1 2 1] blur is not exactly a unit Gaussian: its raw sums are ~0.85× (2-D)
    // and ~0.5× (5-D) of the exact ones. The CRF only uses normalised responses
    // K(q)/K(1), where that gain cancels: those agree within 6% per pixel at the kernel widths
    // the presets use (sxy ≥ 3 px).
    let (h, w) = (20, 24);
    let img = two_regions(h, w, |x, _| x < 12);
    let mut rng = coatt::testing::rng(9);
    let input: Vec<f32> = (0..h * w).map(|_| rng.gen::<f32>() + 0.1).collect();
    for (sxy, srgb) in [(3.0f32, None), (5.0, Some(13.0f32)), (80.0, Some(13.0))] {
        let mut f = Vec::new();
        for y in 0..h {
            for x in 0..w {
                f.extend([x as f32 / sxy, y as f32 / sxy]);
                if let Some(s) = srgb {
                    f.extend(img[(y * w + x) * 3..][..3].iter().map(|&c| c as f32 / s));
                }
            }
        }
        let d = if srgb.is_some() { 5 } else { 2 };
        let lat = Lattice::new(&f, d);
        let n = h * w;
        let ones = vec![1.0; n];
        let (mut a, mut b, mut na, mut nb) =
            (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        lat.filter(&input, 1, &mut a);
        lat.filter(&ones, 1, &mut na);
        exact_filter(&f, d, &input, 1, &mut b);
        exact_filter(&f, d, &ones, 1, &mut nb);
        let worst = (0..n)
            .map(|i| ((a[i] / na[i]) - (b[i] / nb[i])).abs() / (b[i] / nb[i]))
            .fold(0.0f32, f32::max);
        assert!(
            worst < 0.06,
            "sxy {sxy} srgb {srgb:?}: worst relative error {worst}"
        );
        // and the raw sums are within a factor, never wildly off
        for i in 0..n {
            let r = a[i] / b[i];
            assert!((0.3..1.2).contains(&r), "raw ratio {r} at pixel {i}");
        }
    }
}

#[test]
fn mean_field_on_the_lattice_matches_the_brute_force_crf() {
    let (h, w, l) = (18, 22, 3);
    let img = two_regions(h, w, |x, y| x + y < 20);
    let mut rng = coatt::testing::rng(1);
    let mut probs = vec![0f32; l * h * w];
    for i in 0..h * w {
        let raw: Vec<f32> = (0..l).map(|_| rng.gen::<f32>() + 0.2).collect();
        let s: f32 = raw.iter().sum();
        for k in 0..l {
            probs[k * h * w + i] = raw[k] / s;
        }
    }
    for preset in [CrfPreset::Mcis, CrfPreset::Psa] {
        let mut p = preset.params().unwrap();
        p.bi_sxy = 10.0; // keep the bilateral kernel local on this small image
        let lat = dense_crf(&img, h, w, &probs, l, &p, Filter::Lattice);
        let ex = dense_crf(&img, h, w, &probs, l, &p, Filter::Exact);
        let worst = lat
            .iter()
            .zip(&ex)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let agree = argmax_planar(&lat, l)
            .iter()
            .zip(argmax_planar(&ex, l))
            .filter(|(a, b)| **a == *b)
            .count() as f64
            / (h * w) as f64;
        assert!(worst < 0.08, "{preset:?}: max |ΔQ| = {worst}");
        assert!(agree > 0.97, "{preset:?}: labels agree on {agree}");
        // marginals are distributions
        for i in 0..h * w {
            let s: f32 = (0..l).map(|k| lat[k * h * w + i]).sum();
            assert!((s - 1.0).abs() < 1e-4);
        }
    }
}

#[test]
fn crf_pulls_a_blurred_boundary_onto_the_colour_edge() {
    // True edge at x = 16; the network's probabilities put a soft boundary at x ≈ 21.
    let (h, w) = (24, 32);
    let img = two_regions(h, w, |x, _| x < 16);
    let mut probs = vec![0f32; 2 * h * w];
    for y in 0..h {
        for x in 0..w {
            let p1 = 1.0 / (1.0 + (-(x as f32 - 21.0) / 3.0).exp());
            let p1 = p1.clamp(0.05, 0.95);
            probs[y * w + x] = 1.0 - p1; // label 0 on the left
            probs[h * w + y * w + x] = p1;
        }
    }
    let truth: Vec<u8> = (0..h * w).map(|i| (i % w >= 16) as u8).collect();
    let acc =
        |lab: &[u8]| lab.iter().zip(&truth).filter(|(a, b)| a == b).count() as f64 / (h * w) as f64;
    let before = acc(&argmax_planar(&probs, 2));
    let p = CrfParams {
        bi_sxy: 20.0,
        ..CrfPreset::Psa.params().unwrap()
    };
    let after = acc(&argmax_planar(
        &dense_crf(&img, h, w, &probs, 2, &p, Filter::Lattice),
        2,
    ));
    assert!(before < 0.86, "the unaries are off by 5 columns: {before}");
    assert!(after > 0.97, "CRF accuracy {after} (before {before})");
    assert!(CrfPreset::Off.params().is_none());
}
