//! AffinityNet's ops (DESIGN §8): the local affinity of a feature map to its neighbours on a
//! half disc, with its hand-written backward, and the random walk over those affinities
//! (inference only: no backward). A [`CustomOp`] family: its CPU reference, its CUDA launches
//! (kernels/affinity.cu) and its autograd all live in this file, so the family touches no
//! file of the backend.
use super::{finish, plain};
use crate::backend::{CpuStorage, CudaStorage, CustomOp, Storage};
use crate::error::{shape_err, Result};
use crate::tensor::Tensor;

/// Every size of one local-affinity call: features (b, c, h, w) and the radius of the half
/// disc of pairs ([`half_disc_offsets`]). Mirrored as `AffinityGeom` in kernels/affinity.cu.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AffinityGeom {
    pub b: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub radius: usize,
}

/// The half disc of AffinityNet's pairs within `radius` on the grid: (dy, dx) with dy = 0,
/// dx = 1..r−1 and dy = 1..r−1, |dx| < r, dx² + dy² < r² (PSA's `get_indices_of_pairs`;
/// radius 5 gives 34 offsets). The CUDA kernels enumerate the same offsets in this order.
pub fn half_disc_offsets(radius: usize) -> Vec<(isize, isize)> {
    let r = radius as isize;
    let mut v = Vec::new();
    for dy in 0..r {
        for dx in -(r - 1)..r {
            if (dy > 0 || dx > 0) && dx * dx + dy * dy < r * r {
                v.push((dy, dx));
            }
        }
    }
    v
}

fn geom(op: &'static str, dims: &[usize], radius: usize) -> Result<AffinityGeom> {
    if dims.len() != 4 || dims.contains(&0) || radius < 2 {
        shape_err!(
            op,
            "features {dims:?} must be (B,C,H,W), non-empty, radius {radius} ≥ 2"
        );
    }
    Ok(AffinityGeom {
        b: dims[0],
        c: dims[1],
        h: dims[2],
        w: dims[3],
        radius,
    })
}

impl Tensor {
    /// a[b,p,y,x] = exp(−mean_c |f[b,c,y,x] − f[b,c,(y,x) + o_p]|) for the offsets o_p of
    /// [`half_disc_offsets`]`(radius)`; 0 where the neighbour is off the grid. (B,C,H,W) →
    /// (B,P,H,W). The mean (not the sum) over channels keeps a away from 0 for wide features.
    pub fn local_affinity(&self, radius: usize) -> Result<Tensor> {
        let g = geom("local_affinity", self.dims(), radius)?;
        let p = half_disc_offsets(radius).len();
        let s = Storage::apply_custom(&LocalAffinity(g), &[&self.storage()])?;
        let f = self.clone();
        Ok(finish(
            s,
            [g.b, p, g.h, g.w].into(),
            &[self],
            move |da, a, _| {
                let df = Storage::apply_custom(
                    &LocalAffinityBackward(g),
                    &[&f.storage(), &a.storage(), &da.storage()],
                )?;
                Ok(vec![Some(plain(df, f.shape().clone()))])
            },
        ))
    }

    /// The random walk of maps (B,K,H,W) over affinities (B,P,H,W) from
    /// [`Tensor::local_affinity`] with the same radius: W = a^β, symmetric, with a self-loop of
    /// 1; T = W normalised over the source axis (every column sums to 1); `steps` applications
    /// x ← x·T (PSA applies T^(2^logt) by repeated squaring: the same with steps = 2^logt).
    /// Each step averages a position's neighbours, so mass stays within regions of high
    /// affinity and the maps keep their range. Not differentiable.
    pub fn random_walk(
        &self,
        aff: &Tensor,
        radius: usize,
        beta: f64,
        steps: usize,
    ) -> Result<Tensor> {
        let d = self.dims().to_vec();
        let g = geom("random_walk", &d, radius)?;
        let p = half_disc_offsets(radius).len();
        if aff.dims() != [g.b, p, g.h, g.w] {
            shape_err!(
                "random_walk",
                "affinities {:?} do not fit maps {d:?} at radius {radius} (want {:?})",
                aff.shape(),
                [g.b, p, g.h, g.w]
            );
        }
        if !(beta.is_finite() && beta > 0.0) {
            shape_err!("random_walk", "beta must be finite and > 0, got {beta}");
        }
        if aff.dtype() != self.dtype() || aff.device() != self.device() {
            shape_err!(
                "random_walk",
                "maps and affinities must share dtype and device"
            );
        }
        let walk = RandomWalk {
            g,
            k: d[1],
            beta,
            steps,
        };
        let s = Storage::apply_custom(&walk, &[&self.storage(), &aff.storage()])?;
        Ok(plain(s, d))
    }
}

/// a = local_affinity(f).
struct LocalAffinity(AffinityGeom);
/// df from (f, a, da).
struct LocalAffinityBackward(AffinityGeom);
/// The walk of maps x over affinities a.
struct RandomWalk {
    g: AffinityGeom,
    k: usize,
    beta: f64,
    steps: usize,
}

impl CustomOp for LocalAffinity {
    fn name(&self) -> &'static str {
        "local_affinity"
    }
    fn cpu_fwd(&self, x: &[&CpuStorage]) -> CpuStorage {
        crate::backend::cpu::with_dtype!(x[0].dtype(), {
            CpuStorage::from_vec(cpu::forward(x[0].slice::<T>(), &self.0))
        })
    }
    fn cuda_fwd(&self, x: &[&CudaStorage]) -> CudaStorage {
        cuda::forward(x[0], &self.0)
    }
}

impl CustomOp for LocalAffinityBackward {
    fn name(&self) -> &'static str {
        "local_affinity_backward"
    }
    fn cpu_fwd(&self, x: &[&CpuStorage]) -> CpuStorage {
        crate::backend::cpu::with_dtype!(x[0].dtype(), {
            let s = |i: usize| x[i].slice::<T>();
            CpuStorage::from_vec(cpu::backward(s(0), s(1), s(2), &self.0))
        })
    }
    fn cuda_fwd(&self, x: &[&CudaStorage]) -> CudaStorage {
        cuda::backward(x[0], x[1], x[2], &self.0)
    }
}

impl CustomOp for RandomWalk {
    fn name(&self) -> &'static str {
        "random_walk"
    }
    fn cpu_fwd(&self, x: &[&CpuStorage]) -> CpuStorage {
        crate::backend::cpu::with_dtype!(x[0].dtype(), {
            CpuStorage::from_vec(cpu::walk(
                x[0].slice::<T>(),
                x[1].slice::<T>(),
                &self.g,
                self.k,
                self.beta,
                self.steps,
            ))
        })
    }
    fn cuda_fwd(&self, x: &[&CudaStorage]) -> CudaStorage {
        cuda::walk(x[0], x[1], &self.g, self.k, self.beta, self.steps)
    }
}

/// The CPU reference kernels. Forward and backward both loop over output positions and
/// gather (no scatter), in the same order as kernels/affinity.cu.
mod cpu {
    use super::{half_disc_offsets, AffinityGeom};
    use crate::tensor::Float;
    use rayon::prelude::*;

    /// Whether position (y, x) + (dy, dx) lies on the grid; its flat index if so.
    #[inline]
    fn neighbour(g: &AffinityGeom, y: usize, x: usize, dy: isize, dx: isize) -> Option<usize> {
        let (ny, nx) = (y as isize + dy, x as isize + dx);
        (ny >= 0 && nx >= 0 && ny < g.h as isize && nx < g.w as isize)
            .then(|| ny as usize * g.w + nx as usize)
    }

    /// a[b,p,i] = exp(−mean_c |f[b,c,i] − f[b,c,i+o_p]|), 0 where the neighbour is off the grid.
    /// f (B,C,H,W) → (B,P,H,W).
    pub fn forward<T: Float>(f: &[T], g: &AffinityGeom) -> Vec<T> {
        let off = half_disc_offsets(g.radius);
        let hw = g.h * g.w;
        let inv_c = T::of(1.0 / g.c as f64);
        let mut a = vec![T::zero(); g.b * off.len() * hw];
        a.par_chunks_mut(off.len() * hw)
            .enumerate()
            .for_each(|(b, ab)| {
                let fb = &f[b * g.c * hw..(b + 1) * g.c * hw];
                for (p, &(dy, dx)) in off.iter().enumerate() {
                    for y in 0..g.h {
                        for x in 0..g.w {
                            let i = y * g.w + x;
                            if let Some(j) = neighbour(g, y, x, dy, dx) {
                                let mut s = T::zero();
                                for c in 0..g.c {
                                    s += (fb[c * hw + i] - fb[c * hw + j]).abs();
                                }
                                ab[p * hw + i] = (-(s * inv_c)).exp();
                            }
                        }
                    }
                }
            });
        a
    }

    fn sign<T: Float>(v: T) -> T {
        if v > T::zero() {
            T::one()
        } else if v < T::zero() {
            -T::one()
        } else {
            T::zero()
        }
    }

    /// df of the forward given a and da: for each position q, the pairs where q is the source
    /// (q, q+o) and where it is the target (q−o, q), gathered.
    pub fn backward<T: Float>(f: &[T], a: &[T], da: &[T], g: &AffinityGeom) -> Vec<T> {
        let off = half_disc_offsets(g.radius);
        let (hw, np) = (g.h * g.w, off.len());
        let inv_c = T::of(1.0 / g.c as f64);
        let mut df = vec![T::zero(); g.b * g.c * hw];
        df.par_chunks_mut(g.c * hw)
            .enumerate()
            .for_each(|(b, dfb)| {
                let fb = &f[b * g.c * hw..(b + 1) * g.c * hw];
                let ab = &a[b * np * hw..(b + 1) * np * hw];
                let dab = &da[b * np * hw..(b + 1) * np * hw];
                for y in 0..g.h {
                    for x in 0..g.w {
                        let q = y * g.w + x;
                        for (p, &(dy, dx)) in off.iter().enumerate() {
                            // q as the source of pair p: ∂a/∂f_q = −a/C · sign(f_q − f_j)
                            if let Some(j) = neighbour(g, y, x, dy, dx) {
                                let s = dab[p * hw + q] * ab[p * hw + q] * inv_c;
                                for c in 0..g.c {
                                    dfb[c * hw + q] -= s * sign(fb[c * hw + q] - fb[c * hw + j]);
                                }
                            }
                            // q as the target of pair p from i = q − o_p: ∂a/∂f_q = a/C · sign(f_i − f_q)
                            if let Some(i) = neighbour(g, y, x, -dy, -dx) {
                                let s = dab[p * hw + i] * ab[p * hw + i] * inv_c;
                                for c in 0..g.c {
                                    dfb[c * hw + q] += s * sign(fb[c * hw + i] - fb[c * hw + q]);
                                }
                            }
                        }
                    }
                }
            });
        df
    }

    /// The random walk of maps x (B,K,H,W) over the affinities a (B,P,H,W): W = a^β made
    /// symmetric with a self-loop of 1, T = W normalised over the source axis (each column sums
    /// to 1), and `steps` applications x ← x·T, i.e. x[k,j] ← Σ_i x[k,i] W[i,j] / Σ_i W[i,j].
    pub fn walk<T: Float>(
        x: &[T],
        a: &[T],
        g: &AffinityGeom,
        k: usize,
        beta: f64,
        steps: usize,
    ) -> Vec<T> {
        let off = half_disc_offsets(g.radius);
        let (hw, np) = (g.h * g.w, off.len());
        let beta = T::of(beta);
        let mut out = x.to_vec();
        out.par_chunks_mut(k * hw).enumerate().for_each(|(b, xb)| {
            let ab = &a[b * np * hw..(b + 1) * np * hw];
            // per target j: (source, weight) with the weights already divided by Σ_i W[i,j]
            let mut nbrs: Vec<Vec<(usize, T)>> = Vec::with_capacity(hw);
            for y in 0..g.h {
                for x in 0..g.w {
                    let j = y * g.w + x;
                    let mut v = vec![(j, T::one())];
                    for (p, &(dy, dx)) in off.iter().enumerate() {
                        if let Some(i) = neighbour(g, y, x, dy, dx) {
                            v.push((i, ab[p * hw + j].powf(beta)));
                        }
                        if let Some(i) = neighbour(g, y, x, -dy, -dx) {
                            v.push((i, ab[p * hw + i].powf(beta)));
                        }
                    }
                    let d = v.iter().fold(T::zero(), |s, &(_, w)| s + w);
                    v.iter_mut().for_each(|e| e.1 = e.1 / d);
                    nbrs.push(v);
                }
            }
            let mut next = vec![T::zero(); k * hw];
            for _ in 0..steps {
                for c in 0..k {
                    let (src, dst) = (&xb[c * hw..(c + 1) * hw], &mut next[c * hw..(c + 1) * hw]);
                    for (j, nb) in nbrs.iter().enumerate() {
                        dst[j] = nb.iter().fold(T::zero(), |s, &(i, w)| s + src[i] * w);
                    }
                }
                xb.copy_from_slice(&next);
            }
        });
        out
    }
}

/// The CUDA launches of kernels/affinity.cu.
mod cuda {
    use super::{half_disc_offsets, AffinityGeom};
    use crate::backend::cuda::{arg, rt};
    use crate::backend::CudaStorage;

    crate::backend::cuda::mirrored!(
        /// affinity.cu `AffinityGeom`.
        AffinityGeomC = "affinity.cu"::"AffinityGeom" { b, c, h, w, radius, pairs }
    );

    impl AffinityGeomC {
        fn of(g: &AffinityGeom) -> Self {
            AffinityGeomC {
                b: g.b as i32,
                c: g.c as i32,
                h: g.h as i32,
                w: g.w as i32,
                radius: g.radius as i32,
                pairs: half_disc_offsets(g.radius).len() as i32,
            }
        }
    }

    /// f (B,C,H,W) → a (B,P,H,W).
    pub fn forward(f: &CudaStorage, g: &AffinityGeom) -> CudaStorage {
        let gc = AffinityGeomC::of(g);
        let a = CudaStorage::uninit(g.b * gc.pairs as usize * g.h * g.w);
        let (fp, ap) = (f.ptr(), a.ptr());
        rt().launch_n(
            "affinity.cu",
            "local_affinity_fwd",
            a.len(),
            &[arg(&fp), arg(&ap), arg(&gc)],
        );
        a
    }
    /// df (B,C,H,W) from f, the forward's a and its gradient da.
    pub fn backward(
        f: &CudaStorage,
        a: &CudaStorage,
        da: &CudaStorage,
        g: &AffinityGeom,
    ) -> CudaStorage {
        let gc = AffinityGeomC::of(g);
        let df = CudaStorage::uninit(f.len());
        let (fp, ap, dap, dfp) = (f.ptr(), a.ptr(), da.ptr(), df.ptr());
        rt().launch_n(
            "affinity.cu",
            "local_affinity_bwd",
            df.len(),
            &[arg(&fp), arg(&ap), arg(&dap), arg(&dfp), arg(&gc)],
        );
        df
    }
    /// maps x (B,K,H,W); `steps` walk steps over the weights of a (ping-pong buffers).
    pub fn walk(
        x: &CudaStorage,
        a: &CudaStorage,
        g: &AffinityGeom,
        k: usize,
        beta: f64,
        steps: usize,
    ) -> CudaStorage {
        let gc = AffinityGeomC::of(g);
        let hw = g.h * g.w;
        let w = CudaStorage::uninit(g.b * (2 * gc.pairs as usize + 1) * hw);
        let (ap, wp, b) = (a.ptr(), w.ptr(), beta as f32);
        rt().launch_n(
            "affinity.cu",
            "walk_weights",
            g.b * hw,
            &[arg(&ap), arg(&wp), arg(&gc), arg(&b)],
        );
        let mut cur = x.clone();
        let k32 = k as i32;
        for _ in 0..steps {
            let next = CudaStorage::uninit(x.len());
            let (xp, np) = (cur.ptr(), next.ptr());
            rt().launch_n(
                "affinity.cu",
                "walk_step",
                next.len(),
                &[arg(&xp), arg(&wp), arg(&np), arg(&gc), arg(&k32)],
            );
            cur = next;
        }
        cur
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cuda_geometry_mirrors_the_kernel_struct() {
        crate::backend::cuda::check_mirror(super::cuda::AffinityGeomC::MIRROR).unwrap();
    }
}
