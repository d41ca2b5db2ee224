// runtime(), threads, the async contract and the typed error path of the native layer.
'use strict';
const test = require('ava');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { InpFormer, runtime, doctor, AbortError, InvalidArgumentError, DisposedError, DeviceError } = require('..');
const { findLibtorch } = require('../scripts/libtorch');
const { FIXTURE, FIXTURE_SIZES, inputBatch } = require('./helpers');
const pkg = require('../package.json');

const tiny = { embedDim: 32, depth: 10, numHeads: 2, posGridSize: 8 };

test('runtime() reports versions, devices, threads and bf16', (t) => {
  const r = runtime();
  t.is(r.version, pkg.version);
  t.regex(r.torchVersion, /^\d+\.\d+\.\d+$/);
  t.is(typeof r.cudaAvailable, 'boolean');
  t.is(r.cudaDeviceCount, r.cudaAvailable ? r.cudaDeviceCount : 0);
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  t.is(r.threads, cores, 'threads default to the cores this process may use');
  t.is(typeof r.bf16, 'boolean');
});

test('runtime() names the binary, the libtorch and BLAS in use, and the CPU features', (t) => {
  const r = runtime();
  const found = findLibtorch();
  t.log(`${r.binary.kind} ${r.binary.file}; libtorch ${r.libtorch.version} in ${r.libtorch.path}; BLAS ${r.blas.library} (${r.blas.openblasCore}); ${r.cpu.model}`);
  t.true(['source', 'prebuild', 'override'].includes(r.binary.kind));
  t.true(require('node:fs').existsSync(r.binary.file));
  t.is(r.libtorch.path, found.libDir, 'the libtorch mapped into the process is the one the locator finds');
  t.is(r.libtorch.version.split('.').slice(0, 2).join('.'), found.soVersion);
  t.regex(r.blas.library, /blas/, 'a BLAS library is mapped');
  if (/openblas/.test(r.blas.library)) t.truthy(r.blas.openblasCore, "OpenBLAS's kernel set is reported");
  // Debian's libtorch links oneDNN: its sgemm must be found and used for float32 products
  const maps = require('node:fs').readFileSync('/proc/self/maps', 'utf8');
  if (/\/libdnnl\.so/.test(maps) && process.env.INP_FORMER_CPU_GEMM !== 'libtorch') t.regex(r.cpuGemm, /^oneDNN \d+\.\d+\.\d+$/);
  else t.is(r.cpuGemm, 'libtorch');
  // and its packed API beside it (Debian's oneDNN 2.6 and 3.7 both export it), unless turned off
  t.is(r.cpuPackedWeights, /^oneDNN/.test(r.cpuGemm) && process.env.INP_FORMER_CPU_GEMM !== 'sgemm');
  t.is(r.tensorCache.enabled, process.env.INP_FORMER_TENSOR_CACHE !== '0');
  t.true(Number.isInteger(r.tensorCache.cachedBytes) && r.tensorCache.cachedBytes >= 0);
  const cpuinfo = require('node:fs').readFileSync('/proc/cpuinfo', 'utf8');
  t.is(r.cpu.features.avx512_bf16, /\bavx512_bf16\b/.test(cpuinfo));
  t.is(r.cpu.features.amx_tile, /\bamx_tile\b/.test(cpuinfo));
  // what precision 'auto' asks on the CPU: oneDNN (here whenever its sgemm was found) and the ISA
  const fastBf16 = r.cpu.features.avx512_bf16 || r.cpu.features.amx_bf16;
  if (/^oneDNN/.test(r.cpuGemm)) t.is(r.cpuBf16, fastBf16);
  else t.true(!r.cpuBf16 || fastBf16);
});

test('doctor() reports this set-up without throwing, and the CLI prints it', (t) => {
  const d = doctor();
  t.true(d.ok);
  t.is(d.libtorchFound.libDir, d.runtime.libtorch.path);
  const cli = spawnSync(process.execPath, [path.join(__dirname, '..', 'dist', 'cli.js'), 'doctor'], { encoding: 'utf8' });
  t.is(cli.status, 0, cli.stderr);
  t.regex(cli.stdout, /libtorch found: +\d+\.\d+\.\d+ in \S+ \(through system\)/);
  t.regex(cli.stdout, /libtorch loaded: +\d+\.\d+\.\d+ from /);
  t.regex(cli.stdout, /BLAS: +\S*blas/);
  t.regex(cli.stdout, /CPU: .*avx512_bf16 (yes|no)/);
});

test('ESM import gives the same API', async (t) => {
  const esm = await import(path.join(__dirname, '..', 'dist', 'index.mjs'));
  t.is(typeof esm.InpFormer.load, 'function');
  t.is(esm.runtime().version, pkg.version);
});

test('inferTensor rejects bad shapes and data with InvalidArgumentError', async (t) => {
  const model = await InpFormer.create({ encoder: tiny, cropSize: 112, imageSize: 128 });
  await t.throwsAsync(model.inferTensor(new Float32Array(10), [1, 3, 112, 112]), { instanceOf: InvalidArgumentError, message: /37632/ });
  await t.throwsAsync(model.inferTensor(new Float32Array(3 * 100 * 100), [1, 3, 100, 100]), { instanceOf: InvalidArgumentError, message: /multiples of the patch size/ });
  await t.throwsAsync(model.inferTensor(new Float32Array(4 * 112 * 112), [1, 4, 112, 112]), { instanceOf: InvalidArgumentError });
  await t.throwsAsync(model.inferTensor([1, 2, 3], [1, 3, 1, 1]), { instanceOf: InvalidArgumentError });
  await model.dispose();
});

test('native errors arrive typed, with the C++ message and no backtrace', async (t) => {
  // targetLayers beyond the encoder: the core validates and throws; the Promise rejects
  const err = await t.throwsAsync(InpFormer.create({ encoder: tiny, targetLayers: [2, 3, 4, 5, 6, 7, 8, 12], cropSize: 112, imageSize: 128 }), {
    instanceOf: InvalidArgumentError,
  });
  t.regex(err.message, /targetLayers has layer 12 but the encoder has 10 blocks/);
  t.notRegex(err.message, /Exception raised from|frame #/);
});

test('an unavailable device is a DeviceError', async (t) => {
  if (runtime().cudaAvailable) return t.pass('CUDA present: nothing to check');
  await t.throwsAsync(InpFormer.load(path.join(FIXTURE, 'inp_former.pth'), { ...FIXTURE_SIZES, device: 'cuda' }), { instanceOf: DeviceError });
  await t.throwsAsync(InpFormer.load(path.join(FIXTURE, 'inp_former.pth'), { ...FIXTURE_SIZES, device: 'tpu' }), { instanceOf: InvalidArgumentError });
});

test('inference runs off the event loop and dispose() waits for it', async (t) => {
  const model = await InpFormer.load(path.join(FIXTURE, 'inp_former.pth'), FIXTURE_SIZES);
  const input = inputBatch([0, 1, 2]);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const pending = [model.inferTensor(input.data, input.shape), model.inferTensor(input.data, input.shape)];
  const disposed = model.dispose();
  const results = await Promise.all(pending);
  await disposed;
  clearInterval(timer);
  t.is(results.length, 2);
  t.true(ticks > 0, 'timers fired while the native thread worked');
  await t.throwsAsync(model.inferTensor(input.data, input.shape), { instanceOf: DisposedError });
});

test('two models computing at the same time both finish (OpenBLAS must not be entered twice)', async (t) => {
  t.timeout(120_000);
  const [a, b] = await Promise.all([0, 1].map(() => InpFormer.load(path.join(FIXTURE, 'inp_former.pth'), { ...FIXTURE_SIZES, threads: 2 })));
  const input = inputBatch([0, 1, 2]);
  const jobs = [];
  for (let i = 0; i < 10; i++) {
    jobs.push(a.inferTensor(input.data, input.shape), b.inferTensor(input.data, input.shape));
  }
  jobs.push(a.fit([input], { epochs: 3, warmupSteps: 1 }));
  const results = await Promise.all(jobs.slice(0, 20));
  await jobs[20];
  t.is(results.length, 20);
  t.deepEqual(results[1].scores, results[3].scores);
  await Promise.all([a.dispose(), b.dispose()]);
});

test('spawning child processes while a model computes does not hang (OpenBLAS fork handler)', async (t) => {
  t.timeout(120_000);
  const model = await InpFormer.load(path.join(FIXTURE, 'inp_former.pth'), FIXTURE_SIZES);
  const input = inputBatch([0, 1, 2]);
  for (let i = 0; i < 25; i++) {
    const pending = model.inferTensor(input.data, input.shape);
    for (let k = 0; k < 3; k++) t.is(spawnSync('true').status, 0);
    await pending;
  }
  await model.dispose();
  t.pass();
});

test('load() reports its stages and stops on its signal between them, keeping nothing', async (t) => {
  const file = path.join(FIXTURE, 'inp_former.pth');
  const stages = [];
  const model = await InpFormer.load(file, { ...FIXTURE_SIZES, onProgress: (e) => stages.push(`${e.stage}:${path.basename(e.file)}`) });
  t.deepEqual(stages, ['read:inp_former.pth', 'build:inp_former.pth', 'ready:inp_former.pth']);
  await model.dispose();

  await t.throwsAsync(InpFormer.load(file, { ...FIXTURE_SIZES, signal: AbortSignal.abort() }), { instanceOf: AbortError, message: /aborted before the 'read' stage/ });
  // aborted while the network is built: the built model is disposed, the call rejects
  const ac = new AbortController();
  const err = await t.throwsAsync(InpFormer.load(file, { ...FIXTURE_SIZES, signal: ac.signal, onProgress: (e) => e.stage === 'build' && queueMicrotask(() => ac.abort()) }), { instanceOf: AbortError });
  t.regex(err.message, /while the network was built/);
  // a callback that throws is a warning, not a failed load
  const warnings = [];
  const onWarning = (w) => w.code === 'INP_FORMER' && warnings.push(w.message);
  process.on('warning', onWarning);
  try {
    const m = await InpFormer.load(file, { ...FIXTURE_SIZES, onProgress: () => { throw new Error('boom'); } });
    await m.dispose();
    await new Promise((r) => setImmediate(r));
  } finally {
    process.off('warning', onWarning);
  }
  t.true(warnings.some((w) => /load\(\) onProgress threw \(ignored\): boom/.test(w)), warnings.join('\n'));
  await t.throwsAsync(InpFormer.load(file, { signal: 'stop' }), { instanceOf: InvalidArgumentError, message: /signal/ });
});

test("loading the addon leaves OpenMP's wait policy to libgomp's default and the user", (t) => {
  const probe = (extra) => {
    const env = { ...process.env, ...extra };
    delete env.GOMP_SPINCOUNT;
    if (!('OMP_WAIT_POLICY' in extra)) delete env.OMP_WAIT_POLICY;
    const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(path.join(__dirname, '..'))}).runtime(); console.log(JSON.stringify([process.env.GOMP_SPINCOUNT ?? null, process.env.OMP_WAIT_POLICY ?? null]))`], { env, encoding: 'utf8' });
    t.is(r.status, 0, r.stderr);
    return JSON.parse(r.stdout);
  };
  // libgomp's own default (a spin of 300000 rounds before sleeping) is the fastest for inference;
  // exact training keeps the workers asleep itself (cpp/core/trainer.cpp)
  t.deepEqual(probe({}), [null, null]);
  t.deepEqual(probe({ OMP_WAIT_POLICY: 'PASSIVE' }), [null, 'PASSIVE']);
});

test('sharp and onnx-proto load on first use, not with the package (their memory is for image and export users)', (t) => {
  const script = `
    const { InpFormer } = require(${JSON.stringify(path.join(__dirname, '..'))});
    const loaded = (name) => Object.keys(require.cache).some((k) => k.includes('/node_modules/' + name + '/'));
    (async () => {
      const m = await InpFormer.create({ encoder: ${JSON.stringify(tiny)}, imageSize: 112, cropSize: 112 });
      await m.inferTensor(new Float32Array(3 * 112 * 112), [1, 3, 112, 112]);
      const before = [loaded('sharp'), loaded('onnx-proto')];
      const file = require('node:path').join(require('node:os').tmpdir(), 'inp-lazy-' + process.pid + '.onnx');
      await m.exportOnnx(file);
      require('node:fs').rmSync(file);
      await m.dispose();
      console.log(JSON.stringify({ before, afterExport: loaded('onnx-proto') }));
    })();`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stdout), { before: [false, false], afterExport: true });
});
