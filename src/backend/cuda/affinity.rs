//! Launchers of kernels/affinity.cu: AffinityNet's local affinity and the random walk.
use super::runtime::{arg, rt};
use super::storage::CudaStorage;
use crate::backend::cpu::affinity::half_disc_offsets;
use crate::backend::AffinityGeom;

/// affinity.cu `AffinityGeom`.
#[repr(C)]
#[derive(Clone, Copy)]
struct AffinityGeomC {
    b: i32,
    c: i32,
    h: i32,
    w: i32,
    radius: i32,
    pairs: i32,
}

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

impl CudaStorage {
    /// self = f (B,C,H,W) → a (B,P,H,W).
    pub(crate) fn local_affinity(&self, g: &AffinityGeom) -> Self {
        let gc = AffinityGeomC::of(g);
        let a = Self::uninit(g.b * gc.pairs as usize * g.h * g.w);
        let (fp, ap) = (self.ptr(), a.ptr());
        rt().launch_n(
            "affinity.cu",
            "local_affinity_fwd",
            a.len(),
            &[arg(&fp), arg(&ap), arg(&gc)],
        );
        a
    }
    /// self = f; df (B,C,H,W).
    pub(crate) fn local_affinity_backward(
        &self,
        a: &CudaStorage,
        da: &CudaStorage,
        g: &AffinityGeom,
    ) -> Self {
        let gc = AffinityGeomC::of(g);
        let df = Self::uninit(self.len());
        let (fp, ap, dap, dfp) = (self.ptr(), a.ptr(), da.ptr(), df.ptr());
        rt().launch_n(
            "affinity.cu",
            "local_affinity_bwd",
            df.len(),
            &[arg(&fp), arg(&ap), arg(&dap), arg(&dfp), arg(&gc)],
        );
        df
    }
    /// self = maps (B,K,H,W); `steps` walk steps over the weights of a (ping-pong buffers).
    pub(crate) fn random_walk(
        &self,
        a: &CudaStorage,
        g: &AffinityGeom,
        k: usize,
        beta: f64,
        steps: usize,
    ) -> Self {
        let gc = AffinityGeomC::of(g);
        let hw = g.h * g.w;
        let w = Self::uninit(g.b * (2 * gc.pairs as usize + 1) * hw);
        let (ap, wp, b) = (a.ptr(), w.ptr(), beta as f32);
        rt().launch_n(
            "affinity.cu",
            "walk_weights",
            g.b * hw,
            &[arg(&ap), arg(&wp), arg(&gc), arg(&b)],
        );
        let mut cur = self.clone();
        let k32 = k as i32;
        for _ in 0..steps {
            let next = Self::uninit(self.len());
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
