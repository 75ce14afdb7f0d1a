//! Forward values: against naive loop references and against outputs known from PyTorch's
//! definitions. (Finite differences check backward against forward; these check the forward.)
use coatt::testing::{assert_close, rand_nonzero, rng};
use coatt::{Conv2dParams, DType, Device, Pool2dParams, Tensor};

fn f64t(v: &[f64], dims: &[usize]) -> Tensor {
    Tensor::from_f64(v, dims.to_vec(), DType::F64, Device::Cpu).unwrap()
}

#[test]
fn conv2d_matches_direct_loops() {
    let mut r = rng(1);
    let (x, w, b) = (
        rand_nonzero(&[2, 3, 9, 8], &mut r),
        rand_nonzero(&[4, 3, 3, 2], &mut r),
        rand_nonzero(&[4], &mut r),
    );
    let p = Conv2dParams {
        stride: (2, 1),
        padding: (2, 1),
        dilation: (2, 3),
    };
    let y = x.conv2d(&w, Some(&b), p).unwrap();
    let (xv, wv, bv) = (x.to_vec_f64(), w.to_vec_f64(), b.to_vec_f64());
    let (ho, wo) = ((9 + 4 - 2 * 2 - 1) / 2 + 1, (8 + 2 - 3 - 1) + 1);
    assert_eq!(y.dims(), &[2, 4, ho, wo]);
    let mut want = vec![0.0; 2 * 4 * ho * wo];
    for n in 0..2 {
        for co in 0..4 {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut s = bv[co];
                    for ci in 0..3 {
                        for ki in 0..3 {
                            for kj in 0..2 {
                                let iy = (oy * 2 + ki * 2) as isize - 2;
                                let ix = (ox + kj * 3) as isize - 1;
                                if (0..9).contains(&iy) && (0..8).contains(&ix) {
                                    s += xv[((n * 3 + ci) * 9 + iy as usize) * 8 + ix as usize]
                                        * wv[((co * 3 + ci) * 3 + ki) * 2 + kj];
                                }
                            }
                        }
                    }
                    want[((n * 4 + co) * ho + oy) * wo + ox] = s;
                }
            }
        }
    }
    assert_close(&y.to_vec_f64(), &want, 1e-12, 1e-12, "conv2d").unwrap();
}

#[test]
fn large_conv_uses_the_parallel_gemm_path_and_agrees_with_f64() {
    // big enough to take the per-image parallel-GEMM branch; f32 against the f64 reference
    let mut r = rng(2);
    let x = rand_nonzero(&[1, 64, 24, 24], &mut r);
    let w = rand_nonzero(&[64, 64, 3, 3], &mut r).mul_scalar(0.05);
    let p = Conv2dParams::same(2, 2);
    let y64 = x.conv2d(&w, None, p).unwrap();
    let y32 = x
        .to_dtype(DType::F32)
        .conv2d(&w.to_dtype(DType::F32), None, p)
        .unwrap();
    assert_close(
        &y32.to_vec_f64(),
        &y64.to_vec_f64(),
        1e-4,
        1e-4,
        "conv2d f32 vs f64",
    )
    .unwrap();
}

#[test]
fn the_2x2_max_pool_keeps_the_first_maximum_and_nan() {
    // 2×2/2 pools that tile the plane take a fast path; a 5-wide plane (ceil mode off) drops
    // the last column and takes the general one. Both must agree on ties (the first maximum
    // in row-major order gets the gradient) and on NaN (it wins, the first one).
    let (nan, inf) = (f64::NAN, f64::INFINITY);
    #[rustfmt::skip]
    let v = [
        1., 1., -0., 0., 7.,
        1., 1., 0., -0., 7.,
        nan, 2., 3., nan, 7.,
        2., nan, 3., inf, 7.,
    ];
    let wide = f64t(&v, &[1, 1, 4, 5]).into_param();
    let tight: Vec<f64> = v.chunks(5).flat_map(|r| r[..4].to_vec()).collect();
    let tight = f64t(&tight, &[1, 1, 4, 4]).into_param();
    let run = |x: &Tensor| {
        let y = x.max_pool2d(Pool2dParams::new(2, 2, 0)).unwrap();
        let vals = y.to_vec_f64();
        let w = f64t(&[1., 2., 3., 4.], &[1, 1, 2, 2]);
        let g = coatt::backward(&y.mul(&w).unwrap().sum_all().unwrap()).unwrap();
        (vals, g.get(x).unwrap().to_vec_f64())
    };
    let (yt, gt) = run(&tight);
    let (yw, gw) = run(&wide);
    let same = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
    };
    assert!(same(&yt, &yw), "{yt:?} vs {yw:?}");
    assert!(yt[0] == 1.0 && yt[1] == 0.0 && yt[2].is_nan() && yt[3].is_nan());
    let gw4: Vec<f64> = gw.chunks(5).flat_map(|r| r[..4].to_vec()).collect();
    assert_eq!(gt, gw4);
    // ties: the first of the four 1s and the first of -0/0 (their values compare equal);
    // NaN: the first NaN of each window
    #[rustfmt::skip]
    let want = [
        1., 0., 2., 0.,
        0., 0., 0., 0.,
        3., 0., 0., 4.,
        0., 0., 0., 0.,
    ];
    assert_eq!(gt, want);
}

#[test]
fn pooling_shapes_and_values_follow_pytorch() {
    let x = f64t(
        &(0..16).map(|v| v as f64).collect::<Vec<_>>(),
        &[1, 1, 4, 4],
    );
    let p = Pool2dParams {
        kernel: (3, 3),
        stride: (2, 2),
        padding: (1, 1),
        ceil_mode: true,
    };
    // PyTorch avg_pool2d(arange(16).view(1,1,4,4), 3, 2, 1, ceil_mode=True), count_include_pad:
    // the divisor counts the window clipped to the padded input (so the corner divides by 4).
    let avg = x.avg_pool2d(p).unwrap();
    assert_eq!(avg.dims(), &[1, 1, 3, 3]);
    let want = [
        10.0 / 9.0,
        24.0 / 9.0,
        10.0 / 6.0,
        51.0 / 9.0,
        90.0 / 9.0,
        33.0 / 6.0,
        25.0 / 6.0,
        42.0 / 6.0,
        15.0 / 4.0,
    ];
    assert_close(&avg.to_vec_f64(), &want, 1e-12, 0.0, "avg_pool2d").unwrap();
    let mx = x.max_pool2d(p).unwrap();
    assert_close(
        &mx.to_vec_f64(),
        &[5., 7., 7., 13., 15., 15., 13., 15., 15.],
        0.0,
        0.0,
        "max_pool2d",
    )
    .unwrap();
    // ceil mode drops a last window that would start in the right padding:
    // 5 wide, k=2, s=2, no padding: floor → 2, ceil → 3
    let y = Tensor::zeros([1, 1, 5, 5], DType::F64, Device::Cpu);
    assert_eq!(
        y.max_pool2d(Pool2dParams::new(2, 2, 0)).unwrap().dims(),
        &[1, 1, 2, 2]
    );
    let c = Pool2dParams {
        ceil_mode: true,
        ..Pool2dParams::new(2, 2, 0)
    };
    assert_eq!(y.max_pool2d(c).unwrap().dims(), &[1, 1, 3, 3]);
    // 6 wide, k=3, s=2, pad 1, ceil: (6+2−3)/2 → ceil 3 + 1 = 4, but (4−1)·2 = 6 ≥ 6+1? no → 4
    let z = Tensor::zeros([1, 1, 6, 6], DType::F64, Device::Cpu);
    assert_eq!(z.max_pool2d(p).unwrap().dims(), &[1, 1, 4, 4]);
    // VGG16-D1 pool4: 3×3, stride 1, pad 1 keeps the size
    assert_eq!(
        z.max_pool2d(Pool2dParams::new(3, 1, 1)).unwrap().dims(),
        &[1, 1, 6, 6]
    );
}

#[test]
fn bilinear_matches_pytorch_align_corners_false() {
    let x = f64t(&[1., 2., 3., 4.], &[1, 1, 2, 2]);
    let up = x.resize_bilinear(4, 4).unwrap();
    let want = [
        1.0, 1.25, 1.75, 2.0, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3.0, 3.25, 3.75, 4.0,
    ];
    assert_close(&up.to_vec_f64(), &want, 1e-12, 0.0, "upsample").unwrap();
    let x = f64t(
        &(0..16).map(|v| v as f64).collect::<Vec<_>>(),
        &[1, 1, 4, 4],
    );
    let down = x.resize_bilinear(2, 2).unwrap();
    assert_close(
        &down.to_vec_f64(),
        &[2.5, 4.5, 10.5, 12.5],
        1e-12,
        0.0,
        "downsample",
    )
    .unwrap();
    // same size is the identity
    assert_close(
        &x.resize_bilinear(4, 4).unwrap().to_vec_f64(),
        &x.to_vec_f64(),
        1e-12,
        0.0,
        "identity",
    )
    .unwrap();
}

#[test]
fn matmul_and_layout_values() {
    let a = f64t(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
    let b = f64t(&[7., 8., 9., 10., 11., 12.], &[3, 2]);
    assert_eq!(
        a.matmul(&b).unwrap().to_vec_f64(),
        vec![58., 64., 139., 154.]
    );
    assert_eq!(
        a.matmul_t(&a, false, true).unwrap().to_vec_f64(),
        vec![14., 32., 32., 77.]
    );
    assert_eq!(a.matmul_t(&a, true, false).unwrap().dims(), &[3, 3]);
    assert_eq!(
        a.transpose(0, 1).unwrap().to_vec_f64(),
        vec![1., 4., 2., 5., 3., 6.]
    );
    assert_eq!(
        a.narrow(1, 1, 2).unwrap().to_vec_f64(),
        vec![2., 3., 5., 6.]
    );
    assert_eq!(
        a.flip(1).unwrap().to_vec_f64(),
        vec![3., 2., 1., 6., 5., 4.]
    );
    assert_eq!(
        Tensor::concat(&[&a, &a.narrow(0, 0, 1).unwrap()], 0)
            .unwrap()
            .to_vec_f64(),
        vec![1., 2., 3., 4., 5., 6., 1., 2., 3.]
    );
    let x = f64t(&(0..24).map(|v| v as f64).collect::<Vec<_>>(), &[2, 3, 4]);
    let p = x.permute(&[2, 0, 1]).unwrap();
    assert_eq!(p.dims(), &[4, 2, 3]);
    assert_eq!(p.to_vec_f64()[..6], [0., 4., 8., 12., 16., 20.]);
    assert_eq!(
        x.sum_axes(&[0, 2], false).unwrap().to_vec_f64(),
        vec![60., 92., 124.]
    );
    assert_eq!(x.mean_axes(&[1], true).unwrap().dims(), &[2, 1, 4]);
}

#[test]
fn broadcasting_values() {
    let x = f64t(&[1., 2., 3., 4., 5., 6.], &[1, 2, 3]);
    let col = f64t(&[10., 20.], &[2, 1]);
    assert_eq!(
        x.add(&col).unwrap().to_vec_f64(),
        vec![11., 12., 13., 24., 25., 26.]
    );
    let row = f64t(&[1., 0., -1.], &[3]);
    assert_eq!(
        x.mul(&row).unwrap().to_vec_f64(),
        vec![1., 0., -3., 4., 0., -6.]
    );
    assert!(
        x.add(&f64t(&[1., 2.], &[2])).is_err(),
        "incompatible shapes must be an error"
    );
}

#[test]
fn softmax_and_losses_known_values() {
    let z = Tensor::zeros([2, 4, 3, 3], DType::F64, Device::Cpu);
    let labels = f64t(
        &[
            0., 1., 2., 3., 255., 0., 1., 2., 3., 0., 0., 0., 0., 0., 0., 0., 0., 255.,
        ],
        &[2, 3, 3],
    );
    let ce = z
        .cross_entropy_ignore(&labels, 255)
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(
        (ce - 4f64.ln()).abs() < 1e-12,
        "uniform logits give ln K, got {ce}"
    );
    let all_ignored = Tensor::full(255.0, [2, 3, 3], DType::F64, Device::Cpu);
    assert_eq!(
        z.cross_entropy_ignore(&all_ignored, 255)
            .unwrap()
            .to_scalar()
            .unwrap(),
        0.0
    );
    let bad = Tensor::full(7.0, [2, 3, 3], DType::F64, Device::Cpu);
    let e = z.cross_entropy_ignore(&bad, 255).unwrap_err().to_string();
    assert!(e.contains("label 7"), "{e}");
    // one confident pixel: logits (2, 0) for label 0 → log(1 + e^−2)
    let x = f64t(&[2., 0.], &[1, 2, 1]);
    let l = x
        .cross_entropy_ignore(&f64t(&[0.], &[1, 1]), 255)
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!((l - (1.0 + (-2f64).exp()).ln()).abs() < 1e-12);
    // multilabel soft margin: x = 0 gives ln 2; huge logits stay finite
    let m = Tensor::zeros([2, 3], DType::F64, Device::Cpu)
        .multilabel_soft_margin(&Tensor::ones([2, 3], DType::F64, Device::Cpu))
        .unwrap();
    assert!((m.to_scalar().unwrap() - 2f64.ln()).abs() < 1e-12);
    let big = f64t(&[1000., -1000.], &[1, 2])
        .multilabel_soft_margin(&f64t(&[0., 1.], &[1, 2]))
        .unwrap();
    assert!((big.to_scalar().unwrap() - 1000.0).abs() < 1e-9);
    let s = f64t(&[1., 2., 3., 1000.], &[2, 2])
        .softmax(1)
        .unwrap()
        .to_vec_f64();
    assert!((s[0] + s[1] - 1.0).abs() < 1e-12 && s[3] == 1.0 && s.iter().all(|v| v.is_finite()));
}

#[test]
fn fused_batch_norm_relu_is_batch_norm_then_relu_and_keeps_nan() {
    let mut r = rng(5);
    let x = rand_nonzero(&[3, 4, 5, 6], &mut r).affine(2.0, 0.3);
    let g = rand_nonzero(&[4], &mut r);
    let b = rand_nonzero(&[4], &mut r);
    let stats = || {
        (
            Tensor::zeros([4], DType::F64, Device::Cpu),
            Tensor::ones([4], DType::F64, Device::Cpu),
        )
    };
    let (m1, v1) = stats();
    let (m2, v2) = stats();
    let xp = x.clone().into_param();
    let fused = xp
        .batch_norm_train_act(&g, &b, &m1, &v1, 0.1, 1e-5, true)
        .unwrap();
    // the same gradient (a weighted sum, so the mask matters); one graph at a time, as
    // backward drains the thread's tape
    let w = rand_nonzero(&[3, 4, 5, 6], &mut r);
    let gf = coatt::backward(&fused.mul(&w).unwrap().sum_all().unwrap()).unwrap();
    let xq = x.clone().into_param();
    let plain = xq
        .batch_norm_train(&g, &b, &m2, &v2, 0.1, 1e-5)
        .unwrap()
        .relu();
    assert_close(&fused.to_vec_f64(), &plain.to_vec_f64(), 1e-12, 1e-12, "y").unwrap();
    let gp = coatt::backward(&plain.mul(&w).unwrap().sum_all().unwrap()).unwrap();
    assert_close(
        &gf.get(&xp).unwrap().to_vec_f64(),
        &gp.get(&xq).unwrap().to_vec_f64(),
        1e-10,
        1e-10,
        "dx",
    )
    .unwrap();
    // NaN passes through the fused ReLU (the loss guard must see it)
    let mut v = x.to_vec_f64();
    v[7] = f64::NAN;
    let xn = Tensor::from_f64(&v, [3, 4, 5, 6], DType::F64, Device::Cpu).unwrap();
    let (m3, v3) = stats();
    let y = xn
        .batch_norm_train_act(&g, &b, &m3, &v3, 0.1, 1e-5, true)
        .unwrap();
    assert!(y.to_vec_f64().iter().any(|v| v.is_nan()));
}

#[test]
fn batch_norm_normalises_and_tracks_running_stats() {
    let mut r = rng(3);
    let x = rand_nonzero(&[4, 2, 3, 3], &mut r).affine(3.0, 5.0);
    let (g, b) = (
        Tensor::ones([2], DType::F64, Device::Cpu),
        Tensor::zeros([2], DType::F64, Device::Cpu),
    );
    let (rm, rv) = (
        Tensor::zeros([2], DType::F64, Device::Cpu),
        Tensor::ones([2], DType::F64, Device::Cpu),
    );
    let y = x.batch_norm_train(&g, &b, &rm, &rv, 0.1, 0.0).unwrap();
    let mean = y.mean_axes(&[0, 2, 3], false).unwrap().to_vec_f64();
    let var = y.sqr().mean_axes(&[0, 2, 3], false).unwrap().to_vec_f64();
    assert_close(&mean, &[0., 0.], 1e-12, 0.0, "bn mean").unwrap();
    assert_close(&var, &[1., 1.], 1e-10, 0.0, "bn var").unwrap();
    // running stats: 0.9·old + 0.1·batch (unbiased variance, like PyTorch)
    let xm = x.mean_axes(&[0, 2, 3], false).unwrap().to_vec_f64();
    let xv: Vec<f64> = x
        .sub(&x.mean_axes(&[0, 2, 3], true).unwrap())
        .unwrap()
        .sqr()
        .sum_axes(&[0, 2, 3], false)
        .unwrap()
        .to_vec_f64()
        .iter()
        .map(|s| s / 35.0)
        .collect();
    assert_close(
        &rm.to_vec_f64(),
        &xm.iter().map(|m| 0.1 * m).collect::<Vec<_>>(),
        1e-12,
        0.0,
        "running mean",
    )
    .unwrap();
    assert_close(
        &rv.to_vec_f64(),
        &xv.iter().map(|v| 0.9 + 0.1 * v).collect::<Vec<_>>(),
        1e-12,
        0.0,
        "running var",
    )
    .unwrap();
    // frozen mode with those statistics is the affine map (x − μ)/√(σ²+eps)
    let f = x
        .batch_norm_frozen(&g, &b, &rm, &rv, 1e-5)
        .unwrap()
        .to_vec_f64();
    let (xv0, m0, v0) = (x.to_vec_f64()[0], rm.to_vec_f64()[0], rv.to_vec_f64()[0]);
    assert!((f[0] - (xv0 - m0) / (v0 + 1e-5).sqrt()).abs() < 1e-12);
}

#[test]
fn dropout_is_seeded_and_scaled() {
    let x = Tensor::ones([1000], DType::F64, Device::Cpu);
    let a = x.dropout(0.25, &mut rng(9)).unwrap().to_vec_f64();
    let b = x.dropout(0.25, &mut rng(9)).unwrap().to_vec_f64();
    assert_eq!(a, b, "same seed, same mask");
    let zeros = a.iter().filter(|&&v| v == 0.0).count();
    assert!(
        (200..300).contains(&zeros),
        "{zeros} of 1000 dropped at p = 0.25"
    );
    assert!(a
        .iter()
        .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-12));
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let x = Tensor::zeros([1, 3, 4, 4], DType::F32, Device::Cpu);
    assert!(x
        .conv2d(
            &Tensor::zeros([2, 4, 3, 3], DType::F32, Device::Cpu),
            None,
            Conv2dParams::default()
        )
        .is_err());
    assert!(x
        .conv2d(
            &Tensor::zeros([2, 3, 7, 7], DType::F32, Device::Cpu),
            None,
            Conv2dParams::default()
        )
        .is_err());
    assert!(x.max_pool2d(Pool2dParams::new(9, 1, 0)).is_err());
    assert!(x.reshape(&[5]).is_err());
    assert!(x.narrow(1, 2, 2).is_err());
    assert!(x.permute(&[0, 1, 1, 2]).is_err());
    assert!(
        x.add(&Tensor::zeros([1, 3, 4, 4], DType::F64, Device::Cpu))
            .is_err(),
        "dtype mismatch"
    );
    assert!(x.matmul(&x).is_err());
    assert!(coatt::coattention(
        &Tensor::zeros([1, 3, 5], DType::F32, Device::Cpu),
        &Tensor::zeros([1, 4, 5], DType::F32, Device::Cpu),
        &Tensor::zeros([3, 3], DType::F32, Device::Cpu)
    )
    .is_err());
}

/// sum_axes over every subset of axes of a 4-d tensor (with a size-1 axis) against a
/// direct loop over the elements.
#[test]
fn sum_axes_matches_a_direct_loop_for_every_axis_subset() {
    let dims = [3usize, 1, 4, 5];
    let n: usize = dims.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|i| ((i * 37) % 11) as f64 - 5.0 + i as f64 * 0.01)
        .collect();
    let t = Tensor::from_f64(&v, dims, DType::F32, Device::Cpu).unwrap();
    for mask in 0..16u32 {
        let axes: Vec<usize> = (0..4).filter(|a| mask & (1 << a) != 0).collect();
        let got = t.sum_axes(&axes, true).unwrap();
        let od: Vec<usize> = (0..4)
            .map(|a| if axes.contains(&a) { 1 } else { dims[a] })
            .collect();
        assert_eq!(got.dims(), &od[..]);
        let mut want = vec![0f64; od.iter().product()];
        for (i, x) in v.iter().enumerate() {
            let idx = [i / 20, 0, (i / 5) % 4, i % 5];
            let o = (0..4).fold(0, |acc, a| {
                acc * od[a] + if axes.contains(&a) { 0 } else { idx[a] }
            });
            want[o] += x;
        }
        for (g, w) in got.to_vec_f64().iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "axes {axes:?}: {g} vs {w}");
        }
    }
}
