// Folder-style datasets (anomalib's Folder): fit, calibrate and evaluate on named folders
// instead of the MVTec AD layout, through the API, the CLI and their errors.
'use strict';
const test = require('ava');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { InpFormer, InvalidArgumentError } = require('..');
const { FIXTURES, tmpdir } = require('./helpers');

const WEAVE = path.join(FIXTURES, 'datasets', 'synth-ad', 'weave');
const CLI = path.join(__dirname, '..', 'dist', 'cli.js');
const tiny = { encoder: { embedDim: 32, depth: 10, numHeads: 2, posGridSize: 8, seed: 3 }, imageSize: 64, cropSize: 56, seed: 2 };
const quick = { epochs: 1, batchSize: 6, warmupSteps: 1, seed: 1 }; // 60 and 48 images: whole batches

/**
 * synth-ad/weave re-laid as a Folder dataset: good/ (train), good_test/, defects/hole and
 * defects/stain, masks/hole and masks/stain named as their images (000.png, as anomalib's Folder
 * expects) — not the MVTec names (000_mask.png).
 */
function folderLayout() {
  const root = tmpdir('inp-former-folder-');
  const copy = (from, to, rename = (n) => n) => {
    fs.mkdirSync(path.join(root, to), { recursive: true });
    for (const n of fs.readdirSync(from)) fs.copyFileSync(path.join(from, n), path.join(root, to, rename(n)));
  };
  copy(path.join(WEAVE, 'train', 'good'), 'good');
  copy(path.join(WEAVE, 'test', 'good'), 'good_test');
  for (const d of ['hole', 'stain']) {
    copy(path.join(WEAVE, 'test', d), path.join('defects', d));
    copy(path.join(WEAVE, 'ground_truth', d), path.join('masks', d), (n) => n.replace('_mask', ''));
  }
  return root;
}

let root;
test.before(() => {
  root = folderLayout();
});

test('fit, calibrate and evaluate on a Folder dataset (normal test folder, one mask folder per defect folder)', async (t) => {
  const data = { root, normalDir: 'good', normalTestDir: 'good_test', abnormalDirs: ['defects/hole', 'defects/stain'], maskDirs: ['masks/hole', 'masks/stain'] };
  const model = await InpFormer.create(tiny);
  const summary = await model.fit(data, { ...quick, validation: data });
  t.is(summary.imagesSeen, 60, 'all of good/ trains when a normal test folder is given');
  t.true(summary.thresholds.imageThreshold > 0);
  const r = await model.evaluate(data);
  t.is(r.images, 40);
  t.is(r.anomalous, 20);
  t.deepEqual(Object.keys(r.perDefectType).sort(), ['hole', 'stain']);
  t.true(r.pixel.auroc >= 0 && r.pixel.auroc <= 1, 'pixel metrics from the masks');
  // the same images in MVTec layout give the same metrics: the masks were paired by name
  const reference = await model.evaluate(WEAVE);
  t.is(r.perDefectType.hole.pixel.aupro, reference.perDefectType.hole.pixel.aupro);
  t.is(r.perDefectType.stain.image.auroc, reference.perDefectType.stain.image.auroc);
  await model.dispose();
});

test('without a normal test folder a seeded 20% of the normal folder is held out for testing', async (t) => {
  const data = { normalDir: path.join(root, 'good'), abnormalDirs: path.join(root, 'defects', 'hole') };
  const model = await InpFormer.create(tiny);
  const summary = await model.fit(data, quick);
  t.is(summary.imagesSeen, 48, '60 normal images less 12 held out');
  const r = await model.evaluate(data);
  t.is(r.images, 22);
  t.is(r.anomalous, 10);
  t.is(r.pixel, undefined, 'no mask folder: image metrics only');
  const again = await model.evaluate({ ...data, seed: 0 });
  t.is(again.image.auroc, r.image.auroc, 'the split is seeded');
  const other = await model.evaluate({ ...data, seed: 7, normalSplitRatio: 0.5 });
  t.is(other.images, 40);
  await model.dispose();
});

test('Folder dataset errors name the folder or file and the problem', async (t) => {
  const model = await InpFormer.create(tiny);
  const masks = fs.mkdtempSync(path.join(root, 'partial-masks-'));
  fs.copyFileSync(path.join(root, 'masks', 'hole', '000.png'), path.join(masks, '000.png'));
  await t.throwsAsync(model.evaluate({ root, normalDir: 'good', abnormalDirs: 'defects/hole', maskDirs: masks }),
    { instanceOf: InvalidArgumentError, message: new RegExp(`001\\.png: no mask for it in ${masks.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`) });
  await t.throwsAsync(model.evaluate({ root, normalDir: 'good', abnormalDirs: ['defects/hole', 'defects/stain'], maskDirs: ['masks/hole', 'masks/stain', 'masks/hole'] }),
    { instanceOf: InvalidArgumentError, message: /3 mask folders for 2 abnormal folders/ });
  await t.throwsAsync(model.evaluate({ root, normalDirs: 'good' }), { instanceOf: InvalidArgumentError, message: /did you mean 'normalDir'/ });
  await t.throwsAsync(model.fit({ root, normalDir: 'missing' }, quick), { instanceOf: InvalidArgumentError, message: /missing: no such folder/ });
  await t.throwsAsync(model.fit({ root, normalDir: 'good', normalSplitRatio: 1 }, quick), { instanceOf: InvalidArgumentError, message: /leaves none of its 60 images/ });
  await t.throwsAsync(model.evaluate(42), { instanceOf: InvalidArgumentError, message: /a Folder-style dataset/ });
  await model.dispose();
});

test('CLI: fit and evaluate take a Folder dataset by flags; fit calibrates on its test part', (t) => {
  const out = path.join(tmpdir(), 'folder.pth');
  const folder = ['--normal-dir', path.join(root, 'good'), '--normal-test-dir', path.join(root, 'good_test'),
    '--abnormal-dir', path.join(root, 'defects', 'hole'), '--abnormal-dir', path.join(root, 'defects', 'stain'),
    '--mask-dir', path.join(root, 'masks', 'hole'), '--mask-dir', path.join(root, 'masks', 'stain')];
  const fit = spawnSync(process.execPath, [CLI, 'fit', ...folder, '--out', out, '--epochs', '1', '--batch-size', '8', '--image-size', '64', '--crop-size', '56', '--warmup', '1'], { encoding: 'utf8' });
  t.is(fit.status, 0, fit.stderr);
  t.regex(fit.stdout, /calibrated on the test part of .*good: image threshold \d/);
  const ev = spawnSync(process.execPath, [CLI, 'evaluate', out, ...folder, '--json'], { encoding: 'utf8' });
  t.is(ev.status, 0, ev.stderr);
  const r = JSON.parse(ev.stdout);
  t.is(r.images, 40);
  t.deepEqual(Object.keys(r.perDefectType).sort(), ['hole', 'stain']);
  const both = spawnSync(process.execPath, [CLI, 'evaluate', out, WEAVE, '--normal-dir', path.join(root, 'good')], { encoding: 'utf8' });
  t.is(both.status, 2);
  t.regex(both.stderr, /not both/);
  const noNormal = spawnSync(process.execPath, [CLI, 'evaluate', out, '--abnormal-dir', path.join(root, 'defects', 'hole')], { encoding: 'utf8' });
  t.is(noNormal.status, 2);
  t.regex(noNormal.stderr, /needs --normal-dir/);
  const help = spawnSync(process.execPath, [CLI, 'fit', '--help'], { encoding: 'utf8' });
  t.regex(help.stdout, /--abnormal-dir <x>\.\.\./);
});
