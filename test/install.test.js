// Packaging: the packed tarball installs from its prebuild with no compiler, and a missing
// libtorch is reported as a clear, typed error.
'use strict';
const test = require('ava');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');
const { tmpdir } = require('./helpers');
const { findLibtorch, selectPrebuild } = require('../scripts/libtorch');

const ROOT = path.join(__dirname, '..');
const libtorch = findLibtorch();

test.serial('npm pack -> npm install in a fresh project picks the prebuild of this libtorch, compiles nothing, and runs', async (t) => {
  t.falsy(libtorch.error, 'a libtorch to test against');
  // .ci/run makes the prebuilds of both libtorch versions before the suite (npm run prebuilds,
  // node-gyp); a checkout without the one for this libtorch makes it here (~3 minutes).
  if (!selectPrebuild(ROOT, libtorch).file) execFileSync('npm', ['run', 'prebuilds'], { cwd: ROOT, stdio: 'pipe' });
  const { file: expected, available } = selectPrebuild(ROOT, libtorch);
  t.truthy(expected, 'a prebuild for this libtorch exists');
  t.log(`libtorch ${libtorch.version} in ${libtorch.libDir}; prebuilds in the package: libtorch ${available.join(', ')}`);

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
  t.false(fs.existsSync(path.join(app, 'node_modules', 'cmake-js')), 'cmake-js is not installed for users');

  const script = `
    const { InpFormer, runtime } = require('inp-former');
    (async () => {
      const m = await InpFormer.create({ encoder: { embedDim: 32, depth: 10, numHeads: 2, posGridSize: 8 }, cropSize: 56, imageSize: 64 });
      const r = await m.inferTensor(new Float32Array(2 * 3 * 56 * 56).fill(0.1), [2, 3, 56, 56]);
      await m.dispose();
      const rt = runtime();
      console.log(JSON.stringify({ binary: rt.binary, libtorch: rt.libtorch, scores: r.scores.length, map: r.anomalyMaps.length }));
    })();`;
  const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: app, env, encoding: 'utf8' }));
  t.log(JSON.stringify(out));
  t.deepEqual({ scores: out.scores, map: out.map }, { scores: 2, map: 2 * 56 * 56 });
  t.is(out.binary.kind, 'prebuild');
  t.is(path.basename(out.binary.file), path.basename(expected), 'the prebuild made for this libtorch');
  t.is(out.libtorch.path, libtorch.libDir, 'libtorch loaded from where it was found');
  t.is(out.libtorch.version.split('.').slice(0, 2).join('.'), libtorch.soVersion);

  // doctor reports this set-up; with no prebuild for this libtorch, one clear error with the
  // exact build command, printed whole by the CLI (once prefixed).
  const cli = path.join(installed, 'dist', 'cli.js');
  const doc = spawnSync(process.execPath, [cli, 'doctor', '--json'], { cwd: app, env, encoding: 'utf8' });
  t.is(doc.status, 0, doc.stderr);
  const d = JSON.parse(doc.stdout);
  t.is(d.runtime.binary.kind, 'prebuild');
  t.is(d.libtorchFound.libDir, libtorch.libDir);
  t.regex(d.runtime.blas.library, /blas/);
  const shipped = path.join(installed, 'prebuilds', `${process.platform}-${process.arch}`, path.basename(expected));
  fs.renameSync(shipped, shipped.replace(/libtorch-\d+-\d+/, 'libtorch-0-1'));
  const none = spawnSync(process.execPath, [cli, 'doctor'], { cwd: app, env, encoding: 'utf8' });
  t.is(none.status, 1);
  t.regex(none.stdout, new RegExp(`no prebuilt binary fits libtorch ${libtorch.version.replace(/\./g, '\\.')}`));
  t.true(none.stdout.includes(`LIBTORCH=${libtorch.root} npm rebuild inp-former --build-from-source`), none.stdout);
  const fit = spawnSync(process.execPath, [cli, 'fit', app, '--out', path.join(work, 'x.pth')], { cwd: app, env, encoding: 'utf8' });
  t.is(fit.status, 1);
  t.regex(fit.stderr, /^inp-former: no prebuilt binary fits/m);
  t.false(fit.stderr.includes('inp-former: inp-former:'));
  t.true(fit.stderr.includes('npm rebuild inp-former --build-from-source'), 'the whole message, advice included');
  fs.renameSync(shipped.replace(/libtorch-\d+-\d+/, 'libtorch-0-1'), shipped);

  const esm = execFileSync(process.execPath, ['--input-type=module', '-e', "import { runtime } from 'inp-former'; console.log(runtime().version)"], { cwd: app, env, encoding: 'utf8' });
  t.is(esm.trim(), require('../package.json').version);
});

test.serial('a missing libtorch is a NativeLoadError that names the library and how to install it', (t) => {
  const dir = tmpdir('inp-former-broken-');
  const release = path.join(dir, 'build', 'Release');
  fs.mkdirSync(release, { recursive: true });
  const broken = path.join(release, 'inp_former.node');
  fs.copyFileSync(path.join(ROOT, 'build', 'Release', 'inp_former.node'), broken);
  // whatever this libtorch calls it: libtorch_cpu.so.1.13, libtorch_cpu.so.2.6, libtorch_cpu.so
  const needed = execFileSync('patchelf', ['--print-needed', broken], { encoding: 'utf8' }).split('\n').find((l) => l.startsWith('libtorch_cpu.so'));
  const missing = needed.replace('libtorch_cpu', 'libtorch_cpu_missing');
  execFileSync('patchelf', ['--replace-needed', needed, missing, broken]);
  const script = `
    const { runtime, NativeLoadError } = require(${JSON.stringify(ROOT)});
    try { runtime(); console.log('loaded?!'); }
    catch (e) { console.log(JSON.stringify({ typed: e instanceof NativeLoadError, name: e.name, code: e.code, message: e.message })); }`;
  const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { env: { ...process.env, INP_FORMER_NATIVE_DIR: dir }, encoding: 'utf8' }));
  t.log(out.message);
  t.true(out.typed);
  t.is(out.code, 'ERR_INP_NATIVE_LOAD');
  t.true(out.message.includes(missing), 'names the library');
  t.regex(out.message, /apt-get install libtorch1\.13 /);
  t.regex(out.message, /apt-get install libtorch2\.6 /);
  t.regex(out.message, /LIBTORCH=/);
});
