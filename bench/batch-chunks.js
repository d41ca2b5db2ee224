// CPU batches in chunks of whole images (cpp/core/model.h) against the same batches run whole
// (INP_FORMER_CPU_BATCH_MIB=0), alternated child by child: ms an image for a batch of 8 (three
// timed calls after a warm-up), the same 8 images one call each, and the child's peak RSS.
// Random encoders of the real shapes (speed does not depend on the weights).
//   node bench/batch-chunks.js [--rounds 3] [--only 'B/14, 392']
'use strict';
const { execFileSync } = require('node:child_process');
const { parseArgs } = require('node:util');

const ENCODERS = {
  'S/14': { embedDim: 384, depth: 12, numHeads: 6, numRegisterTokens: 4 },
  'B/14': { embedDim: 768, depth: 12, numHeads: 12, numRegisterTokens: 4 },
};
const ROWS = [['S/14', 392], ['B/14', 224], ['B/14', 392]].map(([encoder, size]) => ({ name: `${encoder} reg4, ${size} px`, encoder, size }));
const BATCH = 8;

async function child(encoder, size) {
  const { InpFormer } = require('..');
  const model = await InpFormer.create({ encoder: ENCODERS[encoder], cropSize: size, imageSize: size, seed: 3 });
  const per = 3 * size * size;
  const x = new Float32Array(BATCH * per).map((_, i) => Math.sin(i * 0.37) * 2);
  await model.inferTensor(x, [BATCH, 3, size, size]);
  const batch = [];
  for (let k = 0; k < 3; k++) {
    const t0 = performance.now();
    await model.inferTensor(x, [BATCH, 3, size, size]);
    batch.push((performance.now() - t0) / BATCH);
  }
  const t0 = performance.now();
  for (let i = 0; i < BATCH; i++) await model.inferTensor(x.subarray(i * per, (i + 1) * per), [1, 3, size, size]);
  const single = (performance.now() - t0) / BATCH;
  await model.dispose();
  process.stdout.write(JSON.stringify({ batch, single, peakRssMiB: process.resourceUsage().maxRSS / 1024 }));
}

function main() {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, only: { type: 'string' } } });
  const settings = [['chunked', '13'], ['whole', '0']];
  const rows = ROWS.filter((r) => !values.only || r.name.includes(values.only));
  const lines = ['| ViT, 8 images | chunked: ms an image | whole | single images (all children) | peak RSS chunked / whole (MiB) |', '|---|---|---|---|---|'];
  for (const row of rows) {
    const cells = Object.fromEntries(settings.map(([name]) => [name, { batch: [], single: [], rss: [] }]));
    for (let r = 0; r < Number(values.rounds); r++) {
      for (const [name, mib] of settings) {
        const out = JSON.parse(execFileSync(process.execPath, [__filename, '--child', row.encoder, String(row.size)], {
          env: { ...process.env, INP_FORMER_CPU_BATCH_MIB: mib },
          encoding: 'utf8',
        }));
        cells[name].batch.push(...out.batch);
        cells[name].single.push(out.single);
        cells[name].rss.push(out.peakRssMiB);
      }
      console.error(`${row.name}: round ${r + 1} done`);
    }
    const range = (v) => `${Math.min(...v).toFixed(0)}-${Math.max(...v).toFixed(0)}`;
    const singles = [...cells.chunked.single, ...cells.whole.single];
    lines.push(`| ${row.name} | ${range(cells.chunked.batch)} | ${range(cells.whole.batch)} | ${range(singles)} | ` +
      `${Math.max(...cells.chunked.rss).toFixed(0)} / ${Math.max(...cells.whole.rss).toFixed(0)} |`);
  }
  console.log(`${new Date().toISOString().slice(0, 10)}, ${require('node:os').cpus()[0]?.model}, libtorch ${require('..').runtime().torchVersion}, ${values.rounds} rounds`);
  console.log(lines.join('\n'));
}

if (process.argv[2] === '--child') child(process.argv[3], Number(process.argv[4]));
else main();
