#!/usr/bin/env node
// npm install hook. With a prebuilt binary for this platform and the libtorch that
// scripts/libtorch.js finds (LIBTORCH, the system's, Python's), nothing is built. Otherwise, or
// when asked (--build-from-source, INP_FORMER_BUILD_FROM_SOURCE=1), the addon is built from
// source: with cmake-js where it is installed (development: a checkout's devDependencies), else
// with node-gyp and binding.gyp (npm ships node-gyp), so users never install cmake-js.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { findLibtorch, selectPrebuild } = require('./libtorch');
const { installAdvice } = require('./advice');

const root = path.join(__dirname, '..');
const fromSource =
  process.env.npm_config_build_from_source === 'true' || process.env.INP_FORMER_BUILD_FROM_SOURCE === '1';

const libtorch = findLibtorch();
if (!fromSource) {
  const pick = selectPrebuild(root, libtorch);
  if (pick.file) {
    console.log(`inp-former: using ${path.relative(root, pick.file)} for libtorch ${libtorch.version} (${libtorch.libDir})`);
    process.exit(0);
  }
  if (libtorch.error && pick.available.length) {
    // Nothing to build against either: install anyway; the first use explains again, and a
    // libtorch installed later is picked up then without reinstalling.
    console.warn(`inp-former: ${libtorch.error}; prebuilds exist for libtorch ${pick.available.join(', ')}.\n${installAdvice()}`);
    process.exit(0);
  }
  console.log(
    `inp-former: no prebuilt binary for ${libtorch.error ? 'this platform' : `libtorch ${libtorch.version} in ${libtorch.libDir}`}; building from source`,
  );
}

function builder() {
  try {
    return { name: 'cmake-js', args: [require.resolve('cmake-js/bin/cmake-js'), 'compile', '--out', 'build'] };
  } catch {}
  // npm sets npm_config_node_gyp to its bundled node-gyp while it runs install scripts.
  const gyp = process.env.npm_config_node_gyp;
  if (gyp && fs.existsSync(gyp)) return { name: 'node-gyp', args: [gyp, 'rebuild'] };
  try {
    return { name: 'node-gyp', args: [require.resolve('node-gyp/bin/node-gyp.js'), 'rebuild'] };
  } catch {}
  return null;
}

const b = builder();
if (!b) {
  console.error('inp-former: neither cmake-js nor node-gyp is available to build the addon (npm normally provides node-gyp)');
  process.exit(1);
}
console.log(`inp-former: building with ${b.name} against ${libtorch.error ? 'no libtorch found' : `libtorch ${libtorch.version} (${libtorch.libDir})`}`);
const r = spawnSync(process.execPath, b.args, { cwd: root, stdio: 'inherit', env: { ...process.env, JOBS: process.env.JOBS ?? 'max' } });
if (r.status !== 0) {
  console.error(`inp-former: the source build failed. It needs a C++17 compiler (g++), cmake or node-gyp, and libtorch with its headers:\n${installAdvice()}`);
}
process.exit(r.status ?? 1);
