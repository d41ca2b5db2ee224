// scripts/libtorch.js: the one libtorch locator of the build and the loader, and the source
// list that CMakeLists.txt and binding.gyp share.
'use strict';
const test = require('ava');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');
const { tmpdir } = require('./helpers');
const { findLibtorch, fromPython, fromFolder, sources, selectPrebuild, linkArgs } = require('../scripts/libtorch');

const ROOT = path.join(__dirname, '..');
const SCRIPT = path.join(ROOT, 'scripts', 'libtorch.js');

/** A libtorch folder as the official zip lays it out (unversioned sonames), without real code. */
function fakeZip(version, { abi = 1, cuda = false } = {}) {
  const dir = tmpdir('inp-former-libtorch-');
  fs.mkdirSync(path.join(dir, 'lib'));
  for (const lib of ['libc10.so', 'libtorch_cpu.so', 'libtorch.so', ...(cuda ? ['libtorch_cuda.so', 'libc10_cuda.so'] : [])]) {
    fs.writeFileSync(path.join(dir, 'lib', lib), '');
  }
  const [major, minor, patch] = version.split('.');
  const inc = path.join(dir, 'include', 'torch', 'csrc', 'api', 'include', 'torch');
  fs.mkdirSync(inc, { recursive: true });
  fs.writeFileSync(path.join(inc, 'version.h'), `#define TORCH_VERSION_MAJOR ${major}\n#define TORCH_VERSION_MINOR ${minor}\n#define TORCH_VERSION_PATCH ${patch}\n`);
  fs.mkdirSync(path.join(dir, 'share', 'cmake', 'Torch'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'share', 'cmake', 'Torch', 'TorchConfig.cmake'), `if(CMAKE_SYSTEM_NAME STREQUAL "Linux")\n  set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=${abi}")\nendif()\n`);
  fs.writeFileSync(path.join(dir, 'build-version'), `${version}+cpu\n`);
  return dir;
}

test('the system libtorch is found with its version and soname version', (t) => {
  const found = findLibtorch({ python: false });
  t.log(JSON.stringify(found));
  t.falsy(found.error);
  t.is(found.source, 'system');
  t.regex(found.version, /^\d+\.\d+\.\d+$/);
  t.is(found.soVersion, found.version.split('.').slice(0, 2).join('.'), "Debian's libc10.so.X.Y matches torch/version.h");
  t.true(fs.existsSync(path.join(found.libDir, `libtorch_cpu.so.${found.soVersion}`)));
  t.true(found.includeDirs.some((d) => fs.existsSync(path.join(d, 'torch', 'torch.h'))), 'the C++ API headers');
});

test('LIBTORCH wins, and a zip layout is read: version, C++ ABI, CUDA, no prebuild, build command', (t) => {
  const dir = fakeZip('2.6.0', { abi: 0, cuda: true });
  const out = JSON.parse(execFileSync(process.execPath, [SCRIPT, 'json'], { env: { ...process.env, LIBTORCH: dir }, encoding: 'utf8' }));
  t.is(out.source, 'LIBTORCH');
  t.is(out.libDir, path.join(dir, 'lib'));
  t.is(out.version, '2.6.0');
  t.is(out.soVersion, null);
  t.is(out.cxxFlags, '-D_GLIBCXX_USE_CXX11_ABI=0');
  t.true(out.cuda);
  t.deepEqual(linkArgs(out).filter((a) => a.startsWith('-l')), ['-lc10', '-ltorch_cpu', '-ltorch', '-ltorch_cuda', '-lc10_cuda']);
  t.true(linkArgs(out).includes(`-Wl,-rpath,${path.join(dir, 'lib')}`), 'RUNPATH to the libtorch built against');
  t.is(selectPrebuild(ROOT, out).file, null, 'unversioned sonames: no Debian prebuild fits');
  // the loader's answer for that libtorch, from a package without a source build
  const pkg = tmpdir('inp-former-pkg-');
  for (const f of ['package.json', 'dist', 'scripts', 'prebuilds']) {
    if (fs.existsSync(path.join(ROOT, f))) fs.cpSync(path.join(ROOT, f), path.join(pkg, f), { recursive: true });
  }
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(pkg, 'node_modules'));
  const script = `try { require(${JSON.stringify(pkg)}).runtime(); console.log('loaded?!') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }`;
  const r = JSON.parse(execFileSync(process.execPath, ['-e', script], { env: { ...process.env, LIBTORCH: dir }, encoding: 'utf8' }));
  t.log(r.message);
  t.is(r.code, 'ERR_INP_NATIVE_LOAD');
  t.regex(r.message, /no prebuilt binary fits libtorch 2\.6\.0 at .* \(found through LIBTORCH;/);
  t.true(r.message.includes(`LIBTORCH=${dir} npm rebuild inp-former --build-from-source`));
});

test('a LIBTORCH that holds no libtorch is an error, not a silent fallback', (t) => {
  const r = spawnSync(process.execPath, [SCRIPT, 'prefix'], { env: { ...process.env, LIBTORCH: tmpdir() }, encoding: 'utf8' });
  t.is(r.status, 1);
  t.regex(r.stderr, /holds no lib\/libtorch_cpu\.so/);
  t.regex(r.stderr, /apt-get install libtorch1\.13/);
  t.is(fromFolder('LIBTORCH', tmpdir()), null);
});

test("Python's torch is found through python3 and resolved to the libraries it uses", (t) => {
  const py = fromPython();
  if (!py) return t.fail('python3-torch is installed by scripts/setup.sh');
  t.log(JSON.stringify(py));
  const system = findLibtorch({ python: false });
  t.is(py.source, 'python');
  t.regex(py.root, /torch$/);
  // Debian's python3-torch links torch/lib to the system's libtorch: the same libraries
  t.is(py.libDir, system.libDir);
  t.is(py.version.split('.').slice(0, 2).join('.'), system.soVersion);
});

test('CMakeLists.txt and binding.gyp build one source list, and it names every C++ file', (t) => {
  const onDisk = ['core', 'napi'].flatMap((d) => fs.readdirSync(path.join(ROOT, 'cpp', d)).filter((f) => f.endsWith('.cpp')).map((f) => `cpp/${d}/${f}`));
  t.deepEqual([...sources()].sort(), onDisk.sort());
  t.regex(fs.readFileSync(path.join(ROOT, 'CMakeLists.txt'), 'utf8'), /file\(STRINGS \$\{CMAKE_SOURCE_DIR\}\/cpp\/sources\.txt/);
  t.regex(fs.readFileSync(path.join(ROOT, 'binding.gyp'), 'utf8'), /<!@\(node scripts\/libtorch\.js sources\)/);
});
