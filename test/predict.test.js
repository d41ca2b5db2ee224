// predict, calibrate, evaluate and heatmaps on a tiny model trained on synth-ad/weave.
'use strict';
const test = require('ava');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const sharp = require('sharp');
const { InpFormer, InvalidArgumentError, ImageDecodeError, AbortError } = require('..');
const { FIXTURES, FIXTURE, tmpdir } = require('./helpers');

const WEAVE = path.join(FIXTURES, 'datasets', 'synth-ad', 'weave');
const HOLE = path.join(WEAVE, 'test', 'hole', '000.png');
const GOOD = path.join(WEAVE, 'test', 'good', '000.png');
const sizes = { imageSize: 128, cropSize: 112 };

let trained;
test.before(async () => {
  const model = await InpFormer.create({ encoder: { embedDim: 64, depth: 10, numHeads: 4, posGridSize: 16, seed: 1 }, ...sizes, seed: 1 });
  await model.fit(WEAVE, { epochs: 3, batchSize: 8, warmupSteps: 5, seed: 1 });
  trained = path.join(tmpdir(), 'weave.pth');
  await model.save(trained);
  await model.dispose();
});

test('predict before calibration: raw score and input-size map, no labels', async (t) => {
  const model = await InpFormer.load(trained, { threads: 2 }); // crop and input maps are compared exactly
  const p = await model.predict(HOLE);
  t.is(typeof p.score, 'number');
  t.is(p.normalizedScore, null);
  t.is(p.isAnomalous, null);
  t.is(p.mask, null);
  t.is(p.width, 256);
  t.is(p.height, 256);
  t.is(p.anomalyMap.length, 256 * 256);
  const crop = await model.predict(HOLE, { mapSize: 'crop' });
  t.is(crop.width, 112);
  t.is(crop.anomalyMap.length, 112 * 112);
  t.is(crop.score, p.score);
  await model.dispose();
});

test('paths, encoded Buffers and Uint8Arrays and raw pixels give the same result', async (t) => {
  const model = await InpFormer.load(trained, { threads: 2 }); // one thread count: exact comparisons
  const fromPath = await model.predict(GOOD);
  const fromBuffer = await model.predict(fs.readFileSync(GOOD));
  const bytes = fs.readFileSync(GOOD);
  const fromUint8Array = await model.predict(new Uint8Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)));
  t.is(fromUint8Array.score, fromPath.score, 'encoded bytes as a plain Uint8Array (not a Buffer)');
  const { data, info } = await sharp(GOOD).raw().toBuffer({ resolveWithObject: true });
  const fromRaw = await model.predict({ data, width: info.width, height: info.height, channels: info.channels });
  t.is(fromBuffer.score, fromPath.score);
  t.is(fromRaw.score, fromPath.score);
  await t.throwsAsync(model.predict({ data: new Uint8Array(10), width: 4, height: 4, channels: 3 }), { instanceOf: InvalidArgumentError });
  const bad = path.join(tmpdir(), 'bad.png');
  fs.writeFileSync(bad, 'not a png');
  const err = await t.throwsAsync(model.predict(bad), { instanceOf: ImageDecodeError });
  t.is(err.file, bad);
  await model.dispose();
});

test('concurrent predict calls are micro-batched natively', async (t) => {
  const model = await InpFormer.load(trained, { predictBatchSize: 8 });
  const plain = await InpFormer.load(trained);
  t.is(plain.config.predictBatchSize, 1, 'CPU default: no batching (measured slower per image)');
  await plain.dispose();
  const files = fs.readdirSync(path.join(WEAVE, 'test', 'good')).slice(0, 8).map((f) => path.join(WEAVE, 'test', 'good', f));
  const single = [];
  for (const f of files) single.push((await model.predict(f)).score);
  const batches = [];
  const infer = model.inferTensor.bind(model);
  model.inferTensor = (data, shape, o) => {
    batches.push(shape[0]);
    return infer(data, shape, o);
  };
  const together = await Promise.all(files.map((f) => model.predict(f)));
  t.log(`batch sizes: ${batches.join(', ')}`);
  t.true(batches.length < files.length, 'fewer native runs than requests');
  t.is(batches.reduce((a, b) => a + b, 0), files.length);
  together.forEach((p, i) => t.true(Math.abs(p.score - single[i]) < 1e-5));
  await model.dispose();
});

// A CPU batch runs in chunks of whole images (cpp/core/model.h, INP_FORMER_CPU_BATCH_MIB): 8
// images of this model at 112 px take 65 KiB each in their widest activation, so 0.2 MiB gives
// chunks of 3, 3 and 2; 0 runs the batch whole. Each in a process of its own (the budget is read once).
test('a CPU batch run in chunks gives the scores and maps of the batch run whole', (t) => {
  const child = `const { InpFormer } = require(${JSON.stringify(path.join(__dirname, '..'))});
    InpFormer.load(${JSON.stringify(trained)}).then(async (m) => {
      const x = new Float32Array(8 * 3 * 112 * 112).map((_, i) => Math.sin(i / 5) * 2);
      const r = await m.inferTensor(x, [8, 3, 112, 112]);
      const one = await m.inferTensor(x.subarray(5 * 3 * 112 * 112, 6 * 3 * 112 * 112), [1, 3, 112, 112]);
      process.stdout.write(JSON.stringify({ scores: [...r.scores], maps: Buffer.from(r.anomalyMaps.buffer).toString('base64'), sixth: one.scores[0] }));
      await m.dispose();
    });`;
  const run = (mib) => JSON.parse(execFileSync(process.execPath, ['-e', child], { env: { ...process.env, INP_FORMER_CPU_BATCH_MIB: mib }, encoding: 'utf8' }));
  const whole = run('0');
  const chunked = run('0.2');
  const maps = (r) => new Float32Array(Buffer.from(r.maps, 'base64').buffer.slice(0));
  const [a, b] = [maps(chunked), maps(whole)];
  const worst = a.reduce((most, v, i) => Math.max(most, Math.abs(v - b[i]) / Math.abs(b[i])), 0);
  t.log(`maps chunked against whole: max relative difference ${worst.toExponential(1)}`);
  t.is(a.length, 8 * 112 * 112);
  t.true(worst < 1e-6, 'the same maps but for the last bits of a product over fewer rows');
  t.true(Math.max(...chunked.scores.map((s, i) => Math.abs(s - whole.scores[i]) / Math.abs(whole.scores[i]))) < 1e-6, 'the same scores, in order');
  t.is(new Set(whole.scores).size, 8, 'eight different images');
  t.true(Math.abs(chunked.scores[5] - chunked.sixth) <= 1e-6 * Math.abs(chunked.sixth), 'image 6 scores as it does alone');
});

test('calibrate sets F1-max thresholds; predictions get labels and masks; thresholds survive save/load', async (t) => {
  const model = await InpFormer.load(trained);
  const warnings = [];
  const th = await model.calibrate(WEAVE, (w) => warnings.push(w));
  t.true(th.imageMin <= th.imageThreshold && th.imageThreshold <= th.imageMax);
  t.true(th.pixelMin <= th.pixelThreshold && th.pixelThreshold <= th.pixelMax);
  const p = await model.predict(HOLE);
  t.true(p.normalizedScore >= 0 && p.normalizedScore <= 1);
  t.is(p.isAnomalous, p.normalizedScore > 0.5);
  t.true(p.mask instanceof Uint8Array && p.mask.length === 256 * 256);
  const file = path.join(tmpdir(), 'calibrated.pth');
  await model.save(file);
  const again = await InpFormer.load(file);
  t.deepEqual(again.thresholds, th);
  await again.dispose();
  await model.dispose();
});

test('an anomalib checkpoint brings its thresholds to predict', async (t) => {
  const model = await InpFormer.load(path.join(FIXTURE, 'anomalib_inp_former.ckpt'), { imageSize: 256, cropSize: 224 });
  const p = await model.predict(path.join(FIXTURE, 'images', 'img_0.png'));
  t.not(p.normalizedScore, null);
  t.is(typeof p.isAnomalous, 'boolean');
  await model.dispose();
});

test('evaluate reports image and pixel metrics overall and per defect type', async (t) => {
  const model = await InpFormer.load(trained);
  const r = await model.evaluate(WEAVE);
  t.log(JSON.stringify({ image: r.image, pixel: r.pixel }));
  t.is(r.images, 50);
  t.is(r.anomalous, 30);
  t.deepEqual(Object.keys(r.perDefectType).sort(), ['hole', 'stain', 'thread']);
  for (const v of [r.image.auroc, r.image.ap, r.image.f1Max, r.pixel.auroc, r.pixel.ap, r.pixel.f1Max, r.pixel.aupro]) t.true(v >= 0 && v <= 1);
  t.true(r.image.auroc > 0.6);
  t.is(r.perDefectType.hole.images, 30);
  await t.throwsAsync(model.evaluate(path.join(WEAVE, 'ground_truth')), { instanceOf: InvalidArgumentError, message: /good/ });
  await model.dispose();
});

test('heatmap PNG: input size, colour map blended, mask outline drawn', async (t) => {
  const model = await InpFormer.load(trained);
  await model.calibrate(WEAVE, () => {});
  const dir = tmpdir();
  const file = path.join(dir, 'hole.png');
  const p = await model.predict(HOLE, { heatmap: file });
  t.is(p.heatmap, file);
  const { data, info } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
  t.is(info.width, 256);
  t.is(info.height, 256);
  t.is(info.channels, 3);
  const source = await sharp(HOLE).removeAlpha().raw().toBuffer();
  let changed = 0;
  let red = 0;
  for (let i = 0; i < 256 * 256; i++) {
    if (data[i * 3] !== source[i * 3] || data[i * 3 + 1] !== source[i * 3 + 1]) changed++;
    if (data[i * 3] === 255 && data[i * 3 + 1] === 0 && data[i * 3 + 2] === 0) red++;
  }
  t.true(changed > 0.9 * 256 * 256, 'the colour map covers the image');
  t.true(p.mask.some((v) => v) ? red > 0 : true, 'the predicted mask is outlined');
  t.deepEqual(fs.readdirSync(dir), ['hole.png'], 'no temporary file left');
  await model.dispose();
});

test('heatmaps of an array keep the inputs\' folders: same-named files in two folders get two heatmaps', async (t) => {
  const model = await InpFormer.load(trained);
  const dir = tmpdir();
  const good = path.join(WEAVE, 'test', 'good', '000.png');
  const hole = path.join(WEAVE, 'test', 'hole', '000.png');
  const results = await model.predict([good, hole, fs.readFileSync(hole), good], { heatmap: dir });
  t.deepEqual(results.map((r) => path.relative(dir, r.heatmap)), ['good/000.png', 'hole/000.png', '2.png', 'good/000~3.png']);
  for (const r of results) t.true(fs.statSync(r.heatmap).size > 0);
  t.deepEqual(fs.readdirSync(dir).sort(), ['2.png', 'good', 'hole']);
  await model.dispose();
});

test('evaluate and calibrate report progress and stop on their signal; predict on its signal', async (t) => {
  const model = await InpFormer.load(trained);
  const seen = [];
  await model.evaluate(WEAVE, { onProgress: (p) => seen.push(p) });
  t.deepEqual(seen.map((p) => p.done), [8, 16, 24, 32, 40, 48, 50]);
  t.true(seen.every((p) => p.total === 50));
  const controller = new AbortController();
  const stopped = model.calibrate(WEAVE, { signal: controller.signal, onProgress: (p) => p.done >= 16 && controller.abort(), onWarning: () => {} });
  await t.throwsAsync(stopped, { instanceOf: AbortError, message: /after 16 of 50 images/ });
  t.is(model.thresholds, undefined, 'an aborted calibration sets nothing');
  await t.throwsAsync(model.predict([GOOD, HOLE], { signal: AbortSignal.abort() }), { instanceOf: AbortError });
  await t.throwsAsync(model.evaluate(WEAVE, { onWarning: () => {} }), { instanceOf: InvalidArgumentError, message: /unknown option 'onWarning' for evaluate\(\)/ });
  // a throwing callback is a warning, not a failure
  const warnings = [];
  const onWarning = (w) => warnings.push(w);
  process.on('warning', onWarning);
  await model.evaluate(WEAVE, { onProgress: () => { throw new Error('boom'); } });
  process.off('warning', onWarning);
  t.true(warnings.some((w) => /onProgress threw \(ignored\): boom/.test(w.message)));
  await model.dispose();
});

test.serial('predictEach streams in input order with a bounded window: 500 images with flat memory, early exit, heatmaps mirrored', async (t) => {
  const model = await InpFormer.load(trained, { threads: 2 });
  const inputs = [GOOD, HOLE, fs.readFileSync(HOLE)];
  const direct = await model.predict(inputs);
  const streamed = [];
  for await (const r of model.predictEach(inputs)) streamed.push(r);
  t.deepEqual(streamed.map((r) => [r.index, r.input]), [[0, GOOD], [1, HOLE], [2, 2]]);
  streamed.forEach((r, i) => t.is(r.prediction.score, direct[i].score));

  const pool = fs.readdirSync(path.join(WEAVE, 'test', 'good')).map((f) => path.join(WEAVE, 'test', 'good', f));
  function* many(n) {
    for (let i = 0; i < n; i++) yield pool[i % pool.length];
  }
  // RSS of what is kept, read the same way both times: after full collections (ava runs with
  // --expose-gc; results are external buffers, freed when collected)
  const rss = async () => {
    for (let k = 0; k < 3; k++) {
      global.gc();
      await new Promise((r) => setTimeout(r, 50));
    }
    return process.memoryUsage().rss / 2 ** 20;
  };
  let at100 = 0;
  let count = 0;
  const progress = [];
  for await (const r of model.predictEach(many(500), { window: 4, onProgress: (p) => progress.push(p) })) {
    if (++count === 100) at100 = await rss();
    t.is(r.index, count - 1);
  }
  const growth = (await rss()) - at100;
  t.log(`500 images: RSS ${at100.toFixed(0)} MiB after 100, ${(at100 + growth).toFixed(0)} MiB after 500`);
  t.is(count, 500);
  t.deepEqual(progress[499], { done: 500, total: null });
  t.true(growth < 40, `RSS grew ${growth.toFixed(1)} MiB from image 100 to 500`);

  let seen = 0;
  for await (const r of model.predictEach(many(50))) if (++seen === 3) break; // eslint-disable-line no-unused-vars
  t.is(seen, 3);
  t.true(Number.isFinite((await model.predict(GOOD)).score), 'usable after an early exit');

  const dir = tmpdir();
  const folder = path.join(WEAVE, 'test');
  const rows = [];
  for await (const r of model.predictEach(folder, { heatmap: dir })) rows.push(r);
  t.true(rows.length >= 50);
  t.true(fs.existsSync(path.join(dir, 'good', '000.png')) && fs.existsSync(path.join(dir, 'hole', '000.png')));
  await t.throwsAsync(async () => {
    for await (const r of model.predictEach(many(5), { heatmap: dir })) t.fail(String(r)); // eslint-disable-line no-unused-vars
  }, { instanceOf: InvalidArgumentError, message: /heatmap needs a folder or an array/ });
  await model.dispose();
});
