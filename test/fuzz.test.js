// The seeded fuzz suite in its bounded form (test/fuzz/fuzz.js; long mode:
// `node test/fuzz/fuzz.js --cases 10000`): no untyped error, no hang, no load that differs
// from torch.load where torch accepts the file.
'use strict';
const test = require('ava');
const fs = require('node:fs');
const { runFuzz } = require('./fuzz/fuzz');

test('fuzzed checkpoints and images: typed errors only, and torch.load agrees where both load', async (t) => {
  const r = await runFuzz({ cases: 400, seed: 7 });
  t.log(JSON.stringify(r.counts), `slowest ${r.slowest.ms.toFixed(0)} ms (${r.slowest.kind})`);
  t.deepEqual(r.failures, []);
  t.is(r.counts.total, 400);
  t.true(r.counts.loaded > 20 && r.counts.typedErrors > 100, 'the generators produce both loadable and broken files');
  t.true(r.counts.torchAgrees > 10, 'torch.load was compared on real cases');
  t.true(r.counts.byKind.torchscript.torchAgrees > 5, 'torch.jit.load too');
  fs.rmSync(r.dir, { recursive: true, force: true });
});
