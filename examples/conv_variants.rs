//! Times the two CPU convolution paths on one 3×3, stride-1, padding-1 layer: im2col + GEMM
//! (`conv`) and the direct kernels (`conv_direct`) of every instruction set this machine runs
//! (AVX-512, AVX2), each op at its GFLOP/s; `*` marks what the engine picks here.
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
        println!("{name:12} {ms:8.3} ms {:6.1} GF/s", fl / ms * 1e3);
    };
    let isas = conv_direct::available();
    if isas.is_empty() {
        println!("neither AVX-512 nor AVX2 here: only the im2col path runs");
    }
    let here = conv_direct::detected().map(|i| i.name);
    let (product, weight) = (conv_direct::for_product(&g), conv_direct::for_weight(&g));
    let mark = |used: bool| if used { "*" } else { " " };
    t(&format!("fwd gemm{}", mark(!product)), &|| {
        conv::forward(&x, &w, None, &g);
    });
    for isa in &isas {
        t(
            &format!(
                "fwd {}{}",
                isa.name,
                mark(product && here == Some(isa.name))
            ),
            &|| {
                conv_direct::forward_on(isa, &x, &w, None, &g);
            },
        );
    }
    t(&format!("dx gemm{}", mark(!product)), &|| {
        conv::backward_input(&dy, &w, &g);
    });
    for isa in &isas {
        t(
            &format!("dx {}{}", isa.name, mark(product && here == Some(isa.name))),
            &|| {
                conv_direct::backward_input_on(isa, &dy, &w, &g);
            },
        );
    }
    t(&format!("dw gemm{}", mark(!weight)), &|| {
        conv::backward_weight(&dy, &x, &g);
    });
    for isa in &isas {
        t(
            &format!("dw {}{}", isa.name, mark(weight && here == Some(isa.name))),
            &|| {
                conv_direct::backward_weight_on(isa, &dy, &x, &g);
            },
        );
    }
}
