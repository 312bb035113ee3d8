#!/bin/bash
# Builds the `cuda` radclip here (no GPU, no CUDA toolkit needed) and packs it for the GPU machine:
# target/cuda-carry/radclip.gz (~24 MB; the stripped binary is ~80 MB, over the 64 MiB a device call
# carries). Measured recipe of docs/cuda.md: nvcc and headers from PyPI pinned to 13.0, candle's kernels
# for compute capability 9.0 (H100/H200), and for the link only: cuBLAS, cuRAND and NVRTC from their PyPI
# wheels and a stub libcuda.so.1 with the driver symbols cudarc calls (the GPU machine's own libraries are
# used at run time). The first build takes ~25 minutes on 2 cores; later ones reuse target/cuda.
set -euo pipefail
cd "$(dirname "$0")/../.."
cu=${CU13:-/opt/cu13}
link=${CU13_LINK:-/opt/cu13-link}
if [ ! -x "$cu/nvidia/cu13/bin/nvcc" ]; then
  pip install --no-deps --target "$cu" nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 \
    nvidia-nvvm==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85
fi
export CUDA_HOME=$cu/nvidia/cu13 PATH=$cu/nvidia/cu13/bin:$PATH CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
if [ ! -e "$link/libcublas.so" ]; then
  tmp=$(mktemp -d)
  pip download --no-deps -q -d "$tmp" nvidia-cuda-nvrtc==13.0.88 nvidia-curand nvidia-cublas
  mkdir -p "$link"
  for w in "$tmp"/*.whl; do unzip -q -o "$w" 'nvidia/cu13/lib/*.so*' -d "$tmp/x"; done
  for lib in libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13; do
    cp "$tmp/x/nvidia/cu13/lib/$lib" "$link/"
    ln -sf "$lib" "$link/${lib%%.so*}.so"
  done
  ln -sf "$CUDA_HOME/lib/libcudart.so.13" "$link/libcudart.so"
  rm -rf "$tmp"
fi
# The stub needs cudarc compiled first (its driver symbols): build, and on a missing libcuda make it.
if ! LIBRARY_PATH=$link cargo build --release --features cuda -p radclip --target-dir target/cuda; then
  nm -u target/cuda/release/deps/libcudarc-*.rlib 2>/dev/null | awk '{print $2}' | grep -E '^cu[A-Z]' |
    sort -u | awk '{print "int " $1 "(void) { return 999; }"}' >"$link/cuda_stub.c"
  gcc -shared -fPIC "$link/cuda_stub.c" -o "$link/libcuda.so" -Wl,-soname,libcuda.so.1
  LIBRARY_PATH=$link cargo build --release --features cuda -p radclip --target-dir target/cuda
fi
mkdir -p target/cuda-carry
strip -o target/cuda-carry/radclip.stripped target/cuda/release/radclip
gzip -9 -c target/cuda-carry/radclip.stripped >target/cuda-carry/radclip.gz
rm target/cuda-carry/radclip.stripped
ls -la target/cuda-carry
# A check that it starts and falls back here (the stub's cuInit fails): one sentence, then the CPU.
LD_LIBRARY_PATH=$link:$CUDA_HOME/lib target/cuda/release/radclip embed --text "right pleural effusion" \
  --model tests/fixtures/clip/tiny-fullvocab --device cuda --json >/dev/null
