//! Times the two CPU convolution paths on one 3×3, stride-1, padding-1 layer: im2col + GEMM
//! (`conv`) and the direct kernels (`conv_direct`, AVX-512), each op at its GFLOP/s.
//! `cargo run --release --example conv_variants -- N CIN COUT SIZE` (e.g. `8 8 8 128`).
//! Their agreement is tested in `conv_direct`'s unit tests; this only times them.
use coatt::backend::cpu::{conv, conv_direct};
use coatt::backend::Conv2dGeom;
use std::time::Instant;
fn main() {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().unwrap())
        .collect();
    let (n, cin, cout, h) = (a[0], a[1], a[2], a[3]);
    let g = Conv2dGeom {
        n,
        cin,
        h,
        w: h,
        cout,
        kh: 3,
        kw: 3,
        sh: 1,
        sw: 1,
        ph: 1,
        pw: 1,
        dh: 1,
        dw: 1,
        ho: h,
        wo: h,
    };
    let x: Vec<f32> = (0..n * cin * h * h).map(|i| (i % 7) as f32 * 0.1).collect();
    let w: Vec<f32> = (0..cout * cin * 9).map(|i| (i % 5) as f32 * 0.1).collect();
    let dy: Vec<f32> = (0..n * cout * h * h)
        .map(|i| (i % 3) as f32 * 0.1)
        .collect();
    let fl = 2.0 * (n * cin * cout * 9 * h * h) as f64 / 1e9;
    let t = |name: &str, f: &dyn Fn()| {
        for _ in 0..3 {
            f();
        }
        let r = 20;
        let s = Instant::now();
        for _ in 0..r {
            f();
        }
        let ms = s.elapsed().as_secs_f64() * 1e3 / r as f64;
        println!("{name:10} {ms:8.3} ms {:6.1} GF/s", fl / ms * 1e3);
    };
    let direct = conv_direct::applies(&g);
    if !direct {
        println!("no AVX-512 here: only the im2col path runs (and is what the pipeline uses)");
    }
    t("fwd gemm", &|| {
        conv::forward(&x, &w, None, &g);
    });
    if direct {
        t("fwd dir", &|| {
            conv_direct::forward(&x, &w, None, &g);
        });
    }
    t("dx gemm", &|| {
        conv::backward_input(&dy, &w, &g);
    });
    if direct {
        t("dx dir", &|| {
            conv_direct::backward_input(&dy, &w, &g);
        });
    }
    t("dw gemm", &|| {
        conv::backward_weight(&dy, &x, &g);
    });
    if direct {
        t("dw dir", &|| {
            conv_direct::backward_weight(&dy, &x, &g);
        });
    }
}
