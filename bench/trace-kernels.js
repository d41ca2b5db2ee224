#!/usr/bin/env node
// reference-a's training trace under each OpenBLAS kernel set this CPU can run
// (OPENBLAS_CORETYPE), one child process each: how far other summation orders move the trace,
// and where the decoder's ReLU kink is. The figures behind the cross-kernel bounds of
// test/training.test.js; results go into docs/parity.md by hand.
//   node bench/trace-kernels.js [Haswell SkylakeX ...]
'use strict';
const { execFileSync } = require('node:child_process');

if (process.argv[2] === '--child') {
  const { referenceTrace } = require('../test/helpers');
  const { runtime } = require('..');
  referenceTrace().then((r) => console.log(JSON.stringify({ ...r, core: runtime().blas.openblasCore })));
} else {
  const kernels = process.argv.length > 2 ? process.argv.slice(2) : ['(auto)', 'Haswell', 'Zen', 'SkylakeX', 'Cooperlake', 'SandyBridge', 'Prescott'];
  const e = (x) => x.toExponential(1);
  console.log('| OPENBLAS_CORETYPE | kernels run | loss (max rel) | grad norm (max rel) | first step with reluMargin < 1e-5 | weights q99.9 | weights max | update rel. L2 |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const k of kernels) {
    const env = { ...process.env };
    delete env.OPENBLAS_CORETYPE;
    if (k !== '(auto)') env.OPENBLAS_CORETYPE = k;
    let r;
    try {
      r = JSON.parse(execFileSync(process.execPath, [__filename, '--child'], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
    } catch (err) {
      console.log(`| ${k} | failed: ${String(err.message).split('\n')[0]} | | | | | | |`);
      continue;
    }
    const max = (f) => Math.max(...r.rows.map(f));
    const kink = r.rows.find((x) => x.reluMargin < 1e-5);
    console.log(`| ${k} | ${r.core} | ${e(max((x) => Math.max(x.loss, x.inpLoss)))} | ${e(max((x) => x.gradNorm))} | ${kink ? `${kink.step} (${e(kink.reluMargin)})` : 'none'} | ${e(r.w.q999)} | ${e(r.w.max)} | ${e(r.w.updateRelL2)} |`);
  }
}
