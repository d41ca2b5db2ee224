// The event loop while a model loads and saves: how long load() and save() take, and the delay
// they cause to other work on the event loop (p99 and largest, from perf_hooks'
// monitorEventLoopDelay at 1 ms resolution), with the process's peak RSS after the load; then,
// in processes of their own, the same for create({ encoder }) from that checkpoint (which holds
// an encoder). The first native call loads libtorch (a synchronous dlopen); it is made and timed
// before.
//   node bench/event-loop.js [--size base|small] [--package <path of another inp-former build>]
// Each measurement runs in a fresh process (peak RSS is per process); one process writes the
// checkpoint first (random weights of the real shapes).
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { parseArgs } = require('node:util');

const { values } = parseArgs({ options: { size: { type: 'string', default: 'base' }, package: { type: 'string' }, child: { type: 'string' }, create: { type: 'boolean' } } });
const pkg = path.resolve(values.package ?? path.join(__dirname, '..'));
const ENCODERS = {
  base: { embedDim: 768, depth: 12, numHeads: 12, numRegisterTokens: 4, posGridSize: 37 },
  small: { embedDim: 384, depth: 12, numHeads: 6, numRegisterTokens: 4, posGridSize: 37 },
};

async function child(file) {
  const { InpFormer, runtime } = require(pkg);
  const { monitorEventLoopDelay } = require('node:perf_hooks');
  let t = performance.now();
  runtime();
  const dlopenMs = performance.now() - t;
  const h = monitorEventLoopDelay({ resolution: 1 });
  const measure = async (f) => {
    await new Promise((r) => setTimeout(r, 100));
    h.reset();
    h.enable();
    t = performance.now();
    const out = await f();
    const ms = performance.now() - t;
    await new Promise((r) => setTimeout(r, 10)); // lets the delay of the last stall be recorded
    h.disable();
    return { out, ms: Math.round(ms), p99: +(h.percentile(99) / 1e6).toFixed(1), max: +(h.max / 1e6).toFixed(1) };
  };
  const peakRss = () => Math.round(Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) / 1024);
  if (values.create) {
    const create = await measure(() => InpFormer.create({ encoder: file }));
    const peakRssMiB = peakRss();
    await create.out.dispose();
    console.log(JSON.stringify({ create: { ...create, out: undefined }, peakRssMiB }));
    return;
  }
  const load = await measure(() => InpFormer.load(file));
  const hwm = peakRss();
  const rss = process.memoryUsage().rss / 2 ** 20;
  const out = file + '.saved.pth';
  const save = await measure(() => load.out.save(out));
  fs.rmSync(out);
  await load.out.dispose();
  console.log(JSON.stringify({ dlopenMs: Math.round(dlopenMs), load: { ...load, out: undefined }, save: { ...save, out: undefined }, peakRssMiB: hwm, rssAfterLoadMiB: Math.round(rss) }));
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inp-former-el-'));
  const file = path.join(dir, `vit-${values.size}.pth`);
  const { InpFormer } = require(path.join(__dirname, '..'));
  const m = await InpFormer.create({ encoder: ENCODERS[values.size] });
  await m.save(file);
  await m.dispose();
  const mb = fs.statSync(file).size / 1e6;
  const runs = [];
  const creates = [];
  for (let i = 0; i < 3; i++) {
    runs.push(JSON.parse(execFileSync(process.execPath, [__filename, '--child', file, '--package', pkg], { encoding: 'utf8' })));
    creates.push(JSON.parse(execFileSync(process.execPath, [__filename, '--child', file, '--create', '--package', pkg], { encoding: 'utf8' })));
  }
  fs.rmSync(dir, { recursive: true, force: true });
  const median = (xs, f) => xs.map(f).sort((a, b) => a - b)[1];
  const med = (f) => median(runs, f);
  console.log(`${pkg}: ViT-${values.size} checkpoint ${mb.toFixed(0)} MB; medians of 3 processes`);
  console.log(`| load ms | load delay p99 / max ms | save ms | save delay p99 / max ms | peak RSS MiB | RSS after load MiB | first native call (dlopen) ms |`);
  console.log(`| ${med((r) => r.load.ms)} | ${med((r) => r.load.p99)} / ${med((r) => r.load.max)} | ${med((r) => r.save.ms)} | ${med((r) => r.save.p99)} / ${med((r) => r.save.max)} | ${med((r) => r.peakRssMiB)} | ${med((r) => r.rssAfterLoadMiB)} | ${med((r) => r.dlopenMs)} |`);
  console.log(`\ncreate({ encoder }) from it, in processes of their own:\n| create ms | create delay p99 / max ms | peak RSS MiB |`);
  console.log(`| ${median(creates, (r) => r.create.ms)} | ${median(creates, (r) => r.create.p99)} / ${median(creates, (r) => r.create.max)} | ${median(creates, (r) => r.peakRssMiB)} |`);
}

(values.child ? child(values.child) : main()).catch((err) => {
  console.error(err);
  process.exit(1);
});
