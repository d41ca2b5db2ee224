// The C++ core's own test (cpp/test/core_test.cpp) through ctest: the strict state-dict loader,
// the learning-rate schedule and the StableAdamW step, with no Node in between. It builds the
// test target in the CMake build folder that `npm run build` (scripts/setup.sh) made.
'use strict';
const test = require('ava');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { FIXTURE } = require('./helpers');

const BUILD = path.join(__dirname, '..', 'build');

test('the C++ core test passes (ctest)', (t) => {
  if (!fs.existsSync(path.join(BUILD, 'CMakeCache.txt'))) {
    t.fail('no CMake build folder: run `npm run build:native` (scripts/setup.sh does) first');
    return;
  }
  const run = (cmd, args, env = {}) => {
    const r = spawnSync(cmd, args, { cwd: BUILD, encoding: 'utf8', env: { ...process.env, ...env } });
    return { code: r.status, out: `${r.stdout}${r.stderr}` };
  };
  const build = run('cmake', ['--build', '.', '--target', 'inp_former_core_test']);
  t.is(build.code, 0, build.out.slice(-4000));
  const ctest = run('ctest', ['--output-on-failure', '--verbose'], { INP_FORMER_FIXTURE: FIXTURE });
  t.log(ctest.out.split('\n').filter((l) => /^\d+: (ok|FAIL|passed|FAILED)/.test(l)).join('\n'));
  t.is(ctest.code, 0, ctest.out.slice(-4000));
});
