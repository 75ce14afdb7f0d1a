#!/usr/bin/env python3
"""PyTorch side of the CUDA benchmarks (issue: CUDA backend): the same shapes as
`cargo bench` / `coatt-train bench`, timed with CUDA events after warm-up, eager mode,
TF32 on (switch off with --no-tf32). Run on the GPU machine:

    python3 tools/torch_bench.py [--reps 50] [--json out.json]

Co-attention (DESIGN §4), per pair: S = (W·Fm)ᵀ·Fn (N×M), Fm∩ = Fn·softmax_rows(S)ᵀ (C×N),
Fn∩ = Fm·softmax_cols(S) (C×M). "unfused" is bmm + softmax + bmm, the two directions sharing
S; "sdpa" is two scaled_dot_product_attention calls with scale 1 (queries (W·Fm)ᵀ against
keys/values Fnᵀ, and Fnᵀ against (W·Fm)ᵀ / Fmᵀ), which PyTorch may run as a fused
(flash / memory-efficient) kernel. conv2d: 3×3 C→C, padding 1, with bias, B = 5, for
VGG16's 512 ch at 32², 128 at 128² and 64 at 256², with and without cudnn.benchmark.
"""
import argparse
import json

import torch
import torch.nn.functional as F


def time_ms(fn, reps, warmup_s=0.3):
    # warm up for a fixed time (at least 3 runs): the GPU's clocks ramp up under load
    import time
    t0, k = time.perf_counter(), 0
    while k < 3 or time.perf_counter() - t0 < warmup_s:
        fn()
        torch.cuda.synchronize()
        k += 1
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def coatt_unfused(fm, fn, w):
    q = torch.matmul(w, fm)  # (B, C, N)
    s = torch.bmm(q.transpose(1, 2), fn)  # (B, N, M)
    fm_att = torch.bmm(fn, torch.softmax(s, dim=2).transpose(1, 2))  # (B, C, N)
    fn_att = torch.bmm(fm, torch.softmax(s, dim=1))  # (B, C, M)
    return fm_att, fn_att


def coatt_sdpa(fm, fn, w):
    q = torch.matmul(w, fm).transpose(1, 2)  # (B, N, C)
    fmt, fnt = fm.transpose(1, 2), fn.transpose(1, 2)
    fm_att = F.scaled_dot_product_attention(q, fnt, fnt, scale=1.0)  # (B, N, C)
    fn_att = F.scaled_dot_product_attention(fnt, q, fmt, scale=1.0)  # (B, M, C)
    return fm_att.transpose(1, 2), fn_att.transpose(1, 2)


def bench_coatt(impl, b, c, n, m, reps, dtype):
    g = torch.Generator(device="cuda").manual_seed(0)
    # features of the scale ReLU maps have; small enough that exp(S) stays finite
    fm = (torch.rand(b, c, n, device="cuda", generator=g, dtype=dtype) * 0.05).requires_grad_()
    fn = (torch.rand(b, c, m, device="cuda", generator=g, dtype=dtype) * 0.05).requires_grad_()
    w = (torch.randn(c, c, device="cuda", generator=g, dtype=dtype) / c**0.5).requires_grad_()
    fwd = lambda: impl(fm, fn, w)
    a, bb = fwd()
    ga, gb = torch.randn_like(a), torch.randn_like(bb)

    def fwd_bwd():
        x, y = impl(fm, fn, w)
        torch.autograd.backward([x, y], [ga, gb])

    with torch.no_grad():
        t_fwd = time_ms(fwd, reps)
    t_all = time_ms(fwd_bwd, reps)
    flops = 2 * b * c * c * n + 2 * 2 * b * n * m * c + 2 * b * n * m * c  # W·Fm, S, two summaries
    return t_fwd, t_all, flops


def bench_conv(b, ch, size, reps, dtype):
    x = torch.randn(b, ch, size, size, device="cuda", dtype=dtype, requires_grad=True)
    conv = torch.nn.Conv2d(ch, ch, 3, padding=1).to("cuda", dtype)
    y = conv(x)
    gy = torch.randn_like(y)
    with torch.no_grad():
        t_fwd = time_ms(lambda: conv(x), reps)
    t_all = time_ms(lambda: torch.autograd.backward(conv(x), gy), reps)
    return t_fwd, t_all, 2 * b * ch * ch * 9 * size * size


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--no-tf32", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    tf32 = not a.no_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    dt = torch.float32
    rows = []
    for n, m in [(1024, 1024), (1024, 4096)]:
        for name, impl in [("unfused", coatt_unfused), ("sdpa", coatt_sdpa)]:
            f, fb, flops = bench_coatt(impl, 5, 512, n, m, a.reps, dt)
            rows.append({"case": f"co-attention {name} C=512 B=5 N={n} M={m}",
                         "forward_ms": f, "forward_backward_ms": fb,
                         "forward_tflops": flops / f / 1e9})
    for m, n, k in [(4096, 4096, 4096), (512, 5 * 1024, 512 * 9)]:
        x = torch.randn(m, k, device="cuda", dtype=dt)
        y = torch.randn(k, n, device="cuda", dtype=dt)
        f = time_ms(lambda: torch.matmul(x, y), a.reps)
        rows.append({"case": f"matmul {m}x{n}x{k}", "forward_ms": f, "forward_backward_ms": 0.0,
                     "forward_tflops": 2 * m * n * k / f / 1e9})
    # VGG16's three 3×3 shapes of equal FLOPs; cuDNN with its heuristic choice (PyTorch's
    # default) and with cudnn.benchmark (it times its algorithms, Winograd among them, per shape)
    for bench_mode in [False, True]:
        torch.backends.cudnn.benchmark = bench_mode
        for ch, size in [(512, 32), (128, 128), (64, 256)]:
            f, fb, flops = bench_conv(5, ch, size, a.reps, dt)
            rows.append({"case": f"conv2d 3x3 {ch}->{ch} {size}x{size} B=5 cuDNN"
                                 + (" benchmark" if bench_mode else ""),
                         "forward_ms": f, "forward_backward_ms": fb,
                         "forward_tflops": flops / f / 1e9})
    torch.backends.cudnn.benchmark = False
    print(f"PyTorch {torch.__version__}, {torch.cuda.get_device_name()}, TF32 {'on' if tf32 else 'off'}, "
          f"median of {a.reps} after warm-up (CUDA events)")
    print(f"| case | forward (ms) | forward+backward (ms) | forward TFLOP/s |\n|---|---:|---:|---:|")
    for r in rows:
        fb = f"{r['forward_backward_ms']:.3f}" if r['forward_backward_ms'] else "–"
        print(f"| {r['case']} | {r['forward_ms']:.3f} | {fb} | {r['forward_tflops']:.1f} |")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"torch": torch.__version__, "device": torch.cuda.get_device_name(),
                       "tf32": tf32, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
