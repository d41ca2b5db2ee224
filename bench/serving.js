#!/usr/bin/env node
// The serving guide's service (examples/server.js) under load: a ViT-S/14-shaped model (random
// weights, 224 px crop) behind HTTP on 127.0.0.1, `--requests` POSTs from `--concurrency`
// clients while /health is polled every 10 ms; against the same model's predict() in-process,
// one image at a time. Prints one JSON line (docs/serving.md).
//   node bench/serving.js [--requests 64] [--concurrency 8] [--threads 2]
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { parseArgs } = require('node:util');
const { InpFormer } = require('..');

const { values } = parseArgs({ options: { requests: { type: 'string', default: '64' }, concurrency: { type: 'string', default: '8' }, threads: { type: 'string', default: '2' } } });
const N = Number(values.requests);
const C = Number(values.concurrency);
const IMAGES = path.join(__dirname, '..', 'test', 'fixtures', 'datasets', 'synth-ad', 'weave', 'test', 'good');
const pct = (a, q) => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * q))];

(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inp-former-serving-'));
  const modelFile = path.join(dir, 'vits.pth');
  const sizes = { imageSize: 256, cropSize: 224 };
  const created = await InpFormer.create({ encoder: { embedDim: 384, depth: 12, numHeads: 6, posGridSize: 37, seed: 1 }, ...sizes, threads: Number(values.threads) });
  await created.save(modelFile);
  await created.dispose();
  const bodies = fs.readdirSync(IMAGES).map((f) => fs.readFileSync(path.join(IMAGES, f)));

  const inProcess = await InpFormer.load(modelFile, { ...sizes, threads: Number(values.threads) });
  await inProcess.predict(bodies[0]);
  let t = performance.now();
  for (let i = 0; i < N; i++) await inProcess.predict(bodies[i % bodies.length]);
  const inProcessPerSecond = N / ((performance.now() - t) / 1000);
  await inProcess.dispose();

  const child = spawn(process.execPath, [path.join(__dirname, '..', 'examples', 'server.js'), '--model', modelFile, '--port', '0', '--threads', values.threads, '--image-size', '256', '--crop-size', '224'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((resolve) => child.stdout.on('data', (d) => { const m = /listening on (\S+)/.exec(String(d)); if (m) resolve(m[1]); }));
  await fetch(`${url}/predict`, { method: 'POST', body: bodies[0] }); // warm-up

  const latencies = [];
  const healthMs = [];
  let done = false;
  const poll = (async () => {
    while (!done) {
      const s = performance.now();
      await fetch(`${url}/health`).then((r) => r.json());
      healthMs.push(performance.now() - s);
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  let next = 0;
  t = performance.now();
  await Promise.all(Array.from({ length: C }, async () => {
    while (next < N) {
      const body = bodies[next++ % bodies.length];
      const s = performance.now();
      const r = await fetch(`${url}/predict`, { method: 'POST', body });
      if (r.status !== 200) throw new Error(`status ${r.status}: ${await r.text()}`);
      await r.json();
      latencies.push(performance.now() - s);
    }
  }));
  const seconds = (performance.now() - t) / 1000;
  done = true;
  await poll;
  const health = await fetch(`${url}/health`).then((r) => r.json());
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  fs.rmSync(dir, { recursive: true, force: true });
  const r1 = (x) => Math.round(x * 10) / 10;
  console.log(JSON.stringify({
    date: new Date().toISOString().slice(0, 10), cpu: os.cpus()[0].model, threads: Number(values.threads), requests: N, concurrency: C,
    inProcessImagesPerSecond: r1(inProcessPerSecond), httpImagesPerSecond: r1(N / seconds), ratio: Math.round((N / seconds / inProcessPerSecond) * 100) / 100,
    latencyMs: { p50: r1(pct(latencies, 0.5)), p99: r1(pct(latencies, 0.99)) },
    healthMs: { polls: healthMs.length, p50: r1(pct(healthMs, 0.5)), p99: r1(pct(healthMs, 0.99)), max: r1(Math.max(...healthMs)) },
    serverEventLoopDelayMs: health.eventLoopDelayMs,
  }));
})();
