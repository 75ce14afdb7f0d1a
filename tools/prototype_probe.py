#!/usr/bin/env python3
"""Is there class evidence across images that the CAM lacks? Localization maps from the
similarity of each position's features to a class prototype, scored like `eval-cam --t-max 0.95`
(mIoU on train at the best t, the maps scaled to a maximum of 1 per class, bilinear from the
feature grid to the image). Features: centred per image (each channel's mean over the positions
subtracted) and unit length per position, as the co-attentive inference's attention by
similarity uses them. Prototypes of class c:

- own: the mean feature over the image's own CAM ≥ 0.5 (weighted by the CAM);
- related: the same over R = 3 other train images with c (the co-attention's related images);
- ORACLE co-attention: the co-attentive inference's attention by similarity (τ = 0.03 on the
  centred cosine) with the related images' class maps replaced by their masks: at each
  position, the attention mass that lands on c's object in the related images (mean over R);
- ORACLE rows take the prototype over the cells the train masks give to c (in the related
  images, in every other train image with c, or in the image itself): what the features could
  deliver with a perfect selection.
  They read the masks and are diagnostics, not maps a user can have.

Features from `cargo run --release --example dump_features -- RUN DATA 128 FEAT` (the maps'
scale 2 of a 64-px classifier). Usage: tools/prototype_probe.py FEAT DATA [VARIANT ...]
"""
import json
import sys

import numpy as np
from PIL import Image

feat, data = sys.argv[1], sys.argv[2]
R = 3
meta = json.load(open(f"{feat}/meta.json"))
n, C, h, w = meta["n"], meta["features"][1], *meta["features"][2:]
K = meta["num_classes"]
F = np.fromfile(f"{feat}/features.f32", dtype="<f4").reshape(n, C, h * w)
L = np.fromfile(f"{feat}/logits.f32", dtype="<f4").reshape(n, K, h * w)
labels = meta["labels"]
masks = [np.array(Image.open(f"{data}/SegmentationClass/{i}.png")) for i in meta["ids"]]
H, W = masks[0].shape


def interp(src, dst):
    """Half-pixel bilinear weights (dst × src), the engine's resize."""
    m = np.zeros((dst, src), np.float32)
    for o in range(dst):
        x = min(max((o + 0.5) * src / dst - 0.5, 0), src - 1)
        a = int(np.floor(x))
        b = min(a + 1, src - 1)
        m[o, a] += 1 - (x - a)
        m[o, b] += x - a
    return m


Mh, Mw = interp(h, H), interp(w, W)


def up(g):
    return np.einsum("yh,khw,xw->kyx", Mh, g.reshape(-1, h, w), Mw)


def best_miou(maps):
    """mIoU (%) at the best t in 0.05..0.95 over the labelled train images, and that t."""
    ts = np.arange(0.05, 0.951, 0.01)
    inter = np.zeros((len(ts), K + 1))
    union = np.zeros((len(ts), K + 1))
    for i in range(n):
        if not labels[i]:
            continue
        g = masks[i].astype(int)
        valid = g != 255
        m = maps[i]
        cls = np.array(labels[i])[m.argmax(0)] + 1
        mx = m.max(0)
        gv = g[valid]
        for ti, t in enumerate(ts):
            pred = np.where(mx >= t, cls, 0)[valid]
            cm = np.bincount(gv * (K + 1) + pred, minlength=(K + 1) ** 2).reshape(K + 1, K + 1)
            d = np.diag(cm)
            inter[ti] += d
            union[ti] += cm.sum(0) + cm.sum(1) - d
    mi = (inter / np.maximum(union, 1)).mean(1)
    k = mi.argmax()
    return 100 * mi[k], ts[k]


def norm01(m):
    m = np.maximum(m, 0)
    return m / (m.max(axis=(1, 2), keepdims=True) + 1e-5)


def unit(x):
    x = x - x.mean(1, keepdims=True)
    return x / np.sqrt((x**2).sum(0, keepdims=True) + 1e-12)


U = np.stack([unit(F[i]) for i in range(n)])
cam = np.maximum(L, 0)
cam = cam / (cam.max(2, keepdims=True) + 1e-5)
grid = []
for m in masks:
    ys = ((np.arange(h) + 0.5) * H / h).astype(int)
    xs = ((np.arange(w) + 0.5) * W / w).astype(int)
    grid.append(m[ys][:, xs].reshape(-1))
by_class = [[j for j in range(n) if c in labels[j]] for c in range(K)]
rng = np.random.default_rng(1)


def related(i, c):
    pool = [j for j in by_class[c] if j != i]
    return list(rng.choice(pool, size=min(R, len(pool)), replace=False))


def cam_proto(j, c):
    wgt = cam[j, c] * (cam[j, c] >= 0.5)
    return (U[j] * wgt).sum(1) / (wgt.sum() + 1e-8)


def mask_proto(j, c):
    sel = grid[j] == c + 1
    return U[j][:, sel].mean(1) if sel.any() else None


mask_protos = [[mask_proto(j, c) for c in range(K)] for j in range(n)]
class_sum = [sum(p[c] for p in mask_protos if p[c] is not None) for c in range(K)]
class_cnt = [sum(p[c] is not None for p in mask_protos) for c in range(K)]


def all_others(i, c):
    """The mean mask prototype of c over every other train image with c."""
    own = mask_protos[i][c]
    if own is None:
        return class_sum[c] / class_cnt[c]
    return (class_sum[c] - own) / max(class_cnt[c] - 1, 1)


def attention_on_objects(i, c, tau=0.03):
    out = np.zeros(h * w)
    rel = related(i, c)
    for j in rel:
        a = U[i].T @ U[j] / tau
        a = np.exp(a - a.max(1, keepdims=True))
        a /= a.sum(1, keepdims=True)
        out += a @ (grid[j] == c + 1).astype(float)
    return out / max(len(rel), 1)


def similarity(i, protos):
    protos = [p for p in protos if p is not None]
    if not protos:
        return np.zeros(h * w)
    return np.maximum(U[i].T @ np.mean(protos, 0), 0)


variants = {
    "CAM": lambda i, c: cam[i, c],
    "own prototype (CAM ≥ 0.5)": lambda i, c: similarity(i, [cam_proto(i, c)]),
    "related prototype (R = 3, CAM ≥ 0.5)": lambda i, c: similarity(
        i, [cam_proto(j, c) for j in related(i, c)]
    ),
    "ORACLE: related prototype from the masks": lambda i, c: similarity(
        i, [mask_proto(j, c) for j in related(i, c)]
    ),
    "ORACLE: prototype from the masks of every other image with the class": lambda i, c: similarity(
        i, [all_others(i, c)]
    ),
    "ORACLE co-attention: the related images' masks carried over (τ 0.03)": attention_on_objects,
    "ORACLE co-attention, τ 0.01": lambda i, c: attention_on_objects(i, c, 0.01),
    "ORACLE co-attention, τ 0.1": lambda i, c: attention_on_objects(i, c, 0.1),
    "ORACLE: own prototype from the mask": lambda i, c: similarity(i, [mask_proto(i, c)]),
}
print("| maps | mIoU | t | mean with the CAM: mIoU | t |\n|---|---:|---:|---:|---:|")
cams = None
for name in sys.argv[3:] or list(variants):
    maps = [
        norm01(up(np.stack([variants[name](i, c) for c in labels[i]]))) if labels[i] else None
        for i in range(n)
    ]
    mi, t = best_miou(maps)
    if name == "CAM":
        cams = maps
        print(f"| {name} | {mi:.1f} | {t:.2f} | | |", flush=True)
        continue
    fused = ""
    if cams is not None:
        fmi, ft = best_miou(
            [None if m is None else norm01(0.5 * (m + cams[i])) for i, m in enumerate(maps)]
        )
        fused = f"{fmi:.1f} | {ft:.2f}"
    print(f"| {name} | {mi:.1f} | {t:.2f} | {fused} |", flush=True)
