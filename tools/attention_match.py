#!/usr/bin/env python3
"""Does the co-attention match like with like? For pairs of train images sharing a class c,
the attention mass that a position of image n on c's object puts on image m's c object, and
the mass a background position of n puts there, under several affinities on the same
features (W_P = I). Chance is that object's share of m's positions.

Features from `cargo run --release --example dump_features -- RUN DATA SIDE FEAT`.
Usage: tools/attention_match.py FEAT DATA [pairs]
"""
import json
import sys

import numpy as np
from PIL import Image

feat, data = sys.argv[1], sys.argv[2]
n_pairs = int(sys.argv[3]) if len(sys.argv) > 3 else 400
meta = json.load(open(f"{feat}/meta.json"))
n, c, h, w = meta["n"], meta["features"][1], *meta["features"][2:]
F = np.fromfile(f"{feat}/features.f32", dtype="<f4").reshape(n, c, h * w)
labels = meta["labels"]

# the masks at the feature cells' centres (0 background, k+1 class k, 255 ignored)
grid = []
for ident in meta["ids"]:
    g = np.array(Image.open(f"{data}/SegmentationClass/{ident}.png"))
    ys = ((np.arange(h) + 0.5) * g.shape[0] / h).astype(int)
    xs = ((np.arange(w) + 0.5) * g.shape[1] / w).astype(int)
    grid.append(g[ys][:, xs].reshape(-1))
grid = np.array(grid)


def unit(x, centre):
    if centre:
        x = x - x.mean(2, keepdims=True)
    return x / np.sqrt((x**2).sum(1, keepdims=True) + 1e-12)


rng = np.random.default_rng(0)
pairs = []
while len(pairs) < n_pairs:
    i = int(rng.integers(n))
    if not labels[i]:
        continue
    k = int(rng.choice(labels[i]))
    others = [j for j in range(n) if k in labels[j] and j != i]
    pairs.append((i, int(rng.choice(others)), k))

print("| affinity | object → the same class's object | background → that object | chance (the object's share) |")
print("|---|---:|---:|---:|")
for name, centre, tau, dot in [
    ("dot product", False, 1.0, True),
    ("cosine, τ 1", False, 1.0, False),
    ("cosine, τ 0.1", False, 0.1, False),
    ("centred cosine, τ 0.1", True, 0.1, False),
    ("centred cosine, τ 0.03", True, 0.03, False),
]:
    u = F if dot else unit(F, centre)
    obj, bg, share = [], [], []
    for i, j, k in pairs:
        s = u[i].T @ u[j] / tau
        s -= s.max(1, keepdims=True)
        a = np.exp(s)
        a /= a.sum(1, keepdims=True)
        oi, oj, bi = grid[i] == k + 1, grid[j] == k + 1, grid[i] == 0
        if oi.sum() == 0 or oj.sum() == 0:
            continue
        obj.append(a[oi][:, oj].sum(1).mean())
        bg.append(a[bi][:, oj].sum(1).mean())
        share.append(oj.mean())
    print(f"| {name} | {np.mean(obj):.3f} | {np.mean(bg):.3f} | {np.mean(share):.3f} |")
