#!/usr/bin/env node
// Measures the parity errors against test/fixtures/reference-a and prints them as JSON
// (forward outputs for every kind of checkpoint, the 6-step training trace, final weights).
//   node bench/parity.js
'use strict';
const path = require('node:path');
const { InpFormer } = require('..');
const { readCheckpointFile } = require('inp-former/internal');
const { FIXTURE, manifest, ref, maxAbsDiff, inputBatch, FIXTURE_SIZES } = require('../test/helpers');

(async () => {
  const input = inputBatch([0, 1, 2]);
  const report = { openblasCoretype: process.env.OPENBLAS_CORETYPE ?? '(unset)', forward: {}, trace: {} };
  const sources = {
    'inp_former.pth': [{}, ''],
    'anomalib_inp_former.ckpt': [{}, 'ckpt/'],
    'inp_former.pth + dinov2_encoder.pth': [{ encoder: path.join(FIXTURE, 'dinov2_encoder.pth') }, ''],
    'inp_former.pth + TorchScript encoder': [{ encoder: path.join(FIXTURE, 'dinov2_encoder.torchscript.pt') }, ''],
  };
  for (const [label, [opts, prefix]] of Object.entries(sources)) {
    const file = label.split(' ')[0];
    const model = await InpFormer.load(path.join(FIXTURE, file), { ...FIXTURE_SIZES, ...opts });
    const r = await model.inferTensor(input.data, input.shape, { features: true });
    const e = {
      en: Math.max(maxAbsDiff(r.encoderFeatures[0].data, ref('en_0')), maxAbsDiff(r.encoderFeatures[1].data, ref('en_1'))),
      de: Math.max(maxAbsDiff(r.decoderFeatures[0].data, ref(prefix + 'de_0')), maxAbsDiff(r.decoderFeatures[1].data, ref(prefix + 'de_1'))),
      agg_prototype: maxAbsDiff(r.prototypes.data, ref(prefix + 'agg_prototype')),
      g_loss: Math.abs(r.inpLoss - ref(prefix + 'g_loss')[0]),
      anomaly_map: maxAbsDiff(r.anomalyMaps, ref(prefix + 'anomaly_map')),
      pred_score: maxAbsDiff(r.scores, ref(prefix + 'pred_score')),
    };
    report.forward[label] = e;
    await model.dispose();
  }
  const model = await InpFormer.load(path.join(FIXTURE, 'inp_former.pth'), FIXTURE_SIZES);
  const steps = [];
  await model.fit(manifest.trace.steps.map((s) => inputBatch(s.batch)), { epochs: 1, warmupSteps: 2, onProgress: (e) => e.type === 'step' && steps.push(e) });
  const rel = (a, b) => Math.abs(a - b) / Math.abs(b);
  report.trace.maxRelLoss = Math.max(...steps.map((e, i) => rel(e.loss, manifest.trace.steps[i].loss)));
  report.trace.maxRelInpLoss = Math.max(...steps.map((e, i) => rel(e.inpLoss, manifest.trace.steps[i].g_loss)));
  report.trace.maxRelGradNorm = Math.max(...steps.map((e, i) => rel(e.gradNorm, manifest.trace.steps[i].grad_norm)));
  report.trace.maxAbsLr = Math.max(...steps.map((e, i) => Math.abs(e.lr - manifest.trace.steps[i].lr)));
  const expected = (await readCheckpointFile(path.join(FIXTURE, 'expected.pth'))).root.get('final_trainable_state_dict');
  const errs = [];
  for (const p of await model.stateDict()) {
    const e = expected.get(p.name);
    if (!e) continue;
    const v = e.toFloat32();
    for (let i = 0; i < v.length; i++) errs.push(Math.abs(v[i] - p.data[i]));
  }
  errs.sort((a, b) => a - b);
  report.trace.finalWeightsQ999 = errs[Math.floor(errs.length * 0.999)];
  report.trace.finalWeightsMax = errs[errs.length - 1];
  await model.dispose();
  console.log(JSON.stringify(report, null, 2));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
