#!/usr/bin/env bash
# One device-machine call (see ../shared/tools/gpu-pack): the CUDA tests with
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
step ptxas 60 nvcc -arch=sm_90 --resource-usage -c kernels/coattention.cu -o /tmp/coatt.o
step cuda_tests 60 sh -c '.gpu/tests/cuda-* --test-threads=1 --nocapture'
step parity 180 sh -c 'COATT_CUDA_SYNC=1 .gpu/tests/cuda_parity-* --test-threads=1 --nocapture'
step bench ${BENCH_T:-90} .gpu/bin/coatt-train bench --device cuda --reps 20
if [ "${TORCH:-1}" = 1 ]; then
  step torch_bench ${BENCH_T:-90} python3 tools/torch_bench.py --reps 20
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
  for p in ${TRAIN_PRESETS:-tiny vgg16}; do
    step "train_$p" 150 .gpu/bin/coatt-train train-cls --data /tmp/syn --out /tmp/run_$p \
      --preset $p --variant full --epochs 2 --max-iters-per-epoch 40 --device cuda
    cp /tmp/run_$p/metrics.jsonl "$OUT/metrics_$p.jsonl" 2>/dev/null
  done
fi
grep -h "^parity\|training step\|every gradient\|allocator\|test result\|panicked\|FAILED" "$OUT"/parity.log | tail -80
cat "$OUT"/bench.log "$OUT"/torch_bench.log
for p in tiny vgg16; do tail -4 "$OUT/train_$p.log"; tail -1 "$OUT/metrics_$p.jsonl"; done
