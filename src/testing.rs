//! Numerical checking helpers shared by the test suites (public so that any later op or
//! model test can call them in one line).
use crate::autograd::{backward, no_grad};
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};
use crate::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Outcome of a gradient check: the largest deviation found.
#[derive(Debug, Clone)]
pub struct GradReport {
    pub checked: usize,
    pub max_abs_err: f64,
    pub max_rel_err: f64,
}

/// Checks the hand-written backward of `f` against central finite differences, in f64.
///
/// The inputs are converted to f64 parameters; the scalar checked is Σ f(x)⊙r for a fixed
/// random r (so every output element matters, with distinct weights). Up to 48 elements of each
/// input are perturbed by ±1e-6 (all of them for small inputs). Passes when every element has
/// |analytic − numeric| ≤ 1e-6 + 1e-5·max(|analytic|, |numeric|).
///
/// ```ignore
/// gradcheck(&[x, w], |v| v[0].conv2d(&v[1], None, p))?;
/// ```
pub fn gradcheck(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>) -> Result<GradReport> {
    gradcheck_tol(inputs, 1e-6, 1e-5, f)
}

pub fn gradcheck_tol(
    inputs: &[Tensor],
    atol: f64,
    rtol: f64,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<GradReport> {
    let xs: Vec<Tensor> = inputs
        .iter()
        .map(|t| t.to_dtype(DType::F64).into_param())
        .collect();
    let y = f(&xs)?;
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let r = Tensor::rand_uniform(
        y.shape().clone(),
        0.5,
        1.5,
        DType::F64,
        Device::Cpu,
        &mut rng,
    );
    let loss = y.mul(&r)?.sum_all()?;
    let grads = backward(&loss)?;
    let eval =
        |vals: &[Tensor]| -> Result<f64> { no_grad(|| f(vals)?.mul(&r)?.sum_all()?.to_scalar()) };
    let eps = 1e-6;
    let mut rep = GradReport {
        checked: 0,
        max_abs_err: 0.0,
        max_rel_err: 0.0,
    };
    for (i, x) in xs.iter().enumerate() {
        let analytic = grads
            .get(x)
            .map(|g| g.to_vec_f64())
            .unwrap_or_else(|| vec![0.0; x.numel()]);
        let base = x.to_vec_f64();
        let picks: Vec<usize> = if base.len() <= 48 {
            (0..base.len()).collect()
        } else {
            (0..48).map(|_| rng.gen_range(0..base.len())).collect()
        };
        for j in picks {
            let probe = |d: f64| -> Result<f64> {
                let mut v = base.clone();
                v[j] += d;
                let mut vals: Vec<Tensor> = xs.iter().map(|t| t.detach()).collect();
                vals[i] = Tensor::from_f64(&v, x.shape().clone(), DType::F64, Device::Cpu)?;
                eval(&vals)
            };
            let numeric = (probe(eps)? - probe(-eps)?) / (2.0 * eps);
            let a = analytic[j];
            let err = (a - numeric).abs();
            let scale = a.abs().max(numeric.abs());
            rep.checked += 1;
            rep.max_abs_err = rep.max_abs_err.max(err);
            if scale > 0.0 {
                rep.max_rel_err = rep.max_rel_err.max(err / scale);
            }
            if err > atol + rtol * scale {
                return Err(Error::Msg(format!("gradcheck: input {i} element {j}: analytic {a:.9e}, numeric {numeric:.9e} (|diff| {err:.3e})")));
            }
        }
    }
    Ok(rep)
}

/// Element-wise |a − b| ≤ atol + rtol·|b|; the error names `what` and the worst index.
pub fn assert_close(a: &[f64], b: &[f64], atol: f64, rtol: f64, what: &str) -> Result<()> {
    if a.len() != b.len() {
        return Err(Error::Msg(format!(
            "{what}: lengths {} vs {}",
            a.len(),
            b.len()
        )));
    }
    let worst = a
        .iter()
        .zip(b)
        .enumerate()
        .map(|(i, (x, y))| (i, (x - y).abs() - (atol + rtol * y.abs())))
        .fold((0, f64::NEG_INFINITY), |m, v| if v.1 > m.1 { v } else { m });
    if worst.1 > 0.0 || a.iter().any(|v| v.is_nan()) {
        let i = worst.0;
        return Err(Error::Msg(format!(
            "{what}: element {i}: {} vs {} (atol {atol}, rtol {rtol})",
            a[i], b[i]
        )));
    }
    Ok(())
}

/// A seeded RNG for tests and examples.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Random values in ±[0.1, 1.1) (never zero, so no op sits at a kink by construction).
pub fn rand_nonzero(dims: &[usize], rng: &mut impl Rng) -> Tensor {
    let v: Vec<f64> = (0..dims.iter().product::<usize>())
        .map(|_| {
            let m = rng.gen_range(0.1..1.1);
            if rng.gen::<bool>() {
                m
            } else {
                -m
            }
        })
        .collect();
    Tensor::from_f64(&v, dims.to_vec(), DType::F64, Device::Cpu).expect("length matches shape")
}
