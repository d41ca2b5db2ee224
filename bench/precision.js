#!/usr/bin/env node
// Detection quality of bfloat16 against float32, on every synth-ad category and the demo's tiles
// (examples/data/tiles, where this small model detects well): the same small
// random-encoder model (no DINOv2 weights can be downloaded here) trained three ways, then
// evaluated on the category's test set:
//   float32        fit and inference in float32 (exact to the reference)
//   mixed          fit({ precision: 'bfloat16' }): bfloat16 products, float32 weights; float32 inference
//   bfloat16 model create({ precision: 'bfloat16' }): the same fit, then bfloat16 inference
// Prints a markdown table and one JSON line (docs/parity.md, "bfloat16").
//   node bench/precision.js [--epochs 15]
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { InpFormer } = require('..');

const DATA = path.join(__dirname, '..', 'test', 'fixtures', 'datasets', 'synth-ad');
const ENCODER = { embedDim: 128, depth: 10, numHeads: 4, posGridSize: 16, seed: 1 };
const VARIANTS = [
  { name: 'float32', create: { precision: 'float32' }, fit: {} },
  { name: 'mixed', create: { precision: 'float32' }, fit: { precision: 'bfloat16' } },
  { name: 'bfloat16 model', create: { precision: 'bfloat16' }, fit: {} },
];

async function run(dir, variant, epochs) {
  const model = await InpFormer.create({ encoder: ENCODER, imageSize: 128, cropSize: 112, seed: 1, ...variant.create });
  try {
    const losses = [];
    const summary = await model.fit(dir, {
      epochs, batchSize: 8, warmupSteps: 10, seed: 1, ...variant.fit,
      onProgress: (e) => e.type === 'epoch' && losses.push(e.loss),
    });
    const r = await model.evaluate(dir);
    return {
      firstEpochLoss: losses[0], finalEpochLoss: losses[losses.length - 1], fitImagesPerSecond: summary.imagesPerSecond,
      imageAuroc: r.image.auroc, pixelAuroc: r.pixel.auroc, aupro: r.pixel.aupro,
    };
  } finally {
    await model.dispose();
  }
}

(async () => {
  const arg = (n, d) => (process.argv.includes(n) ? Number(process.argv[process.argv.indexOf(n) + 1]) : d);
  const epochs = arg('--epochs', 15);
  const categories = fs.readdirSync(DATA).filter((c) => fs.existsSync(path.join(DATA, c, 'train'))).map((c) => [`synth-ad/${c}`, path.join(DATA, c)]);
  categories.push(['demo tiles', path.join(__dirname, '..', 'examples', 'data', 'tiles')]);
  const rows = [];
  for (const [category, dir] of categories) {
    for (const v of VARIANTS) rows.push({ category, variant: v.name, ...(await run(dir, v, epochs)) });
  }
  const f = (x, d = 3) => x.toFixed(d);
  console.log('| category | training / inference | loss, first / last epoch | image AUROC | pixel AUROC | AUPRO | fit img/s |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.category} | ${r.variant} | ${f(r.firstEpochLoss, 4)} / ${f(r.finalEpochLoss, 4)} | ${f(r.imageAuroc)} | ${f(r.pixelAuroc)} | ${f(r.aupro)} | ${f(r.fitImagesPerSecond, 1)} |`);
  }
  console.log(JSON.stringify({ date: new Date().toISOString().slice(0, 10), cpu: os.cpus()[0].model, epochs, encoder: ENCODER, rows }));
})();
