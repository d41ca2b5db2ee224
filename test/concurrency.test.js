// Concurrency and leaks: many predicts in flight at once give the same answers as one at a
// time; models created, loaded and disposed in a loop give back their memory and threads;
// dispose() with calls in flight settles every one of them.
'use strict';
const test = require('ava');
const fs = require('node:fs');
const path = require('node:path');
const { InpFormer, DisposedError } = require('..');
const { tmpdir } = require('./helpers');

// threads fixed: the exact comparisons below must not see two thread counts (last-bit differences)
const tiny = { encoder: { embedDim: 32, depth: 10, numHeads: 2, posGridSize: 8 }, imageSize: 64, cropSize: 56, threads: 2 };

/** Five different raw images. */
const images = Array.from({ length: 5 }, (_, k) => {
  const data = new Uint8Array(48 * 40 * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * (7 + k * 13) + k * 31) & 255;
  return { data, width: 48, height: 40, channels: 3 };
});

const threadCount = () => Number(/Threads:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]);

test('1,000 concurrent predicts return what one-at-a-time predicts return', async (t) => {
  for (const predictBatchSize of [1, 8]) {
    const model = await InpFormer.create({ ...tiny, predictBatchSize });
    const expected = [];
    for (const img of images) expected.push((await model.predict(img)).score);
    const results = await Promise.all(Array.from({ length: 1000 }, (_, i) => model.predict(images[i % 5])));
    let worst = 0;
    results.forEach((r, i) => {
      worst = Math.max(worst, Math.abs(r.score - expected[i % 5]) / Math.abs(expected[i % 5]));
      if (r.anomalyMap.length !== 48 * 40) t.fail(`map ${i} has ${r.anomalyMap.length} values`);
    });
    t.log(`predictBatchSize ${predictBatchSize}: worst relative score difference ${worst.toExponential(2)}`);
    // batch 1 runs the very same kernels; batches of 8 may sum in another order
    t.true(predictBatchSize === 1 ? worst === 0 : worst < 1e-5, `worst ${worst}`);
    await model.dispose();
  }
});

test('two models predicting at once each give their own answers', async (t) => {
  const a = await InpFormer.create({ ...tiny, seed: 1 });
  const b = await InpFormer.create({ ...tiny, seed: 2 });
  t.teardown(() => Promise.all([a.dispose(), b.dispose()]));
  const ea = (await a.predict(images[0])).score;
  const eb = (await b.predict(images[0])).score;
  t.not(ea, eb);
  const mixed = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 ? b : a).predict(images[0])));
  mixed.forEach((r, i) => t.is(r.score, i % 2 ? eb : ea));
});

test('dispose() with 200 predicts in flight settles every one: a result or DisposedError, no hang', async (t) => {
  const model = await InpFormer.create(tiny);
  const calls = Array.from({ length: 200 }, (_, i) => model.predict(images[i % 5]).then(() => 'ok', (e) => e));
  await new Promise((r) => setTimeout(r, 20));
  await model.dispose();
  const outcomes = await Promise.all(calls);
  const refused = outcomes.filter((o) => o instanceof DisposedError).length;
  const ok = outcomes.filter((o) => o === 'ok').length;
  t.log(`${ok} finished, ${refused} refused with DisposedError`);
  t.is(ok + refused, 200, 'nothing else');
  await t.throwsAsync(model.predict(images[0]), { instanceOf: DisposedError });
});

test('create/load/predict/dispose in a loop gives back memory and threads', async (t) => {
  const file = path.join(tmpdir(), 'm.pth');
  const first = await InpFormer.create(tiny);
  await first.save(file);
  await first.dispose();
  const cycle = async (i) => {
    const m = i % 2 ? await InpFormer.load(file) : await InpFormer.create({ ...tiny, seed: i });
    await m.predict(images[i % 5]);
    await m.dispose();
  };
  // results cross as external ArrayBuffers, freed when collected: collect fully before each
  // reading (ava runs with --expose-gc), so that garbage not yet collected is not taken for a leak
  const settle = async () => {
    for (let k = 0; k < 3; k++) {
      global.gc();
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  for (let i = 0; i < 20; i++) await cycle(i); // warm-up: allocator pools, thread pools, lazy inits
  await settle();
  const threads0 = threadCount();
  const rss0 = process.memoryUsage().rss;
  const N = 150;
  for (let i = 0; i < N; i++) await cycle(i);
  await settle();
  const grew = (process.memoryUsage().rss - rss0) / 2 ** 20;
  const model = await InpFormer.create(tiny);
  const params = (await model.stateDict()).reduce((n, x) => n + x.data.length, 0);
  await model.dispose();
  t.log(`${N} cycles: RSS ${grew >= 0 ? '+' : ''}${grew.toFixed(1)} MiB (one model holds ${((params * 4) / 2 ** 20).toFixed(1)} MiB of weights), threads ${threads0} -> ${threadCount()}`);
  // leaking each model's weights would add N x that; a native thread per model, N threads
  t.true(grew < Math.max(40, (N * params * 4) / 2 ** 20 / 4), `RSS grew ${grew.toFixed(1)} MiB`);
  t.true(threadCount() <= threads0 + 2, `threads ${threads0} -> ${threadCount()}`);
});
