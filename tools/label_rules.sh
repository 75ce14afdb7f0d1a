#!/bin/bash
# The pseudo-label rules of docs/quality.md ("Pseudo labels that say less"), measured as the
# pipeline measures them: for each refined map folder (one per classifier seed; its
# refine.json names the raw maps it was made from) and each rule, `pseudo`, the tiny DeepLab on
# the labels, multi-scale + flip inference on val, `eval`; and the fully supervised bound.
#
#   tools/label_rules.sh BIN DATA OUT REFINED_1 [REFINED_2 ...]
#   SEG_SEEDS="1 2" tools/label_rules.sh ...      # the segmentation network's seeds (default 1)
#
# Prints one line per run: rule, classifier, segmentation seed, pseudo-label mIoU on train and
# the share of pixels labelled, val mIoU without and with the CRF. Runs already complete are kept.
set -euo pipefail
BIN=$1 DATA=$2 OUT=$3
shift 3
SEG_SEEDS=${SEG_SEEDS:-1}
declare -A RULES=(
  [all]="--confident-background off --border-connectivity off"
  [confident]="--border-connectivity off"
  [border]="--confident-background off"
  [both]=""
)

segment() { # LABELS RUNDIR SEED: val mIoU without and with the CRF (`infer` applies MCIS's by default)
  [ -f "$2/seg/last.safetensors" ] ||
    "$BIN" train-seg --labels "$1" --data "$DATA" --out "$2/seg" --preset tiny --seed "$3" --device cpu >"$2/seg.log" 2>&1
  for crf in off mcis; do
    [ -f "$2/eval-$crf.log" ] || {
      "$BIN" infer --run "$2/seg" --data "$DATA" --split val --out "$2/pred-$crf" --scales 0.75,1,1.25 --flip --crf $crf --device cpu >"$2/infer-$crf.log" 2>&1
      "$BIN" eval --pred "$2/pred-$crf" --data "$DATA" --split val >"$2/eval-$crf.log" 2>&1
    }
  done
  echo "no CRF $(miou "$2/eval-off.log"), CRF $(miou "$2/eval-mcis.log")"
}

miou() { grep -h mIoU "$@" | tail -1 | tr -d '*| ' | sed 's/mIoU//'; }

for seed in $SEG_SEEDS; do
  mkdir -p "$OUT/bound-s$seed"
  echo "bound seg-seed $seed: val $(segment gt "$OUT/bound-s$seed" "$seed")"
done
c=0
for refined in "$@"; do
  c=$((c + 1))
  for rule in all confident border both; do
    labels=$OUT/c$c-$rule/pseudo
    mkdir -p "$OUT/c$c-$rule"
    if [ ! -f "$labels/stats.json" ]; then
      rm -rf "$labels"
      # shellcheck disable=SC2086
      "$BIN" pseudo --cams "$refined" --out "$labels" --data "$DATA" ${RULES[$rule]} >"$OUT/c$c-$rule/pseudo.log" 2>&1
    fi
    q=$("$BIN" eval --pred "$labels" --data "$DATA" --split train --partial 2>&1)
    labels_miou=$(echo "$q" | miou)
    cov=$(echo "$q" | grep coverage | sed 's/coverage: //; s/ of labelled pixels//')
    for seed in $SEG_SEEDS; do
      run=$OUT/c$c-$rule/seg-s$seed
      mkdir -p "$run"
      echo "$rule classifier $c ($refined) seg-seed $seed: labels $labels_miou ($cov) val $(segment "$labels" "$run" "$seed")"
    done
  done
done
