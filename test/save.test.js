// model.save(): a torch.save file Python reads as upstream's state dict; InpFormer.load restores it.
'use strict';
const test = require('ava');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { InpFormer } = require('..');
const { FIXTURE, inputBatch, tmpdir, FIXTURE_SIZES } = require('./helpers');

const PYTHON = '/usr/bin/python3';
const compare = (saved, reference) =>
  JSON.parse(execFileSync(PYTHON, [path.join(__dirname, 'python', 'compare_state_dict.py'), saved, reference], { encoding: 'utf8' }));

const input = inputBatch([0, 1, 2]);

test('saved upstream model: torch.load sees exactly reference-a keys, shapes, dtypes and values', async (t) => {
  const dir = tmpdir();
  const file = path.join(dir, 'model.pth');
  const model = await InpFormer.load(path.join(FIXTURE, 'inp_former.pth'), { ...FIXTURE_SIZES, threads: 2 });
  const before = await model.inferTensor(input.data, input.shape);
  await model.save(file);
  await model.dispose();
  t.deepEqual(fs.readdirSync(dir), ['model.pth'], 'no temporary file left behind');

  const report = compare(file, path.join(FIXTURE, 'inp_former.pth'));
  t.log(JSON.stringify({ ...report, metadata: undefined }));
  t.is(report.type, 'OrderedDict');
  t.true(report.same_keys);
  t.deepEqual(report.shape_or_dtype_mismatch, []);
  t.is(report.max_abs_diff, 0);
  t.true(report.strict_load);
  t.truthy(report.metadata.inp_former.config);

  const reloaded = await InpFormer.load(file, { threads: 2 });
  t.is(reloaded.config.source.kind, 'inp-former');
  t.is(reloaded.config.cropSize, 224, 'preprocessing sizes travel with the model');
  t.deepEqual(reloaded.config.network, (await InpFormer.load(path.join(FIXTURE, 'inp_former.pth'), FIXTURE_SIZES)).config.network);
  const after = await reloaded.inferTensor(input.data, input.shape);
  t.deepEqual(after.scores, before.scores);
  t.deepEqual(after.anomalyMaps, before.anomalyMaps);
  await reloaded.dispose();
});

test('saved anomalib model: zero MLP biases for upstream, thresholds kept, bias-free again on load', async (t) => {
  const dir = tmpdir();
  const file = path.join(dir, 'from-anomalib.pth');
  // threads fixed: Python runs in between (compare), a neighbour the default would adapt to, and
  // the two inferences are compared bit for bit
  const model = await InpFormer.load(path.join(FIXTURE, 'anomalib_inp_former.ckpt'), { ...FIXTURE_SIZES, threads: 2 });
  const before = await model.inferTensor(input.data, input.shape);
  await model.save(file);
  const thresholds = model.thresholds;
  await model.dispose();
  const report = compare(file, path.join(FIXTURE, 'inp_former.pth'));
  t.true(report.same_keys);
  t.deepEqual(report.shape_or_dtype_mismatch, []);
  t.true(report.strict_load);
  const reloaded = await InpFormer.load(file, { threads: 2 });
  t.false(reloaded.config.network.mlpBias);
  t.deepEqual(reloaded.thresholds, thresholds);
  const after = await reloaded.inferTensor(input.data, input.shape);
  t.deepEqual(after.scores, before.scores);
  await reloaded.dispose();
});

test('saving where a folder cannot be made is an error naming the target, at once (it spun under /proc)', async (t) => {
  const { InvalidArgumentError } = require('..');
  const model = await InpFormer.create({ encoder: { embedDim: 32, depth: 10, numHeads: 2, posGridSize: 8 }, imageSize: 64, cropSize: 56 });
  const err = await t.throwsAsync(model.save('/proc/nope/x.pth'), { instanceOf: InvalidArgumentError });
  t.regex(err.message, /^cannot save \/proc\/nope\/x\.pth: cannot create folder \/proc\/nope/);
  const file = path.join(tmpdir(), 'a-file');
  fs.writeFileSync(file, 'x');
  await t.throwsAsync(model.save(path.join(file, 'sub', 'x.pth')), { instanceOf: InvalidArgumentError, message: /a-file is not a folder/ });
  const nested = path.join(tmpdir(), 'new', 'deeper', 'model.pth');
  await model.save(nested);
  t.true(fs.statSync(nested).size > 0, 'missing parents are still made');
  await model.dispose();
});

/** Run `fn` on a fresh tmpfs of `size` (root only), unmounted afterwards whatever happens. */
async function onTmpfs(size, fn) {
  const disk = tmpdir();
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', disk]);
  try {
    await fn(disk);
  } finally {
    execFileSync('umount', [disk]);
  }
}

test('a full disk is a CheckpointError naming the target; no temp file and no new folder left', async (t) => {
  const { CheckpointError } = require('..');
  if (process.getuid() !== 0) return t.log('skipped: mounting a small tmpfs needs root (CI runs as root)');
  await onTmpfs('64k', async (disk) => {
    const model = await InpFormer.create({ encoder: { embedDim: 32, depth: 10, numHeads: 2, posGridSize: 8 }, imageSize: 64, cropSize: 56 });
    const target = path.join(disk, 'new-folder', 'model.pth');
    const err = await t.throwsAsync(model.save(target), { instanceOf: CheckpointError });
    t.true(err.message.startsWith(`${target}: cannot write: ENOSPC`), err.message);
    t.deepEqual(fs.readdirSync(disk), [], 'neither the temp file nor the folder made for it');
    await model.dispose();
  });
});

test('a read-only target is an error naming the target, for checkpoints and heatmaps; the old files are kept', async (t) => {
  const { CheckpointError, FileWriteError } = require('..');
  if (process.getuid() !== 0) return t.log('skipped: a read-only mount needs root (CI runs as root; root ignores file modes)');
  await onTmpfs('1m', async (disk) => {
    const model = await InpFormer.create({ encoder: { embedDim: 32, depth: 10, numHeads: 2, posGridSize: 8 }, imageSize: 64, cropSize: 56 });
    t.teardown(() => model.dispose());
    const target = path.join(disk, 'model.pth');
    fs.writeFileSync(target, 'previous');
    execFileSync('mount', ['-o', 'remount,ro', disk]);
    const err = await t.throwsAsync(model.save(target), { instanceOf: CheckpointError });
    t.true(err.message.startsWith(`${target}: cannot write: EROFS`), err.message);
    const inNewFolder = path.join(disk, 'sub', 'model.pth');
    const err2 = await t.throwsAsync(model.save(inNewFolder), { instanceOf: Error });
    t.true(err2.message.includes(inNewFolder) && /EROFS|read-only/.test(err2.message), err2.message);
    const heatmap = path.join(disk, 'map.png');
    const img = { data: new Uint8Array(64 * 64 * 3), width: 64, height: 64, channels: 3 };
    const err3 = await t.throwsAsync(model.predict(img, { heatmap }), { instanceOf: FileWriteError });
    t.true(err3.message.startsWith(`${heatmap}: cannot write: EROFS`), err3.message);
    t.deepEqual(fs.readdirSync(disk), ['model.pth']);
    t.is(fs.readFileSync(target, 'utf8'), 'previous', 'the old file is untouched');
  });
});

// A float32 CPU model keeps its wider linear weights in oneDNN's packed layout once it has
// inferred (runtime().cpuPackedWeights); whatever reads the weights after gets them bit for bit.
test('weights packed for inference come back exactly, and packed products score as unpacked ones', async (t) => {
  const options = { encoder: { embedDim: 384, depth: 10, numHeads: 6, posGridSize: 4, seed: 7 }, imageSize: 56, cropSize: 56, seed: 7, threads: 2 };
  const model = await InpFormer.create(options);
  t.teardown(() => model.dispose());
  const x = new Float32Array(2 * 3 * 56 * 56).map((_, i) => Math.sin(i / 7));
  const before = await model.stateDict();
  const scores = [...(await model.inferTensor(x, [2, 3, 56, 56])).scores];
  const after = await model.stateDict();
  t.deepEqual(after.map((p) => p.name), before.map((p) => p.name));
  for (let i = 0; i < before.length; i++) {
    t.true(Buffer.from(after[i].data.buffer, after[i].data.byteOffset, after[i].data.byteLength)
      .equals(Buffer.from(before[i].data.buffer, before[i].data.byteOffset, before[i].data.byteLength)), before[i].name);
  }
  t.deepEqual([...(await model.inferTensor(x, [2, 3, 56, 56])).scores], scores, 'packed again, the same scores');
  // the same model with the weights left unpacked, in a process of its own
  const child = `const { InpFormer, runtime } = require(${JSON.stringify(path.join(__dirname, '..'))});
    InpFormer.create(${JSON.stringify(options)}).then(async (m) => {
      const x = new Float32Array(2 * 3 * 56 * 56).map((_, i) => Math.sin(i / 7));
      const r = await m.inferTensor(x, [2, 3, 56, 56]);
      process.stdout.write(JSON.stringify({ packed: runtime().cpuPackedWeights, scores: [...r.scores] }));
      await m.dispose();
    });`;
  const unpacked = JSON.parse(execFileSync(process.execPath, ['-e', child], { env: { ...process.env, INP_FORMER_CPU_GEMM: 'sgemm' }, encoding: 'utf8' }));
  t.false(unpacked.packed, 'INP_FORMER_CPU_GEMM=sgemm leaves weights unpacked');
  const rel = Math.max(...scores.map((s, i) => Math.abs(s - unpacked.scores[i]) / Math.abs(unpacked.scores[i])));
  t.log(`packed products: ${require('..').runtime().cpuPackedWeights}; scores against unpacked ones: ${rel.toExponential(1)}`);
  t.true(rel < 1e-5);
});
