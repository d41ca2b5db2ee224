// examples/server.js, the serving guide's HTTP service (docs/serving.md), run as a user would:
// a real process on 127.0.0.1, concurrent predictions, /health answered while they run, bad
// input refused with its code, back-pressure, and a clean stop.
'use strict';
const test = require('ava');
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { InpFormer } = require('..');
const { FIXTURE, FIXTURES, FIXTURE_SIZES } = require('./helpers');

const SERVER = path.join(__dirname, '..', 'examples', 'server.js');
const MODEL = path.join(FIXTURE, 'inp_former.pth');
const IMAGES = path.join(FIXTURES, 'datasets', 'synth-ad', 'weave', 'test', 'hole');
const sizes = ['--image-size', String(FIXTURE_SIZES.imageSize), '--crop-size', String(FIXTURE_SIZES.cropSize)];

/** Start the example server on a free port; resolves with its base URL and process. */
function startServer(extra = []) {
  const child = spawn(process.execPath, [SERVER, '--model', MODEL, '--port', '0', '--threads', '2', ...sizes, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve({ url: m[1], child, output: () => out, errors: () => err });
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${err}`)));
  });
}

const post = (url, body) => fetch(`${url}/predict`, { method: 'POST', body }).then(async (r) => ({ status: r.status, body: await r.json() }));

test('concurrent predictions equal in-process predict, /health answers while they run, bad input gets its code', async (t) => {
  const files = fs.readdirSync(IMAGES).map((f) => path.join(IMAGES, f));
  const model = await InpFormer.load(MODEL, { ...FIXTURE_SIZES, threads: 2 });
  const expected = await Promise.all(files.map((f) => model.predict(f)));
  await model.dispose();

  const server = await startServer();
  try {
    let loadDone = false;
    const healthSeen = [];
    const health = (async () => {
      while (!loadDone) {
        const h = await fetch(`${server.url}/health`).then((r) => r.json());
        healthSeen.push(h);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const bodies = files.map((f) => fs.readFileSync(f));
    const results = await Promise.all([...bodies, ...bodies].map((b) => post(server.url, b)));
    loadDone = true;
    await health;
    results.forEach((r, i) => {
      t.is(r.status, 200, JSON.stringify(r.body));
      t.true(Math.abs(r.body.score - expected[i % files.length].score) <= 1e-6, `image ${i}: ${r.body.score} vs ${expected[i % files.length].score}`);
      t.is(r.body.width, 256);
    });
    t.true(healthSeen.some((h) => h.status === 'ok' && h.pending > 0), 'health answered while predictions were in flight');

    const bad = await post(server.url, Buffer.from('not an image at all'));
    t.is(bad.status, 400);
    t.is(bad.body.error, 'ERR_INP_IMAGE');
    const empty = await post(server.url, Buffer.alloc(0));
    t.is(empty.status, 400);
    const h = await fetch(`${server.url}/health`).then((r) => r.json());
    t.is(h.served, 20);
    t.is(h.failed, 1);
    t.is((await fetch(`${server.url}/nowhere`)).status, 404);
  } finally {
    server.child.kill('SIGTERM');
  }
  const code = await new Promise((r) => server.child.once('exit', r));
  t.is(code, 0, server.errors());
  t.regex(server.output(), /stopped/);
});

test('back-pressure: past --max-pending requests get 503 with Retry-After; bodies past --max-bytes get 413', async (t) => {
  const server = await startServer(['--max-pending', '2', '--max-bytes', '100000']);
  try {
    const body = fs.readFileSync(path.join(IMAGES, '000.png')); // ~130 KB: over 100000
    const big = await post(server.url, body);
    t.is(big.status, 413);
    const small = await fetch(`${server.url}/predict`, { method: 'POST', body: fs.readFileSync(path.join(FIXTURE, 'images', 'img_0.png')) });
    t.is(small.status, 200);
    const many = await Promise.all(Array.from({ length: 8 }, () => fetch(`${server.url}/predict`, { method: 'POST', body: fs.readFileSync(path.join(FIXTURE, 'images', 'img_1.png')) })));
    const statuses = many.map((r) => r.status);
    t.true(statuses.includes(503), statuses.join(' '));
    t.true(statuses.includes(200), statuses.join(' '));
    t.is(many.find((r) => r.status === 503).headers.get('retry-after'), '1');
  } finally {
    server.child.kill('SIGTERM');
  }
  t.is(await new Promise((r) => server.child.once('exit', r)), 0);
});
