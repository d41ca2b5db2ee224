// fit() over several epochs with and without the encoder-feature cache (featureCacheMiB), each
// run in its own child process, alternated: seconds per epoch (the first encodes every image
// either way), images the encoder ran on, peak RSS and the cache's size. Random ViT-S/14 reg4
// weights, synth-ad/weave's 60 training PNGs, 224 px crops, batch 8.
//   node bench/feature-cache.js [--rounds 2] [--epochs 3]
'use strict';
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const DATA = path.join(__dirname, '..', '..', 'shared', 'datasets', 'synth-ad', 'weave', 'train', 'good');
const arg = (n, d) => (process.argv.includes(n) ? Number(process.argv[process.argv.indexOf(n) + 1]) : d);

async function child(featureCacheMiB, epochs) {
  const { InpFormer } = require('..');
  const model = await InpFormer.create({
    encoder: { embedDim: 384, depth: 12, numHeads: 6, numRegisterTokens: 4 }, imageSize: 256, cropSize: 224, seed: 1,
  });
  const stamps = [performance.now()];
  const summary = await model.fit(DATA, {
    epochs, batchSize: 8, warmupSteps: 2, featureCacheMiB: Number(featureCacheMiB),
    onProgress: (e) => e.type === 'epoch' && stamps.push(performance.now()),
  });
  await model.dispose();
  const epochSeconds = stamps.slice(1).map((t, i) => (t - stamps[i]) / 1000);
  process.stdout.write(JSON.stringify({ epochSeconds, imagesEncoded: summary.imagesEncoded, imagesSeen: summary.imagesSeen, featureCache: summary.featureCache, finalLoss: summary.finalLoss, peakRssMiB: process.resourceUsage().maxRSS / 1024 }));
}

function main() {
  const rounds = arg('--rounds', 2);
  const epochs = arg('--epochs', 3);
  const settings = [['cache (default 1024 MiB)', 1024], ['no cache (featureCacheMiB 0)', 0]];
  const rows = new Map(settings.map(([name]) => [name, []]));
  for (let r = 0; r < rounds; r++) {
    for (const [name, mib] of settings) {
      const out = JSON.parse(execFileSync(process.execPath, [__filename, '--child', mib, epochs]).toString());
      rows.get(name).push(out);
      console.error(name, JSON.stringify(out));
    }
  }
  const fmt = (xs) => xs.map((x) => x.toFixed(1)).join(' / ');
  console.log(`| setting | s per epoch, first | s per epoch, later (each round) | encoder ran on | peak RSS | cache |`);
  console.log('|---|---|---|---|---|---|');
  for (const [name, runs] of rows) {
    const later = runs.map((o) => o.epochSeconds.slice(1).reduce((a, b) => a + b, 0) / (o.epochSeconds.length - 1));
    console.log(`| ${name} | ${fmt(runs.map((o) => o.epochSeconds[0]))} | ${fmt(later)} | ${runs[0].imagesEncoded} of ${runs[0].imagesSeen} images | ${fmt(runs.map((o) => o.peakRssMiB))} MiB | ${runs[0].featureCache.images} images, ${(runs[0].featureCache.bytes / 2 ** 20).toFixed(1)} MiB |`);
  }
  const losses = new Set([...rows.values()].flat().map((o) => o.finalLoss));
  console.log(`\nfinal losses ${losses.size === 1 ? 'identical' : 'DIFFER'} across runs: ${[...losses].join(', ')}`);
}

if (process.argv[2] === '--child') child(process.argv[3], Number(process.argv[4]));
else main();
