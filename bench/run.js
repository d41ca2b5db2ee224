#!/usr/bin/env node
// Benchmarks on real configurations (random DINOv2-shaped encoders: no weights can be
// downloaded here; speed does not depend on the values). Writes its section of
// docs/benchmarks.md, one section per libtorch version, so that runs on Debian 12 (1.13) and in
// the Debian 13 chroot (2.6, `scripts/trixie.sh exec 'node bench/run.js'`) stand side by side.
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
  const dir = path.resolve(__dirname, '..', 'test', 'fixtures', 'datasets', 'synth-ad', 'weave', 'test', 'good');
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
  const dir = path.resolve(__dirname, '..', 'test', 'fixtures', 'datasets', 'synth-ad', 'weave');
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

function osRelease() {
  try {
    return /^PRETTY_NAME="?([^"\n]*)/m.exec(fs.readFileSync('/etc/os-release', 'utf8'))[1];
  } catch {
    return os.platform();
  }
}

/** Replace this libtorch's section of docs/benchmarks.md, keeping the others and the manual part. */
function writeSection(file, torchMinor, body) {
  const begin = `<!-- bench: libtorch ${torchMinor} -->`;
  const end = `<!-- end bench: libtorch ${torchMinor} -->`;
  const section = `${begin}\n${body}\n${end}`;
  let doc = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmarks\n\n<!-- manual -->\n';
  if (doc.includes(begin) && doc.includes(end)) {
    doc = doc.slice(0, doc.indexOf(begin)) + section + doc.slice(doc.indexOf(end) + end.length);
  } else {
    const at = doc.includes('<!-- manual -->') ? doc.indexOf('<!-- manual -->') : doc.length;
    doc = doc.slice(0, at) + section + '\n\n' + doc.slice(at);
  }
  fs.writeFileSync(file, doc);
}

(async () => {
  if (process.argv.includes('--spin-child')) return spinChild();
  const r = runtime();
  const rows = [];
  const lines = [];
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const torchMinor = r.torchVersion.split('.').slice(0, 2).join('.');
  lines.push(`## libtorch ${torchMinor}`, '');
  lines.push(`Measured ${new Date().toISOString().slice(0, 10)} on ${cpu}, ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB,`);
  lines.push(`Node ${process.version}, **libtorch ${r.torchVersion}** (${r.libtorch.path}, ${r.binary.kind} binary), ${osRelease()}, ` +
    `BLAS ${r.blas.library} (OpenBLAS ${r.blas.openblasCore ?? '-'} kernels; OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'}), by \`node bench/run.js${quick ? ' --quick' : ''}\`.`);
  lines.push('Random DINOv2-shaped encoders (speed does not depend on the weights); input 392x392 (resize 448, crop 392).', '');
  lines.push('### Inference (one image a call, anomaly map and score included)', '');
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
    'Element-wise ops, convolutions and oneDNN\'s products (float32 and bfloat16) follow the thread count (runs vary by about 10%). ' +
    'All of this is with libgomp\'s default wait (a spin of 300000 rounds, then sleep), which the package leaves alone; the ACTIVE row spins without end.', '');
  lines.push('### predict() on PNG files (decode, preprocess, infer, map back to 256x256)', '');
  lines.push('| encoder | predictBatchSize | requests | one at a time: images / s | all at once: images / s |', '|---|---|---|---|---|');
  const concurrent = {};
  for (const predictBatchSize of [1, 8]) {
    const pr = await timePredict(ENCODERS['ViT-S/14 reg4'], { n: quick ? 4 : 16, predictBatchSize });
    concurrent[predictBatchSize] = pr.concurrent;
    lines.push(`| ViT-S/14 reg4 | ${predictBatchSize} | ${quick ? 4 : 16} | ${pr.sequential.toFixed(2)} | ${pr.concurrent.toFixed(2)} |`);
    console.log(lines[lines.length - 1]);
  }
  lines.push('', '| inferTensor, ViT-S/14 reg4 float32, batch | ms / image |', '|---|---|');
  const msPerImage = {};
  for (const batch of [1, 2, 4, 8]) {
    const m = await timeInference(ENCODERS['ViT-S/14 reg4'], { threads: r.threads, batch, reps: quick ? 1 : 3 });
    msPerImage[batch] = (1000 * m.secondsPerBatch) / batch;
    lines.push(`| ${batch} | ${msPerImage[batch].toFixed(0)} |`);
    console.log(lines[lines.length - 1]);
  }
  lines.push('', `The CPU default is predictBatchSize 1 (concurrent calls queue on the model thread, each answered as if alone); on CUDA it is 8. ` +
    `Here a batch of 8 took ${(msPerImage[8] / msPerImage[1]).toFixed(2)}x a single image's time per image, and ${quick ? 4 : 16} concurrent predict() calls ` +
    `ran at ${concurrent[8].toFixed(2)} images/s with predictBatchSize 8 against ${concurrent[1].toFixed(2)} with 1.`, '');
  lines.push('### Training (fit on synth-ad/weave PNGs: decode, resize, crop, normalise, step)', '');
  lines.push('| encoder | batch | steps | images / s | data-wait share |', '|---|---|---|---|---|');
  const t = await timeTraining(ENCODERS['ViT-S/14 reg4'], { batch: 4, steps: quick ? 2 : 6 });
  lines.push(`| ViT-S/14 reg4 | 4 | ${t.steps} | ${t.imagesPerSecond.toFixed(2)} | ${(100 * t.dataWaitShare).toFixed(1)}% |`);
  console.log(lines[lines.length - 1]);
  const out = path.join(__dirname, '..', 'docs', 'benchmarks.md');
  writeSection(out, torchMinor, lines.join('\n'));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
