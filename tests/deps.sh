#!/usr/bin/env bash
# Installs the system packages radclip needs to build and test, if missing:
#   cmake                - builds the bundled CharLS (JPEG-LS codec)
#   mesa-vulkan-drivers  - lavapipe, the software Vulkan driver the GUI snapshot tests render with
#   libxkbcommon-x11-0   - keyboard handling of the windowed GUI on X11
#   libopenblas0         - OpenBLAS, loaded at run time for CLIP's CPU matrix products (optional for radclip,
#                          which falls back to candle's kernels; the tests expect it)
set -euo pipefail
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
for pkg in mesa-vulkan-drivers libxkbcommon-x11-0 libopenblas0; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
