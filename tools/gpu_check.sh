#!/usr/bin/env bash
# One device-machine call after tools/gpu_pack.sh: the CUDA tests with
# COATT_REQUIRE_CUDA=1 (parity suite printing its table), the CUDA bench of
# `coatt-train bench --device cuda`, then PyTorch's bench of the same shapes. Logs go to $OUT.
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
# cuBLAS / NVRTC: from the CUDA toolkit or PyTorch's nvidia wheels, whichever is there
SP=$(python3 -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null)
LIBS=$(find "$SP/nvidia" /usr/local/cuda/lib64 /usr/local/cuda/lib -maxdepth 3 \
  \( -name 'libcublas.so*' -o -name 'libnvrtc.so*' \) -printf '%h\n' 2>/dev/null | sort -u | tr '\n' ':')
export LD_LIBRARY_PATH="${LIBS}${LD_LIBRARY_PATH:-}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv
export COATT_REQUIRE_CUDA=1
step() { # name, timeout, command...
  local name=$1 t=$2; shift 2
  echo "=== $name"
  timeout "$t" "$@" 2>&1 | tee "$OUT/$name.log"
  echo "=== $name exit ${PIPESTATUS[0]}"
}
# register / spill report of the fused co-attention kernels (nvcc's ptxas; NVRTC hides it)
# switches: TESTS, BENCH, TORCH, TRAIN (default on); STEP, PIPELINE, CRITERION (default off)
if [ "${TESTS:-1}" = 1 ]; then
  step ptxas 60 nvcc -arch=sm_90 --resource-usage -c kernels/coattention.cu -o /tmp/coatt.o
  step cuda_tests 60 sh -c '.gpu/tests/cuda-* --test-threads=1 --nocapture'
  step parity 180 sh -c 'COATT_CUDA_SYNC=1 .gpu/tests/cuda_parity-* --test-threads=1 --nocapture'
fi
if [ "${BENCH:-1}" = 1 ]; then
  step bench ${BENCH_T:-90} .gpu/bin/coatt-train bench --device cuda --reps 20
fi
if [ "${TORCH:-1}" = 1 ]; then
  step torch_bench ${BENCH_T:-90} python3 tools/torch_bench.py --reps 20
fi
if [ "${STEP:-0}" = 1 ]; then
  # whole classifier training steps, ours (each conv algorithm) beside PyTorch's
  for p in ${STEP_PRESETS:-vgg16 tiny}; do
    for algo in ${STEP_ALGOS:-auto winograd im2col}; do
      COATT_CONV_ALGO=$algo step "step_${p}_$algo" 90 \
        .gpu/bin/coatt-train bench --device cuda --train-step $p --reps 20
    done
    step "torch_step_$p" 90 python3 tools/torch_train_bench.py --preset $p --reps 20
    step "torch_step_${p}_bm" 90 python3 tools/torch_train_bench.py --preset $p --reps 20 \
      --cudnn-benchmark
  done
  grep -h "train step" "$OUT"/*step_*.log
  # where the first preset's step spends its device time (events around every kernel)
  p=${STEP_PRESETS:-vgg16}; p=${p%% *}
  COATT_CUDA_PROFILE=1 step "profile_$p" 90 .gpu/bin/coatt-train bench --device cuda \
    --train-step $p --reps 5
fi
if [ "${PIPELINE:-0}" = 1 ]; then
  # every stage (synth, train-cls, cams, pseudo, train-seg, infer, eval) on the GPU
  step pipeline 150 .gpu/bin/coatt-train pipeline --preset micro --out /tmp/pipe --device cuda
fi
if [ "${CRITERION:-0}" = 1 ]; then
  step criterion 120 sh -c '.gpu/benches/cuda_kernels-* --bench --noplot'
fi
if [ "${TRAIN:-1}" = 1 ]; then
  .gpu/bin/coatt-train synth --out /tmp/syn --train 1000 --val 200 --seed 1 >/dev/null 2>&1
  # TRAIN_ALGOS: the conv algorithms to train with (COATT_CONV_ALGO), e.g. "auto im2col"
  for p in ${TRAIN_PRESETS:-tiny vgg16}; do
    for algo in ${TRAIN_ALGOS:-auto}; do
      COATT_CONV_ALGO=$algo step "train_${p}_$algo" 150 .gpu/bin/coatt-train train-cls \
        --data /tmp/syn --out /tmp/run_${p}_$algo \
        --preset $p --variant full --epochs 2 --max-iters-per-epoch 40 --device cuda
      cp /tmp/run_${p}_$algo/metrics.jsonl "$OUT/metrics_${p}_$algo.jsonl" 2>/dev/null
    done
  done
fi
[ -f "$OUT"/parity.log ] && grep -h "^parity\|training step\|every gradient\|allocator\|test result\|panicked\|FAILED" "$OUT"/parity.log | tail -80
cat "$OUT"/bench.log "$OUT"/torch_bench.log 2>/dev/null
for f in "$OUT"/train_*.log; do [ -f "$f" ] && { echo "$f"; tail -3 "$f"; }; done
[ "${STEP:-0}" = 1 ] && grep -h "train step" "$OUT"/*step_*.log
