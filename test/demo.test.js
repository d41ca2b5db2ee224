// The README's main job: `npm run demo` trains on the shipped example tiles, prints metrics and
// writes heatmaps (with the built-in encoder when no DINOv2 weights are present).
'use strict';
const test = require('ava');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { tmpdir } = require('./helpers');

test('npm run demo trains, evaluates and writes heatmaps', (t) => {
  const root = path.join(__dirname, '..');
  const env = { ...process.env, INP_FORMER_CACHE: tmpdir() }; // no weights: the built-in encoder
  delete env.INP_FORMER_ENCODER;
  const r = spawnSync(process.execPath, [path.join(root, 'examples', 'demo.js')], { env, encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /built-in RANDOM encoder/);
  t.regex(r.stdout, /^all\s+\d\.\d{3}\s+\d\.\d{3}\s+\d\.\d{3}\s+\d\.\d{3}/m);
  const out = path.join(root, 'examples', 'output');
  const pngs = fs.readdirSync(out).filter((f) => f.endsWith('.png'));
  t.true(pngs.includes('crack-000.png'));
  t.true(fs.existsSync(path.join(out, 'model.pth')));
  const auroc = Number(/^all\s+(\d\.\d{3})/m.exec(r.stdout)[1]);
  t.log(r.stdout.split('\n').filter((l) => /^(all|crack|spot)\s/.test(l)).join('\n'));
  t.true(auroc > 0.7);
});
