# Prints the ablation tables of docs/quality.md from the outputs of tools/quality_table.sh.
import json, os, statistics, sys
root=os.environ.get('ROOT', '/tmp/coatt-quality')
def miou_at(cams, t):
    d=json.load(open(f'{cams}/eval-cam.json')); ts=d['thresholds']; m=d['miou']
    i=min(range(len(ts)),key=lambda k:abs(ts[k]-t)); return m[i]
def oracle(cams):
    d=json.load(open(f'{cams}/eval-cam.json')); return d['miou'][d['best']], d['thresholds'][d['best']]
def argmax_from_log(log):
    for l in open(log):
        if 'argmax' in l: return float(l.split('mIoU')[1].strip().rstrip('%'))/100
def val_map(run):
    rows=[json.loads(l) for l in open(f'{run}/metrics.jsonl')]
    v=[r['val_map'] for r in rows if 'epoch_end' in r and 'val_map' in r]; return v[-1] if v else None
def attn(cams):
    p=f'{cams}/attention.json'
    if not os.path.exists(p): return None
    a=json.load(open(p)); return a['entropy'], a['top1_mass']
def ms(v):
    v=[x for x in v if x is not None]
    if not v: return '-'
    m=statistics.mean(v); s=(max(v)-min(v))/2 if len(v)>1 else 0
    return f'{100*m:.1f} ± {100*s:.1f}' if len(v)>1 else f'{100*m:.1f}'
for kind in ['scenes','target']:
    seeds=[s for s in [1,2,3] if os.path.exists(f'{root}/cams/{kind}-s{s}/full-coatt1/eval-cam.json')]
    if not seeds:
        continue
    print(f'\n### {kind}: seeds {seeds} (mean ± half range)\n')
    print('| classifier | val mAP | maps | mIoU at the oracle t ≤ 0.95 | oracle t | refined by the CRF (argmax, no mask) | attention entropy / top-1 mass |')
    print('|---|---:|---|---:|---:|---:|---:|')
    for v in ['basic','coatt','full','full-dot']:
        maps=[(f'{v}-single','single-image'),(f'{v}-coatt3','co-attention, R = 3')]
        if v=='full': maps += [('full-coatt0','co-attention, R = 0'),('full-coatt1','co-attention, R = 1')]
        vm=ms([val_map(f'{root}/runs/{kind}-s{s}/{v}') for s in seeds])
        for name,label in maps:
            o=[oracle(f'{root}/cams/{kind}-s{s}/{name}') for s in seeds]
            crf=[argmax_from_log(f'{root}/logs/{kind}-s{s}/{name}-crf.eval') if os.path.exists(f'{root}/logs/{kind}-s{s}/{name}-crf.eval') else None for s in seeds]
            at=[attn(f'{root}/cams/{kind}-s{s}/{name}') for s in seeds]
            ats='-' if at[0] is None else f'{statistics.mean(a[0] for a in at):.3f} / {statistics.mean(a[1] for a in at):.3f}'
            ts=', '.join(f'{x[1]:.2f}' for x in o)
            print(f'| {v} | {vm} | {label} | {ms([x[0] for x in o])} | {ts} | {ms(crf)} | {ats} |')
            vm=''
    # the targets, seed by seed: full co-attention (R = 3) and full single-image maps
    # against the basic classifier's CAMs, in mIoU points at each one's oracle t
    for a, b in [('full-coatt3', 'basic-single'), ('full-single', 'basic-single'), ('full-dot-coatt3', 'basic-single')]:
        d = [100 * (oracle(f'{root}/cams/{kind}-s{s}/{a}')[0] - oracle(f'{root}/cams/{kind}-s{s}/{b}')[0]) for s in seeds]
        print(f'\n{a} − {b}: ' + ', '.join(f'{x:+.1f}' for x in d) + f' (mean {statistics.mean(d):+.1f})', end='')
    print()
