#!/usr/bin/env bash
# Set up a fresh Debian 12 or 13 machine for inp-former development or use from this checkout:
# system packages (libtorch, a fast BLAS, a compiler, python3-torch for the cross-checks),
# redis-server for the queue's tests (inp-former/queue; the tests start their own on 127.0.0.1),
# chromium and fonts-dejavu-core for the visual report's tests (opened in headless Chromium; the
# panels' text is drawn with the system's fonts), then npm dependencies, the native addon and the TypeScript build.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
PACKAGES="libtorch-dev libopenblas0-pthread python3-torch cmake g++ make patchelf redis-server chromium fonts-dejavu-core"
if ! dpkg -s $PACKAGES >/dev/null 2>&1; then
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  # libopenblas0-pthread: Debian's default reference BLAS makes matrix products ~35x slower
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES
fi
# all cores for the native build, whichever generator CMake picks (Make has no default -j)
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
npm ci --no-audit --no-fund   # its install step builds the addon (cmake-js) when no prebuild fits
npm run build
# onnxruntime-node, for the ONNX export's tests only (never a dependency): in a folder of its own,
# without its install script, which would download from outside; its CPU binaries ship in the package
npm install --prefix .test-deps --no-save --no-audit --no-fund --ignore-scripts onnxruntime-node@1.30.0 >/dev/null
