#!/usr/bin/env node
// Benchmarks on real configurations (random DINOv2-shaped encoders: no weights can be
// downloaded here; speed does not depend on the values). Writes docs/benchmarks.md.
//   node bench/run.js [--quick]
'use strict';
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');
const os = require('node:os');
const path = require('node:path');
const { InpFormer, runtime } = require('..');

const quick = process.argv.includes('--quick');
const ENCODERS = {
  'ViT-S/14 reg4': { embedDim: 384, depth: 12, numHeads: 6, numRegisterTokens: 4 },
  'ViT-B/14 reg4': { embedDim: 768, depth: 12, numHeads: 12, numRegisterTokens: 4 },
};

async function timeInference(encoder, { threads, precision = 'float32', batch = 1, crop = 392, reps = 3 }) {
  const model = await InpFormer.create({ encoder, threads, precision, cropSize: crop, imageSize: 448 });
  const data = new Float32Array(batch * 3 * crop * crop).fill(0.25);
  await model.inferTensor(data, [batch, 3, crop, crop]); // warm-up
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await model.inferTensor(data, [batch, 3, crop, crop]);
  const seconds = (performance.now() - t0) / 1000 / reps;
  await model.dispose();
  return { secondsPerBatch: seconds, imagesPerSecond: batch / seconds };
}

async function timePredict(encoder, { n = 16, predictBatchSize }) {
  // a service scoring PNGs: one request at a time, then all at once (micro-batched)
  const dir = path.resolve(__dirname, '..', '..', 'shared', 'datasets', 'synth-ad', 'weave', 'test', 'good');
  const files = fs.readdirSync(dir).slice(0, n).map((f) => path.join(dir, f));
  const model = await InpFormer.create({ encoder, cropSize: 392, imageSize: 448, predictBatchSize });
  await model.predict(files[0]);
  let t0 = performance.now();
  for (const f of files) await model.predict(f);
  const sequential = files.length / ((performance.now() - t0) / 1000);
  t0 = performance.now();
  await Promise.all(files.map((f) => model.predict(f)));
  const concurrent = files.length / ((performance.now() - t0) / 1000);
  await model.dispose();
  return { sequential, concurrent };
}

async function timeTraining(encoder, { batch = 4, steps = 6, crop = 392 }) {
  // real images through the whole pipeline (decode, resize 448, crop, normalise) when available
  const dir = path.resolve(__dirname, '..', '..', 'shared', 'datasets', 'synth-ad', 'weave');
  const model = await InpFormer.create({ encoder, cropSize: crop, imageSize: 448 });
  const summary = await model.fit(dir, { epochs: 1, maxSteps: steps, batchSize: batch, warmupSteps: 1 });
  await model.dispose();
  return summary;
}

// `node bench/run.js --spin-child` measures one configuration in a process whose OpenMP
// workers spin (libgomp's default), to compare with the passive waiting the package sets.
async function spinChild() {
  const m = await timeInference(ENCODERS['ViT-S/14 reg4'], { threads: runtime().threads, reps: 3 });
  process.stdout.write(JSON.stringify(m));
}

(async () => {
  if (process.argv.includes('--spin-child')) return spinChild();
  const r = runtime();
  const rows = [];
  const lines = [];
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  lines.push('# Benchmarks', '');
  lines.push(`Measured ${new Date().toISOString().slice(0, 10)} on ${cpu}, ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB,`);
  lines.push(`Node ${process.version}, libtorch ${r.torchVersion}, OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'}, by \`node bench/run.js\`.`);
  lines.push('Random DINOv2-shaped encoders (speed does not depend on the weights); input 392x392 (resize 448, crop 392).', '');
  lines.push('## Inference (one image a call, anomaly map and score included)', '');
  lines.push('| encoder | precision | threads | s / image | images / s |', '|---|---|---|---|---|');
  for (const [name, enc] of Object.entries(ENCODERS)) {
    if (quick && name.startsWith('ViT-B')) continue;
    for (const [threads, precision] of [[1, 'float32'], [r.threads, 'float32'], [1, 'bfloat16'], [r.threads, 'bfloat16']]) {
      const m = await timeInference(enc, { threads, precision, reps: quick ? 1 : 5 });
      rows.push({ name, threads, precision, ...m });
      lines.push(`| ${name} | ${precision} | ${threads} | ${m.secondsPerBatch.toFixed(3)} | ${m.imagesPerSecond.toFixed(2)} |`);
      console.log(lines[lines.length - 1]);
    }
  }
  const spinning = JSON.parse(
    execFileSync(process.execPath, [__filename, '--spin-child'], { env: { ...process.env, OMP_WAIT_POLICY: 'ACTIVE' }, encoding: 'utf8' }),
  );
  lines.push(`| ViT-S/14 reg4 | float32 | ${r.threads}, OMP_WAIT_POLICY=ACTIVE | ${spinning.secondsPerBatch.toFixed(3)} | ${spinning.imagesPerSecond.toFixed(2)} |`);
  const speedup = (name, precision) => {
    const one = rows.find((x) => x.name === name && x.threads === 1 && x.precision === precision);
    const all = rows.find((x) => x.name === name && x.threads === r.threads && x.precision === precision);
    return one && all ? (one.secondsPerBatch / all.secondsPerBatch).toFixed(2) : '-';
  };
  lines.push('', `Default threads (${r.threads}, the cores this process may use) against libtorch's own default of 1 ` +
    `(time with 1 thread / time with ${r.threads}): ViT-S/14 ${speedup('ViT-S/14 reg4', 'float32')}x in float32 and ${speedup('ViT-S/14 reg4', 'bfloat16')}x in bfloat16; ` +
    `ViT-B/14 ${speedup('ViT-B/14 reg4', 'float32')}x in float32 and ${speedup('ViT-B/14 reg4', 'bfloat16')}x in bfloat16. ` +
    'Element-wise ops, convolutions and oneDNN\'s bf16 products follow at::set_num_threads; OpenBLAS\'s fp32 products use their own pool of 2 threads whatever the setting, so fp32 on the larger encoder, dominated by those products, gains little or nothing (runs vary by about 10%). ' +
    'All of this is with passive OpenMP waiting, which the package sets unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is given: with libgomp\'s default spinning (the ACTIVE row) idle OpenMP workers take the cores OpenBLAS needs.', '');
  lines.push('## predict() on PNG files (decode, preprocess, infer, map back to 256x256)', '');
  lines.push('| encoder | predictBatchSize | requests | one at a time: images / s | all at once: images / s |', '|---|---|---|---|---|');
  for (const predictBatchSize of [1, 8]) {
    const pr = await timePredict(ENCODERS['ViT-S/14 reg4'], { n: quick ? 4 : 16, predictBatchSize });
    lines.push(`| ViT-S/14 reg4 | ${predictBatchSize} | ${quick ? 4 : 16} | ${pr.sequential.toFixed(2)} | ${pr.concurrent.toFixed(2)} |`);
    console.log(lines[lines.length - 1]);
  }
  lines.push('', '| inferTensor, ViT-S/14 reg4 float32, batch | ms / image |', '|---|---|');
  for (const batch of [1, 2, 4, 8]) {
    const m = await timeInference(ENCODERS['ViT-S/14 reg4'], { threads: r.threads, batch, reps: quick ? 1 : 3 });
    lines.push(`| ${batch} | ${((1000 * m.secondsPerBatch) / batch).toFixed(0)} |`);
    console.log(lines[lines.length - 1]);
  }
  lines.push('', 'On this 2-core CPU one image already keeps both cores busy and larger batches cost more per image (table above), so the CPU default is predictBatchSize 1: concurrent calls queue on the model thread. On CUDA it is 8.', '');
  lines.push('## Training (fit on synth-ad/weave PNGs: decode, resize, crop, normalise, step)', '');
  lines.push('| encoder | batch | steps | images / s | data-wait share |', '|---|---|---|---|---|');
  const t = await timeTraining(ENCODERS['ViT-S/14 reg4'], { batch: 4, steps: quick ? 2 : 6 });
  lines.push(`| ViT-S/14 reg4 | 4 | ${t.steps} | ${t.imagesPerSecond.toFixed(2)} | ${(100 * t.dataWaitShare).toFixed(1)}% |`);
  console.log(lines[lines.length - 1]);
  const out = path.join(__dirname, '..', 'docs', 'benchmarks.md');
  const previous = fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : '';
  const keep = previous.includes('<!-- manual -->') ? '\n' + previous.slice(previous.indexOf('<!-- manual -->')) : '';
  fs.writeFileSync(out, lines.join('\n') + '\n' + keep);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
