// A checkpoint that hides three unreferenced 1 GiB deflated records (3 MB on disk) beside a
// 6-element state dict: how long a load takes and the loading process's peak RSS. Issue 10
// measured 17 s and 4.4 GiB before records were read lazily (docs/reliability.md).
//   node bench/unreferenced-records.js
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

if (process.argv[2] === '--child') {
  const { readCheckpointFile } = require('inp-former/internal');
  const t0 = performance.now();
  readCheckpointFile(process.argv[3]).then((f) => {
    const ms = performance.now() - t0;
    process.stdout.write(JSON.stringify({ keys: [...f.root.keys()], ms, peakRssMiB: process.resourceUsage().maxRSS / 1024 }));
  });
} else {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inp-former-records-'));
  const file = path.join(dir, 'bomb.pth');
  const make = [
    'import sys, torch, zipfile',
    'base = sys.argv[1] + ".base"',
    'torch.save({"w": torch.arange(6, dtype=torch.float32)}, base)',
    'src = zipfile.ZipFile(base)',
    'stem = src.namelist()[0].split("/")[0]',
    'with zipfile.ZipFile(sys.argv[1], "w", compression=zipfile.ZIP_DEFLATED) as z:',
    '    for info in src.infolist(): z.writestr(info.filename, src.read(info.filename))',
    '    chunk = bytes(1 << 24)',
    '    for k in range(3):',
    '        with z.open(f"{stem}/data/junk{k}", "w", force_zip64=True) as f:',
    '            for _ in range(64): f.write(chunk)',
  ].join('\n');
  execFileSync('/usr/bin/python3', ['-c', make, file]);
  const r = JSON.parse(execFileSync(process.execPath, [__filename, '--child', file], { encoding: 'utf8' }));
  console.log(JSON.stringify({ fileBytes: fs.statSync(file).size, ...r }));
  fs.rmSync(dir, { recursive: true, force: true });
}
