#!/usr/bin/env node
// npm install hook: use a prebuilt binary (prebuilds/<platform>-<arch>/) when one fits this
// platform; only otherwise, or when asked (--build-from-source, INP_FORMER_BUILD_FROM_SOURCE=1),
// build from source with cmake-js against libtorch (LIBTORCH selects a non-Debian one).
'use strict';
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.join(__dirname, '..');
const fromSource =
  process.env.npm_config_build_from_source === 'true' || process.env.INP_FORMER_BUILD_FROM_SOURCE === '1';

if (!fromSource) {
  try {
    const found = require('node-gyp-build').path(root); // resolves only, loads nothing
    console.log(`inp-former: using ${path.relative(root, found)}`);
    process.exit(0);
  } catch {
    console.log('inp-former: no prebuilt binary for this platform; building from source (cmake, C++17, libtorch)');
  }
}
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const r = spawnSync(process.execPath, [cmakeJs, 'compile', '--out', 'build'], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  console.error(
    'inp-former: the source build failed. It needs cmake >= 3.18, a C++17 compiler and libtorch:\n' +
      '  Debian/Ubuntu: sudo apt-get install cmake g++ libtorch-dev libopenblas0-pthread\n' +
      '  Another libtorch (official zip, CUDA): LIBTORCH=/path/to/libtorch npm install inp-former --build-from-source',
  );
}
process.exit(r.status ?? 1);
