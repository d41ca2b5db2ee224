// The published types: strict TypeScript consumers in ESM and CommonJS (test/types: literal
// unions for devices and error codes must reject misspellings) and are-the-types-wrong over the
// packed package (node10, node16 from CJS and from ESM, bundler), as a user's compiler sees them.
'use strict';
const test = require('ava');
const fs = require('node:fs');
const os = require('node:os');
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const bin = (name) => path.join(ROOT, 'node_modules', '.bin', name);

test('strict TypeScript consumers (ESM .mts and CommonJS .cts) compile against the published types', (t) => {
  const r = spawnSync(bin('tsc'), ['-p', path.join(__dirname, 'types', 'tsconfig.json')], { cwd: ROOT, encoding: 'utf8' });
  t.is(r.status, 0, r.stdout + r.stderr);
});

test('are-the-types-wrong finds no problem for node10, node16 (CJS and ESM) and bundler', (t) => {
  const r = spawnSync(bin('attw'), ['--pack', '.', '--format', 'json'], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
  t.is(r.status, 0, r.stderr + r.stdout.slice(0, 4000));
  const report = JSON.parse(r.stdout);
  t.deepEqual([...Object.values(report.problems ?? {}).flat(), ...(report.analysis.problems ?? [])], [], 'problems found');
  const entries = Object.keys(report.analysis.entrypoints);
  t.true(['.', './queue', './internal'].every((e) => entries.includes(e)), entries.join(', '));
  for (const [entry, info] of Object.entries(report.analysis.entrypoints)) {
    for (const kind of ['node10', 'node16-cjs', 'node16-esm', 'bundler']) {
      t.truthy(info.resolutions[kind]?.resolution?.fileName, `${entry} does not resolve its types for ${kind}`);
    }
  }
  const esm = report.analysis.entrypoints['.'].resolutions['node16-esm'].resolution.fileName;
  t.regex(esm, /\.d\.mts$/, 'ESM importers get ESM types');
});

test('the API reference builds from the types without a warning (typedoc: nothing public refers to an unexported type)', (t) => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'inp-former-api-'));
  const r = spawnSync(bin('typedoc'), ['--out', out], { cwd: ROOT, encoding: 'utf8' });
  t.is(r.status, 0, r.stdout + r.stderr);
  t.notRegex(r.stdout + r.stderr, /warning/i);
  const html = (p) => fs.readFileSync(path.join(out, p), 'utf8');
  t.regex(html('classes/inp-former.InpFormer.html'), /predictEach/);
  t.regex(html('classes/inp-former_queue.InpFormerQueue.html'), /enqueueFit/);
  t.regex(html('interfaces/inp-former.FolderDataset.html'), /normalSplitRatio/);
  fs.rmSync(out, { recursive: true, force: true });
});
