// exportOnnx() and `inp-former export`: the graph written from our own weights, run in
// onnxruntime-node (installed by scripts/setup.sh into .test-deps, for tests only), gives the
// model's maps and scores.
'use strict';
const test = require('ava');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { InpFormer, InvalidArgumentError } = require('..');
const { FIXTURE, FIXTURE_SIZES, inputBatch, maxAbsDiff, tmpdir } = require('./helpers');

const ORT = path.join(__dirname, '..', '.test-deps', 'node_modules', 'onnxruntime-node');
const CLI = path.join(__dirname, '..', 'dist', 'cli.js');

function onnxruntime(t) {
  if (!fs.existsSync(ORT)) t.fail(`onnxruntime-node is not in ${ORT}: run scripts/setup.sh (it installs it there for the tests)`);
  return require(ORT);
}

async function compare(t, model, batch, what) {
  const ort = onnxruntime(t);
  const file = path.join(tmpdir(), 'model.onnx');
  await model.exportOnnx(file, { batch: batch.shape[0] });
  t.deepEqual(fs.readdirSync(path.dirname(file)), ['model.onnx'], 'written atomically: no temporary file left');
  const ours = await model.inferTensor(batch.data, batch.shape);
  const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 2, logSeverityLevel: 3 });
  t.deepEqual(session.inputNames, ['images']);
  t.deepEqual(session.outputNames, ['anomaly_map', 'score']);
  const out = await session.run({ images: new ort.Tensor('float32', batch.data, batch.shape) });
  const mapErr = maxAbsDiff(out.anomaly_map.data, ours.anomalyMaps);
  const scoreErr = maxAbsDiff(out.score.data, ours.scores);
  t.log(`${what}: max |onnxruntime - ours| map ${mapErr.toExponential(2)}, score ${scoreErr.toExponential(2)}`);
  t.true(mapErr <= 1e-5, `map error ${mapErr}`);
  t.true(scoreErr <= 1e-5, `score error ${scoreErr}`);
  return file;
}

test('an exported upstream model (registers, MLP biases) gives our maps and scores in onnxruntime', async (t) => {
  const model = await InpFormer.load(path.join(FIXTURE, 'inp_former.pth'), { ...FIXTURE_SIZES, threads: 2 });
  await compare(t, model, inputBatch([0, 1, 2]), 'reference-a, upstream checkpoint, batch 3 at 224');
  await t.throwsAsync(model.exportOnnx(path.join(tmpdir(), 'x.onnx'), { size: 100 }), { instanceOf: InvalidArgumentError, message: /100 is not a multiple of the patch size 14/ });
  await t.throwsAsync(model.exportOnnx(path.join(tmpdir(), 'x.onnx'), { batches: 2 }), { instanceOf: InvalidArgumentError, message: /did you mean 'batch'/ });
  await model.dispose();
});

test('an exported anomalib model (no MLP biases) and a random encoder without registers give our outputs too', async (t) => {
  const anomalib = await InpFormer.load(path.join(FIXTURE, 'anomalib_inp_former.ckpt'), { ...FIXTURE_SIZES, threads: 2 });
  await compare(t, anomalib, inputBatch([2]), 'reference-a, anomalib checkpoint, batch 1');
  await anomalib.dispose();
  const plain = await InpFormer.create({ encoder: { embedDim: 32, depth: 10, numHeads: 2, posGridSize: 8, seed: 3 }, imageSize: 64, cropSize: 56, seed: 4, threads: 2 });
  const data = new Float32Array(2 * 3 * 56 * 56).map((_, i) => Math.sin(i * 0.013) * 1.5);
  await compare(t, plain, { data, shape: [2, 3, 56, 56] }, 'random encoder without registers, batch 2 at 56');
  await plain.dispose();
});

test('CLI: inp-former export writes the graph and says its shapes', async (t) => {
  const ort = onnxruntime(t);
  const file = path.join(tmpdir(), 'cli.onnx');
  const r = spawnSync(process.execPath, [CLI, 'export', path.join(FIXTURE, 'inp_former.pth'), '--out', file, '--batch', '2', '--size', '224'], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /input 'images' \[2, 3, 224, 224\].*'anomaly_map' \[2, 1, 224, 224\], 'score' \[2\]/);
  const session = await ort.InferenceSession.create(file, { logSeverityLevel: 3 });
  const out = await session.run({ images: new ort.Tensor('float32', inputBatch([0, 1]).data, [2, 3, 224, 224]) });
  t.deepEqual(out.score.dims, [2]);
  const bad = spawnSync(process.execPath, [CLI, 'export', path.join(FIXTURE, 'inp_former.pth'), '--out', file, '--batch', 'two'], { encoding: 'utf8' });
  t.is(bad.status, 2);
  t.regex(bad.stderr, /expected an integer from 1 to 4096 for --batch, got 'two'/);
});
