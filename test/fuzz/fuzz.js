// Seeded fuzzing of the file readers: torch.save zips (crafted pickles and damaged bytes),
// TorchScript archives (damaged, dropped, duplicated and renamed records), safetensors (mutated headers and bytes) and images (damaged PNG and BMP bytes, hostile BMP
// headers). Every case must either load or fail with the reader's typed error; a case that
// loads is handed to torch's own reader (python3), and where torch loads it too, the values
// must agree. Used by test/fuzz.test.js (bounded) and by the long mode:
//   node test/fuzz/fuzz.js [--cases 10000] [--seed 1] [--no-torch]
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const yazl = require('yazl');
const { rng } = require('inp-former/internal');
const { statePickleOf } = require('inp-former/internal');
const { readCheckpointFile, collectModuleTensors } = require('inp-former/internal');
const { ZipArchive } = require('inp-former/internal');
const { decodeImage } = require('inp-former/internal');
const { CheckpointError, ImageDecodeError, InvalidArgumentError } = require('../..');

const NASTY = [-1, 0, 1, 2, 3, 4, 7, 0.5, -0.5, 1e9, 2 ** 31, 2 ** 53, -(2 ** 31), 1e300];

function zipBytes(records) {
  const zip = new yazl.ZipFile();
  for (const [name, buf, compress] of records) zip.addBuffer(buf, name, { compress: Boolean(compress), mtime: new Date(0) });
  zip.end();
  return new Promise((resolve, reject) => {
    const chunks = [];
    zip.outputStream.on('data', (c) => chunks.push(c)).on('end', () => resolve(Buffer.concat(chunks))).on('error', reject);
  });
}

/** A torch.save zip with 1-3 float32 tensors whose references are drawn to be valid or hostile. */
async function torchCase(next) {
  const pick = (xs) => xs[Math.floor(next() * xs.length)];
  const n = 1 + Math.floor(next() * 3);
  const refs = [];
  const records = [];
  for (let i = 0; i < n; i++) {
    const numel = 1 + Math.floor(next() * 12);
    const valid = next() < 0.5;
    const shape = valid ? [numel] : Array.from({ length: 1 + Math.floor(next() * 2) }, () => pick(NASTY));
    const stride = valid ? [1] : shape.map(() => pick(NASTY));
    refs.push({ name: `t${i}`, storageKey: String(next() < 0.1 ? 0 : i), storageNumel: valid || next() < 0.5 ? numel : pick(NASTY), offset: valid || next() < 0.5 ? 0 : pick(NASTY), shape, stride });
    const values = Float32Array.from({ length: numel }, () => Math.round(next() * 1000) / 8);
    if (next() > 0.05) records.push([`case/data/${i}`, Buffer.from(values.buffer), next() < 0.3]);
    if (next() < 0.05) records.push([`case/data/${i}`, Buffer.from(values.buffer), false]); // duplicate
  }
  let bytes = await zipBytes([['case/data.pkl', statePickleOf(refs, {})], ...records, ['case/version', Buffer.from('3\n')]]);
  const damage = next();
  if (damage < 0.25) {
    // flip bytes inside data.pkl (stored first, right after its local header)
    const start = 30 + bytes.readUInt16LE(26) + bytes.readUInt16LE(28);
    const len = bytes.readUInt32LE(18);
    bytes = Buffer.from(bytes);
    for (let k = 0; k < 1 + next() * 4; k++) bytes[start + Math.floor(next() * len)] = Math.floor(next() * 256);
  } else if (damage < 0.35) {
    bytes = bytes.subarray(0, Math.floor(next() * bytes.length));
  } else if (damage < 0.45) {
    bytes = Buffer.from(bytes);
    for (let k = 0; k < 1 + next() * 8; k++) bytes[Math.floor(next() * bytes.length)] = Math.floor(next() * 256);
  }
  return { kind: 'torch', ext: '.pth', bytes };
}

/** The records of test/fuzz/tiny.torchscript.pt (made by make-torchscript.py), in order. */
async function torchScriptBase() {
  const zip = await ZipArchive.open(path.join(__dirname, 'tiny.torchscript.pt'));
  try {
    const records = [];
    for (const name of zip.names()) records.push([name, await zip.read(name)]);
    return records;
  } finally {
    await zip.close();
  }
}

/**
 * A TorchScript archive made from the seed archive: records damaged, dropped, truncated,
 * duplicated or renamed, pickles with flipped bytes, or the whole file cut or flipped.
 */
async function torchScriptCase(next, base) {
  const pick = (xs) => xs[Math.floor(next() * xs.length)];
  const records = base.map(([name, buf]) => [name, Buffer.from(buf), next() < 0.3]);
  const victim = pick(records);
  const what = next();
  const flip = (buf, times) => {
    for (let k = 0; k < times; k++) if (buf.length) buf[Math.floor(next() * buf.length)] = Math.floor(next() * 256) & 0x3f; // no NaN/Inf patterns
  };
  if (what < 0.2) flip(records.find(([n]) => n.endsWith('/data.pkl'))[1], 1 + next() * 4);
  else if (what < 0.35) flip(pick(records.filter(([n]) => /\/data\/\d+$/.test(n)))[1], 1 + next() * 4);
  else if (what < 0.45) records.splice(records.indexOf(victim), 1);
  else if (what < 0.55) victim[1] = victim[1].subarray(0, Math.floor(next() * victim[1].length));
  else if (what < 0.6) records.push([victim[0], Buffer.from(victim[1]).reverse(), false]); // a second record of the same name
  else if (what < 0.65) victim[0] = victim[0].replace(/[^/]+$/, pick(['x', '0', '00', 'data.pkl']));
  else if (what < 0.75) flip(records.find(([n]) => n.endsWith('/constants.pkl'))[1], 1 + next() * 2);
  let bytes = await zipBytes(records);
  const whole = next();
  if (whole < 0.1) bytes = bytes.subarray(0, Math.floor(next() * bytes.length));
  else if (whole < 0.2) {
    bytes = Buffer.from(bytes);
    for (let k = 0; k < 1 + next() * 8; k++) bytes[Math.floor(next() * bytes.length)] = Math.floor(next() * 256);
  }
  return { kind: 'torchscript', ext: '.torchscript', bytes };
}

const ST_DTYPES = { F32: 4, F16: 2, I64: 8, U8: 1, BOOL: 1, F8: 1 };

function safetensorsCase(next) {
  const pick = (xs) => xs[Math.floor(next() * xs.length)];
  const header = {};
  let offset = 0;
  const n = 1 + Math.floor(next() * 3);
  for (let i = 0; i < n; i++) {
    const dtype = next() < 0.9 ? pick(['F32', 'F16', 'I64', 'U8']) : pick(Object.keys(ST_DTYPES));
    const numel = 1 + Math.floor(next() * 6);
    const size = numel * ST_DTYPES[dtype];
    header[`t${i}`] = { dtype, shape: [numel], data_offsets: [offset, offset + size] };
    offset += size;
  }
  const mutate = next();
  const names = Object.keys(header);
  const victim = header[pick(names)];
  if (mutate < 0.15) victim.data_offsets = [pick(NASTY), pick(NASTY)];
  else if (mutate < 0.25) victim.shape = [pick(NASTY)];
  else if (mutate < 0.3) delete victim[pick(['dtype', 'shape', 'data_offsets'])];
  else if (mutate < 0.35) header[pick(names)] = pick([null, 3, 'x', []]);
  else if (mutate < 0.45) victim.data_offsets = [Math.max(0, victim.data_offsets[0] - 2), victim.data_offsets[1] - 2];
  const data = Buffer.alloc(offset + (next() < 0.1 ? 7 : 0));
  for (let i = 0; i < data.length; i++) data[i] = Math.floor(next() * 256) & 0x3f; // no NaN/Inf patterns
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(next() < 0.05 ? pick([0, json.length + 100, 2 ** 40]) : json.length));
  let bytes = Buffer.concat([len, json, data]);
  if (next() < 0.15) bytes = bytes.subarray(0, 9 + Math.floor(next() * (bytes.length - 9)));
  return { kind: 'safetensors', ext: '.safetensors', bytes };
}

async function imageCase(next, base) {
  const bytes = Buffer.from(next() < 0.5 ? base.png : base.bmp);
  const what = next();
  if (what < 0.4) {
    for (let k = 0; k < 1 + next() * 16; k++) bytes[Math.floor(next() * bytes.length)] = Math.floor(next() * 256);
    return { kind: 'image', ext: '.img', bytes };
  }
  if (what < 0.6) return { kind: 'image', ext: '.img', bytes: bytes.subarray(0, Math.floor(next() * bytes.length)) };
  // hostile BMP header fields: offset, width, height, bits per pixel, compression
  const bmp = Buffer.from(base.bmp);
  const field = [[10, 'u32'], [18, 'i32'], [22, 'i32'], [28, 'u16'], [30, 'u32']][Math.floor(next() * 5)];
  const v = [-1, 0, 1, 0x7fffffff, -0x80000000, 65535, 100000][Math.floor(next() * 7)];
  if (field[1] === 'u16') bmp.writeUInt16LE(v & 0xffff, field[0]);
  else if (field[1] === 'u32') bmp.writeUInt32LE(v >>> 0, field[0]);
  else bmp.writeInt32LE(v | 0, field[0]);
  return { kind: 'image', ext: '.bmp', bytes: bmp };
}

async function imageBase() {
  const sharp = require('sharp');
  const raw = Buffer.alloc(16 * 12 * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 37) & 255;
  const png = await sharp(raw, { raw: { width: 16, height: 12, channels: 3 } }).png().toBuffer();
  const bmp = Buffer.alloc(54 + 16 * 12 * 3);
  bmp.write('BM', 0, 'latin1');
  bmp.writeUInt32LE(bmp.length, 2);
  bmp.writeUInt32LE(54, 10);
  bmp.writeUInt32LE(40, 14);
  bmp.writeInt32LE(16, 18);
  bmp.writeInt32LE(12, 22);
  bmp.writeUInt16LE(1, 26);
  bmp.writeUInt16LE(24, 28);
  raw.copy(bmp, 54);
  return { png, bmp };
}

/** Values of a loaded checkpoint as { name: [numbers] } (float32, names sorted), for the torch comparison. */
function valuesOf(file) {
  const out = {};
  const tensors = file.format === 'torchscript' ? collectModuleTensors(file.root) : file.root instanceof Map ? file.root : new Map();
  for (const k of [...tensors.keys()].sort()) {
    const v = tensors.get(k);
    if (v && typeof v.toFloat32 === 'function') out[k] = [...v.toFloat32()];
  }
  return out;
}

/**
 * torch's verdict on each file (.pth: torch.load, .torchscript: torch.jit.load): null when it
 * refuses, crashes or takes over 30 s, else { name: [values] } with names sorted.
 */
function torchLoads(files) {
  // One forked child per file: torch 1.13 itself crashes (SIGSEGV) or allocates without bound
  // on some crafted files, which must not take the other verdicts with it.
  const script = [
    'import json, os, resource, signal, sys, torch',
    'def verdict(f):',
    '    r, w = os.pipe()',
    '    pid = os.fork()',
    '    if pid == 0:',
    '        os.close(r)',
    '        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))',
    '        signal.alarm(30)',
    '        try:',
    '            if f.endswith(".torchscript"):',
    '                sd = torch.jit.load(f, map_location="cpu").state_dict()',
    '            else:',
    '                sd = torch.load(f, map_location="cpu", weights_only=True)',
    '            res = {k: sd[k].float().flatten().tolist() for k in sorted(sd) if torch.is_tensor(sd[k])}',
    '        except BaseException:',
    '            res = None',
    '        os.write(w, json.dumps(res).encode())',
    '        os._exit(0)',
    '    os.close(w)',
    '    chunks = []',
    '    while True:',
    '        b = os.read(r, 1 << 16)',
    '        if not b: break',
    '        chunks.append(b)',
    '    os.close(r)',
    '    _, status = os.waitpid(pid, 0)',
    '    return json.loads(b"".join(chunks)) if status == 0 and chunks else None',
    'print(json.dumps({f: verdict(f) for f in json.load(sys.stdin)}))',
  ].join('\n');
  return JSON.parse(execFileSync('/usr/bin/python3', ['-c', script], { input: JSON.stringify(files), encoding: 'utf8', maxBuffer: 1 << 28 }));
}

/**
 * Run `cases` seeded cases. Returns counts and the failures (untyped errors, slow cases,
 * disagreements with torch), each with what reproduces it.
 */
async function runFuzz({ cases = 300, seed = 1, torch = true, slowMs = 2000 } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inp-former-fuzz-'));
  const base = await imageBase();
  const scriptBase = await torchScriptBase();
  const counts = { total: 0, loaded: 0, typedErrors: 0, torchAgrees: 0, torchRefusesWeLoad: 0, weRefuseTorchLoads: 0, byKind: {} };
  const failures = [];
  const loadedByUs = new Map();
  const refusedByUs = new Set();
  let slowest = { ms: 0 };
  for (let i = 0; i < cases; i++) {
    const next = rng(seed * 1_000_003 + i);
    const r = next();
    const c = r < 0.35 ? await torchCase(next) : r < 0.5 ? await torchScriptCase(next, scriptBase) : r < 0.75 ? safetensorsCase(next) : await imageCase(next, base);
    const file = path.join(dir, `case-${i}${c.ext}`);
    const kind = (counts.byKind[c.kind] ??= { cases: 0, loaded: 0, torchAgrees: 0 });
    kind.cases++;
    fs.writeFileSync(file, c.bytes);
    const t0 = performance.now();
    try {
      if (c.kind === 'image') await decodeImage(file);
      else loadedByUs.set(file, valuesOf(await readCheckpointFile(file)));
      counts.loaded++;
      kind.loaded++;
    } catch (err) {
      const typed = err instanceof CheckpointError || err instanceof ImageDecodeError || err instanceof InvalidArgumentError;
      if (typed && String(err.message).includes(file)) {
        counts.typedErrors++;
        if (c.kind !== 'image') refusedByUs.add(file);
      } else failures.push({ case: i, seed, kind: c.kind, file, problem: `untyped or unnamed error: ${err && err.constructor && err.constructor.name}: ${err && err.message}` });
    }
    const ms = performance.now() - t0;
    if (ms > slowest.ms) slowest = { ms, case: i, kind: c.kind };
    if (ms > slowMs) failures.push({ case: i, seed, kind: c.kind, file, problem: `took ${ms.toFixed(0)} ms` });
    counts.total++;
  }
  if (torch) {
    const checked = [...loadedByUs.keys(), ...refusedByUs].filter((f) => f.endsWith('.pth') || f.endsWith('.torchscript'));
    const verdicts = checked.length ? torchLoads(checked) : {};
    for (const f of checked) {
      const theirs = verdicts[f];
      if (loadedByUs.has(f)) {
        if (theirs === null) counts.torchRefusesWeLoad++;
        else if (JSON.stringify(theirs) === JSON.stringify(loadedByUs.get(f))) {
          counts.torchAgrees++;
          counts.byKind[f.endsWith('.pth') ? 'torch' : 'torchscript'].torchAgrees++;
        }
        else failures.push({ file: f, kind: path.extname(f).slice(1), problem: 'loads differently from torch' });
      } else if (theirs !== null) counts.weRefuseTorchLoads++;
    }
  }
  return { counts, failures, slowest, dir };
}

module.exports = { runFuzz };

if (require.main === module) {
  const arg = (name, d) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? Number(process.argv[i + 1]) : d;
  };
  runFuzz({ cases: arg('--cases', 10_000), seed: arg('--seed', 1), torch: !process.argv.includes('--no-torch') }).then((r) => {
    console.log(JSON.stringify({ counts: r.counts, slowest: r.slowest, failures: r.failures.slice(0, 20), nFailures: r.failures.length }, null, 2));
    process.exit(r.failures.length ? 1 : 0);
  });
}
