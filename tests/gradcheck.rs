//! Every op's hand-written backward against central finite differences in f64, on random
//! non-zero inputs with odd, non-square shapes.
#![allow(clippy::cloned_ref_to_slice_refs)] // the inputs read best as literal arrays
use coatt::testing::{gradcheck, rand_nonzero, rng};
use coatt::{coattention, Conv2dParams, DType, Device, Pool2dParams, Result, Tensor};

fn t(dims: &[usize], seed: u64) -> Tensor {
    rand_nonzero(dims, &mut rng(seed))
}
fn pos(dims: &[usize], seed: u64) -> Tensor {
    // strictly positive inputs for log / sqrt / powf
    t(dims, seed).to_dtype(DType::F64).storage_abs()
}
trait Abs {
    fn storage_abs(&self) -> Tensor;
}
impl Abs for Tensor {
    fn storage_abs(&self) -> Tensor {
        let v: Vec<f64> = self.to_vec_f64().iter().map(|x| x.abs() + 0.2).collect();
        Tensor::from_f64(&v, self.shape().clone(), DType::F64, Device::Cpu).unwrap()
    }
}
fn check(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    let r = gradcheck(inputs, f).unwrap_or_else(|e| panic!("{e}"));
    assert!(r.checked > 0);
}

#[test]
fn unary_ops() {
    let x = t(&[3, 5, 7], 1);
    check(&[x.clone()], |v| Ok(v[0].relu()));
    check(&[x.clone()], |v| Ok(v[0].sigmoid()));
    check(&[x.clone()], |v| Ok(v[0].exp()));
    check(&[x.clone()], |v| Ok(v[0].neg()));
    check(&[x.clone()], |v| Ok(v[0].sqr()));
    check(&[x.clone()], |v| Ok(v[0].recip()));
    check(&[x.clone()], |v| Ok(v[0].affine(-1.7, 0.3)));
    check(&[x.clone()], |v| Ok(v[0].mul_scalar(2.5).add_scalar(-1.0)));
    let p = pos(&[4, 3], 2);
    check(&[p.clone()], |v| Ok(v[0].log()));
    check(&[p.clone()], |v| Ok(v[0].sqrt()));
    check(&[p], |v| Ok(v[0].powf(1.7)));
}

#[test]
fn binary_ops_with_broadcasting() {
    let a = t(&[2, 3, 4, 5], 3);
    let chan = t(&[1, 3, 1, 1], 4); // per-channel
    let mask = t(&[2, 1, 4, 5], 5); // 1-channel mask broadcast over C
    let row = t(&[5], 6); // lower rank
    let same = t(&[2, 3, 4, 5], 7);
    for b in [&chan, &mask, &row, &same] {
        check(&[a.clone(), b.clone()], |v| v[0].add(&v[1]));
        check(&[a.clone(), b.clone()], |v| v[0].sub(&v[1]));
        check(&[a.clone(), b.clone()], |v| v[0].mul(&v[1]));
        check(&[a.clone(), b.clone()], |v| v[0].div(&v[1]));
        check(&[b.clone(), a.clone()], |v| v[0].sub(&v[1]));
    }
    // the same tensor on both sides
    check(&[a.clone()], |v| v[0].mul(&v[0]));
}

#[test]
fn reductions() {
    let x = t(&[3, 4, 5, 2], 8);
    check(&[x.clone()], |v| v[0].sum_axes(&[1], false));
    check(&[x.clone()], |v| v[0].sum_axes(&[0, 2], true));
    check(&[x.clone()], |v| v[0].sum_axes(&[3, 1], false));
    check(&[x.clone()], |v| v[0].mean_axes(&[0, 1, 3], true));
    check(&[x.clone()], |v| v[0].sum_all());
    check(&[x], |v| v[0].mean_all());
}

#[test]
fn matmuls() {
    let (m, k, n) = (3, 5, 4);
    check(&[t(&[m, k], 9), t(&[k, n], 10)], |v| v[0].matmul(&v[1]));
    check(&[t(&[k, m], 11), t(&[k, n], 12)], |v| {
        v[0].matmul_t(&v[1], true, false)
    });
    check(&[t(&[m, k], 13), t(&[n, k], 14)], |v| {
        v[0].matmul_t(&v[1], false, true)
    });
    check(&[t(&[k, m], 15), t(&[n, k], 16)], |v| {
        v[0].matmul_t(&v[1], true, true)
    });
    check(&[t(&[2, m, k], 17), t(&[2, k, n], 18)], |v| {
        v[0].matmul(&v[1])
    });
    check(&[t(&[2, k, m], 19), t(&[2, n, k], 20)], |v| {
        v[0].matmul_t(&v[1], true, true)
    });
    check(&[t(&[2, m, k], 21), t(&[k, n], 22)], |v| v[0].matmul(&v[1]));
    check(&[t(&[2, m, k], 23), t(&[n, k], 24)], |v| {
        v[0].matmul_t(&v[1], false, true)
    });
}

#[test]
fn softmax_any_axis() {
    let x = t(&[3, 4, 5], 25);
    for axis in 0..3 {
        check(&[x.clone()], move |v| v[0].softmax(axis));
    }
}

#[test]
fn conv2d_variants() {
    let x = t(&[2, 3, 9, 7], 26);
    let w = t(&[4, 3, 3, 3], 27);
    let b = t(&[4], 28);
    let strided_dilated = Conv2dParams {
        stride: (2, 2),
        padding: (2, 1),
        dilation: (2, 2),
    };
    check(&[x.clone(), w.clone(), b.clone()], move |v| {
        v[0].conv2d(&v[1], Some(&v[2]), strided_dilated)
    });
    check(&[x.clone(), w.clone()], |v| {
        v[0].conv2d(&v[1], None, Conv2dParams::same(1, 1))
    });
    let asym = Conv2dParams {
        stride: (1, 2),
        padding: (0, 3),
        dilation: (3, 1),
    };
    check(&[x.clone(), t(&[2, 3, 2, 4], 29)], move |v| {
        v[0].conv2d(&v[1], None, asym)
    });
    check(&[x.clone(), t(&[5, 3, 1, 1], 30), t(&[5], 31)], |v| {
        v[0].conv2d(&v[1], Some(&v[2]), Conv2dParams::default())
    });
    // the fused conv + ReLU: its gradient through the y > 0 mask, and its values equal to the
    // two ops one after the other
    check(&[x.clone(), w.clone(), b.clone()], |v| {
        v[0].conv2d_relu(&v[1], Some(&v[2]), Conv2dParams::same(1, 1))
    });
    let fused = x
        .conv2d_relu(&w, Some(&b), Conv2dParams::same(1, 1))
        .unwrap();
    let apart = x
        .conv2d(&w, Some(&b), Conv2dParams::same(1, 1))
        .unwrap()
        .relu();
    assert_eq!(fused.to_vec_f64(), apart.to_vec_f64());
    assert!(fused.to_vec_f64().contains(&0.0) && fused.to_vec_f64().iter().any(|&v| v > 0.0));
}

#[test]
fn pooling() {
    let x = t(&[2, 3, 7, 6], 32);
    let ceil_pad = Pool2dParams {
        kernel: (3, 3),
        stride: (2, 2),
        padding: (1, 1),
        ceil_mode: true,
    };
    check(&[x.clone()], move |v| v[0].max_pool2d(ceil_pad));
    check(&[x.clone()], |v| {
        v[0].max_pool2d(Pool2dParams::new(2, 2, 0))
    });
    check(&[x.clone()], |v| {
        v[0].max_pool2d(Pool2dParams::new(3, 1, 1))
    }); // VGG16-D1 pool4
    check(&[x.clone()], move |v| v[0].avg_pool2d(ceil_pad));
    let ceil_nopad = Pool2dParams {
        kernel: (2, 3),
        stride: (2, 2),
        padding: (0, 0),
        ceil_mode: true,
    };
    check(&[x.clone()], move |v| v[0].avg_pool2d(ceil_nopad));
    check(&[x.clone()], move |v| v[0].max_pool2d(ceil_nopad));
    check(&[x], |v| v[0].global_avg_pool());
}

#[test]
fn layout_ops() {
    let x = t(&[2, 3, 4, 5], 33);
    check(&[x.clone()], |v| v[0].reshape(&[6, 20]));
    check(&[x.clone()], |v| v[0].permute(&[2, 0, 3, 1]));
    check(&[x.clone()], |v| v[0].transpose(1, 3));
    check(&[x.clone()], |v| v[0].narrow(2, 1, 2));
    check(&[x.clone()], |v| v[0].narrow(0, 1, 1));
    check(&[x.clone()], |v| v[0].flip(3));
    check(
        &[x.clone(), t(&[2, 2, 4, 5], 34), t(&[2, 1, 4, 5], 35)],
        |v| Tensor::concat(&[&v[0], &v[1], &v[2]], 1),
    );
    check(&[x.clone(), t(&[2, 3, 4, 2], 36)], |v| {
        Tensor::concat(&[&v[0], &v[1]], 3)
    });
}

#[test]
fn bilinear_resize_up_and_down() {
    let x = t(&[2, 2, 5, 7], 37);
    check(&[x.clone()], |v| v[0].resize_bilinear(11, 9)); // up, non-integer ratios
    check(&[x.clone()], |v| v[0].resize_bilinear(3, 4)); // down
    check(&[x], |v| v[0].resize_bilinear(5, 2)); // mixed
}

#[test]
fn batch_norm_and_dropout() {
    let x = t(&[3, 4, 5, 2], 38);
    let (g, b) = (t(&[4], 39), t(&[4], 40));
    check(&[x.clone(), g.clone(), b.clone()], |v| {
        let rm = Tensor::zeros([4], DType::F64, Device::Cpu);
        let rv = Tensor::ones([4], DType::F64, Device::Cpu);
        v[0].batch_norm_train(&v[1], &v[2], &rm, &rv, 0.1, 1e-5)
    });
    // the fused BN + ReLU of the backbones
    check(&[x.clone(), g.clone(), b.clone()], |v| {
        let rm = Tensor::zeros([4], DType::F64, Device::Cpu);
        let rv = Tensor::ones([4], DType::F64, Device::Cpu);
        v[0].batch_norm_train_act(&v[1], &v[2], &rm, &rv, 0.1, 1e-5, true)
    });
    let rm = t(&[4], 41);
    let rv = pos(&[4], 42);
    check(&[x.clone(), g, b], move |v| {
        v[0].batch_norm_frozen(&v[1], &v[2], &rm, &rv, 1e-5)
    });
    // the same seed gives the same mask on every evaluation
    check(&[x], |v| v[0].dropout(0.3, &mut rng(43)));
}

#[test]
fn losses() {
    let logits = t(&[3, 5], 44);
    let targets = Tensor::from_f64(
        &[1., 0., 0., 1., 0., 0., 1., 1., 0., 0., 0., 0., 0., 0., 1.],
        [3, 5],
        DType::F64,
        Device::Cpu,
    )
    .unwrap();
    check(&[logits.mul_scalar(4.0)], move |v| {
        v[0].multilabel_soft_margin(&targets)
    });
    // CE over channels with ignore pixels (255)
    let x = t(&[2, 4, 3, 5], 45);
    let mut labs: Vec<f64> = (0..30).map(|i| (i * 7 % 4) as f64).collect();
    for i in [0, 5, 11, 29] {
        labs[i] = 255.0;
    }
    let labels = Tensor::from_f64(&labs, [2, 3, 5], DType::F64, Device::Cpu).unwrap();
    check(&[x], move |v| v[0].cross_entropy_ignore(&labels, 255));
}

#[test]
fn coattention_op_non_square() {
    // N = 3·4 = 12, M = 2·5 = 10
    let (fm, fnn, w) = (t(&[2, 6, 12], 46), t(&[2, 6, 10], 47), t(&[6, 6], 48));
    check(&[fm.clone(), fnn.clone(), w.clone()], |v| {
        let (a, b) = coattention(&v[0], &v[1], &v[2])?;
        // both outputs enter the checked scalar with different weights
        a.sum_all()?.add(&b.sqr().sum_all()?)
    });
    check(&[fm.clone(), fnn.clone(), w.clone()], |v| {
        Ok(coattention(&v[0], &v[1], &v[2])?.0)
    });
    check(&[fm, fnn, w], |v| Ok(coattention(&v[0], &v[1], &v[2])?.1));
}

#[test]
fn gradcheck_catches_a_wrong_backward() {
    // A deliberately wrong gradient (the forward is x², the recorded backward is as for x)
    // must be reported: the helper can fail.
    let x = t(&[4], 49);
    let err = gradcheck(&[x], |v| {
        let detached_sq = v[0].sqr().detach();
        // v + (x² − v) with the second term detached: value x², gradient 1
        v[0].add(&detached_sq.sub(&v[0].detach())?)
    });
    assert!(err.is_err(), "gradcheck accepted a wrong gradient");
}

/// A scalar of every co-attention and contrastive logit of a pair, each weighted differently
/// so that a swapped or dropped gradient shows.
fn pair_objective(h: &coatt::nn::CoattHead, f1: &Tensor, f2: &Tensor) -> Result<Tensor> {
    let (co, cx) = h.pair(f1, f2, true)?;
    let cx = cx.expect("the contrastive branch was asked for");
    co[0]
        .sum_all()?
        .add(&co[1].sqr().sum_all()?)?
        .add(&cx[0].sum_all()?)?
        .add(&cx[1].mul_scalar(0.5).sum_all()?)
}

#[test]
fn cosine_affinity_head_backward() {
    // the norm-free co-attention (composed ops) through the whole pair head: co-attention and
    // contrastive logits, with respect to both feature maps and W_P
    let mut head = coatt::nn::CoattHead::new(
        5,
        3,
        coatt::nn::Init::TorchDefault,
        coatt::DType::F64,
        coatt::Device::Cpu,
        &mut coatt::testing::rng(50),
    );
    // and the centred cosine (each image's channel means subtracted before the norm)
    for affinity in [coatt::nn::Affinity::Cosine, coatt::nn::Affinity::Centered] {
        head.affinity = affinity;
        let (f1, f2, w) = (t(&[2, 5, 2, 3], 51), t(&[2, 5, 3, 2], 52), t(&[5, 5], 53));
        check(&[f1, f2, w], |v| {
            let mut h = head.clone();
            h.wp = v[2].clone();
            pair_objective(&h, &v[0], &v[1])
        });
    }
}

#[test]
fn learned_temperature_head_backward() {
    // S/τ with τ learned (the parameter is log 1/τ), through the whole pair head, for every
    // affinity: with respect to the feature maps, W_P and log(1/τ)
    for affinity in [
        coatt::nn::Affinity::Cosine,
        coatt::nn::Affinity::Centered,
        coatt::nn::Affinity::Dot,
    ] {
        let mut head = coatt::nn::CoattHead::new(
            5,
            3,
            coatt::nn::Init::TorchDefault,
            coatt::DType::F64,
            coatt::Device::Cpu,
            &mut coatt::testing::rng(60),
        );
        head.affinity = affinity;
        let (f1, f2, w) = (t(&[2, 5, 2, 3], 61), t(&[2, 5, 3, 2], 62), t(&[5, 5], 63));
        let log_inv_tau = Tensor::from_f64(&[0.7], [1], DType::F64, Device::Cpu).unwrap();
        check(&[f1, f2, w, log_inv_tau], |v| {
            let mut h = head.clone();
            h.wp = v[2].clone();
            h.temperature = coatt::nn::Temperature::Learned(v[3].clone());
            pair_objective(&h, &v[0], &v[1])
        });
    }
}

#[test]
fn fixed_temperature_scales_the_affinity() {
    // S/τ with a fixed τ equals the unscaled head with W_P/τ
    let mut head = coatt::nn::CoattHead::new(
        4,
        3,
        coatt::nn::Init::TorchDefault,
        coatt::DType::F64,
        coatt::Device::Cpu,
        &mut coatt::testing::rng(70),
    );
    head.affinity = coatt::nn::Affinity::Cosine;
    let (f1, f2) = (t(&[2, 4, 2, 3], 71), t(&[2, 4, 3, 2], 72));
    let mut scaled = head.clone();
    scaled.set_temperature(0.25, false);
    let mut manual = head.clone();
    manual.wp = head.wp.mul_scalar(4.0);
    let (a, _) = scaled.pair(&f1, &f2, false).unwrap();
    let (b, _) = manual.pair(&f1, &f2, false).unwrap();
    let (base, _) = head.pair(&f1, &f2, false).unwrap();
    for i in 0..2 {
        let (va, vb, v0) = (a[i].to_vec_f64(), b[i].to_vec_f64(), base[i].to_vec_f64());
        assert!(va.iter().zip(&vb).all(|(x, y)| (x - y).abs() < 1e-12));
        assert!(
            va.iter().zip(&v0).any(|(x, y)| (x - y).abs() > 1e-6),
            "τ changes the logits"
        );
    }
    assert!((scaled.tau() - 0.25).abs() < 1e-12);
}
