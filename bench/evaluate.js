#!/usr/bin/env node
// evaluate() on synth-ad/weave (50 images, 30 with masks) with a small model (embedDim 64, 128 px
// resize, 112 crop): the time to score the images, the whole evaluate() (scoring, then image and
// pixel metrics with AUPRO on a worker thread), and evaluate({ report }) with the visual report.
// Prints one JSON line (docs/benchmarks.md, "Evaluation").
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { InpFormer } = require('..');

const WEAVE = path.join(__dirname, '..', 'test', 'fixtures', 'datasets', 'synth-ad', 'weave');

(async () => {
  const model = await InpFormer.create({ encoder: { embedDim: 64, depth: 10, numHeads: 4, posGridSize: 16, seed: 1 }, imageSize: 128, cropSize: 112, seed: 1, threads: 2 });
  await model.fit(WEAVE, { epochs: 3, batchSize: 8, warmupSteps: 5, seed: 1 });
  let scoredAt = 0;
  const start = performance.now();
  const r = await model.evaluate(WEAVE, { onProgress: (p) => p.done === p.total && (scoredAt = performance.now()) });
  const total = performance.now() - start;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inp-former-report-'));
  const t = performance.now();
  await model.evaluate(WEAVE, { report: path.join(dir, 'report') });
  const withReport = performance.now() - t;
  fs.rmSync(dir, { recursive: true, force: true });
  await model.dispose();
  const s = (ms) => Math.round(ms) / 1000;
  console.log(JSON.stringify({
    date: new Date().toISOString().slice(0, 10), cpu: os.cpus()[0].model, images: r.images,
    scoringSeconds: s(scoredAt - start), evaluateSeconds: s(total), withReportSeconds: s(withReport), aupro: r.pixel.aupro,
  }));
})();
