// Shared test helpers: the reference fixture, error statistics, temporary folders.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const SHARED = path.resolve(__dirname, '..', '..', 'shared');
const FIXTURE = path.join(SHARED, 'fixtures', 'reference-a');
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

module.exports = { SHARED, FIXTURE, manifest, ref, maxAbsDiff, inputBatch, tmpdir, TOL, FIXTURE_SIZES };
