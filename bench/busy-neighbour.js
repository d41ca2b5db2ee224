// A shared machine: inference with a busy-loop neighbour process (`sh -c 'while :; do :; done'`)
// taking one core, against a quiet machine, for the default thread count (adaptive: the cores
// other processes leave free, decided before each job) and for fixed 1 and 2 threads.
// Medians of `--iters` runs after two warm-ups, the three settings taking turns run by run; the
// neighbour starts 1 s before its rows.
//   node bench/busy-neighbour.js [--iters 31] [--package <path of another inp-former build>]
'use strict';
const os = require('node:os');
const { spawn } = require('node:child_process');
const { parseArgs } = require('node:util');
const path = require('node:path');

const { values } = parseArgs({ options: { iters: { type: 'string', default: '31' }, package: { type: 'string' } } });
const pkg = path.resolve(values.package ?? path.join(__dirname, '..'));
const { InpFormer, runtime } = require(pkg);
const ITERS = Number(values.iters);
const CONFIGS = [
  { name: 'tiny (64-d, 10 blocks), 112 px, batch 8', encoder: { embedDim: 64, depth: 10, numHeads: 4, posGridSize: 8 }, size: 112, batch: 8 },
  { name: 'ViT-S/14-shaped, 224 px, batch 8', encoder: { embedDim: 384, depth: 12, numHeads: 6, numRegisterTokens: 4, posGridSize: 16 }, size: 224, batch: 8 },
];
const SETTINGS = [{ name: 'default (adaptive)', threads: undefined }, { name: '1 thread', threads: 1 }, { name: '2 threads', threads: 2 }];

/** Median ms of each model, the models taking turns run by run (so drifts hit all alike), after two warm-up rounds. */
async function timeAll(models, x, shape) {
  const t = models.map(() => []);
  for (let i = 0; i < ITERS + 2; i++) {
    for (let k = 0; k < models.length; k++) {
      const t0 = performance.now();
      await models[k].inferTensor(x, shape);
      if (i >= 2) t[k].push(performance.now() - t0);
    }
  }
  return t.map((a) => a.sort((p, q) => p - q)[Math.floor(a.length / 2)]);
}

(async () => {
  const rows = [];
  for (const c of CONFIGS) {
    const shape = [c.batch, 3, c.size, c.size];
    const x = new Float32Array(shape.reduce((a, b) => a * b)).map((_, i) => Math.sin(i));
    const models = [];
    for (const s of SETTINGS) models.push(await InpFormer.create({ encoder: c.encoder, imageSize: c.size, cropSize: c.size, threads: s.threads }));
    for (const busy of [false, true]) {
      const neighbour = busy ? spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' }) : undefined;
      if (busy) await new Promise((r) => setTimeout(r, 1000));
      try {
        rows.push({ config: c.name, busy, ms: await timeAll(models, x, shape) });
      } finally {
        neighbour?.kill('SIGKILL');
      }
    }
    for (const m of models) await m.dispose();
  }
  const r = runtime();
  console.log(`${pkg}: ${new Date().toISOString().slice(0, 10)}, ${r.cpu.model}, ${os.cpus().length} CPUs, libtorch ${r.torchVersion}; medians of ${ITERS}, ms per batch`);
  console.log(`| model | machine | ${SETTINGS.map((s) => s.name).join(' | ')} | default / best |`);
  console.log(`|---|---|${SETTINGS.map(() => '---|').join('')}---|`);
  for (const row of rows) {
    const best = Math.min(...row.ms);
    console.log(`| ${row.config} | ${row.busy ? 'one core busy' : 'quiet'} | ${row.ms.map((v) => v.toFixed(1)).join(' | ')} | ${(row.ms[0] / best).toFixed(2)}x |`);
  }
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
