#!/bin/bash
# tools/quality_table.sh KIND SEED: the ablation of docs/quality.md for one data kind (scenes,
# target) and classifier seed, on 1000/300 images; outputs under $ROOT (default
# /tmp/coatt-quality), binary $COATT (default target/release/coatt-train). All six rows of the
# tables: for s in 1 2 3; do for k in scenes target; do tools/quality_table.sh $k $s; done; done
# basic trains the tiny schedule; coatt, full and full-dot continue from basic's epoch-3
# checkpoint (the co-attention terms start at epoch index 3, so epochs 1-3 are identical).
set -e
B=${COATT:-target/release/coatt-train}
ROOT=${ROOT:-/tmp/coatt-quality}
K=$1; S=$2
D=$ROOT/data-$K
R=$ROOT/runs/$K-s$S
C=$ROOT/cams/$K-s$S
L=$ROOT/logs/$K-s$S
mkdir -p $R $C $L
[ -f $D/cls_labels.txt ] || $B synth --out $D --kind $K --train 1000 --val 300 --seed 1 > /dev/null
# an interrupted basic run is resumed, not taken as finished (.done marks a completed one)
if [ ! -f $R/basic/.done ]; then
  if [ -f $R/basic/last.safetensors ]; then
    $B train-cls --data $D --out $R/basic --resume --device cpu >> $L/basic.train 2>&1
  else
    $B train-cls --data $D --out $R/basic --preset tiny --variant basic --seed $S --device cpu > $L/basic.train 2>&1
  fi
  touch $R/basic/.done
fi
for v in coatt full full-dot; do
  [ -f $R/$v/.done ] && continue
  rm -rf $R/$v; mkdir -p $R/$v/checkpoints
  cp $R/basic/checkpoints/epoch_003.safetensors $R/$v/last.safetensors
  cp $R/basic/checkpoints/epoch_00[123].safetensors $R/$v/checkpoints/
  python3 - $R/basic/metrics.jsonl $R/$v/metrics.jsonl <<'PY'
import sys, json
rows=[json.loads(l) for l in open(sys.argv[1])]
keep=[r for r in rows if r.get('epoch_end',0)<=3 and r.get('epoch',0)<3]
open(sys.argv[2],'w').write(''.join(json.dumps(r)+'\n' for r in keep))
PY
  variant=${v%-dot}
  sed -e "s/^variant = .*/variant = \"$variant\"/" $R/basic/config.toml > $R/$v/config.toml
  [ "$v" = full-dot ] && sed -i 's/^affinity = .*/affinity = "dot"/' $R/$v/config.toml
  $B train-cls --data $D --out $R/$v --resume --device cpu > $L/$v.train 2>&1
  touch $R/$v/.done
done
cam() { # name run mode related
  [ -f $C/$1/eval-cam.json ] && return
  $B cams --run $R/$2 --data $D --out $C/$1 --mode $3 --related $4 --scales 2 --no-overlays --device cpu > $L/$1.cams 2>&1
  $B eval-cam --cams $C/$1 --data $D --t-max 0.95 > $L/$1.eval 2>&1
}
crf() { # name
  [ -f $C/$1-crf/eval-cam.json ] && return
  $B refine --cams $C/$1 --data $D --out $C/$1-crf --crf psa --no-overlays --device cpu > $L/$1.refine 2>&1
  $B eval-cam --cams $C/$1-crf --data $D --t-max 0.95 > $L/$1-crf.eval 2>&1
}
for v in basic coatt full full-dot; do
  cam $v-single $v single 0
  cam $v-coatt3 $v coatt 3
done
cam full-coatt0 full coatt 0
cam full-coatt1 full coatt 1
for m in basic-single full-single full-coatt3 full-dot-coatt3; do crf $m; done
echo "$K seed $S done"
