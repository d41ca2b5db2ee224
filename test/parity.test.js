// The network against the reference fixture, from every kind of file a user may have.
'use strict';
const test = require('ava');
const path = require('node:path');
const { InpFormer, normalizeScore, normalizeMap } = require('..');
const { FIXTURE, manifest, ref, maxAbsDiff, inputBatch, TOL, FIXTURE_SIZES } = require('./helpers');

const input = inputBatch([0, 1, 2]);

async function run(file, options = {}) {
  const model = await InpFormer.load(path.join(FIXTURE, file), { ...FIXTURE_SIZES, ...options });
  try {
    return { model, out: await model.inferTensor(input.data, input.shape, { features: true }) };
  } finally {
    await model.dispose();
  }
}

/** Max errors of a forward pass against the fixture; prefix 'ckpt/' for the anomalib model's outputs. */
function errorsAgainst(out, prefix = '') {
  return {
    en_0: maxAbsDiff(out.encoderFeatures[0].data, ref('en_0')),
    en_1: maxAbsDiff(out.encoderFeatures[1].data, ref('en_1')),
    de_0: maxAbsDiff(out.decoderFeatures[0].data, ref(prefix + 'de_0')),
    de_1: maxAbsDiff(out.decoderFeatures[1].data, ref(prefix + 'de_1')),
    agg_prototype: maxAbsDiff(out.prototypes.data, ref(prefix + 'agg_prototype')),
    g_loss: Math.abs(out.inpLoss - ref(prefix + 'g_loss')[0]),
    anomaly_map: maxAbsDiff(out.anomalyMaps, ref(prefix + 'anomaly_map')),
    pred_score: maxAbsDiff(out.scores, ref(prefix + 'pred_score')),
  };
}

function checkForward(t, errors) {
  t.true(errors.en_0 <= TOL.en && errors.en_1 <= TOL.en, 'encoder features');
  t.true(errors.de_0 <= TOL.de && errors.de_1 <= TOL.de, 'decoder features');
  t.true(errors.agg_prototype <= TOL.proto, 'prototypes');
  t.true(errors.g_loss <= TOL.gLoss, 'INP coherence loss');
  t.true(errors.anomaly_map <= TOL.map, 'anomaly map');
  t.true(errors.pred_score <= TOL.score, 'scores');
}

function checkUpstream(t, out) {
  const errors = { ...errorsAgainst(out), anomaly_map_raw: maxAbsDiff(out.anomalyMapsRaw, ref('anomaly_map_raw')) };
  t.log(JSON.stringify(errors));
  checkForward(t, errors);
  t.true(errors.anomaly_map_raw <= TOL.map, 'map before the blur');
  t.deepEqual(out.encoderFeatures[0].shape, [3, 96, 16, 16]);
  t.deepEqual(out.prototypes.shape, [3, 6, 96]);
}

test('upstream model.pth matches the reference', async (t) => {
  const { model, out } = await run('inp_former.pth');
  t.is(model.config.source.kind, 'upstream');
  t.is(model.config.network.encoder.numRegisterTokens, 4);
  t.is(model.config.network.numHeads, 4);
  t.true(model.config.network.mlpBias);
  checkUpstream(t, out);
});

test('encoder replaced from Meta-named .pth matches', async (t) => {
  const { out } = await run('inp_former.pth', { encoder: path.join(FIXTURE, 'dinov2_encoder.pth') });
  checkUpstream(t, out);
});

test('encoder replaced from a TorchScript archive matches', async (t) => {
  const { model, out } = await run('inp_former.pth', { encoder: path.join(FIXTURE, 'dinov2_encoder.torchscript.pt') });
  t.regex(model.config.source.encoder, /torchscript/);
  checkUpstream(t, out);
});

test('anomalib .ckpt matches its outputs, thresholds and post-processing', async (t) => {
  const { model, out } = await run('anomalib_inp_former.ckpt');
  t.is(model.config.source.kind, 'anomalib');
  t.false(model.config.network.mlpBias, 'anomalib MLPs have no biases');
  t.deepEqual(model.config.network.targetLayers, [2, 3, 4, 5, 6, 7, 8, 9]);
  const errors = errorsAgainst(out, 'ckpt/');
  const th = model.thresholds;
  t.truthy(th);
  const buffers = manifest.checkpoints['anomalib_inp_former.ckpt'].post_processor_buffers;
  t.deepEqual(th, {
    imageThreshold: buffers._image_threshold, pixelThreshold: buffers._pixel_threshold,
    imageMin: buffers.image_min, imageMax: buffers.image_max, pixelMin: buffers.pixel_min, pixelMax: buffers.pixel_max,
  });
  const postScores = Float32Array.from(out.scores, (s) => normalizeScore(s, th));
  const postMap = normalizeMap(out.anomalyMaps, th);
  errors.post_pred_score = maxAbsDiff(postScores, ref('ckpt/post_pred_score'));
  errors.post_anomaly_map = maxAbsDiff(postMap, ref('ckpt/post_anomaly_map'));
  const labels = Array.from(postScores, (s) => (s > 0.5 ? 1 : 0));
  t.deepEqual(labels, Array.from(ref('ckpt/post_pred_label')));
  t.log(JSON.stringify(errors));
  checkForward(t, errors);
  t.true(errors.post_pred_score <= TOL.postScore);
  t.true(errors.post_anomaly_map <= TOL.postMap);
});

test('an anomalib checkpoint brings its pre-processing sizes', async (t) => {
  const model = await InpFormer.load(path.join(FIXTURE, 'anomalib_inp_former.ckpt'));
  t.is(model.config.imageSize, 256, "the pickled PreProcessor's Resize");
  t.is(model.config.cropSize, 224, 'and its CenterCrop');
  const out = await model.inferTensor(input.data, input.shape);
  t.true(maxAbsDiff(out.scores, ref('ckpt/pred_score')) <= TOL.score);
  await model.dispose();
});

test('bfloat16 precision runs and stays close to float32', async (t) => {
  const { model, out } = await run('inp_former.pth', { precision: 'bfloat16' });
  t.is(model.config.precision, 'bfloat16');
  const err = maxAbsDiff(out.scores, ref('pred_score'));
  t.log(`bf16 score error ${err}`);
  t.true(err < 0.05);
});
