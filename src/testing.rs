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

/// Worst deviations of a CUDA-vs-CPU comparison (`cuda_parity`).
#[derive(Debug, Clone, Default)]
pub struct ParityReport {
    /// values compared (output and every input gradient)
    pub compared: usize,
    /// max |gpu − cpu| / (atol + rtol·|cpu|): ≤ 1 passes
    pub worst_ratio: f64,
    /// ‖gpu − cpu‖ / ‖cpu‖ of the output and of each gradient, largest
    pub max_rel_norm: f64,
}

/// Runs `f` on f32 CPU inputs and on copies of them on the GPU, then backward from Σ f(x)⊙r
/// (fixed random r) on both, and compares the output and the gradient of every input:
/// |gpu − cpu| ≤ atol·max(1, rms(cpu)) + rtol·|cpu| element-wise, no NaN (the absolute term
/// scales with the values' size, since a large sum's rounding does). The GPU runtime must be
/// started. A non-differentiable `f` is compared forward only.
pub fn cuda_parity(
    inputs: &[Tensor],
    atol: f64,
    rtol: f64,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<ParityReport> {
    let run = |device: Device| -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
        let xs: Vec<Tensor> = inputs
            .iter()
            .map(|t| t.to_dtype(DType::F32).to_device(device).into_param())
            .collect();
        let y = f(&xs)?;
        if !y.is_tracked() {
            // a non-differentiable op (maximum, minimum, copy): the forward alone
            return Ok((y.to_vec_f64(), Vec::new()));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(0xc0da);
        let r = Tensor::rand_uniform(y.shape().clone(), 0.5, 1.5, DType::F32, device, &mut rng);
        let grads = backward(&y.mul(&r)?.sum_all()?)?;
        let gs = xs
            .iter()
            .map(|x| {
                grads
                    .get(x)
                    .map(|g| g.to_vec_f64())
                    .unwrap_or_else(|| vec![0.0; x.numel()])
            })
            .collect();
        Ok((y.to_vec_f64(), gs))
    };
    let (yc, gc) = run(Device::Cpu)?;
    let (yg, gg) = run(Device::Cuda)?;
    let mut rep = ParityReport::default();
    let mut check = |what: String, g: &[f64], c: &[f64]| -> Result<()> {
        let den: f64 = c.iter().map(|y| y * y).sum::<f64>();
        let rms = (den / c.len().max(1) as f64).sqrt();
        let atol = atol * rms.max(1.0);
        assert_close(g, c, atol, rtol, &what)?;
        rep.compared += c.len();
        for (x, y) in g.iter().zip(c) {
            rep.worst_ratio = rep.worst_ratio.max((x - y).abs() / (atol + rtol * y.abs()));
        }
        let num: f64 = g.iter().zip(c).map(|(x, y)| (x - y) * (x - y)).sum::<f64>();
        if den > 0.0 {
            rep.max_rel_norm = rep.max_rel_norm.max((num / den).sqrt());
        }
        Ok(())
    };
    check("output".into(), &yg, &yc)?;
    for (i, (g, c)) in gg.iter().zip(&gc).enumerate() {
        check(format!("gradient of input {i}"), g, c)?;
    }
    Ok(rep)
}

/// A seeded RNG for tests and examples (the library's own: `crate::seed::rng`).
pub use crate::seed::rng;

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
