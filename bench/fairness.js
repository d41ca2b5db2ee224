// One model's predict while another model trains, in one process (issue 9: "a fit on one model
// does not starve another model's predict"). Model B answers single images; model A runs fit()
// on in-memory batches. Reports B's latency p50/p90 alone and during A's fit, and A's steps/s.
// Inference that never reaches OpenBLAS skips the compute lock (docs/design.md); run with
// INP_FORMER_CPU_GEMM=libtorch to see the old, locked behaviour.
//   node bench/fairness.js [--size 112 --dim 64 --depth 10 --requests 60]
'use strict';
const { InpFormer, runtime } = require('..');

const arg = (n, d) => (process.argv.includes(`--${n}`) ? Number(process.argv[process.argv.indexOf(`--${n}`) + 1]) : d);
const size = arg('size', 112);
const encoder = { embedDim: arg('dim', 64), depth: arg('depth', 10), numHeads: 4, posGridSize: 16, seed: 1 };
const requests = arg('requests', 60);

const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

async function latencies(model, input, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await model.inferTensor(input.data, input.shape);
    out.push(performance.now() - t0);
  }
  return out;
}

async function main() {
  const sizes = { imageSize: size, cropSize: size };
  const a = await InpFormer.create({ encoder, ...sizes, seed: 1 });
  const b = await InpFormer.create({ encoder, ...sizes, seed: 2 });
  const one = { data: new Float32Array(3 * size * size).map((_, i) => Math.sin(i)), shape: [1, 3, size, size] };
  const batch = { data: new Float32Array(8 * 3 * size * size).map((_, i) => Math.cos(i)), shape: [8, 3, size, size] };
  await latencies(b, one, 5);
  const idle = await latencies(b, one, requests);
  let steps = 0;
  const t0 = performance.now();
  const fit = a.fit(Array.from({ length: 400 }, () => batch), { epochs: 1, warmupSteps: 1, onProgress: (e) => e.type === 'step' && steps++ });
  await new Promise((r) => setTimeout(r, 300)); // the fit is under way
  const busy = await latencies(b, one, requests);
  const stepsPerSecond = steps / ((performance.now() - t0) / 1000);
  await a.dispose().catch(() => {}); // stops the fit
  await fit.catch(() => {});
  await b.dispose();
  const r = {
    cpuGemm: runtime().cpuGemm,
    idle: { p50: quantile(idle, 0.5), p90: quantile(idle, 0.9) },
    duringFit: { p50: quantile(busy, 0.5), p90: quantile(busy, 0.9) },
    fitStepsPerSecond: stepsPerSecond,
  };
  console.log(`${r.cpuGemm}: predict p50 ${r.idle.p50.toFixed(1)} ms alone, ${r.duringFit.p50.toFixed(1)} ms during another model's fit (${(r.duringFit.p50 / r.idle.p50).toFixed(2)}x; p90 ${r.idle.p90.toFixed(1)} / ${r.duringFit.p90.toFixed(1)} ms); the fit ran ${r.fitStepsPerSecond.toFixed(2)} steps/s meanwhile`);
  console.log(JSON.stringify(r));
}

main();
