// Crafted checkpoints that loaded silently wrong, ate memory or never settled: each is now a
// CheckpointError that names the file, raised before anything large is allocated.
'use strict';
const test = require('ava');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const yazl = require('yazl');
const { InpFormer, CheckpointError } = require('..');
const { readCheckpointFile } = require('inp-former/internal');
const { statePickleOf } = require('inp-former/internal');
const { tmpdir } = require('./helpers');

/** A torch.save-style zip: `refs` tensor entries, `records` storage bytes by key, extra records. */
async function torchZip(refs, records, { extra = [], deflate = false } = {}) {
  const file = path.join(tmpdir(), 'crafted.pth');
  const zip = new yazl.ZipFile();
  zip.addBuffer(statePickleOf(refs, {}), 'crafted/data.pkl', { compress: false });
  for (const [key, buf] of Object.entries(records)) zip.addBuffer(buf, `crafted/data/${key}`, { compress: deflate });
  for (const [name, buf, compress] of extra) zip.addBuffer(buf, name, { compress: Boolean(compress) });
  zip.addBuffer(Buffer.from('3\n'), 'crafted/version', { compress: false });
  zip.end();
  await new Promise((resolve, reject) => zip.outputStream.pipe(fs.createWriteStream(file)).on('close', resolve).on('error', reject));
  return file;
}

const floats = (n, v = 1) => Buffer.from(new Float32Array(n).fill(v).buffer);
const ref = (o) => ({ name: 'w', storageKey: '0', storageNumel: 4, offset: 0, shape: [4], stride: [1], ...o });

async function rejects(t, file, pattern) {
  const err = await t.throwsAsync(readCheckpointFile(file), { instanceOf: CheckpointError });
  t.true(err.message.startsWith(file), `names the file: ${err.message}`);
  t.regex(err.message, pattern);
  return err;
}

test('a well-formed crafted file loads: the crafting itself is sound', async (t) => {
  const file = await torchZip([ref({ shape: [2, 2], stride: [2, 1] })], { 0: Buffer.from(new Float32Array([1, 2, 3, 4]).buffer) });
  const w = (await readCheckpointFile(file)).root.get('w');
  t.deepEqual([...w.toFloat32()], [1, 2, 3, 4]);
  t.deepEqual([...w.shape], [2, 2]);
  const view = await torchZip([ref({ offset: 1, shape: [2], stride: [2] })], { 0: Buffer.from(new Float32Array([1, 2, 3, 4]).buffer) });
  t.deepEqual([...(await readCheckpointFile(view)).root.get('w').toFloat32()], [2, 4], 'strided views inside the storage are fine');
});

test('negative and fractional storage offsets are refused (they loaded as zeros or as other bytes)', async (t) => {
  await rejects(t, await torchZip([ref({ offset: -2, shape: [2] })], { 0: floats(4) }), /storage offset -2 is not a non-negative integer/);
  await rejects(t, await torchZip([ref({ offset: 0.5, shape: [2] })], { 0: floats(4) }), /storage offset 0\.5/);
  await rejects(t, await torchZip([ref({ storageNumel: -4 })], { 0: floats(4) }), /storage size -4/);
});

test('negative strides, fractional sizes and views past the storage are refused', async (t) => {
  await rejects(t, await torchZip([ref({ offset: 3, shape: [4], stride: [-1] })], { 0: floats(4) }), /stride \[-1\]/);
  await rejects(t, await torchZip([ref({ shape: [1.5], stride: [1] })], { 0: floats(4) }), /size \[1\.5\]/);
  await rejects(t, await torchZip([ref({ offset: 2, shape: [4] })], { 0: floats(4) }), /reaches element 5 of a storage of 4/);
  await rejects(t, await torchZip([ref({ shape: [2, 2], stride: [1] })], { 0: floats(4) }), /does not fit size/);
});

test('a stride-0 view declaring 1e9 elements is refused before allocating (it took 7.7 GiB)', async (t) => {
  const before = process.memoryUsage().rss;
  await rejects(t, await torchZip([ref({ shape: [1e9], stride: [0], storageNumel: 1 })], { 0: floats(1) }), /1000000000 elements in a storage of 1 \(an expanded or overlapping view\)/);
  t.true(process.memoryUsage().rss - before < 256 * 2 ** 20, 'no large allocation');
});

test('a record present twice is refused (torch takes the first copy, we took the last)', async (t) => {
  const file = await torchZip([ref()], { 0: floats(4, 1) }, { extra: [['crafted/data/0', floats(4, 2)]] });
  await rejects(t, file, /record 'crafted\/data\/0' is present twice/);
});

test('unreferenced records are never read: a corrupt deflated 64 MiB one does not matter', async (t) => {
  const junk = Buffer.alloc(64 * 2 ** 20, 0);
  const file = await torchZip([ref()], { 0: floats(4, 3) }, { extra: [['crafted/data/unused', junk, true]] });
  // damage the deflated junk's bytes (its CRC can no longer match): reading it would fail
  const bytes = fs.readFileSync(file);
  const at = bytes.indexOf(Buffer.from('crafted/data/unused')) + 'crafted/data/unused'.length + 8;
  bytes.fill(0x55, at, at + 64);
  fs.writeFileSync(file, bytes);
  t.true(fs.statSync(file).size < 2 ** 20, 'the 64 MiB record is stored in well under 1 MiB');
  const w = (await readCheckpointFile(file)).root.get('w');
  t.deepEqual([...w.toFloat32()], [3, 3, 3, 3]);
});

test('a storage record shorter than its declared size is refused from the directory, before reading', async (t) => {
  await rejects(t, await torchZip([ref({ storageNumel: 1000 })], { 0: floats(4) }), /is truncated \(16 of 4000 bytes\)/);
});

test('deep pickle nesting is a CheckpointError, not a stack overflow', async (t) => {
  // data.pkl: 100000 nested empty lists, then STOP (EMPTY_LIST, APPEND chains via MARK/APPENDS)
  const depth = 100_000;
  const body = Buffer.concat([Buffer.from([0x80, 0x02]), Buffer.alloc(depth, 0x5d), Buffer.alloc(depth - 1, 0x61), Buffer.from([0x2e])]);
  const file = path.join(tmpdir(), 'deep.pth');
  const zip = new yazl.ZipFile();
  zip.addBuffer(body, 'deep/data.pkl', { compress: false });
  zip.end();
  await new Promise((resolve) => zip.outputStream.pipe(fs.createWriteStream(file)).on('close', resolve));
  await rejects(t, file, /nested deeper than 1000 levels/);
});

function safetensors(header, data = Buffer.alloc(16)) {
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  const file = path.join(tmpdir(), 'crafted.safetensors');
  fs.writeFileSync(file, Buffer.concat([len, h, data]));
  return file;
}

test('malformed safetensors headers are CheckpointErrors naming the file and the tensor', async (t) => {
  const ok = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };
  t.deepEqual([...(await readCheckpointFile(safetensors({ a: ok }))).root.get('a').toFloat32()], [0, 0]);
  await rejects(t, safetensors({ a: { ...ok, data_offsets: [-8, 0] } }), /'a': data_offsets \[-8,0\]/);
  await rejects(t, safetensors({ a: { ...ok, data_offsets: [0.5, 8.5] } }), /'a': data_offsets/);
  await rejects(t, safetensors({ a: ok, b: { ...ok, data_offsets: [4, 12] } }), /'a' and 'b' overlap/);
  await rejects(t, safetensors({ a: { dtype: 'F32', data_offsets: [0, 8] } }), /'a': shape undefined/);
  await rejects(t, safetensors({ a: { dtype: 'F32', shape: 2, data_offsets: [0, 8] } }), /'a': shape 2/);
  await rejects(t, safetensors({ a: { dtype: 'F32', shape: [2] } }), /'a': data_offsets undefined/);
  await rejects(t, safetensors({ a: null }), /'a': entry is not an object/);
  await rejects(t, safetensors([1, 2]), /unknown file format/);
  await rejects(t, safetensors({ a: { ...ok, dtype: 'F8' } }), /unsupported or missing dtype "F8"/);
  await rejects(t, safetensors({ a: { ...ok, data_offsets: [0, 64] } }), /lie outside the data/);
  const huge = path.join(tmpdir(), 'huge-header.safetensors');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(2n ** 62n);
  fs.writeFileSync(huge, Buffer.concat([len, Buffer.from('{}')]));
  await rejects(t, huge, /header length 4611686018427387904 does not fit the file/);
});

test('devices, FIFOs, folders and missing paths are refused up front, and settle at once', async (t) => {
  await rejects(t, '/dev/zero', /a device, not a regular file/);
  await rejects(t, '/dev/urandom', /a device, not a regular file/);
  const dir = tmpdir();
  await rejects(t, dir, /a folder/);
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  await rejects(t, fifo, /a FIFO, not a regular file/);
  await rejects(t, path.join(dir, 'missing', 'model.pth'), /cannot open: no such file/);
  // and through the public API
  const err = await t.throwsAsync(InpFormer.load('/dev/zero'), { instanceOf: CheckpointError });
  t.is(err.code, 'ERR_INP_CHECKPOINT');
});

test('a pickle list of 300,000 items loads (walking it must not spread it into one call)', async (t) => {
  const n = 300_000;
  // PROTO 2, EMPTY_LIST, MARK, n x BININT1 7, APPENDS, STOP
  const body = Buffer.concat([Buffer.from([0x80, 0x02, 0x5d, 0x28]), Buffer.from(Array.from({ length: n }, () => [0x4b, 7]).flat()), Buffer.from([0x65, 0x2e])]);
  const file = path.join(tmpdir(), 'long.pth');
  const zip = new yazl.ZipFile();
  zip.addBuffer(body, 'long/data.pkl', { compress: false });
  zip.end();
  await new Promise((resolve) => zip.outputStream.pipe(fs.createWriteStream(file)).on('close', resolve));
  const root = (await readCheckpointFile(file)).root;
  t.is(root.length, n);
  t.is(root[n - 1], 7);
});

test('a damaged record that a load leaves in the file is a CheckpointError when read, naming the file and the record', async (t) => {
  const n = 2 ** 19; // 2 MiB of float32: above the 1 MiB a load defers
  const deflated = await torchZip([ref({ storageNumel: n, shape: [n] })], { 0: floats(n, 2) }, { deflate: true });
  const bytes = fs.readFileSync(deflated);
  const at = bytes.indexOf(Buffer.from('crafted/data/0')) + 'crafted/data/0'.length + 8;
  bytes.fill(0x55, at, at + 64);
  fs.writeFileSync(deflated, bytes);
  const lazy = await readCheckpointFile(deflated, { deferStoragesAbove: 2 ** 20 });
  t.teardown(() => lazy.close());
  const w = lazy.root.get('w');
  t.false(w.isRead, 'opening does not read it');
  const err = await t.throwsAsync(w.source.read(), { instanceOf: CheckpointError });
  t.true(err.message.startsWith(deflated), `names the file: ${err.message}`);
  t.regex(err.message, /crafted\/data\/0/);

  // a stored record (read straight from the file) cannot be read once the file is closed
  const stored = await torchZip([ref({ storageNumel: n, shape: [n] })], { 0: floats(n, 2) });
  const closed = await readCheckpointFile(stored, { deferStoragesAbove: 2 ** 20 });
  await closed.close();
  await t.throwsAsync(closed.root.get('w').source.read(), { instanceOf: CheckpointError, message: /cannot read record 'crafted\/data\/0': .*after the archive was closed/ });
  const open = await readCheckpointFile(stored, { deferStoragesAbove: 2 ** 20 });
  await open.root.get('w').source.read();
  t.deepEqual(open.root.get('w').toFloat32(), new Float32Array(n).fill(2), 'while open, the same values');
  await open.close();
});
