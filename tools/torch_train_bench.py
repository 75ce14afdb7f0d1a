#!/usr/bin/env python3
"""PyTorch side of `coatt-train bench --train-step PRESET --device cuda`: one classifier training
step of the same model and loss in PyTorch eager (TF32 on, as ours; --no-tf32 turns it off),
timed the same way: median wall time of whole steps (forward, loss read back, backward, SGD
step, synchronised), after 1 s of warm-up. Run on the GPU machine:

    python3 tools/torch_train_bench.py --preset vgg16 [--reps 20] [--cudnn-benchmark]

The model mirrors src/nn/vgg.rs and src/nn/coatt_head.rs (DESIGN §5): VGG16-D1 (torchvision's
13 convs, pool1-3 2×2/2, pool4 3×3/1 pad 1, conv5_x dilation 2, batch norm in the scratch
presets), three extra 3×3 convs, and the co-attention head (W_P, the single-image head with
bias, φ, W_B). The step mirrors Classifier::iteration_loss (variant full, every term on): one
backbone pass over [x1, x2, flip(x1)], the 0.75× and 2× views of x1, the single-image terms
(4× image 1), the co-attention terms of the pair and of image 1 with its three views, the
contrastive terms, and nesterov SGD with momentum 0.9 and weight decay 5e-4 in four groups.
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

FULL = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
# name: (widths, extra channels, batch norm, pairs per step, input size)
PRESETS = {
    "vgg16": (FULL, 512, False, 5, 256),
    "small": ([max(w // 4, 4) for w in FULL], 128, True, 8, 96),
    "tiny": ([max(w // 8, 4) for w in FULL], 64, True, 8, 64),
}


class VggD1(nn.Module):
    def __init__(self, widths, extra, bn):
        super().__init__()
        self.convs, cin = nn.ModuleList(), 3
        self.bns = nn.ModuleList() if bn else None
        for i, w in enumerate(widths):
            d = 2 if i >= 10 else 1
            self.convs.append(nn.Conv2d(cin, w, 3, padding=d, dilation=d))
            if bn:
                self.bns.append(nn.BatchNorm2d(w))
            cin = w
        self.extra = nn.ModuleList(
            [nn.Conv2d(cin if i == 0 else extra, extra, 3, padding=1) for i in range(3)])

    def forward(self, x):
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if self.bns is not None:
                x = self.bns[i](x)
            x = F.relu(x)
            if i in (1, 3, 6):
                x = F.max_pool2d(x, 2, 2)
            elif i == 9:
                x = F.max_pool2d(x, 3, 1, 1)
        for conv in self.extra:
            x = F.relu(conv(x))
        return x


class CoattHead(nn.Module):
    def __init__(self, c, k):
        super().__init__()
        p = lambda *d: nn.Parameter(torch.randn(*d) / c**0.5)
        self.wp, self.last_w, self.last_b = p(c, c), p(k, c), p(k)
        self.phi, self.wb = p(k, c), p(1, c)

    def single(self, f):
        return f.flatten(2).mean(2) @ self.last_w.t() + self.last_b

    def pair(self, f1, f2, contrastive):
        fm, fn = f1.flatten(2), f2.flatten(2)  # (B, C, N), (B, C, M)
        s = torch.bmm((self.wp @ fm).transpose(1, 2), fn)  # (B, N, M)
        fm_att = torch.bmm(fn, torch.softmax(s, 2).transpose(1, 2))  # (B, C, N)
        fn_att = torch.bmm(fm, torch.softmax(s, 1))  # (B, C, M)
        score = lambda f: f.mean(2) @ self.phi.t()
        co = (score(fm_att), score(fn_att))
        if not contrastive:
            return co, None
        gate = lambda a: torch.sigmoid(self.wb @ a)  # (B, 1, N)
        cx = (score(fm * (1 - gate(fm_att))), score(fn * (1 - gate(fn_att))))
        return co, cx


def iteration_loss(backbone, head, x1, x2, l1, l2):
    b, s = x1.shape[0], x1.shape[-1]
    f1, f2, ff = backbone(torch.cat([x1, x2, x1.flip(3)])).split(b)
    view = lambda f: F.interpolate(x1, size=max(round(s * f), 8), mode="bilinear",
                                   align_corners=False)
    fs, fl = backbone(view(0.75)), backbone(view(2.0))
    mlsm = F.multilabel_soft_margin_loss
    basic = 4 * mlsm(head.single(f1), l1) + mlsm(head.single(f2), l2)
    for v in (ff, fs, fl):
        basic = basic + mlsm(head.single(v), l1)
    common = l1 * l2
    co, cx = head.pair(f1, f2, True)
    c = mlsm(co[0], common) + mlsm(co[1], common)
    for v in (ff, fs, fl):
        co, _ = head.pair(f1, v, False)
        c = c + mlsm(co[0], l1) + mlsm(co[1], l1)
    x = mlsm(cx[0], l1 - common) + mlsm(cx[1], l2 - common)
    return basic + c + x


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="vgg16", choices=sorted(PRESETS))
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--no-tf32", action="store_true")
    ap.add_argument("--cudnn-benchmark", action="store_true")
    ap.add_argument("--profile", action="store_true",
                    help="then one step under torch.profiler: its kernels by device time")
    a = ap.parse_args()
    tf32 = not a.no_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = a.cudnn_benchmark
    widths, extra, bn, b, s = PRESETS[a.preset]
    k, dev = 20, "cuda"
    torch.manual_seed(1)
    backbone = VggD1(widths, extra, bn).to(dev)
    head = CoattHead(extra, k).to(dev)
    is_bias = lambda n: n.endswith("bias") or n == "last_b"
    groups = [
        [p for n, p in backbone.named_parameters() if not is_bias(n)],
        [p for n, p in backbone.named_parameters() if is_bias(n)],
        [p for n, p in head.named_parameters() if not is_bias(n)],
        [p for n, p in head.named_parameters() if is_bias(n)],
    ]
    opt = torch.optim.SGD([{"params": g, "lr": 1e-3 * m} for g, m in zip(groups, [1, 2, 10, 20])],
                          lr=1e-3, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x1 = torch.randn(b, 3, s, s, device=dev)
    x2 = torch.randn(b, 3, s, s, device=dev)
    l1 = torch.zeros(b, k, device=dev)
    l2 = torch.zeros(b, k, device=dev)
    for i in range(b):  # two positives each, one shared (as ours)
        l1[i, i % k] = l1[i, (i + 1) % k] = 1
        l2[i, i % k] = l2[i, (i + 3) % k] = 1

    def step():
        loss = iteration_loss(backbone, head, x1, x2, l1, l2)
        total = loss.item()
        assert total == total, "NaN loss"
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        torch.cuda.synchronize()

    t0, n = time.perf_counter(), 0
    while n < 3 or time.perf_counter() - t0 < 1.0:
        step()
        n += 1
    times = []
    for _ in range(a.reps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    times.sort()
    med = times[len(times) // 2]
    print(f"PyTorch {torch.__version__} train step, preset {a.preset} (batch {b} pairs, {s} px, "
          f"variant full, all terms), {torch.cuda.get_device_name()} TF32 {'on' if tf32 else 'off'}"
          f"{', cudnn.benchmark' if a.cudnn_benchmark else ''}: median of {a.reps} steps "
          f"{med * 1e3:.2f} ms, {2 * b / med:.1f} images/s")
    if a.profile:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            step()
        ka = prof.key_averages()
        for key in ("device_time_total", "cuda_time_total"):
            try:
                print(ka.table(sort_by=key, row_limit=30, max_name_column_width=60))
                break
            except Exception:  # the key's name moved between PyTorch versions
                continue


if __name__ == "__main__":
    main()
