// The paper's other settings: one model for several categories (multi-class) with a report and
// thresholds per category, and zero-shot (a model applied to a category it never saw).
'use strict';
const test = require('ava');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { InpFormer, InvalidArgumentError, CheckpointError } = require('..');
const { writeTorchFile } = require('inp-former/internal');
const { FIXTURES, tmpdir } = require('./helpers');

const SYNTH = path.join(FIXTURES, 'datasets', 'synth-ad');
const CLI = path.join(__dirname, '..', 'dist', 'cli.js');
const tiny = { encoder: { embedDim: 32, depth: 10, numHeads: 2, posGridSize: 8, seed: 3 }, imageSize: 64, cropSize: 56, seed: 2, threads: 2 };
const quick = { epochs: 1, batchSize: 8, warmupSteps: 2, seed: 1 };

let multiFile;
test.before(async () => {
  const model = await InpFormer.create(tiny);
  const summary = await model.fit({ root: SYNTH }, { ...quick, validation: { root: SYNTH } });
  if (summary.imagesSeen !== 120) throw new Error(`trained on ${summary.imagesSeen} images, expected weave's and disc's 60 each`);
  multiFile = path.join(tmpdir(), 'multi.pth');
  await model.save(multiFile);
  await model.dispose();
});

test('multi-class: one model for every category of a dataset, a report and thresholds per category', async (t) => {
  const model = await InpFormer.load(multiFile, { threads: 2 });
  t.deepEqual(Object.keys(model.categoryThresholds).sort(), ['disc', 'weave'], 'per-category thresholds travel with the saved model');
  const r = await model.evaluate({ root: SYNTH, categories: ['weave', 'disc'] });
  t.deepEqual(Object.keys(r.categories), ['weave', 'disc']);
  t.is(r.images, 100);
  t.is(r.mean.image.auroc, (r.categories.weave.image.auroc + r.categories.disc.image.auroc) / 2);
  t.is(r.mean.pixel.aupro, (r.categories.weave.pixel.aupro + r.categories.disc.pixel.aupro) / 2);
  // a category of the set is exactly that category evaluated alone
  const weave = await model.evaluate(path.join(SYNTH, 'weave'));
  t.deepEqual(r.categories.weave, weave);
  t.log(`weave AUROC ${r.categories.weave.image.auroc.toFixed(3)}, disc ${r.categories.disc.image.auroc.toFixed(3)}, mean ${r.mean.image.auroc.toFixed(3)}`);

  // predict with a category's thresholds: its labels; an unknown category is refused by name
  const image = path.join(SYNTH, 'disc', 'test', 'dent', '000.png');
  const plain = await model.predict(image);
  t.is(plain.normalizedScore, null, 'no category, no model-wide thresholds: raw score only');
  const disc = await model.predict(image, { category: 'disc' });
  const th = model.categoryThresholds.disc;
  t.is(disc.score, plain.score);
  t.is(disc.isAnomalous, disc.score > th.imageThreshold);
  await t.throwsAsync(model.predict(image, { category: 'wool' }), { instanceOf: InvalidArgumentError, message: /no thresholds for category 'wool' \(calibrated: (weave, disc|disc, weave)\)/ });
  await t.throwsAsync(model.evaluate({ root: SYNTH, categories: ['weave', 'missing'] }), { instanceOf: InvalidArgumentError, message: /missing: no such category folder/ });
  await t.throwsAsync(model.evaluate({ root: SYNTH, categoriez: ['weave'] }), { instanceOf: InvalidArgumentError, message: /did you mean 'categories'/ });
  await model.dispose();
});

test('zero-shot: a model trained on one category, evaluated on another it never saw', async (t) => {
  const model = await InpFormer.create(tiny);
  const summary = await model.fit({ root: SYNTH, categories: ['weave'] }, quick);
  t.is(summary.imagesSeen, 56, "weave's 60 training images in whole batches of 8");
  const r = await model.evaluate({ root: SYNTH, categories: ['disc'] });
  t.deepEqual(Object.keys(r.categories), ['disc']);
  t.true(r.categories.disc.image.auroc >= 0 && r.categories.disc.image.auroc <= 1);
  t.log(`zero-shot disc (trained on weave): image AUROC ${r.categories.disc.image.auroc.toFixed(3)}, pixel AUROC ${r.categories.disc.pixel.auroc.toFixed(3)}`);
  await model.dispose();
});

test('category thresholds read from a file are checked: a crafted value is refused, not used', async (t) => {
  const model = await InpFormer.load(multiFile);
  const tensors = await model.stateDict();
  await model.dispose();
  const craft = async (categoryThresholds) => {
    const file = path.join(tmpdir(), 'crafted.pth');
    const config = JSON.stringify({ network: (await InpFormer.load(multiFile)).config.network, imageSize: 64, cropSize: 56, categoryThresholds });
    await writeTorchFile(file, tensors, { inp_former: { format: 'inp-former-checkpoint', version: '1', package_version: '0.1.0', config } });
    return file;
  };
  const good = { imageThreshold: 0.1, pixelThreshold: 0.2, imageMin: 0, imageMax: 1, pixelMin: 0, pixelMax: 1 };
  const ok = await InpFormer.load(await craft({ weave: good }));
  t.deepEqual(ok.categoryThresholds, { weave: good });
  await ok.dispose();
  await t.throwsAsync(InpFormer.load(await craft({ weave: { ...good, imageThreshold: 'high' } })), { instanceOf: CheckpointError, message: /thresholds of category 'weave' are not six finite numbers/ });
  await t.throwsAsync(InpFormer.load(await craft({ weave: { ...good, pixelMax: null } })), { instanceOf: CheckpointError });
  await t.throwsAsync(InpFormer.load(await craft([good])), { instanceOf: CheckpointError, message: /category thresholds are not an object/ });
});

test('CLI: fit <root> --categories all and evaluate --categories print a row per category and the mean', (t) => {
  const out = path.join(tmpdir(), 'cli-multi.pth');
  const fit = spawnSync(process.execPath, [CLI, 'fit', SYNTH, '--categories', 'all', '--out', out, '--epochs', '1', '--batch-size', '8', '--image-size', '64', '--crop-size', '56', '--warmup', '1'], { encoding: 'utf8' });
  t.is(fit.status, 0, fit.stderr);
  t.regex(fit.stdout, /trained 15 steps .*120 images/);
  t.regex(fit.stdout, /calibrated disc: image threshold/);
  t.regex(fit.stdout, /calibrated weave: image threshold/);
  const ev = spawnSync(process.execPath, [CLI, 'evaluate', out, SYNTH, '--categories', 'disc,weave'], { encoding: 'utf8' });
  t.is(ev.status, 0, ev.stderr);
  const rows = ev.stdout.split('\n').map((l) => l.split(/\s+/)[0]);
  t.deepEqual(rows.filter((w) => ['disc', 'weave', 'mean'].includes(w)), ['disc', 'weave', 'mean']);
  const pred = spawnSync(process.execPath, [CLI, 'predict', out, path.join(SYNTH, 'weave', 'test', 'hole', '000.png'), '--category', 'weave', '--json'], { encoding: 'utf8' });
  t.is(pred.status, 0, pred.stderr);
  t.is(typeof JSON.parse(pred.stdout)[0].isAnomalous, 'boolean');
});

const { native } = require('inp-former/internal');
const { decodeImage } = require('inp-former/internal');

/** Pre-processed synth-ad images [K, 3, 56, 56] as the model sees them. */
async function preprocessed(files) {
  const images = await Promise.all(files.map((f, i) => decodeImage(f, i, 1e8)));
  return native().preprocess(images, 64, 56);
}

test('few-shot views: the 22 augmentations equal Python torch computing the same ops (affine_grid + grid_sample, reflection)', async (t) => {
  const files = ['000.png', '001.png'].map((f) => path.join(SYNTH, 'weave', 'train', 'good', f));
  const shape = [2, 3, 56, 56];
  const x = await preprocessed(files);
  const views = await native().fewShotViews(x, shape);
  const per = 3 * 56 * 56;
  t.is(views.length, 2 * 22 * per);
  const dir = tmpdir();
  fs.writeFileSync(path.join(dir, 'in.f32'), Buffer.from(x.buffer, x.byteOffset, x.byteLength));
  const py = spawnSync('/usr/bin/python3', [path.join(__dirname, 'python', 'few_shot_views.py'), path.join(dir, 'in.f32'), shape.join(','), path.join(dir, 'out.f32')], { encoding: 'utf8' });
  t.is(py.status, 0, py.stderr);
  const b = fs.readFileSync(path.join(dir, 'out.f32'));
  const expected = new Float32Array(b.buffer, b.byteOffset, b.length / 4);
  let err = 0;
  for (let i = 0; i < expected.length; i++) err = Math.max(err, Math.abs(expected[i] - views[i]));
  t.log(`max |ours - torch| over 44 views: ${err}`);
  t.true(err <= 1e-6, `max difference ${err}`);

  // the views are what they claim: view 0 the image, view 17 its mirror, view 18 grey, views differ
  const view = (img, v) => views.subarray((img * 22 + v) * per, (img * 22 + v + 1) * per);
  t.deepEqual(Array.from(view(1, 0)), Array.from(x.subarray(per, 2 * per)));
  const mirrored = view(0, 17);
  t.is(mirrored[5], x[55 - 5]);
  const grey = view(0, 18);
  t.is(grey[10], grey[10 + 56 * 56]);
  for (let v = 1; v < 22; v++) t.notDeepEqual(Array.from(view(0, v).subarray(0, 200)), Array.from(view(0, 0).subarray(0, 200)), `view ${v} differs from the image`);
});

test('few-shot training: K shots per category, 22 views each; the few-shot recipe; errors', async (t) => {
  const model = await InpFormer.create(tiny);
  const summary = await model.fit({ root: SYNTH }, { recipe: 'few-shot', epochs: 1, batchSize: 8, warmupSteps: 2, seed: 1 });
  t.is(summary.imagesSeen, 2 * 4 * 22, "the recipe's 4 shots of each of 2 categories, 22 views each");
  const two = await model.fit(path.join(SYNTH, 'disc'), { ...quick, fewShot: 2, batchSize: 4 });
  t.is(two.imagesSeen, 44);
  await t.throwsAsync(model.fit(path.join(SYNTH, 'disc'), { ...quick, fewShot: 61 }), { instanceOf: InvalidArgumentError, message: /fewShot 61: .*disc has only 60 training image/ });
  await t.throwsAsync(model.fit([{ data: new Float32Array(3 * 56 * 56), shape: [1, 3, 56, 56] }], { ...quick, fewShot: 1 }), { instanceOf: InvalidArgumentError, message: /fewShot needs images/ });
  await t.throwsAsync(model.fit(path.join(SYNTH, 'disc'), { ...quick, recipe: 'zero-shot' }), { instanceOf: InvalidArgumentError, message: /recipe/ });
  const r = await model.evaluate({ root: SYNTH });
  t.log(`few-shot (4 shots) AUROC weave ${r.categories.weave.image.auroc.toFixed(3)}, disc ${r.categories.disc.image.auroc.toFixed(3)}`);
  await model.dispose();
});

test('CLI: fit --shot K trains on K shots and their views', (t) => {
  const out = path.join(tmpdir(), 'shot.pth');
  const r = spawnSync(process.execPath, [CLI, 'fit', path.join(SYNTH, 'weave'), '--shot', '2', '--out', out, '--epochs', '1', '--batch-size', '4', '--image-size', '64', '--crop-size', '56', '--warmup', '1'], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /trained 11 steps \(1 epochs, 44 images\)/);
});

test("a checkpoint in the layout of upstream's released multi-class and few-shot weights (ViT-B/14 reg4, 448/392, 6 INPs) loads as it is", async (t) => {
  // built here: the released files are upstream's model.state_dict(), a bare torch.save with no metadata of ours
  const built = await InpFormer.create({ encoder: { embedDim: 768, depth: 12, numHeads: 12, numRegisterTokens: 4, posGridSize: 37, seed: 1 }, threads: 2 });
  const file = path.join(tmpdir(), 'released-layout.pth');
  await writeTorchFile(file, await built.stateDict(), {});
  const image = path.join(SYNTH, 'weave', 'test', 'hole', '000.png');
  const expected = await built.predict(image);
  await built.dispose();
  const model = await InpFormer.load(file, { threads: 2 });
  const c = model.config;
  t.is(c.source.kind, 'upstream');
  t.deepEqual([c.imageSize, c.cropSize], [448, 392], "upstream's resize and crop");
  t.deepEqual([c.network.encoder.embedDim, c.network.encoder.depth, c.network.encoder.numHeads, c.network.encoder.numRegisterTokens], [768, 12, 12, 4]);
  t.is(c.network.inpNum, 6);
  t.deepEqual(c.network.targetLayers, [2, 3, 4, 5, 6, 7, 8, 9]);
  const p = await model.predict(image);
  t.is(p.score, expected.score, 'the loaded network is the saved one');
  await model.dispose();
});
