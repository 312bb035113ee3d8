#!/usr/bin/env bash
# radclip's whole test suite, from a fresh clone: system packages, real DICOM fixtures from PyPI,
# formatting, lints, then every test of the workspace (GUI snapshot tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/deps.sh
bash tests/fixtures/fetch.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
