// Resident memory around a fit: before it, during it (after two steps, when the optimizer's
// moments and the gradients exist) and after it, on a 384-d, 12-block random model at 112 px.
//   node bench/fit-memory.js
'use strict';
const { InpFormer } = require('..');

const rss = () => process.memoryUsage().rss / 2 ** 20;

(async () => {
  const model = await InpFormer.create({ encoder: { embedDim: 384, depth: 12, numHeads: 6, posGridSize: 16 }, imageSize: 112, cropSize: 112 });
  const before = rss();
  let during = 0;
  function* batches() {
    for (let i = 0; i < 3; i++) {
      if (i === 2) during = rss();
      yield { data: new Float32Array(2 * 3 * 112 * 112).fill(0.1 * i), shape: [2, 3, 112, 112] };
    }
  }
  await model.fit(batches(), { maxSteps: 3, warmupSteps: 1 });
  const after = rss();
  const trainable = (await model.stateDict()).filter((t) => !t.name.startsWith('encoder.')).reduce((n, t) => n + t.data.length, 0);
  console.log(JSON.stringify({ trainableMiB: +((trainable * 4) / 2 ** 20).toFixed(1), beforeMiB: Math.round(before), duringFitMiB: Math.round(during), afterFitMiB: Math.round(after) }));
  await model.dispose();
})();
