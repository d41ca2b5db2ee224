// evaluate({ report }) and `inp-former evaluate --report`: the visual report's panels, curves
// and index.html, opened in headless Chromium; replaced only when it is ours; nothing left
// behind on abort.
'use strict';
const test = require('ava');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const sharp = require('sharp');
const { InpFormer, AbortError, FileWriteError } = require('..');
const { FIXTURES, tmpdir } = require('./helpers');

const WEAVE = path.join(FIXTURES, 'datasets', 'synth-ad', 'weave');
const CLI = path.join(__dirname, '..', 'dist', 'cli.js');
const TYPES = ['good', 'hole', 'stain', 'thread'];

let modelFile;
test.before(async () => {
  const model = await InpFormer.create({ encoder: { embedDim: 32, depth: 10, numHeads: 2, posGridSize: 8, seed: 3 }, imageSize: 64, cropSize: 56, seed: 2 });
  await model.fit(WEAVE, { epochs: 2, batchSize: 8, warmupSteps: 2, seed: 1 });
  modelFile = path.join(tmpdir(), 'report-model.pth');
  await model.save(modelFile);
  await model.dispose();
});

const chromium = ['chromium', 'chromium-browser', 'google-chrome'].find((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status === 0);

function openInChromium(file, extra = []) {
  return spawnSync(chromium, ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--allow-file-access-from-files',
    '--virtual-time-budget=15000', ...extra, `file://${file}`], { encoding: 'utf8', timeout: 120000, maxBuffer: 64 << 20 });
}

test('evaluate({ report }) writes a panel per image, ROC and PRO curves and an index.html that opens in headless Chromium', async (t) => {
  const model = await InpFormer.load(modelFile);
  const dir = path.join(tmpdir(), 'report');
  const r = await model.evaluate(WEAVE, { report: dir });
  t.is(r.reportFile, path.join(dir, 'index.html'));
  for (const f of ['roc.svg', 'roc.png', 'pro.svg', 'pro.png']) t.true(fs.statSync(path.join(dir, f)).size > 1000, f);
  t.deepEqual(fs.readdirSync(path.join(dir, 'panels')).sort(), TYPES, 'panels mirror the folders: good/000.png and hole/000.png stay apart');
  t.is(TYPES.reduce((n, d) => n + fs.readdirSync(path.join(dir, 'panels', d)).length, 0), 50);

  // the ground-truth tile (the fourth) is black for a good image and holds the mask for a defect
  const truthWhite = async (file) => {
    const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    t.is(info.width, 8 + 4 * 224 + 2 * 8 + 6 + 64 + 8);
    let white = 0;
    const x0 = info.width - 8 - 224;
    for (let y = 30; y < 30 + 224; y++) for (let x = x0; x < x0 + 224; x++) if (data[(y * info.width + x) * 3] > 200) white++;
    return white;
  };
  t.is(await truthWhite(path.join(dir, 'panels', 'good', '000.png')), 0);
  t.true(await truthWhite(path.join(dir, 'panels', 'hole', '000.png')) > 100);

  const html = fs.readFileSync(r.reportFile, 'utf8');
  t.true(html.includes(r.image.auroc.toFixed(4)) && html.includes(r.pixel.aupro.toFixed(4)), 'the metric table holds the returned metrics');
  t.regex(html, /F1-max thresholds of this set \(the model was not calibrated\)/);
  t.regex(html, /<img src="panels\/hole\/000\.png"/);

  t.truthy(chromium, 'headless Chromium is installed (scripts/setup.sh installs it)');
  const dom = openInChromium(r.reportFile, ['--dump-dom']);
  t.is(dom.status, 0, dom.stderr.slice(-2000));
  t.regex(dom.stdout, /data-pictures="52\/52"/, 'every panel and curve loaded in the browser');
  t.regex(dom.stdout, /data-broken=""/);
  const shot = path.join(tmpdir(), 'report.png');
  const s = openInChromium(r.reportFile, [`--screenshot=${shot}`, '--window-size=1280,1600', '--hide-scrollbars']);
  t.is(s.status, 0, s.stderr.slice(-2000));
  const stats = await sharp(shot).stats();
  t.true(stats.channels[0].stdev > 20, 'the screenshot shows a page, not a blank');

  // calibrated: labels from the model's thresholds; a second report replaces the first
  await model.calibrate(WEAVE, () => {});
  await model.evaluate(WEAVE, { report: dir });
  t.regex(fs.readFileSync(r.reportFile, 'utf8'), /the model's calibrated thresholds/);
  t.deepEqual(fs.readdirSync(path.dirname(dir)).filter((n) => n.startsWith('.report')), [], 'no temporary folder left');
  await model.dispose();
});

test('a report is never written over other files, and an aborted one leaves nothing', async (t) => {
  const model = await InpFormer.load(modelFile);
  const parent = tmpdir();
  const foreign = path.join(parent, 'mine');
  fs.mkdirSync(foreign);
  fs.writeFileSync(path.join(foreign, 'notes.txt'), 'keep me');
  const err = await t.throwsAsync(model.evaluate(WEAVE, { report: foreign }), { instanceOf: FileWriteError, message: /is not an inp-former report \(not replaced\)/ });
  t.is(err.file, foreign);
  t.is(fs.readFileSync(path.join(foreign, 'notes.txt'), 'utf8'), 'keep me');

  const ac = new AbortController();
  const target = path.join(parent, 'aborted');
  await t.throwsAsync(model.evaluate(WEAVE, { report: target, signal: ac.signal, onProgress: (p) => p.done === p.total && ac.abort() }), { instanceOf: AbortError });
  t.deepEqual(fs.readdirSync(parent).sort(), ['mine'], 'no report and no temporary folder');
  await model.dispose();
});

test('CLI: evaluate --report prints where the report is', (t) => {
  const dir = path.join(tmpdir(), 'cli-report');
  const r = spawnSync(process.execPath, [CLI, 'evaluate', modelFile, WEAVE, '--report', dir], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, new RegExp(`report: ${path.join(dir, 'index.html').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  t.true(fs.existsSync(path.join(dir, 'panels', 'thread', '009.png')));
});
