// Side by side, in one run: inference of this package against the plain-PyTorch INP-Former
// (bench/reference/inp_former.py, checked against reference-a first) on the same random weights
// of the real shapes and the same input tensors. Python gets its best setting
// (OMP_WAIT_POLICY=PASSIVE) and the same thread count; the two alternate, each in its own
// process, and each row reports the median of `iters` timed runs after a warm-up, the peak RSS
// of each process, and how far the scores agree. Preprocessing is left out on both sides.
// onnxruntime-node (from .test-deps, as scripts/setup.sh installs it) runs the same network too,
// exported by this package's exportOnnx(), with as many intra-op threads.
// Python runs both with OMP_WAIT_POLICY=PASSIVE and without it, and keeps its better: on this
// AMD machine PASSIVE makes its matrix products fast but its softmax slow (92 ms for a
// [1, 6, 785, 785] softmax at 392 px), and without it the reverse (q @ k^T 51 ms instead of 8.5).
//   node bench/side-by-side.js [--rounds 2] [--quick | --only 'training']
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const PY = '/usr/bin/python3';
const RUN = path.join(__dirname, 'reference', 'run.py');
const FIXTURE = path.join(__dirname, '..', 'test', 'fixtures', 'reference-a');

const CONFIGS = [
  { name: 'ViT-S/14 reg4, 224 px, batch 8', dim: 384, depth: 12, heads: 6, registers: 4, size: 224, batch: 8, iters: 5 },
  { name: 'ViT-S/14, 224 px, batch 1', dim: 384, depth: 12, heads: 6, registers: 0, size: 224, batch: 1, iters: 9 },
  { name: 'ViT-S/14, 392 px, batch 1', dim: 384, depth: 12, heads: 6, registers: 0, size: 392, batch: 1, iters: 5 },
  { name: 'ViT-B/14 reg4, 392 px, batch 1', dim: 768, depth: 12, heads: 12, registers: 4, size: 392, batch: 1, iters: 3 },
  { name: 'ViT-S/14, 224 px, batch 8, training step', dim: 384, depth: 12, heads: 6, registers: 0, size: 224, batch: 8, iters: 5, train: 'auto' },
  { name: "ViT-S/14, 224 px, batch 8, training step, matmul 'libtorch'", dim: 384, depth: 12, heads: 6, registers: 0, size: 224, batch: 8, iters: 5, train: 'libtorch' },
  { name: "ViT-S/14, 224 px, batch 8, training step, matmul 'onednn'", dim: 384, depth: 12, heads: 6, registers: 0, size: 224, batch: 8, iters: 5, train: 'onednn' },
  // ours in bfloat16 against Python's float32 (the targets are ratios to float32)
  { name: 'ViT-S/14 reg4, 224 px, batch 8, ours bfloat16', dim: 384, depth: 12, heads: 6, registers: 4, size: 224, batch: 8, iters: 5, precision: 'bfloat16' },
  { name: 'ViT-B/14 reg4, 392 px, batch 1, ours bfloat16', dim: 768, depth: 12, heads: 12, registers: 4, size: 392, batch: 1, iters: 3, precision: 'bfloat16' },
  { name: 'ViT-S/14, 224 px, batch 8, training step, ours bfloat16 mixed precision', dim: 384, depth: 12, heads: 6, registers: 0, size: 224, batch: 8, iters: 5, train: 'auto', precision: 'bfloat16' },
];

async function nodeChild([weights, input, batch, size, iters, precision]) {
  const { InpFormer } = require('..');
  [batch, size, iters] = [batch, size, iters].map(Number);
  const model = await InpFormer.load(weights, { imageSize: size, cropSize: size, precision });
  const x = new Float32Array(fs.readFileSync(input).buffer.slice(0));
  const times = [];
  let scores;
  for (let i = 0; i <= iters; i++) {
    const t0 = performance.now();
    scores = (await model.inferTensor(x, [batch, 3, size, size])).scores;
    if (i) times.push((performance.now() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  await model.dispose();
  process.stdout.write(JSON.stringify({ imagesPerSecond: batch / times[Math.floor(times.length / 2)], peakRssMiB: process.resourceUsage().maxRSS / 1024, scores: [...scores] }));
}

// Training steps through fit() on in-memory batches: each 'step' progress event is stamped, and a
// step's time is the gap between two stamps (the first step warms up).
async function trainChild([weights, input, batch, size, iters, matmul, precision]) {
  const { InpFormer } = require('..');
  [batch, size, iters] = [batch, size, iters].map(Number);
  const model = await InpFormer.load(weights, { imageSize: size, cropSize: size });
  const data = new Float32Array(fs.readFileSync(input).buffer.slice(0));
  const stamps = [];
  const losses = [];
  const batches = Array.from({ length: iters + 1 }, () => ({ data, shape: [batch, 3, size, size] }));
  await model.fit(batches, {
    epochs: 1,
    matmul,
    precision,
    onProgress: (p) => {
      if (p.type !== 'step') return;
      stamps.push(performance.now());
      losses.push(p.loss);
    },
  });
  const times = stamps.slice(1).map((t, i) => (t - stamps[i]) / 1000).sort((a, b) => a - b);
  await model.dispose();
  process.stdout.write(JSON.stringify({ imagesPerSecond: batch / times[Math.floor(times.length / 2)], peakRssMiB: process.resourceUsage().maxRSS / 1024, losses }));
}

async function ortChild([weights, input, batch, size, iters, threads]) {
  [batch, size, iters, threads] = [batch, size, iters, threads].map(Number);
  const ort = require(path.join(__dirname, '..', '.test-deps', 'node_modules', 'onnxruntime-node'));
  const x = new Float32Array(fs.readFileSync(input).buffer.slice(0));
  const session = await ort.InferenceSession.create(weights, { intraOpNumThreads: threads, interOpNumThreads: 1, logSeverityLevel: 3 });
  const times = [];
  let scores;
  for (let i = 0; i <= iters; i++) {
    const t0 = performance.now();
    scores = (await session.run({ images: new ort.Tensor('float32', x, [batch, 3, size, size]) })).score.data;
    if (i) times.push((performance.now() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  process.stdout.write(JSON.stringify({ imagesPerSecond: batch / times[Math.floor(times.length / 2)], peakRssMiB: process.resourceUsage().maxRSS / 1024, scores: [...scores] }));
}

/** A row's random weights (made once per encoder shape in `dir`), its input, and where its ONNX export goes. */
function rowFiles(dir, c) {
  const weights = path.join(dir, `w-${c.dim}-${c.registers}.pth`);
  const input = path.join(dir, `x-${c.batch}-${c.size}.f32`);
  if (!fs.existsSync(weights)) execFileSync(PY, [RUN, 'weights', weights, '--dim', c.dim, '--depth', c.depth, '--heads', c.heads, '--registers', c.registers].map(String));
  execFileSync(PY, [RUN, 'input', input, '--batch', c.batch, '--size', c.size].map(String));
  return { weights, input, onnx: path.join(dir, `m-${c.dim}-${c.registers}-${c.batch}-${c.size}.onnx`) };
}

/** Our model of `weights` exported to ONNX at the row's batch and size (done in a child: its memory is not the bench's). */
function exportFor(weights, batch, size, file) {
  execFileSync(process.execPath, ['-e', `require(${JSON.stringify(path.join(__dirname, '..'))}).InpFormer.load(${JSON.stringify(weights)}, { imageSize: ${size}, cropSize: ${size} })
    .then((m) => m.exportOnnx(${JSON.stringify(file)}, { batch: ${batch} }).then(() => m.dispose()))`]);
}

function main() {
  const arg = (n, d) => (process.argv.includes(n) ? Number(process.argv[process.argv.indexOf(n) + 1]) : d);
  const rounds = arg('--rounds', 2);
  const threads = require('..').runtime().threads;
  const passive = { ...process.env, OMP_WAIT_POLICY: 'PASSIVE' };
  const active = { ...process.env };
  delete active.OMP_WAIT_POLICY;
  const check = execFileSync(PY, [path.join(__dirname, 'reference', 'inp_former.py'), FIXTURE], { encoding: 'utf8' });
  console.log(`Python model against reference-a:\n${check}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inp-former-side-'));
  const rows = [];
  const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : null;
  const configs = process.argv.includes('--quick') ? CONFIGS.slice(0, 1) : CONFIGS.filter((c) => !only || c.name.includes(only));
  for (const c of configs) {
    const { weights, input, onnx } = rowFiles(dir, c);
    const precision = c.precision ?? 'float32';
    const withOrt = !c.train && precision === 'float32';
    if (withOrt) exportFor(weights, c.batch, c.size, onnx);
    const py = [];
    const ours = [];
    const ort = [];
    const pyArgs = [c.train ? 'train' : 'infer', weights, input, '--batch', c.batch, '--size', c.size, '--iters', c.iters, '--threads', threads];
    for (let r = 0; r < rounds; r++) {
      for (const env of [passive, active]) {
        const r = JSON.parse(execFileSync(PY, [RUN, ...pyArgs].map(String), { env, encoding: 'utf8' }));
        py.push({ ...r, policy: env === passive ? 'PASSIVE' : 'default' });
      }
      const childArgs = c.train ? ['--train-child', weights, input, c.batch, c.size, c.iters, c.train, precision] : ['--node-child', weights, input, c.batch, c.size, c.iters, precision];
      ours.push(JSON.parse(execFileSync(process.execPath, [__filename, ...childArgs].map(String), { encoding: 'utf8' })));
      if (withOrt) ort.push(JSON.parse(execFileSync(process.execPath, [__filename, '--ort-child', onnx, input, c.batch, c.size, c.iters, threads].map(String), { encoding: 'utf8' })));
    }
    const best = (xs, k) => Math.max(...xs.map((x) => x[k]));
    const low = (xs, k) => Math.min(...xs.map((x) => x[k]));
    const relDiff = (a, b) => Math.max(...a.map((s, i) => Math.abs(s - b[i]) / Math.abs(s)));
    const pyBest = py.reduce((a, b) => (b.imagesPerSecond > a.imagesPerSecond ? b : a));
    const row = {
      config: c.name, python: pyBest.imagesPerSecond, pythonPolicy: pyBest.policy, ours: best(ours, 'imagesPerSecond'),
      pythonRss: low(py, 'peakRssMiB'), oursRss: low(ours, 'peakRssMiB'),
    };
    const line = `${row.config}: Python ${row.python.toFixed(2)} img/s (${row.pythonPolicy}), ours ${row.ours.toFixed(2)} (${(row.ours / row.python).toFixed(2)}x)`;
    if (c.train) {
      // the same weights and batch: the first step's loss agrees (the optimizers differ after it)
      row.firstLossDiff = relDiff([py[0].losses[0]], [ours[0].losses[0]]);
      // Python's step less its frozen encoder: the most any trainer whose trainable layers are
      // as fast as Python's (matmul 'libtorch''s OpenBLAS products, forward and backward) could gain
      row.pythonEncoderShare = pyBest.encoderShare;
      row.boundWithPythonsTrainableSpeed = 1 / (1 - pyBest.encoderShare);
      console.log(`${line}; peak RSS ${row.pythonRss.toFixed(0)} / ${row.oursRss.toFixed(0)} MiB; first-step loss agrees to ${row.firstLossDiff.toExponential(1)}; Python's encoder ${(100 * pyBest.encoderShare).toFixed(0)}% of its step (bound ${row.boundWithPythonsTrainableSpeed.toFixed(2)}x at its trainable speed)`);
    } else if (!withOrt) {
      row.scoreDiff = relDiff(py[0].scores, ours[0].scores);
      console.log(`${line}; peak RSS ${row.pythonRss.toFixed(0)} / ${row.oursRss.toFixed(0)} MiB; scores agree to ${row.scoreDiff.toExponential(1)}`);
    } else {
      Object.assign(row, {
        scoreDiff: relDiff(py[0].scores, ours[0].scores),
        onnxruntime: best(ort, 'imagesPerSecond'), onnxruntimeRss: low(ort, 'peakRssMiB'),
        onnxScoreDiff: relDiff(ort[0].scores, ours[0].scores),
      });
      console.log(`${line}, onnxruntime on our export ${row.onnxruntime.toFixed(2)} (ours ${(row.ours / row.onnxruntime).toFixed(2)}x of it); peak RSS ${row.pythonRss.toFixed(0)} / ${row.oursRss.toFixed(0)} / ${row.onnxruntimeRss.toFixed(0)} MiB; scores agree to ${row.scoreDiff.toExponential(1)} (Python), ${row.onnxScoreDiff.toExponential(1)} (onnxruntime)`);
    }
    rows.push(row);
  }
  fs.rmSync(dir, { recursive: true, force: true });
  return { threads, rows };
}

module.exports = { CONFIGS, rowFiles, exportFor };

if (process.argv[2] === '--node-child') nodeChild(process.argv.slice(3));
else if (process.argv[2] === '--train-child') trainChild(process.argv.slice(3));
else if (process.argv[2] === '--ort-child') ortChild(process.argv.slice(3));
else if (require.main === module) {
  const r = main();
  console.log(JSON.stringify(r));
}
