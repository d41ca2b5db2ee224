// Settings of this package against each other and onnxruntime, alternated run by run in one run.
// A setting is an environment (e.g. INP_FORMER_CPU_GEMM=sgemm, GOMP_SPINCOUNT=3000) under which
// bench/side-by-side.js's children run, on its rows' weights and inputs. These machines' speed
// drifts by up to ~30% within minutes, so one round runs every setting (and onnxruntime) once
// per row, and each cell lists every round's median img/s: compare within a round.
//   node bench/alternate.js [--rounds 3] [--only 'batch 1'] [--ort] \
//     --setting 'packed' --setting 'unpacked INP_FORMER_CPU_GEMM=sgemm'
// A setting is a name, then NAME=VALUE pairs (none: the environment as it is). Training rows
// ('training' in --only) run the exact step (matmul 'libtorch') or 'onednn' as the row says.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { parseArgs } = require('node:util');
const { CONFIGS, rowFiles, exportFor } = require('./side-by-side');

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    only: { type: 'string' },
    ort: { type: 'boolean', default: false },
    setting: { type: 'string', multiple: true, default: ['default'] },
  },
});
const settings = values.setting.map((text) => {
  const [name, ...pairs] = text.trim().split(/\s+/);
  const env = { ...process.env };
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq < 1) throw new Error(`setting '${text}': expected NAME=VALUE, got '${pair}'`);
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return { name, env };
});
const rows = CONFIGS.filter((c) => (c.precision ?? 'float32') === 'float32' && (!values.only || c.name.includes(values.only)));
const threads = require('..').runtime().threads;
const child = (args, env) => JSON.parse(execFileSync(process.execPath, [path.join(__dirname, 'side-by-side.js'), ...args.map(String)], { env, encoding: 'utf8' }));

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inp-former-alternate-'));
const lines = [];
for (const c of rows) {
  const { weights, input, onnx } = rowFiles(dir, c);
  const withOrt = values.ort && !c.train;
  if (withOrt) exportFor(weights, c.batch, c.size, onnx);
  const cells = settings.map(() => ({ speeds: [], rss: [] }));
  const ort = { speeds: [], rss: [] };
  for (let r = 0; r < Number(values.rounds); r++) {
    settings.forEach((s, i) => {
      const args = c.train ? ['--train-child', weights, input, c.batch, c.size, c.iters, c.train, 'float32'] : ['--node-child', weights, input, c.batch, c.size, c.iters, 'float32'];
      const out = child(args, s.env);
      cells[i].speeds.push(out.imagesPerSecond);
      cells[i].rss.push(out.peakRssMiB);
    });
    if (withOrt) {
      const out = child(['--ort-child', onnx, input, c.batch, c.size, c.iters, threads], process.env);
      ort.speeds.push(out.imagesPerSecond);
      ort.rss.push(out.peakRssMiB);
    }
    process.stderr.write(`${c.name}: round ${r + 1} done\n`);
  }
  const cell = (x) => `${x.speeds.map((v) => v.toFixed(2)).join(' / ')} (${Math.max(...x.rss).toFixed(0)} MiB)`;
  lines.push(`| ${c.name} | ${[...cells, ...(withOrt ? [ort] : [])].map(cell).join(' | ')} |`);
}
fs.rmSync(dir, { recursive: true, force: true });
const header = [...settings.map((s) => s.name), ...(values.ort ? ['onnxruntime-node'] : [])];
console.log(`${new Date().toISOString().slice(0, 10)}, ${os.cpus()[0].model}, ${threads} threads, libtorch ${require('..').runtime().torchVersion}; images/s per round (peak RSS, the largest)`);
console.log(`| row | ${header.join(' | ')} |`);
console.log(`|---|${header.map(() => '---|').join('')}`);
for (const l of lines) console.log(l);
