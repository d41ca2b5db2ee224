// The vendored fixtures (test/fixtures) are byte-for-byte copies of ../shared's, where that
// folder sits beside the checkout; a clone without it uses the copies as they are.
'use strict';
const test = require('ava');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { FIXTURES } = require('./helpers');

const SHARED = path.resolve(__dirname, '..', '..', 'shared');
const PAIRS = [
  [path.join(FIXTURES, 'reference-a'), path.join(SHARED, 'fixtures', 'reference-a')],
  [path.join(FIXTURES, 'datasets', 'synth-ad'), path.join(SHARED, 'datasets', 'synth-ad')],
];

function digests(root) {
  const out = new Map();
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else out.set(path.relative(root, p), crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex'));
    }
  };
  walk(root);
  return out;
}

test('the vendored fixtures are there for a clone alone', (t) => {
  for (const [vendored] of PAIRS) t.true(fs.existsSync(vendored), vendored);
  t.true(fs.existsSync(path.join(FIXTURES, 'reference-a', 'manifest.json')));
});

const beside = PAIRS.every(([, original]) => fs.existsSync(original));
(beside ? test : test.skip)('the vendored fixtures equal ../shared file for file', (t) => {
  for (const [vendored, original] of PAIRS) {
    const ours = digests(vendored);
    const theirs = digests(original);
    const differ = [...theirs].filter(([f, h]) => ours.get(f) !== h).map(([f]) => f);
    const extra = [...ours.keys()].filter((f) => !theirs.has(f));
    t.deepEqual(differ, [], `${vendored}: missing or different from ${original}`);
    t.deepEqual(extra, [], `${vendored}: files not in ${original}`);
  }
});
