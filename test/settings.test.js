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
