// Shared test helpers: the reference fixture, error statistics, temporary folders.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

// Vendored copies of ../shared's reference-a and synth-ad (test/fixtures/README.md), so that a
// clone alone passes its tests; they are kept out of the npm package.
const FIXTURES = path.join(__dirname, 'fixtures');
const FIXTURE = path.join(FIXTURES, 'reference-a');
const manifest = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'manifest.json'), 'utf8'));

/** An expected tensor of the fixture as Float32Array. */
function ref(name) {
  const b = fs.readFileSync(path.join(FIXTURE, manifest.tensors[name].file));
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

function maxAbsDiff(a, b) {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let e = 0;
  for (let i = 0; i < a.length; i++) e = Math.max(e, Math.abs(a[i] - b[i]));
  return e;
}

/** The fixture's input batch and a sub-batch by indices. */
function inputBatch(indices) {
  const input = ref('input');
  const per = 3 * 224 * 224;
  const data = new Float32Array(indices.length * per);
  indices.forEach((b, j) => data.set(input.subarray(b * per, (b + 1) * per), j * per));
  return { data, shape: [indices.length, 3, 224, 224] };
}

function tmpdir(prefix = 'inp-former-test-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Suggested tolerances of the fixture README. */
const TOL = {
  en: 1e-4, de: 1e-6, proto: 5e-6, gLoss: 1e-6, map: 5e-6, score: 1e-6,
  postMap: 2e-5, postScore: 5e-5, traceLoss: 1e-6, traceGradNorm: 1e-5, weightsQ999: 1e-6, weightsMax: 2e-5, lr: 1e-12,
};

/** Fixture-geometry options: 256 px resize, 224 crop. */
const FIXTURE_SIZES = { imageSize: 256, cropSize: 224 };

/**
 * reference-a's 6-step training trace run by fit(): per step the relative errors of loss,
 * coherence loss and grad norm, the lr error and the ReLU margin; over the trained weights the
 * 99.9th-percentile and largest absolute errors and the relative L2 error of the whole update.
 */
async function referenceTrace(fitOptions = {}, loadOptions = {}) {
  const { InpFormer } = require('..');
  const { readCheckpointFile } = require('inp-former/internal');
  const model = await InpFormer.load(path.join(FIXTURE, 'inp_former.pth'), { ...FIXTURE_SIZES, ...loadOptions });
  const events = [];
  const summary = await model.fit(manifest.trace.steps.map((s) => inputBatch(s.batch)), {
    epochs: 1, warmupSteps: 2, ...fitOptions, onProgress: (e) => e.type === 'step' && events.push(e),
  });
  const rel = (a, b) => Math.abs(a - b) / Math.abs(b);
  const rows = events.map((e, i) => {
    const s = manifest.trace.steps[i];
    return { step: e.step, lr: Math.abs(e.lr - s.lr), loss: rel(e.loss, s.loss), inpLoss: rel(e.inpLoss, s.g_loss), gradNorm: rel(e.gradNorm, s.grad_norm), reluMargin: e.reluMargin };
  });
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
  const precision = model.config.precision;
  await model.dispose();
  errors.sort((a, b) => a - b);
  const w = { n: errors.length, q999: errors[Math.floor(errors.length * 0.999)], max: errors[errors.length - 1], updateRelL2: Math.sqrt(updErr2 / upd2) };
  return { rows, w, steps: summary.steps, precision };
}

module.exports = { FIXTURES, FIXTURE, manifest, ref, maxAbsDiff, inputBatch, tmpdir, TOL, FIXTURE_SIZES, referenceTrace };
