// inp-former/queue on a real redis-server with real worker processes: queued fits equal
// single-process fits, a worker killed with -9 mid-fit hands its job on and the resumed weights
// equal an uninterrupted run's, predict and evaluate jobs equal direct calls, cancels and bad
// jobs fail typed, and a worker survives them.
'use strict';
const test = require('ava');
const fs = require('node:fs');
const path = require('node:path');
const { InpFormer, AbortError, CheckpointError, ImageDecodeError, InvalidArgumentError } = require('..');
const { InpFormerQueue } = require('inp-former/queue');
const { FIXTURES, tmpdir, maxAbsDiff } = require('./helpers');
const { startRedis, startWorkerProcess } = require('./services');

const SYNTH = path.join(FIXTURES, 'datasets', 'synth-ad');
const CATEGORIES = {
  weave: path.join(SYNTH, 'weave'),
  disc: path.join(SYNTH, 'disc'),
  tiles: path.join(__dirname, '..', 'examples', 'data', 'tiles'),
};
const create = { encoder: { embedDim: 32, depth: 10, numHeads: 2, posGridSize: 8, seed: 3 }, imageSize: 64, cropSize: 56, seed: 5 };
const fitOptions = { epochs: 2, batchSize: 8, warmupSteps: 2, seed: 7 };

let redis;
test.before(async () => {
  redis = await startRedis();
});
test.after.always(async () => {
  await redis?.stop();
});

/** A model's weights by name. */
async function weightsOf(model) {
  return new Map((await model.stateDict()).map((p) => [p.name, p.data]));
}

/** Largest difference between two models' weights (Infinity when their names differ). */
function weightDiff(a, b) {
  if (a.size !== b.size) return Infinity;
  let d = 0;
  for (const [name, data] of a) {
    if (!b.has(name)) return Infinity;
    d = Math.max(d, maxAbsDiff(data, b.get(name)));
  }
  return d;
}

/** The weights an uninterrupted single-process fit gives, with the workers' thread count. */
async function referenceFit(data, fit) {
  const m = await InpFormer.create({ ...create, threads: 1 });
  await m.fit(data, fit);
  const w = await weightsOf(m);
  await m.dispose();
  return w;
}

test.serial('fits of three categories on two workers equal single-process fits; predict and evaluate jobs equal direct calls', async (t) => {
  const models = tmpdir('inp-former-models-');
  const workers = await Promise.all([1, 2].map(() => startWorkerProcess({ redis: redis.url, models, queue: 'fits' })));
  const queue = new InpFormerQueue({ redis: redis.url, name: 'fits' });
  try {
    const jobs = await Promise.all(Object.entries(CATEGORIES).map(([name, data]) =>
      queue.enqueueFit({ model: `${name}/model.pth`, data, create, fit: fitOptions })));
    const results = await Promise.all(jobs.map((j) => j.result()));
    t.deepEqual(results.map((r) => r.model).sort(), ['disc/model.pth', 'tiles/model.pth', 'weave/model.pth']);
    t.is(new Set(results.map((r) => r.worker)).size, 2, `the jobs were shared by both workers: ${results.map((r) => r.worker)}`);
    for (const [name, data] of Object.entries(CATEGORIES)) {
      const queued = await InpFormer.load(path.join(models, name, 'model.pth'), { threads: 1 });
      const d = weightDiff(await weightsOf(queued), await referenceFit(data, fitOptions));
      await queued.dispose();
      t.is(d, 0, `${name}: queued fit equals the single-process fit (max difference ${d})`);
    }
    t.deepEqual(fs.readdirSync(path.join(models, '.inp-former-jobs')), [], 'checkpoints of finished fits are removed');

    // predict: paths and an encoded image, with maps; evaluate: the same report as a direct call
    const images = ['good/000.png', 'hole/000.png'].map((f) => path.join(CATEGORIES.weave, 'test', f));
    const inputs = [...images, fs.readFileSync(images[1])];
    const p = await queue.enqueuePredict({ model: 'weave/model.pth', inputs, maps: true });
    const e = await queue.enqueueEvaluate({ model: 'weave/model.pth', data: CATEGORIES.weave });
    const [{ predictions }, { report }] = await Promise.all([p.result(), e.result()]);
    const direct = await InpFormer.load(path.join(models, 'weave', 'model.pth'), { threads: 1 });
    const want = await direct.predict(inputs);
    const wantReport = await direct.evaluate(CATEGORIES.weave);
    await direct.dispose();
    t.is(predictions.length, 3);
    predictions.forEach((q, i) => {
      t.is(q.score, want[i].score, `image ${i}: the same score`);
      t.is(maxAbsDiff(q.anomalyMap, want[i].anomalyMap), 0, `image ${i}: the same map`);
      t.deepEqual([q.width, q.height, q.isAnomalous], [want[i].width, want[i].height, want[i].isAnomalous]);
    });
    t.deepEqual(report, wantReport);
    const scoresOnly = await (await queue.enqueuePredict({ model: 'weave/model.pth', inputs: images })).result();
    t.false('anomalyMap' in scoresOnly.predictions[0], 'maps only when asked for');
  } finally {
    await queue.close();
    for (const w of workers) t.is((await w.stop()).code, 0, `worker exits 0 on SIGTERM; log:\n${w.log().slice(-2000)}`);
    fs.rmSync(models, { recursive: true, force: true });
  }
});

test.serial('kill -9 of the worker running a fit: another worker resumes it and the weights equal an uninterrupted run', async (t) => {
  const models = tmpdir('inp-former-models-');
  const workers = await Promise.all([1, 2].map(() => startWorkerProcess({ redis: redis.url, models, queue: 'kill' })));
  const queue = new InpFormerQueue({ redis: redis.url, name: 'kill' });
  const fit = { epochs: 6, batchSize: 8, warmupSteps: 2, seed: 11 };
  try {
    let killed;
    const job = await queue.enqueueFit({ model: 'weave.pth', data: CATEGORIES.weave, create, fit, checkpointEveryEpochs: 1 }, {
      onProgress: (e) => {
        // after the second epoch's checkpoint: kill the worker that runs the job
        if (killed || e.type !== 'epoch' || e.epoch < 2) return;
        killed = workers.find((w) => e.worker.endsWith(`:${w.pid}`));
        killed.child.kill('SIGKILL');
      },
    });
    const result = await job.result();
    t.truthy(killed, 'a worker was killed during the fit');
    t.is((await killed.exited).signal, 'SIGKILL');
    t.not(result.worker.split(':').pop(), String(killed.pid), 'the other worker finished it');
    t.true(result.resumedFromStep > 0, `resumed from a checkpoint (step ${result.resumedFromStep}), not started over`);
    const queued = await InpFormer.load(path.join(models, 'weave.pth'), { threads: 1 });
    const d = weightDiff(await weightsOf(queued), await referenceFit(CATEGORIES.weave, fit));
    await queued.dispose();
    t.log(`killed worker ${killed.pid} after epoch 2; resumed at step ${result.resumedFromStep} on ${result.worker}; max weight difference ${d}`);
    t.is(d, 0, 'resumed weights equal the uninterrupted run');
  } finally {
    await queue.close();
    for (const w of workers) await w.stop();
    fs.rmSync(models, { recursive: true, force: true });
  }
});

test.serial('cancels and bad jobs fail with typed errors; the worker keeps serving', async (t) => {
  const models = tmpdir('inp-former-models-');
  const worker = await startWorkerProcess({ redis: redis.url, models, queue: 'errors' });
  const queue = new InpFormerQueue({ redis: redis.url, name: 'errors' });
  try {
    // a running fit, cancelled through its signal: AbortError within a step, no model written
    const controller = new AbortController();
    let steps = 0;
    const long = await queue.enqueueFit({ model: 'long.pth', data: CATEGORIES.weave, create, fit: { epochs: 1000, batchSize: 4 } }, {
      signal: controller.signal, onProgress: (e) => e.type === 'step' && ++steps === 1 && controller.abort(),
    });
    const err = await t.throwsAsync(long.result(), { instanceOf: AbortError });
    t.is(err.jobId, long.id);
    t.is(await long.state(), 'failed');
    t.false(fs.existsSync(path.join(models, 'long.pth')));
    t.deepEqual(fs.readdirSync(path.join(models, '.inp-former-jobs')), [], "a cancelled fit's checkpoints are removed");

    // bad jobs: typed, naming the file; attempts are not spent on input errors
    const missing = await queue.enqueuePredict({ model: 'nope.pth', inputs: ['x.png'], attempts: 3 });
    const e1 = await t.throwsAsync(missing.result(), { instanceOf: CheckpointError });
    t.regex(e1.message, /nope\.pth: cannot open/);
    t.is(await missing.state(), 'failed');
    const ok = await queue.enqueueFit({ model: 'small.pth', data: CATEGORIES.tiles, create, fit: { epochs: 1, batchSize: 8 } });
    await ok.result();
    const badImage = await queue.enqueuePredict({ model: 'small.pth', inputs: [path.join(models, 'missing.png')] });
    const e2 = await t.throwsAsync(badImage.result(), { instanceOf: ImageDecodeError });
    t.is(e2.file, path.join(models, 'missing.png'));
    const garbage = await queue.enqueuePredict({ model: 'small.pth', inputs: [Buffer.from('not an image')] });
    await t.throwsAsync(garbage.result(), { instanceOf: ImageDecodeError });

    // refused before anything is queued
    await t.throwsAsync(queue.enqueueFit({ model: '../escape.pth', data: 'x', create }), { instanceOf: InvalidArgumentError, message: /for model, got '..\/escape.pth'/ });
    await t.throwsAsync(queue.enqueueFit({ model: 'x.pth', data: 'x', create, fit: { epoch: 3 } }), { instanceOf: InvalidArgumentError, message: /did you mean 'fit.epochs'/ });
    await t.throwsAsync(queue.enqueueFit({ model: 'x.pth', data: 'x', create, fit: { checkpoint: { path: 'c.pth' } } }), { instanceOf: InvalidArgumentError, message: /unknown option 'fit.checkpoint'/ });
    await t.throwsAsync(queue.enqueuePredict({ model: 'x.pth', inputs: [] }), { instanceOf: InvalidArgumentError });

    // still serving
    const after = await queue.enqueuePredict({ model: 'small.pth', inputs: [path.join(CATEGORIES.tiles, 'train', 'good', fs.readdirSync(path.join(CATEGORIES.tiles, 'train', 'good'))[0])] });
    t.true(Number.isFinite((await after.result()).predictions[0].score));
    t.is(worker.child.exitCode, null, 'the worker is alive');
  } finally {
    await queue.close();
    await worker.stop();
    fs.rmSync(models, { recursive: true, force: true });
  }
});

test.serial('a queued job cancelled before any worker takes it is removed and rejects with AbortError', async (t) => {
  const queue = new InpFormerQueue({ redis: redis.url, name: 'idle' });
  try {
    const job = await queue.enqueueEvaluate({ model: 'm.pth', data: 'x' });
    t.is(await job.state(), 'waiting');
    await job.cancel();
    await t.throwsAsync(job.result(), { instanceOf: AbortError, message: /before it started/ });
    t.is(await job.state(), 'unknown');
    t.deepEqual((await queue.counts()).waiting, 0);
    const aborted = AbortSignal.abort();
    await t.throwsAsync(queue.enqueueEvaluate({ model: 'm.pth', data: 'x' }, { signal: aborted }), { instanceOf: AbortError });
  } finally {
    await queue.close();
  }
});

test('queue options are checked before connecting', (t) => {
  t.throws(() => new InpFormerQueue({ redis: 'http://x' }), { instanceOf: InvalidArgumentError, message: /Redis URL/ });
  t.throws(() => new InpFormerQueue({ redis: 'redis://127.0.0.1:1', name: 'a b' }), { instanceOf: InvalidArgumentError, message: /for name/ });
  t.throws(() => new InpFormerQueue({ redis: 'redis://127.0.0.1:1', nmae: 'x' }), { message: /did you mean 'name'/ });
});

test('Redis URLs become ioredis options; failures cross a job boundary typed', (t) => {
  const { connectionOf, failureOf, failureText } = require('inp-former/internal');
  t.deepEqual(connectionOf('rediss://user:p%40ss@cache.local:6380/2'), { host: 'cache.local', port: 6380, username: 'user', password: 'p@ss', db: 2, tls: {}, maxRetriesPerRequest: null });
  t.deepEqual(connectionOf('redis://127.0.0.1'), { host: '127.0.0.1', port: 6379, maxRetriesPerRequest: null });
  const original = new ImageDecodeError('/data/a: b.png', 'not an image: "x"');
  const back = failureOf(failureText(original), '7');
  t.true(back instanceof ImageDecodeError);
  t.is(back.file, '/data/a: b.png');
  t.is(back.message, original.message);
  t.is(back.jobId, '7');
  const lost = failureOf('job stalled more than allowable limit', '8');
  t.is(lost.code, 'ERR_INP_JOB_FAILED');
  t.is(lost.name, 'JobFailedError');
  t.is(failureOf(failureText(new TypeError('x is not a function')), '9').code, 'ERR_INP_JOB_FAILED', 'a bug is not passed off as a typed error');
});
