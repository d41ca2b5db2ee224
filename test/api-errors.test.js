// Every bad call to the public API ends in a specific typed error that says what was expected
// and what was given: never a TypeError, a RangeError, a bare InpFormerError, a hang, a huge
// allocation or a model left busy. Each row was a failure of some kind when first probed.
'use strict';
const test = require('ava');
const fs = require('node:fs');
const path = require('node:path');
const {
  InpFormer, InpFormerError, InvalidArgumentError, CheckpointError, ImageDecodeError, FileWriteError, NativeError,
} = require('..');
const { FIXTURES, FIXTURE, tmpdir } = require('./helpers');

const GOOD = path.join(FIXTURES, 'datasets', 'synth-ad', 'weave', 'train', 'good');
const enc = { embedDim: 32, depth: 10, numHeads: 2, posGridSize: 8 };
const tiny = { encoder: enc, imageSize: 64, cropSize: 56 };
const withEnc = (e) => ({ ...tiny, encoder: { ...enc, ...e } });
const MODEL = path.join(FIXTURE, 'inp_former.pth');

const CREATE = [
  [null, /expected an object for the options of InpFormer\.create\(\), got null/],
  [{ ...tiny, learningrate: 1 }, /unknown option 'learningrate' for InpFormer\.create\(\)/],
  [{ ...tiny, imagesize: 64 }, /unknown option 'imagesize' for InpFormer\.create\(\): did you mean 'imageSize'\?/],
  [withEnc({ embedDim: 1 << 20, numHeads: 1 }), /expected an integer from 1 to 4096 for encoder\.embedDim, got 1048576/],
  [withEnc({ depth: 1e6 }), /expected an integer from 1 to 64 for encoder\.depth, got 1000000/],
  [withEnc({ embedDim: 4096, depth: 64, numHeads: 64 }), /expected a random encoder of at most 1\.2e\+9 parameters .* for encoder, got '1\.29e\+10 parameters'/],
  [withEnc({ embedDim: 30, numHeads: 4 }), /expected a divisor of embedDim 30 for encoder\.numHeads, got 4/],
  [withEnc({ posGridSize: 0 }), /expected an integer from 1 to 512 for encoder\.posGridSize, got 0/],
  [withEnc({ posGridSize: 1e6 }), /for encoder\.posGridSize, got 1000000/],
  [withEnc({ numRegisterTokens: -1 }), /for encoder\.numRegisterTokens, got -1/],
  [withEnc({ numRegisterTokens: 1.5 }), /expected an integer from 0 to 64 for encoder\.numRegisterTokens, got 1\.5/],
  [withEnc({ mlpHiddenDim: 0 }), /for encoder\.mlpHiddenDim, got 0/],
  [withEnc({ patchSize: 0 }), /for encoder\.patchSize, got 0/],
  [withEnc({ seed: 'x' }), /for encoder\.seed, got 'x'/],
  [withEnc({ heads: 2 }), /unknown option 'encoder\.heads' for InpFormer\.create\(\)/],
  [{ ...tiny, encoder: 5 }, /expected a weights file, a weights name or a random-encoder spec .* for encoder, got 5/],
  [{ ...tiny, targetLayers: [1.5, 2, 3, 4, 5, 6, 7, 8] }, /expected an integer from 0 to 255 for targetLayers\[0\], got 1\.5/],
  [{ ...tiny, targetLayers: [1, 2, 99, 3, 4, 5, 6, 7] }, /targetLayers has layer 99 but the encoder has 10 blocks/],
  [{ ...tiny, targetLayers: [] }, /expected an array of 1 to 64 items for targetLayers, got \[\]/],
  [{ ...tiny, fuseLayerDecoder: [1, 2] }, /expected an array of 1 to 64 items for fuseLayerDecoder\[0\], got 1/],
  [{ ...tiny, inpNum: 1e7 }, /expected an integer from 1 to 1024 for inpNum, got 10000000/],
  [{ ...tiny, inpNum: 2.5 }, /for inpNum, got 2\.5/],
  [{ ...tiny, seed: -1 }, /expected an integer from 0 to 4294967295 for seed, got -1/],
  [{ ...tiny, seed: NaN }, /for seed, got NaN/],
  [{ ...tiny, threads: 1e6 }, /expected an integer from 1 to 1024 for threads, got 1000000/],
  [{ ...tiny, imageSize: 1e6 }, /expected an integer from 1 to 4096 for imageSize, got 1000000/],
  [{ ...tiny, precision: 'fp8' }, /expected one of 'float32', 'bfloat16', 'auto' for precision, got 'fp8'/],
  [{ ...tiny, device: 'tpu' }, /expected 'cpu', 'cuda', 'cuda:N' or 'auto' for device, got 'tpu'/],
  [{ ...tiny, device: 5 }, /for device, got 5/],
  [{ ...tiny, removeClassToken: 'no' }, /expected true or false for removeClassToken, got 'no'/],
  [{ ...tiny, predictBatchSize: 0 }, /for predictBatchSize, got 0/],
];

test('create(): every bad option is an InvalidArgumentError saying what was expected', async (t) => {
  for (const [options, message] of CREATE) {
    const err = await t.throwsAsync(InpFormer.create(options), { instanceOf: InvalidArgumentError }, JSON.stringify(options));
    if (err) t.regex(err.message, message);
  }
});

test('load(): bad paths and options are typed before the file is read', async (t) => {
  await t.throwsAsync(InpFormer.load(5), { instanceOf: InvalidArgumentError, message: /expected a non-empty string for the file of InpFormer\.load\(\), got 5/ });
  await t.throwsAsync(InpFormer.load(null), { instanceOf: InvalidArgumentError, message: /got null/ });
  await t.throwsAsync(InpFormer.load(''), { instanceOf: InvalidArgumentError, message: /got ''/ });
  await t.throwsAsync(InpFormer.load('a\0b'), { instanceOf: InvalidArgumentError });
  await t.throwsAsync(InpFormer.load(MODEL, { devise: 'cpu' }), { instanceOf: InvalidArgumentError, message: /unknown option 'devise' for InpFormer\.load\(\): did you mean 'device'\?/ });
  await t.throwsAsync(InpFormer.load(MODEL, { seed: 1 }), { instanceOf: InvalidArgumentError, message: /unknown option 'seed' for InpFormer\.load\(\)/ });
  await t.throwsAsync(InpFormer.load(MODEL, { inpNum: 3 }), { instanceOf: CheckpointError, message: /inpNum 3 was asked for but 'prototype_token' has shape \[6, 96\]/ });
  await t.throwsAsync(InpFormer.load(path.join(tmpdir(), 'none.pth')), { instanceOf: CheckpointError, message: /none\.pth: cannot open: no such file/ });
});

test('predict(), inferTensor(), fit(), save(): bad calls are typed, and a refused fit leaves the model usable', async (t) => {
  const model = await InpFormer.create(tiny);
  t.teardown(() => model.dispose());
  const img = path.join(GOOD, fs.readdirSync(GOOD)[0]);
  const dir = tmpdir();
  const cases = [
    [() => model.predict(img, null), InvalidArgumentError, /expected an object for the options of predict\(\), got null/],
    [() => model.predict(img, { mapSize: 'big' }), InvalidArgumentError, /expected one of 'input', 'crop' for mapSize, got 'big'/],
    [() => model.predict(img, { heatmap: 5 }), InvalidArgumentError, /expected a non-empty string for heatmap, got 5/],
    [() => model.predict(img, { heatMap: 'x.png' }), InvalidArgumentError, /did you mean 'heatmap'\?/],
    [() => model.predict(img, { heatmap: dir }), FileWriteError, new RegExp(`^${dir}: cannot write: a folder of that name exists`)],
    [() => model.predict(img, { heatmap: '/proc/nope/x.png' }), FileWriteError, /^\/proc\/nope\/x\.png: cannot create folder \/proc\/nope/],
    [() => model.inferTensor(new Float32Array(3 * 56 * 56), [1, 3, 56, 56], null), InvalidArgumentError, /for the options of inferTensor\(\), got null/],
    [() => model.inferTensor(new Float32Array(3 * 56 * 56), [1, 3, 56, 56], { feature: true }), InvalidArgumentError, /did you mean 'features'\?/],
    [() => model.fit(GOOD, { signal: 5 }), InvalidArgumentError, /expected an AbortSignal for signal, got 5/],
    [() => model.fit(GOOD, { onProgress: 5 }), InvalidArgumentError, /expected a function for onProgress, got 5/],
    [() => model.fit(GOOD, { checkpoint: 'x.pth' }), InvalidArgumentError, /expected an object for checkpoint, got 'x\.pth'/],
    [() => model.fit(GOOD, { checkpoint: { file: 'x.pth' } }), InvalidArgumentError, /unknown option 'checkpoint\.file' for fit\(\)/],
    [() => model.fit(GOOD, { checkpoint: {} }), InvalidArgumentError, /expected a non-empty string for checkpoint\.path, got undefined/],
    [() => model.fit(GOOD, { learningrate: 0.01 }), InvalidArgumentError, /unknown option 'learningrate' for fit\(\): did you mean 'learningRate'\?/],
    [() => model.fit(GOOD, { fewShots: 2 }), InvalidArgumentError, /unknown option 'fewShots' for fit\(\): did you mean 'fewShot'/],
    [() => model.fit(GOOD, { learningRate: 1e308 }), InvalidArgumentError, /expected a number above 0 and at most 1 for learningRate, got 1e\+308/],
    [() => model.fit(GOOD, { epochs: '3' }), InvalidArgumentError, /expected an integer from 1 to 1000000 for epochs, got '3'/],
    [() => model.fit(GOOD, { batchSize: 1e9 }), InvalidArgumentError, /for batchSize, got 1000000000/],
    [() => model.fit(GOOD, { warmupSteps: 1.5 }), InvalidArgumentError, /for warmupSteps, got 1\.5/],
    [() => model.fit(GOOD, { seed: 0.5 }), InvalidArgumentError, /for seed, got 0\.5/],
    [() => model.fit([{ data: new Float32Array(3 * 50 * 50), shape: [1, 3, 50, 50] }], { epochs: 1 }), InvalidArgumentError, /image size 50x50 is not a multiple of the patch size 14/],
    [() => model.save(5), InvalidArgumentError, /expected a non-empty string for the file of save\(\), got 5/],
    [() => model.save(''), InvalidArgumentError, /got ''/],
    [() => model.save(dir), CheckpointError, new RegExp(`^${dir}: cannot write: a folder of that name exists`)],
  ];
  for (const [call, type, message] of cases) {
    const err = await t.throwsAsync(call(), { instanceOf: type }, String(message));
    if (err) t.regex(err.message, message);
  }
  // none of the refusals above left the model busy
  const r = await model.predict(img);
  t.true(Number.isFinite(r.score));
});

test('errors from the native core are typed too: no bare InpFormerError', async (t) => {
  const model = await InpFormer.create(tiny);
  t.teardown(() => model.dispose());
  // shapes the TS checks let through reach libtorch; what it says comes back as a NativeError
  const { fromNativeError } = require('inp-former/internal');
  for (const code of ['ERR_INP_TORCH', 'ERR_INP_NATIVE', undefined]) {
    const e = fromNativeError(Object.assign(new Error('x'), { code }));
    t.true(e instanceof NativeError, String(code));
    t.not(e.constructor, InpFormerError);
  }
  t.is(fromNativeError(Object.assign(new Error('out of memory'), { code: 'ERR_INP_OUT_OF_MEMORY' })).name, 'OutOfMemoryError');
});
