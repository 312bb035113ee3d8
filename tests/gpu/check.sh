#!/bin/bash
# The GPU checks, as one run on the GPU machine of the `device` tool (it has the NVIDIA driver and CUDA
# 13 but no Rust): the `cuda` binary is built here (docs/cuda.md) and carried. From the repository root:
#
#   bash tests/gpu/build.sh                          # here: target/cuda-carry/radclip.gz (~24 MB)
#   device: bash tests/gpu/check.sh                  # with carry ["target/cuda-carry"]
#   then, here: python3 tests/gpu/compare.py <the fetched files' folder>
#
# Writes into $OUT: embeddings of the tiny Hugging Face reference model on the GPU (f16) and the CPU, the
# demo model's held-out evaluation on the GPU, encode timings of random B/32 and B/16 models (bs 1 and 32)
# and the W/L and MPR benchmarks on the machine's Vulkan device, each with its stderr. Every step runs even when
# one fails, so one call gives everything; ~3–5 minutes in all. REPEAT and BATCH_BIG shrink it for a dry
# run on a CPU build (every step then says it runs on the CPU).
set -u
bin=${1:-target/cuda-carry/radclip.gz}
out=${OUT:-/tmp/radclip-gpu}
mkdir -p "$out"
if [[ $bin == *.gz ]]; then
  gunzip -c "$bin" >/tmp/radclip-cuda && chmod +x /tmp/radclip-cuda
  bin=/tmp/radclip-cuda
fi
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
export RADCLIP_LOG=${RADCLIP_LOG:-info}
step() { # name, command...
  local name=$1
  shift
  local t0=$SECONDS
  "$@" >"$out/$name.json" 2>"$out/$name.err"
  echo "$name: exit $? in $((SECONDS - t0)) s" | tee -a "$out/steps.txt"
}
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv >"$out/gpu.txt" 2>&1
cat "$out/gpu.txt"
fx=tests/fixtures/clip
m=$fx/tiny-fullvocab
for dev in cuda cpu; do
  step "embed-images-$dev" "$bin" embed "$fx/preprocess" --model "$m" --device "$dev" --json
  step "embed-text-$dev" "$bin" embed --text "right pleural effusion" --model "$m" --device "$dev" --json
  step "zero-shot-$dev" "$bin" zero-shot assets/demo-cxr/PHANTOM-CXR-2026-0000/image.dcm --device "$dev" --json
done
step eval-cuda "$bin" eval --device cuda --count 200 --heatmaps 60
for shape in b32 b16; do
  "$bin" bench make-model --shape "$shape" --out "/tmp/radclip-$shape" 2>>"$out/make-model.err"
  step "bench-$shape-cuda" "$bin" bench clip --model "/tmp/radclip-$shape" --device cuda \
    --batch 1 --batch "${BATCH_BIG:-32}" --repeat "${REPEAT:-20}"
done
step wl-2048 "$bin" bench window-level --size 2048 --repeat "${REPEAT:-60}" --gpu
step wl-512 "$bin" bench window-level --size 512 --repeat "${REPEAT:-60}" --gpu
# MPR: the demo CT resliced at 1024² on the CPU and with the GPU reslicer on the Vulkan device.
step mpr-demo "$bin" bench mpr assets/demo --size 1024 --repeat "${REPEAT:-20}"
ls -la "$out"
