#!/usr/bin/env node
// Finds libtorch, the one way for every consumer: CMakeLists.txt and binding.gyp at build time,
// the addon loader (lib/native/native.ts) and `inp-former doctor` at run time. Order, as tch-rs does it:
//   1. LIBTORCH        the folder of a libtorch (official zip, CUDA build, a pip torch's folder)
//   2. the system's    Debian/Ubuntu packages (libtorch-dev / libtorch1.13 / libtorch2.6), /usr/local
//   3. Python's torch  `python3 -c 'import torch'` (INP_FORMER_PYTHON names another interpreter)
// Plain CommonJS with no dependencies: it runs before anything is built.
//
//   node scripts/libtorch.js [json|prefix|include|libs|version|cxxflags|sources]
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const MULTIARCH = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' }[process.arch];
const SYSTEM_PREFIXES = ['/usr', '/usr/local'];

/** `1.13` from `libc10.so.1.13` (Debian's versioned sonames) among `names`, or null for an unversioned libc10.so. */
function sonameVersion(names) {
  const m = names.map((n) => /^libc10\.so\.(\d+\.\d+)$/.exec(n)).find(Boolean);
  return m ? m[1] : null;
}

/** X.Y.Z from torch/version.h, the official zip's build-version file, or the soname. */
function versionOf(root, includeDirs, soVersion) {
  for (const inc of includeDirs) {
    try {
      const h = fs.readFileSync(path.join(inc, 'torch', 'csrc', 'api', 'include', 'torch', 'version.h'), 'utf8');
      const part = (k) => new RegExp(`#define TORCH_VERSION_${k} (\\d+)`).exec(h)?.[1];
      if (part('MAJOR')) return `${part('MAJOR')}.${part('MINOR')}.${part('PATCH')}`;
    } catch {}
  }
  try {
    return fs.readFileSync(path.join(root, 'build-version'), 'utf8').trim().replace(/\+.*/, '');
  } catch {}
  return soVersion;
}

/** TORCH_CXX_FLAGS of the libtorch's CMake package (the C++ ABI it was built with). */
function cxxFlagsOf(cmakeDir) {
  try {
    const c = fs.readFileSync(path.join(cmakeDir, 'TorchConfig.cmake'), 'utf8');
    // one literal, the ABI substituted when libtorch itself was configured
    const m = /set\(TORCH_CXX_FLAGS "([^"]*)"\)/.exec(c);
    if (m) return m[1];
  } catch {}
  return '';
}

function describe(source, root, libDir, includeDirs, cmakeDir, extra = {}) {
  let names;
  try {
    names = fs.readdirSync(libDir);
  } catch {
    return null;
  }
  if (!names.some((n) => /^libtorch_cpu\.so/.test(n))) return null;
  includeDirs = includeDirs.filter((d) => fs.existsSync(path.join(d, 'torch')));
  const api = includeDirs.map((d) => path.join(d, 'torch', 'csrc', 'api', 'include')).filter((d) => fs.existsSync(d));
  // libc10.so.X.Y (Debian) or libc10.so (official zip, pip): what a binary's NEEDED entries name.
  const soVersion = sonameVersion(names);
  return {
    source,
    root,
    libDir,
    includeDirs: [...includeDirs, ...api],
    cmakeDir: cmakeDir && fs.existsSync(path.join(cmakeDir, 'TorchConfig.cmake')) ? cmakeDir : null,
    version: extra.version ?? versionOf(root, includeDirs, soVersion),
    soVersion,
    cuda: names.some((n) => /^libtorch_cuda\.so/.test(n)),
    cxxFlags: cmakeDir ? cxxFlagsOf(cmakeDir) : extra.cxxFlags ?? '',
  };
}

function fromFolder(source, root) {
  return describe(source, root, path.join(root, 'lib'), [path.join(root, 'include')], path.join(root, 'share', 'cmake', 'Torch'));
}

function fromSystem() {
  for (const prefix of SYSTEM_PREFIXES) {
    for (const lib of [MULTIARCH && path.join(prefix, 'lib', MULTIARCH), path.join(prefix, 'lib64'), path.join(prefix, 'lib')]) {
      if (!lib) continue;
      const found = describe('system', prefix, lib, [path.join(prefix, 'include')], path.join(lib, 'cmake', 'Torch'));
      if (found) return found;
    }
  }
  return null;
}

const PY = 'import os, torch\nprint(os.path.dirname(torch.__file__))\nprint(torch.__version__)\nprint(int(torch._C._GLIBCXX_USE_CXX11_ABI))';

function fromPython() {
  const candidates = [...new Set([process.env.INP_FORMER_PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean))];
  for (const python of candidates) {
    const r = spawnSync(python, ['-c', PY], { encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) continue;
    const [dir, version, abi] = r.stdout.trim().split('\n');
    const libDir = path.join(dir, 'lib');
    // A distribution's python3-torch links its lib/ to the system libtorch: report that one.
    let realLib = libDir;
    try {
      realLib = path.dirname(fs.realpathSync(path.join(libDir, 'libc10.so')));
    } catch {}
    const found =
      realLib !== libDir
        ? describe('python', dir, realLib, [path.join(dir, 'include'), '/usr/include'], path.join(realLib, 'cmake', 'Torch'), {
            version: version.replace(/[+a].*$/, ''),
          })
        : describe('python', dir, libDir, [path.join(dir, 'include')], path.join(dir, 'share', 'cmake', 'Torch'), {
            version: version.replace(/\+.*$/, ''),
            cxxFlags: `-D_GLIBCXX_USE_CXX11_ABI=${abi}`,
          });
    if (found) return { ...found, python };
  }
  return null;
}

/**
 * The libtorch to build against or load, or null. `tried` lists where it looked.
 * @param {{ python?: boolean }} [options] python: false skips the (slow) Python look-up
 */
function findLibtorch(options = {}) {
  const tried = [];
  if (process.env.LIBTORCH) {
    const found = fromFolder('LIBTORCH', path.resolve(process.env.LIBTORCH));
    if (found) return { ...found, tried };
    // A set LIBTORCH that is wrong is an error, not a reason to use something else silently.
    return { error: `LIBTORCH=${process.env.LIBTORCH} holds no lib/libtorch_cpu.so`, tried: [`LIBTORCH=${process.env.LIBTORCH}`] };
  }
  tried.push('LIBTORCH (not set)');
  const system = fromSystem();
  if (system) return { ...system, tried };
  tried.push(`system: ${SYSTEM_PREFIXES.join(', ')}`);
  if (options.python !== false) {
    const python = fromPython();
    if (python) return { ...python, tried };
    tried.push('python3 -c "import torch" (no torch)');
  }
  return { error: 'libtorch was not found', tried };
}

/** The C++ sources of the addon: one list for CMakeLists.txt and binding.gyp. */
function sources() {
  return fs.readFileSync(path.join(__dirname, '..', 'cpp', 'sources.txt'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
}

/** Linker arguments: libtorch's libraries, and its folder as RUNPATH. */
function linkArgs(t) {
  const libs = ['-lc10', '-ltorch_cpu', '-ltorch'];
  // CUDA kernels register themselves when libtorch_cuda is loaded: keep it though nothing names it.
  const cuda = t.cuda ? ['-Wl,--no-as-needed', '-ltorch_cuda', '-lc10_cuda', '-Wl,--as-needed'] : [];
  return [`-L${t.libDir}`, `-Wl,-rpath,${t.libDir}`, '-Wl,--enable-new-dtags', ...libs, ...cuda];
}

/** The prebuild tag for a libtorch: `libtorch-1-13` for libc10.so.1.13; null when unversioned. */
function prebuildTag(t) {
  return t.soVersion ? `libtorch-${t.soVersion.replace('.', '-')}` : null;
}

/**
 * The prebuilt binary for this platform and this libtorch, or null; `available` lists the
 * libtorch versions the package has prebuilds for. node-gyp-build's own tag rules (N-API,
 * runtime, libc) apply first; the libtorch tag decides among what is left.
 */
function selectPrebuild(packageRoot, t) {
  const dir = path.join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`);
  let files = [];
  try {
    files = fs.readdirSync(dir).filter((f) => f.endsWith('.node'));
  } catch {}
  const gyp = require('node-gyp-build');
  const runtime = typeof process.versions.electron === 'string' ? 'electron' : 'node';
  const fits = files.map(gyp.parseTags).filter(Boolean).filter(gyp.matchTags(runtime, process.versions.modules));
  const tagged = fits
    .map((f) => ({ file: path.join(dir, f.file), tag: /\.libtorch-(\d+)-(\d+)\./.exec(f.file) }))
    .filter((f) => f.tag)
    .map((f) => ({ file: f.file, version: `${f.tag[1]}.${f.tag[2]}` }));
  const available = tagged.map((f) => f.version);
  const match = t && !t.error && t.soVersion ? tagged.find((f) => f.version === t.soVersion) : undefined;
  return { file: match ? match.file : null, available };
}

module.exports = { findLibtorch, sources, linkArgs, prebuildTag, selectPrebuild, fromPython, fromFolder };

if (require.main === module) {
  const what = process.argv[2] ?? 'json';
  if (what === 'sources') {
    console.log(sources().join('\n'));
    process.exit(0);
  }
  const t = findLibtorch();
  if (what === 'json') {
    console.log(JSON.stringify(t, null, 2));
    process.exit(t.error ? 1 : 0);
  }
  if (t.error) {
    console.error(require('./advice').notFoundMessage(t));
    process.exit(1);
  }
  const out = {
    prefix: () => t.root,
    cmake: () => t.cmakeDir ?? '',
    include: () => t.includeDirs.join('\n'),
    libs: () => linkArgs(t).join('\n'),
    version: () => t.version,
    cxxflags: () => t.cxxFlags,
  }[what];
  if (!out) {
    console.error('usage: node scripts/libtorch.js [json|prefix|cmake|include|libs|version|cxxflags|sources]');
    process.exit(2);
  }
  console.log(out());
}
