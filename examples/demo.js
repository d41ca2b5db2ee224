#!/usr/bin/env node
// The main job, end to end: train on the example tiles (normal images only), calibrate,
// evaluate, and write heatmaps of the test images.
//   npm run demo
// Uses DINOv2 weights when there are some (INP_FORMER_ENCODER=<file>, or downloaded with
// `npx inp-former weights download dinov2_vits14_reg`); otherwise a small built-in RANDOM encoder,
// which shows the pipeline working but is not a real detector.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { InpFormer, weightsCacheDir } = require('inp-former');

// without DINOv2 weights: a small random encoder, to show the pipeline (not a real detector)
const RANDOM_ENCODER = { embedDim: 64, depth: 10, numHeads: 4, posGridSize: 16, seed: 1 };

const data = path.join(__dirname, 'data', 'tiles');
const output = path.join(__dirname, 'output');

function findEncoder() {
  if (process.env.INP_FORMER_ENCODER) return process.env.INP_FORMER_ENCODER;
  for (const f of ['dinov2_vits14_reg4_pretrain.pth', 'dinov2_vitb14_reg4_pretrain.pth']) {
    const p = path.join(weightsCacheDir(), f);
    if (fs.existsSync(p)) return p;
  }
  return undefined;
}

(async () => {
  const encoder = findEncoder();
  const options = encoder
    ? { encoder, imageSize: 448, cropSize: 392 }
    : { encoder: RANDOM_ENCODER, imageSize: 128, cropSize: 112, seed: 1 };
  console.log(encoder ? `encoder: ${encoder}` : 'encoder: small built-in RANDOM encoder (no DINOv2 weights found; see README for the real command)');
  const model = await InpFormer.create(options);
  const run = model.fit(data, { epochs: encoder ? 10 : 15, batchSize: 8, warmupSteps: 10, seed: 1, validation: data });
  for await (const e of run) {
    if (e.type === 'epoch') console.log(`epoch ${e.epoch}/${e.epochs}  loss ${e.loss.toFixed(4)}  ${e.imagesPerSecond.toFixed(1)} images/s`);
  }
  const summary = await run;
  console.log(`trained in ${summary.seconds.toFixed(1)} s; thresholds: image ${summary.thresholds.imageThreshold.toFixed(4)}, pixel ${summary.thresholds.pixelThreshold.toFixed(4)}`);

  const report = await model.evaluate(data);
  const f = (x) => (x === undefined ? '  -   ' : x.toFixed(3));
  console.log('\nscope   image AUROC  image AP  pixel AUROC  AUPRO');
  console.log(`all     ${f(report.image.auroc)}        ${f(report.image.ap)}     ${f(report.pixel.auroc)}        ${f(report.pixel.aupro)}`);
  for (const [type, m] of Object.entries(report.perDefectType)) {
    console.log(`${type.padEnd(7)} ${f(m.image.auroc)}        ${f(m.image.ap)}     ${f(m.pixel?.auroc)}        ${f(m.pixel?.aupro)}`);
  }

  const tests = ['good', 'crack', 'spot'].flatMap((t) => fs.readdirSync(path.join(data, 'test', t)).slice(0, 2).map((f) => path.join(data, 'test', t, f)));
  fs.mkdirSync(output, { recursive: true });
  for (const file of tests) {
    const name = `${path.basename(path.dirname(file))}-${path.basename(file)}`;
    const p = await model.predict(file, { heatmap: path.join(output, name) });
    console.log(`${name.padEnd(14)} score ${p.score.toFixed(4)}  normalised ${p.normalizedScore.toFixed(3)}  ${p.isAnomalous ? 'ANOMALOUS' : 'ok'}`);
  }
  console.log(`\nheatmaps written to ${output}`);
  await model.save(path.join(output, 'model.pth'));
  await model.dispose();
})().catch((err) => {
  console.error(`demo failed: ${err.message}`);
  process.exit(1);
});
