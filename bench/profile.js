// Where inference time (or, with --train, the exact float32 training step's) goes, per libtorch
// op (self time, nested ops subtracted), from bench/profile.cpp's trace. Builds the profiler
// target in build/ (cmake-js configured it).
//   node bench/profile.js [--dim 384 --depth 12 --heads 6 --registers 4 --size 224 --batch 8 --iters 4 --precision float32] [--train [--matmul auto|libtorch|onednn]]
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const arg = (n, d) => (process.argv.includes(`--${n}`) ? process.argv[process.argv.indexOf(`--${n}`) + 1] : d);
const build = path.join(__dirname, '..', 'build');
execFileSync('cmake', ['--build', build, '--target', 'inp_former_profile'], { stdio: 'inherit' });
const trace = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'inp-profile-')), 'trace.json');
const args = ['dim', 'depth', 'heads', 'registers', 'size', 'batch', 'iters'].map((k, i) => arg(k, ['384', '12', '6', '4', '224', '8', '4'][i]));
// libgomp's default wait, as the package leaves it (GOMP_SPINCOUNT / OMP_WAIT_POLICY pass through)
const run = JSON.parse(execFileSync(path.join(build, 'inp_former_profile'), [...args, trace, arg('precision', 'float32'), process.argv.includes('--train') ? 'train' : 'infer', arg('matmul', 'auto')]).toString());
const events = JSON.parse(fs.readFileSync(trace, 'utf8')).filter((e) => e.ph === 'X').sort((a, b) => a.ts - b.ts || b.dur - a.dur);
fs.rmSync(path.dirname(trace), { recursive: true });
const self = new Map();
const stack = [];
for (const e of events) {
  while (stack.length && stack[stack.length - 1].ts + stack[stack.length - 1].dur <= e.ts) stack.pop();
  if (stack.length) self.set(stack[stack.length - 1].name, (self.get(stack[stack.length - 1].name) ?? 0) - e.dur);
  self.set(e.name, (self.get(e.name) ?? 0) + e.dur);
  stack.push(e);
}
const iters = Number(args[6]);
const train = process.argv.includes('--train');
const unit = train ? `training step of ${args[5]}` : `batch of ${args[5]}`;
const print = (title, times) => {
  const total = [...times.values()].reduce((a, b) => a + b, 0);
  console.log(title);
  for (const [name, us] of [...times].sort((a, b) => b[1] - a[1]).slice(0, 20)) {
    console.log(`  ${name.padEnd(36)} ${(us / iters / 1000).toFixed(1).padStart(8)} ms  ${((100 * us) / total).toFixed(1).padStart(5)}%`);
  }
};
print(`${run.imagesPerSecond.toFixed(2)} images/s under the profiler (${run.threads} threads); ms per ${unit} by op (self time):`, self);
if (train) {
  // The calling thread's outermost events: forward ops and autograd's backward nodes whole.
  const outer = new Map();
  let end = 0;
  for (const e of events.filter((x) => x.tid === events[0].tid)) {
    if (e.ts < end) continue;
    const name = e.name.replace('autograd::engine::evaluate_function: ', 'backward ');
    outer.set(name, (outer.get(name) ?? 0) + e.dur);
    end = e.ts + e.dur;
  }
  print(`ms per ${unit} by outermost op (the calling thread):`, outer);
}
