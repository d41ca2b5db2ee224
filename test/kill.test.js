// kill -9 during a checkpointed fit: resuming from whatever is on disk is exact (or refused),
// never silently different. INP_FORMER_KILL_RUNS sets the number of kills (default 3; the
// documented long run is 30).
'use strict';
const test = require('ava');
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { InpFormer } = require('..');
const { listImages } = require('inp-former/internal');
const { FIXTURES, tmpdir, maxAbsDiff } = require('./helpers');

const WEAVE = path.join(FIXTURES, 'datasets', 'synth-ad', 'weave');
const RUNS = Number(process.env.INP_FORMER_KILL_RUNS ?? 3);
const opts = { epochs: 6, batchSize: 4, warmupSteps: 2, seed: 7 };
// threads fixed: adaptive thread counts may differ between the runs, and with them the last bits
const modelOptions = { encoder: { embedDim: 32, depth: 10, numHeads: 2, posGridSize: 8, seed: 3 }, imageSize: 64, cropSize: 56, seed: 5, threads: 2 };

test.serial(`kill -9 during a checkpointed fit, ${RUNS} times: each resume equals the uninterrupted run`, async (t) => {
  const files = (await listImages(WEAVE)).slice(0, 12);
  const reference = await InpFormer.create(modelOptions);
  await reference.fit(files, opts);
  const want = await reference.stateDict();
  await reference.dispose();

  const script = `
    const { InpFormer } = require(${JSON.stringify(path.join(__dirname, '..'))});
    (async () => {
      const m = await InpFormer.create(${JSON.stringify(modelOptions)});
      await m.fit(${JSON.stringify(files)}, { ...${JSON.stringify(opts)}, checkpoint: { path: process.argv[1], everyEpochs: 1 } });
    })();`;
  let exact = 0;
  for (let run = 0; run < RUNS; run++) {
    const dir = tmpdir('inp-former-kill-');
    const ck = path.join(dir, 'run.pth');
    const child = spawn(process.execPath, ['-e', script, ck], { stdio: 'ignore' });
    let exited = false;
    const exit = new Promise((r) => child.on('exit', () => r((exited = true))));
    // wait for the first checkpoint, then kill at a random moment of the following epochs (the
    // child may have finished by then: its last checkpoint must resume to the same weights)
    while (!fs.existsSync(ck) && !exited) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, Math.random() * 2500));
    child.kill('SIGKILL');
    await exit;
    const m = await InpFormer.create(modelOptions);
    const left = fs.readdirSync(dir).sort();
    await m.fit(files, { ...opts, resumeFrom: ck, checkpoint: { path: ck, everyEpochs: 1 } });
    const got = await m.stateDict();
    await m.dispose();
    let diff = 0;
    want.forEach((p, i) => (diff = Math.max(diff, maxAbsDiff(p.data, got[i].data))));
    t.log(`run ${run + 1}: files left ${left.join(', ')}; max difference after resume ${diff}`);
    if (diff === 0) exact++;
    t.deepEqual(fs.readdirSync(dir).sort(), ['run.pth', 'run.pth.train-state.18'], 'stale temp files and older states cleaned by the next save');
    fs.rmSync(dir, { recursive: true, force: true });
  }
  t.is(exact, RUNS, `${exact} of ${RUNS} resumes exact`);
});
