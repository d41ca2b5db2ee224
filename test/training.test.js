// fit(): the reference recipe step for step, a tiny real training run, abort, resume,
// responsiveness and bad input.
'use strict';
const test = require('ava');
const fs = require('node:fs');
const path = require('node:path');
const { InpFormer, AbortError, BusyError, InvalidArgumentError, ImageDecodeError } = require('..');
const { readCheckpointFile } = require('../dist/checkpoint/reader');
const { decodeImage, listImages } = require('../dist/images');
const { native } = require('../dist/native');
const { SHARED, FIXTURE, manifest, ref, maxAbsDiff, inputBatch, tmpdir, TOL, FIXTURE_SIZES } = require('./helpers');

const WEAVE = path.join(SHARED, 'datasets', 'synth-ad', 'weave');
const tinyEncoder = { embedDim: 32, depth: 10, numHeads: 2, posGridSize: 8, seed: 3 };
const tinySizes = { imageSize: 64, cropSize: 56 };

test.serial('fit() on the fixture batches reproduces the reference training trace', async (t) => {
  const model = await InpFormer.load(path.join(FIXTURE, 'inp_former.pth'), FIXTURE_SIZES);
  const batches = manifest.trace.steps.map((s) => inputBatch(s.batch));
  const events = [];
  const summary = await model.fit(batches, { epochs: 1, warmupSteps: 2, onProgress: (e) => e.type === 'step' && events.push(e) });
  t.is(summary.steps, 6);
  t.is(events.length, 6);
  const rel = (a, b) => Math.abs(a - b) / Math.abs(b);
  const rows = events.map((e, i) => {
    const s = manifest.trace.steps[i];
    return { step: e.step, lr: Math.abs(e.lr - s.lr), loss: rel(e.loss, s.loss), inpLoss: rel(e.inpLoss, s.g_loss), gradNorm: rel(e.gradNorm, s.grad_norm) };
  });
  t.log(JSON.stringify(rows));
  for (const r of rows) t.true(r.lr <= TOL.lr, `lr of step ${r.step}`);

  const expected = (await readCheckpointFile(path.join(FIXTURE, 'expected.pth'))).root.get('final_trainable_state_dict');
  const initial = (await readCheckpointFile(path.join(FIXTURE, 'inp_former.pth'))).root;
  const errors = [];
  let updErr2 = 0;
  let upd2 = 0;
  for (const p of await model.stateDict()) {
    const e = expected.get(p.name);
    if (!e) continue;
    const ev = e.toFloat32();
    const iv = initial.get(p.name).toFloat32();
    for (let i = 0; i < ev.length; i++) {
      errors.push(Math.abs(ev[i] - p.data[i]));
      updErr2 += (ev[i] - p.data[i]) ** 2;
      upd2 += (ev[i] - iv[i]) ** 2;
    }
  }
  errors.sort((a, b) => a - b);
  const w = { n: errors.length, q999: errors[Math.floor(errors.length * 0.999)], max: errors[errors.length - 1], updateRelL2: Math.sqrt(updErr2 / upd2) };
  t.log(JSON.stringify(w));
  t.is(w.n, 1081376);
  for (const r of rows) {
    t.true(r.loss <= TOL.traceLoss && r.inpLoss <= TOL.traceLoss, `loss of step ${r.step}`);
    t.true(r.gradNorm <= TOL.traceGradNorm, `grad norm of step ${r.step}`);
  }
  t.true(w.q999 <= TOL.weightsQ999, '99.9% of the trained weights');
  t.true(w.max <= TOL.weightsMax, 'every trained weight');
  await model.dispose();
});

async function scoreFolder(model, dir, sizes) {
  const out = [];
  for (const f of await listImages(dir)) {
    const data = await native().preprocess([await decodeImage(f)], sizes.imageSize, sizes.cropSize);
    out.push((await model.inferTensor(data, [1, 3, sizes.cropSize, sizes.cropSize])).scores[0]);
  }
  return out;
}

test.serial('a tiny encoder trains on synth-ad/weave: loss falls, defects score higher', async (t) => {
  const sizes = { imageSize: 128, cropSize: 112 };
  const model = await InpFormer.create({ encoder: { embedDim: 64, depth: 10, numHeads: 4, posGridSize: 16, seed: 1 }, ...sizes, seed: 1 });
  const epochLoss = [];
  const summary = await model.fit(WEAVE, { epochs: 5, batchSize: 8, warmupSteps: 5, seed: 1, onProgress: (e) => e.type === 'epoch' && epochLoss.push(e.loss) });
  t.log(`epoch losses ${epochLoss.map((x) => x.toFixed(4)).join(' ')}; ${summary.imagesPerSecond.toFixed(1)} images/s; data wait ${(100 * summary.dataWaitShare).toFixed(1)}%`);
  t.is(summary.steps, 5 * 7, '60 images in batches of 8: 7 steps an epoch, the short batch dropped');
  t.is(summary.imagesSeen, 5 * 56);
  t.true(epochLoss[4] < epochLoss[0] * 0.8, 'loss falls');
  const good = await scoreFolder(model, path.join(WEAVE, 'test', 'good'), sizes);
  const bad = [];
  for (const d of ['hole', 'stain', 'thread']) bad.push(...(await scoreFolder(model, path.join(WEAVE, 'test', d), sizes)));
  let auc = 0;
  for (const b of bad) for (const g of good) auc += b > g ? 1 : b === g ? 0.5 : 0;
  auc /= bad.length * good.length;
  t.log(`image AUROC ${auc.toFixed(3)} (${bad.length} defective, ${good.length} good)`);
  t.true(auc > 0.65);
  await model.dispose();
});

test('progress arrives as an async iterable too; a throwing onProgress is contained', async (t) => {
  const model = await InpFormer.create({ encoder: tinyEncoder, ...tinySizes });
  const warnings = [];
  const run = model.fit(WEAVE, {
    epochs: 1, batchSize: 16, warmupSteps: 1,
    onProgress: () => {
      throw new Error('user bug');
    },
    onWarning: (m) => warnings.push(m),
  });
  const seen = [];
  for await (const e of run) seen.push(e.type);
  const summary = await run;
  t.deepEqual(seen, ['step', 'step', 'step', 'epoch']);
  t.is(summary.steps, 3);
  t.true(warnings.some((w) => /onProgress threw/.test(w)));
  await model.dispose();
});

test('abort stops within a step, leaves a usable model; calls during fit are BusyError', async (t) => {
  const model = await InpFormer.create({ encoder: tinyEncoder, ...tinySizes });
  const before = (await model.stateDict()).find((p) => p.name === 'decoder.0.attn.q.weight').data.slice();
  const controller = new AbortController();
  let steps = 0;
  let busy;
  const run = model.fit(WEAVE, {
    epochs: 50, batchSize: 4, warmupSteps: 1, signal: controller.signal,
    onProgress: (e) => {
      if (e.type !== 'step') return;
      steps = e.step;
      if (e.step === 2) {
        busy = model.inferTensor(new Float32Array(3 * 56 * 56), [1, 3, 56, 56]);
        controller.abort();
      }
    },
  });
  await t.throwsAsync(run, { instanceOf: AbortError });
  await t.throwsAsync(busy, { instanceOf: BusyError });
  t.is(steps, 2);
  const after = (await model.stateDict()).find((p) => p.name === 'decoder.0.attn.q.weight').data;
  t.notDeepEqual(after, before, 'the weights of the two steps are kept');
  const r = await model.inferTensor(new Float32Array(3 * 56 * 56), [1, 3, 56, 56]);
  t.is(r.scores.length, 1);
  await model.dispose();
});

test('the event loop keeps running during fit', async (t) => {
  const model = await InpFormer.create({ encoder: tinyEncoder, ...tinySizes });
  let ticks = 0;
  const ticksAtStep = [];
  const timer = setInterval(() => ticks++, 1);
  await model.fit(WEAVE, { epochs: 2, batchSize: 8, warmupSteps: 1, onProgress: (e) => e.type === 'step' && ticksAtStep.push(ticks) });
  clearInterval(timer);
  const gaps = ticksAtStep.slice(1).map((v, i) => v - ticksAtStep[i]);
  t.log(`timer ticks between steps: ${gaps.join(' ')}`);
  t.true(gaps.filter((g) => g > 0).length >= gaps.length / 2, 'timers fire while steps run natively');
  await model.dispose();
});

test('resume from a checkpoint equals an uninterrupted run', async (t) => {
  const dir = tmpdir();
  const files = (await listImages(WEAVE)).slice(0, 12);
  const opts = { epochs: 3, batchSize: 4, warmupSteps: 2, seed: 7 };
  const create = () => InpFormer.create({ encoder: tinyEncoder, ...tinySizes, seed: 5 });

  const a = await create();
  await a.fit(files, opts);
  const wa = await a.stateDict();
  await a.dispose();

  const b = await create();
  const ck = path.join(dir, 'run.pth');
  // interrupted after the first epoch, whose checkpoint was written
  const controller = new AbortController();
  const interrupted = b.fit(files, {
    ...opts, checkpoint: { path: ck, everyEpochs: 1 }, signal: controller.signal,
    onProgress: (e) => e.type === 'epoch' && controller.abort(),
  });
  await t.throwsAsync(interrupted, { instanceOf: AbortError });
  await b.dispose();
  t.true(fs.existsSync(ck) && fs.existsSync(`${ck}.train-state`));
  t.deepEqual(fs.readdirSync(dir).sort(), ['run.pth', 'run.pth.train-state']);

  const c = await create();
  const rest = await c.fit(files, { ...opts, resumeFrom: ck });
  t.is(rest.steps, 9);
  t.is(rest.epochs, 3);
  const wc = await c.stateDict();
  await c.dispose();
  let maxDiff = 0;
  wa.forEach((p, i) => (maxDiff = Math.max(maxDiff, maxAbsDiff(p.data, wc[i].data))));
  t.log(`max weight difference resumed vs uninterrupted: ${maxDiff}`);
  t.is(maxDiff, 0);
});

test('bad training input gives typed errors naming the problem', async (t) => {
  const model = await InpFormer.create({ encoder: tinyEncoder, ...tinySizes });
  const empty = tmpdir();
  await t.throwsAsync(model.fit(empty), { instanceOf: InvalidArgumentError, message: /no images/ });
  await t.throwsAsync(model.fit(path.join(empty, 'nope')), { instanceOf: InvalidArgumentError, message: /no such folder/ });
  await t.throwsAsync(model.fit([{ data: new Float32Array(5), shape: [1, 3, 56, 56] }], { epochs: 1 }), { instanceOf: InvalidArgumentError, message: /batch 0/ });

  const dir = tmpdir();
  const good = (await listImages(WEAVE)).slice(0, 4);
  good.forEach((f, i) => fs.copyFileSync(f, path.join(dir, `${i}.png`)));
  const corrupt = path.join(dir, 'broken.png');
  fs.writeFileSync(corrupt, Buffer.concat([fs.readFileSync(good[0]).subarray(0, 200)]));
  const err = await t.throwsAsync(model.fit(dir, { epochs: 1, batchSize: 5, warmupSteps: 1 }), { instanceOf: ImageDecodeError });
  t.is(err.file, corrupt);
  t.true(err.message.startsWith(corrupt));

  const warnings = [];
  const s = await model.fit(dir, { epochs: 1, batchSize: 5, warmupSteps: 1, skipBadImages: true, onWarning: (m) => warnings.push(m) });
  t.is(s.imagesSeen, 4);
  t.true(warnings.some((w) => w.includes('broken.png')));
  await model.dispose();
});

test('a dataset smaller than one batch trains on what it has, with a warning', async (t) => {
  const model = await InpFormer.create({ encoder: tinyEncoder, ...tinySizes });
  const warnings = [];
  const files = (await listImages(WEAVE)).slice(0, 3);
  const s = await model.fit(files, { epochs: 2, batchSize: 16, warmupSteps: 1, onWarning: (m) => warnings.push(m) });
  t.is(s.steps, 2);
  t.is(s.imagesSeen, 6);
  t.true(warnings.some((w) => /fewer than one batch/.test(w)));
  await model.dispose();
});

test('dispose() during fit stops it within a step and frees the model', async (t) => {
  const { DisposedError } = require('..');
  const model = await InpFormer.create({ encoder: tinyEncoder, ...tinySizes });
  let disposing;
  const run = model.fit(WEAVE, {
    epochs: 50, batchSize: 4, warmupSteps: 1,
    onProgress: (e) => {
      if (e.type === 'step' && e.step === 1) disposing = model.dispose();
    },
  });
  await t.throwsAsync(run, { instanceOf: AbortError });
  await disposing;
  t.true(model.disposed);
  await t.throwsAsync(model.inferTensor(new Float32Array(3 * 56 * 56), [1, 3, 56, 56]), { instanceOf: DisposedError });
});

test('an already aborted signal refuses to start, with a typed error', async (t) => {
  const model = await InpFormer.create({ encoder: tinyEncoder, ...tinySizes });
  await t.throwsAsync(model.fit(WEAVE, { signal: AbortSignal.abort() }), { instanceOf: AbortError });
  await model.dispose();
});
