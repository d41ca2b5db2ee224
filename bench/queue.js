// The queue (inp-former/queue) on this machine: predict throughput with 1, 2 and 3 worker
// processes against in-process predict, and the queue's overhead per job (round trip of one
// small job through Redis and a worker, against calling predict directly).
//   node bench/queue.js [--images 60] [--model tiny|small]
// Needs redis-server (scripts/setup.sh installs it); starts its own on a free port.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');
const { InpFormer, runtime } = require('..');
const { InpFormerQueue } = require('inp-former/queue');
const { startRedis, startWorkerProcess } = require('../test/services');

const { values } = parseArgs({ options: { images: { type: 'string', default: '60' }, model: { type: 'string', default: 'small' } } });
const N = Number(values.images);
const MODELS = {
  // ViT-S/14-shaped encoder (384-d, 12 blocks) at 224 px: a real model's per-image cost
  small: { encoder: { embedDim: 384, depth: 12, numHeads: 6, posGridSize: 16 }, imageSize: 256, cropSize: 224 },
  // a tiny one: the job's fixed costs dominate
  tiny: { encoder: { embedDim: 32, depth: 10, numHeads: 2, posGridSize: 8 }, imageSize: 64, cropSize: 56 },
};
const IMAGES = path.join(__dirname, '..', 'test', 'fixtures', 'datasets', 'synth-ad', 'weave', 'test', 'good');
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

async function direct(file, files, threads) {
  const m = await InpFormer.load(file, { threads });
  await m.predict(files[0]);
  const t0 = performance.now();
  await Promise.all(files.map((f) => m.predict(f)));
  const s = (performance.now() - t0) / 1000;
  const lat = [];
  for (const f of files.slice(0, 20)) {
    const t = performance.now();
    await m.predict(f);
    lat.push(performance.now() - t);
  }
  await m.dispose();
  return { imagesPerSecond: files.length / s, medianMs: median(lat) };
}

async function viaQueue(redis, models, files, workers, threads, name) {
  const procs = await Promise.all(Array.from({ length: workers }, () => startWorkerProcess({ redis, models, queue: name, extra: ['--threads', String(threads)] })));
  const queue = new InpFormerQueue({ redis, name });
  try {
    // warm every worker's model cache: one job each, all at once
    await Promise.all(procs.map(async () => (await queue.enqueuePredict({ model: 'm.pth', inputs: [files[0]] })).result()));
    const t0 = performance.now();
    const jobs = await Promise.all(files.map((f) => queue.enqueuePredict({ model: 'm.pth', inputs: [f] })));
    const results = await Promise.all(jobs.map((j) => j.result()));
    const s = (performance.now() - t0) / 1000;
    const lat = [];
    for (const f of files.slice(0, 20)) {
      const t = performance.now();
      await (await queue.enqueuePredict({ model: 'm.pth', inputs: [f] })).result();
      lat.push(performance.now() - t);
    }
    return { imagesPerSecond: files.length / s, medianMs: median(lat), workersUsed: new Set(results.map((r) => r.worker)).size };
  } finally {
    await queue.close();
    for (const p of procs) await p.stop();
  }
}

(async () => {
  const all = fs.readdirSync(IMAGES).filter((f) => f.endsWith('.png')).map((f) => path.join(IMAGES, f));
  const files = Array.from({ length: N }, (_, i) => all[i % all.length]);
  const models = fs.mkdtempSync(path.join(os.tmpdir(), 'inp-former-bench-'));
  const m = await InpFormer.create(MODELS[values.model]);
  await m.save(path.join(models, 'm.pth'));
  await m.dispose();
  const redis = await startRedis();
  const rows = [];
  try {
    for (const threads of [1, 2]) rows.push({ setting: `in-process predict, threads ${threads}`, ...(await direct(path.join(models, 'm.pth'), files, threads)) });
    for (const workers of [1, 2, 3]) rows.push({ setting: `queue, ${workers} worker process${workers > 1 ? 'es' : ''}, threads 1 each`, ...(await viaQueue(redis.url, models, files, workers, 1, `bench${workers}`)) });
    rows.push({ setting: 'queue, 1 worker process, threads 2', ...(await viaQueue(redis.url, models, files, 1, 2, 'bench-t2')) });
  } finally {
    await redis.stop();
    fs.rmSync(models, { recursive: true, force: true });
  }
  const cpu = runtime().cpu;
  console.log(`${new Date().toISOString().slice(0, 10)}, ${cpu.model} (${os.cpus().length} CPUs), libtorch ${runtime().torchVersion}, model '${values.model}', ${N} one-image jobs`);
  console.log('| setting | images/s | median latency of one job, ms |');
  console.log('|---|---|---|');
  for (const r of rows) console.log(`| ${r.setting} | ${r.imagesPerSecond.toFixed(1)} | ${r.medianMs.toFixed(1)}${r.workersUsed ? ` (${r.workersUsed} workers used)` : ''} |`);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
