#!/usr/bin/env bash
# radclip's whole test suite, from a fresh clone: system packages, real DICOM fixtures from PyPI,
# formatting, lints, then every test of the workspace (GUI snapshot tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/deps.sh
bash tests/fixtures/fetch.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# OpenBLAS (installed by deps.sh) serves the CPU matrix products; Debian's 0.3.21 does not recognise
# recent Xeons, so name its kernels from the CPU's flags as `radclip` itself does at start-up.
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  if grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo && grep -qw avx512dq /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo; then
    export OPENBLAS_CORETYPE=SkylakeX
  elif grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
    export OPENBLAS_CORETYPE=Haswell
  fi
fi
export RADCLIP_EXPECT_BLAS=1
log="$(mktemp)"
set +e
cargo test --workspace 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
rm -f "$log"
echo "tests: $passed passed, $failed failed"
exit "$status"
