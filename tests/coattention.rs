//! The co-attention op: equal to its composition of primitives, softmax normalisation, and the
//! golden values (op and whole MCIS head) computed by an independent autodiff framework.
use coatt::io::Checkpoint;
use coatt::testing::{assert_close, rand_nonzero, rng};
use coatt::{backward, coattention, DType, Device, Result, Tensor};
use std::path::PathBuf;

/// The op assembled from primitives: affinity GEMM, the two softmaxes, the two summary GEMMs.
fn composed(fm: &Tensor, fnn: &Tensor, w: &Tensor) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    let q = w.matmul(
        &fm.transpose(0, 1)?
            .reshape(&[fm.dims()[1], fm.dims()[0] * fm.dims()[2]])?,
    )?; // C×(B·N)
    let (b, c, n) = (fm.dims()[0], fm.dims()[1], fm.dims()[2]);
    let q = q.reshape(&[c, b, n])?.transpose(0, 1)?; // B×C×N
    let s = q.matmul_t(fnn, true, false)?; // B×N×M
    let a = s.softmax(1)?; // over i
    let bm = s.softmax(2)?; // over j
    let fn_att = fm.matmul(&a)?; // B×C×M
    let fm_att = fnn.matmul_t(&bm, false, true)?; // B×C×N
    Ok((fm_att, fn_att, a, bm))
}

#[test]
fn equals_composition_of_primitives_f64_and_f32() {
    for dtype in [DType::F64, DType::F32] {
        let mut r = rng(7);
        let fm = rand_nonzero(&[3, 16, 35], &mut r).to_dtype(dtype);
        let fnn = rand_nonzero(&[3, 16, 22], &mut r).to_dtype(dtype);
        let w = rand_nonzero(&[16, 16], &mut r)
            .mul_scalar(0.3)
            .to_dtype(dtype);
        let (x1, x2) = coattention(&fm, &fnn, &w).unwrap();
        let (y1, y2, a, bm) = composed(&fm, &fnn, &w).unwrap();
        let tol = if dtype == DType::F64 { 1e-12 } else { 2e-5 };
        assert_close(&x1.to_vec_f64(), &y1.to_vec_f64(), tol, tol, "Fm∩").unwrap();
        assert_close(&x2.to_vec_f64(), &y2.to_vec_f64(), tol, tol, "Fn∩").unwrap();
        // A's columns and B's rows each sum to 1
        let ones_a = vec![1.0; 3 * 22];
        let ones_b = vec![1.0; 3 * 35];
        assert_close(
            &a.sum_axes(&[1], false).unwrap().to_vec_f64(),
            &ones_a,
            tol,
            0.0,
            "Σ_i A",
        )
        .unwrap();
        assert_close(
            &bm.sum_axes(&[2], false).unwrap().to_vec_f64(),
            &ones_b,
            tol,
            0.0,
            "Σ_j B",
        )
        .unwrap();
    }
}

#[test]
fn backward_equals_composition_backward() {
    let mut r = rng(8);
    let fm = rand_nonzero(&[2, 8, 12], &mut r).into_param();
    let fnn = rand_nonzero(&[2, 8, 10], &mut r).into_param();
    let w = rand_nonzero(&[8, 8], &mut r).into_param();
    let g1 = rand_nonzero(&[2, 8, 12], &mut r);
    let g2 = rand_nonzero(&[2, 8, 10], &mut r);
    let grads = |fused: bool| {
        let (a, b) = if fused {
            coattention(&fm, &fnn, &w).unwrap()
        } else {
            let c = composed(&fm, &fnn, &w).unwrap();
            (c.0, c.1)
        };
        let l = a
            .mul(&g1)
            .unwrap()
            .sum_all()
            .unwrap()
            .add(&b.mul(&g2).unwrap().sum_all().unwrap())
            .unwrap();
        let g = backward(&l).unwrap();
        [&fm, &fnn, &w].map(|t| g.get(t).unwrap().to_vec_f64())
    };
    let (f, c) = (grads(true), grads(false));
    for (i, name) in ["dFm", "dFn", "dW"].iter().enumerate() {
        assert_close(&f[i], &c[i], 1e-12, 1e-10, name).unwrap();
    }
}

/// The golden file is kept in the repository (`tests/data/golden/`, its README says what it
/// holds), so a clone with nothing beside it passes its tests.
fn golden() -> Checkpoint {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden/coatt_head_seed1.safetensors");
    Checkpoint::open(&p).unwrap_or_else(|e| panic!("golden file: {e}"))
}

fn g(ck: &Checkpoint, name: &str) -> Tensor {
    ck.get(name, DType::F64, Device::Cpu).unwrap()
}

#[test]
fn golden_op_values_and_gradients() {
    let ck = golden();
    let (fm, fnn, w) = (
        g(&ck, "op.fm").into_param(),
        g(&ck, "op.fn").into_param(),
        g(&ck, "op.wp").into_param(),
    );
    let (a, b) = coattention(&fm, &fnn, &w).unwrap();
    assert_close(
        &a.to_vec_f64(),
        &g(&ck, "op.fm_att").to_vec_f64(),
        1e-12,
        1e-10,
        "op.fm_att",
    )
    .unwrap();
    assert_close(
        &b.to_vec_f64(),
        &g(&ck, "op.fn_att").to_vec_f64(),
        1e-12,
        1e-10,
        "op.fn_att",
    )
    .unwrap();
    let l = a
        .mul(&g(&ck, "op.grad_fm_att"))
        .unwrap()
        .sum_all()
        .unwrap()
        .add(&b.mul(&g(&ck, "op.grad_fn_att")).unwrap().sum_all().unwrap())
        .unwrap();
    let grads = backward(&l).unwrap();
    for (t, name) in [(&fm, "op.d_fm"), (&fnn, "op.d_fn"), (&w, "op.d_wp")] {
        assert_close(
            &grads.get(t).unwrap().to_vec_f64(),
            &g(&ck, name).to_vec_f64(),
            1e-12,
            1e-10,
            name,
        )
        .unwrap();
    }
}

/// The MCIS head of DESIGN §4-§5 assembled from engine ops (the model code of the classifier
/// issue must reproduce exactly this).
struct HeadOut {
    s: [Tensor; 2],
    sc: [Tensor; 2],
    sx: [Tensor; 2],
    gates: [Tensor; 2],
    losses: [Tensor; 3],
}

fn conv1x1_gap(f: &Tensor, w: &Tensor) -> Result<Tensor> {
    // 1×1 conv without bias then GAP = W · mean_spatial(F): (B,C,N) → (B,K)
    f.mean_axes(&[2], false)?.matmul_t(w, false, true)
}

fn head(f1: &Tensor, f2: &Tensor, l1: &Tensor, l2: &Tensor, p: &[Tensor; 5]) -> Result<HeadOut> {
    let [wp, last_w, last_b, phi, wb] = p;
    let flat = |f: &Tensor| f.reshape(&[f.dims()[0], f.dims()[1], f.dims()[2] * f.dims()[3]]);
    let (fm, fnn) = (flat(f1)?, flat(f2)?);
    let single = |f: &Tensor| conv1x1_gap(f, last_w)?.add(last_b);
    let (fm_att, fn_att) = coattention(&fm, &fnn, wp)?;
    // σ(w_B · F∩): (B,C,N) → (B,1,N)
    let gate = |att: &Tensor| -> Result<Tensor> {
        Ok(att
            .transpose(1, 2)?
            .matmul_t(wb, false, true)?
            .transpose(1, 2)?
            .sigmoid())
    };
    let (g1, g2) = (gate(&fm_att)?, gate(&fn_att)?);
    let contrast = |f: &Tensor, g: &Tensor| f.mul(&g.neg().add_scalar(1.0));
    let s = [single(&fm)?, single(&fnn)?];
    let sc = [conv1x1_gap(&fm_att, phi)?, conv1x1_gap(&fn_att, phi)?];
    let sx = [
        conv1x1_gap(&contrast(&fm, &g1)?, phi)?,
        conv1x1_gap(&contrast(&fnn, &g2)?, phi)?,
    ];
    let common = l1.mul(l2)?;
    let basic = s[0]
        .multilabel_soft_margin(l1)?
        .add(&s[1].multilabel_soft_margin(l2)?)?;
    let co = sc[0]
        .multilabel_soft_margin(&common)?
        .add(&sc[1].multilabel_soft_margin(&common)?)?;
    let cx = sx[0]
        .multilabel_soft_margin(&l1.sub(&common)?)?
        .add(&sx[1].multilabel_soft_margin(&l2.sub(&common)?)?)?;
    Ok(HeadOut {
        s,
        sc,
        sx,
        gates: [g1, g2],
        losses: [basic, co, cx],
    })
}

#[test]
fn golden_head_logits_losses_and_gradients() {
    let ck = golden();
    let names = [
        "head.wp",
        "head.last_w",
        "head.last_b",
        "head.phi",
        "head.wb",
    ];
    let params = names.map(|n| g(&ck, n).into_param());
    let (f1, f2) = (
        g(&ck, "head.f1").into_param(),
        g(&ck, "head.f2").into_param(),
    );
    let (l1, l2) = (g(&ck, "head.l1"), g(&ck, "head.l2"));
    let out = head(&f1, &f2, &l1, &l2, &params).unwrap();
    let cmp = |t: &Tensor, name: &str| {
        assert_close(
            &t.to_vec_f64(),
            &g(&ck, name).to_vec_f64(),
            1e-12,
            1e-9,
            name,
        )
        .unwrap()
    };
    cmp(&out.s[0], "head.s1");
    cmp(&out.s[1], "head.s2");
    cmp(&out.sc[0], "head.sc1");
    cmp(&out.sc[1], "head.sc2");
    cmp(&out.gates[0], "head.g1");
    cmp(&out.gates[1], "head.g2");
    cmp(&out.sx[0], "head.sx1");
    cmp(&out.sx[1], "head.sx2");
    cmp(&out.losses[0], "head.loss_basic");
    cmp(&out.losses[1], "head.loss_coatt");
    cmp(&out.losses[2], "head.loss_contrastive");
    let loss = out.losses[0]
        .add(&out.losses[1])
        .unwrap()
        .add(&out.losses[2])
        .unwrap();
    cmp(&loss, "head.loss");
    let grads = backward(&loss).unwrap();
    for (t, n) in params.iter().zip([
        "head.d_wp",
        "head.d_last_w",
        "head.d_last_b",
        "head.d_phi",
        "head.d_wb",
    ]) {
        cmp(grads.get(t).unwrap(), n);
    }
    cmp(grads.get(&f1).unwrap(), "head.d_f1");
    cmp(grads.get(&f2).unwrap(), "head.d_f2");
}
