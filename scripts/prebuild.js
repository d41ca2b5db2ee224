#!/usr/bin/env node
// npm run prebuilds: prebuildify, through node-gyp and binding.gyp, builds the addon against the
// libtorch scripts/libtorch.js finds and leaves it as
//   prebuilds/<platform>-<arch>/inp-former.libtorch-<X>-<Y>.napi.glibc.node
// tagged with the libtorch's soname version (Debian's libc10.so.X.Y), which is what the binary
// needs at run time. Run it once per libtorch (Debian 12: 1.13; Debian 13: 2.6, e.g. through
// scripts/trixie.sh) to fill the package with both. The build runs in a copy under
// .prebuildify-cache/ so that node-gyp's build/ does not replace the cmake-js one in build/.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { findLibtorch, prebuildTag } = require('./libtorch');

const root = path.join(__dirname, '..');
const t = findLibtorch();
if (t.error) {
  console.error(`inp-former: ${t.error}: nothing to build a prebuild against`);
  process.exit(1);
}
const tag = prebuildTag(t);
if (!tag) {
  console.error(`inp-former: ${t.libDir} has unversioned libtorch libraries (libc10.so): prebuilds are made against Debian's libtorch packages; build other libtorch builds from source`);
  process.exit(1);
}

const stage = path.join(root, '.prebuildify-cache', `src-${tag}`);
fs.rmSync(stage, { recursive: true, force: true });
fs.mkdirSync(path.join(stage, 'scripts'), { recursive: true });
for (const f of ['binding.gyp', 'package.json', 'cpp', 'scripts/libtorch.js', 'scripts/advice.js']) {
  fs.cpSync(path.join(root, f), path.join(stage, f), { recursive: true });
}
fs.symlinkSync(path.join(root, 'node_modules'), path.join(stage, 'node_modules'), 'dir');

const prebuildify = require.resolve('prebuildify/bin.js');
const started = Date.now();
const r = spawnSync(
  process.execPath,
  [prebuildify, '--napi', '--strip', `--name=inp-former.${tag}.napi`, '--tag-libc', '--cache', path.join(root, '.prebuildify-cache', 'node-gyp'), '--cwd', stage],
  { cwd: stage, stdio: 'inherit', env: { ...process.env, JOBS: process.env.JOBS ?? 'max' } },
);
if (r.status !== 0) process.exit(r.status ?? 1);

const platform = `${process.platform}-${process.arch}`;
const dest = path.join(root, 'prebuilds', platform);
fs.mkdirSync(dest, { recursive: true });
for (const f of fs.readdirSync(path.join(stage, 'prebuilds', platform))) {
  // A prebuild must load in any Node: it may need libtorch, never a libnode.
  const needed = spawnSync('patchelf', ['--print-needed', path.join(stage, 'prebuilds', platform, f)], { encoding: 'utf8' });
  if (needed.status === 0 && /^libnode\.so/m.test(needed.stdout)) {
    console.error(`inp-former: ${f} links ${/^libnode\.so.*$/m.exec(needed.stdout)[0]}: it would load only in this Node build`);
    process.exit(1);
  }
  // rename, then copy where the cache sits on another file system
  fs.copyFileSync(path.join(stage, 'prebuilds', platform, f), path.join(dest, f));
  console.log(`inp-former: prebuilds/${platform}/${f} (libtorch ${t.version} at ${t.libDir}, ${((Date.now() - started) / 1000).toFixed(0)} s)`);
}
fs.rmSync(stage, { recursive: true, force: true });
