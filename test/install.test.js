// Packaging: the packed tarball installs from its prebuild with no compiler, and a missing
// libtorch is reported as a clear, typed error.
'use strict';
const test = require('ava');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');
const { tmpdir } = require('./helpers');

const ROOT = path.join(__dirname, '..');
// prebuildify moves build/Release/*.node into prebuilds/: take whichever the loader uses.
const addonPath = () => require('node-gyp-build').path(ROOT);

test.serial('npm pack -> npm install in a fresh project uses the prebuild, compiles nothing, and runs', async (t) => {
  // prebuildify (N-API) leaves prebuilds/linux-x64/*.node; it reuses the cmake-js build. The tests
  // of this file run one at a time: prebuildify moves the addon the other test copies.
  execFileSync('npm', ['run', 'prebuilds'], { cwd: ROOT, stdio: 'pipe' });
  const prebuilds = fs.readdirSync(path.join(ROOT, 'prebuilds', `${process.platform}-${process.arch}`));
  t.true(prebuilds.some((f) => f.endsWith('.node')), 'a prebuild exists');

  const work = tmpdir('inp-former-pack-');
  execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', work], { cwd: ROOT, stdio: 'pipe' });
  const tarball = fs.readdirSync(work).find((f) => f.endsWith('.tgz'));
  t.truthy(tarball);

  // Compilers and cmake that record any call and fail: the install must not need them.
  const shims = path.join(work, 'shims');
  const marker = path.join(work, 'compiler-was-called');
  fs.mkdirSync(shims);
  for (const tool of ['cc', 'c++', 'gcc', 'g++', 'cmake', 'make', 'ninja']) {
    fs.writeFileSync(path.join(shims, tool), `#!/bin/sh\necho "$0 $*" >> ${marker}\nexit 1\n`, { mode: 0o755 });
  }
  const app = path.join(work, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
  const env = { ...process.env, PATH: `${shims}:${process.env.PATH}` };
  delete env.npm_config_build_from_source;
  const install = spawnSync('npm', ['install', '--no-audit', '--no-fund', path.join(work, tarball)], { cwd: app, env, encoding: 'utf8' });
  t.log(install.stdout.split('\n').filter((l) => /inp-former/.test(l)).join('\n'));
  t.is(install.status, 0, install.stderr);
  t.false(fs.existsSync(marker), fs.existsSync(marker) ? fs.readFileSync(marker, 'utf8') : '');
  const installed = path.join(app, 'node_modules', 'inp-former');
  t.false(fs.existsSync(path.join(installed, 'build')), 'nothing was built in the installed package');

  const script = `
    const { InpFormer, runtime } = require('inp-former');
    (async () => {
      const m = await InpFormer.create({ encoder: { embedDim: 32, depth: 10, numHeads: 2, posGridSize: 8 }, cropSize: 56, imageSize: 64 });
      const r = await m.inferTensor(new Float32Array(2 * 3 * 56 * 56).fill(0.1), [2, 3, 56, 56]);
      await m.dispose();
      console.log(JSON.stringify({ torch: runtime().torchVersion, scores: r.scores.length, map: r.anomalyMaps.length }));
    })();`;
  const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: app, env, encoding: 'utf8' }));
  t.deepEqual({ scores: out.scores, map: out.map }, { scores: 2, map: 2 * 56 * 56 });
  const esm = execFileSync(process.execPath, ['--input-type=module', '-e', "import { runtime } from 'inp-former'; console.log(runtime().version)"], { cwd: app, env, encoding: 'utf8' });
  t.is(esm.trim(), require('../package.json').version);
});

test.serial('a missing libtorch is a NativeLoadError that names the library and how to install it', (t) => {
  const dir = tmpdir('inp-former-broken-');
  const release = path.join(dir, 'build', 'Release');
  fs.mkdirSync(release, { recursive: true });
  const broken = path.join(release, 'inp_former.node');
  fs.copyFileSync(addonPath(), broken);
  execFileSync('patchelf', ['--replace-needed', 'libtorch_cpu.so.1.13', 'libtorch_cpu_missing.so.1.13', broken]);
  const script = `
    const { runtime, NativeLoadError } = require(${JSON.stringify(ROOT)});
    try { runtime(); console.log('loaded?!'); }
    catch (e) { console.log(JSON.stringify({ typed: e instanceof NativeLoadError, name: e.name, code: e.code, message: e.message })); }`;
  const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { env: { ...process.env, INP_FORMER_NATIVE_DIR: dir }, encoding: 'utf8' }));
  t.log(out.message);
  t.true(out.typed);
  t.is(out.code, 'ERR_INP_NATIVE_LOAD');
  t.regex(out.message, /libtorch_cpu_missing\.so\.1\.13/);
  t.regex(out.message, /apt-get install libtorch-dev/);
  t.regex(out.message, /LIBTORCH=/);
});
