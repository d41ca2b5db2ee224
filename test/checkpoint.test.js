// The checkpoint reader: safe on hostile input, typed errors on damaged files, all formats.
'use strict';
const test = require('ava');
const fs = require('node:fs');
const path = require('node:path');
const { InpFormer, CheckpointError, AbortError } = require('..');
const { unpickle, PyObject } = require('inp-former/internal');
const { readCheckpointFile } = require('inp-former/internal');
const { FIXTURE, tmpdir, FIXTURE_SIZES, inputBatch } = require('./helpers');

test('a pickle that would run os.system yields an inert object and runs nothing', (t) => {
  const marker = path.join(tmpdir(), 'pwned');
  // protocol 2: GLOBAL os.system, ('touch <marker>',), REDUCE, STOP
  const cmd = Buffer.from(`touch ${marker}`);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(cmd.length);
  const pkl = Buffer.concat([
    Buffer.from([0x80, 0x02]), Buffer.from('cos\nsystem\n', 'latin1'),
    Buffer.from([0x58]), len, cmd, Buffer.from([0x85, 0x52, 0x2e]),
  ]);
  const value = unpickle(pkl);
  t.true(value instanceof PyObject);
  t.is(value.cls.qualified, 'os.system');
  t.false(fs.existsSync(marker));
});

test('unknown classes of the anomalib checkpoint become placeholders', async (t) => {
  const file = await readCheckpointFile(path.join(FIXTURE, 'anomalib_inp_former.ckpt'));
  const hp = file.root.get('hyper_parameters');
  t.true(hp.get('pre_processor') instanceof PyObject);
  t.is(hp.get('pre_processor').cls.qualified, 'anomalib.pre_processing.pre_processor.PreProcessor');
  t.is(hp.get('encoder_name'), 'dinov2reg_vit_small_14');
  // numpy float64 scalars and arrays do not break the reader
  const sched = file.root.get('lr_schedulers')[0];
  t.is(sched.get('final_value'), 0.0001);
});

function copyWith(name, mutate) {
  const dir = tmpdir();
  const dest = path.join(dir, name);
  const bytes = Buffer.from(fs.readFileSync(path.join(FIXTURE, name)));
  fs.writeFileSync(dest, mutate(bytes));
  return dest;
}

test('a truncated checkpoint gives a CheckpointError naming the file', async (t) => {
  const file = copyWith('inp_former.pth', (b) => b.subarray(0, Math.floor(b.length / 2)));
  const err = await t.throwsAsync(InpFormer.load(file), { instanceOf: CheckpointError });
  t.true(err.message.includes(file));
  t.is(err.code, 'ERR_INP_CHECKPOINT');
});

test('a corrupted pickle gives a CheckpointError', async (t) => {
  const file = copyWith('inp_former.pth', (b) => {
    // the first stored record is data.pkl: damage its opcodes just after the local header
    const nameLen = b.readUInt16LE(26);
    const extraLen = b.readUInt16LE(28);
    const start = 30 + nameLen + extraLen;
    b.fill(0xff, start + 2, start + 40);
    return b;
  });
  await t.throwsAsync(InpFormer.load(file), { instanceOf: CheckpointError });
});

test('a wrong file type gives a CheckpointError', async (t) => {
  const dir = tmpdir();
  const file = path.join(dir, 'not-a-model.pth');
  fs.writeFileSync(file, 'hello world, this is text');
  await t.throwsAsync(InpFormer.load(file), { instanceOf: CheckpointError, message: /unknown file format/ });
  await t.throwsAsync(InpFormer.load(path.join(dir, 'missing.pth')), { instanceOf: CheckpointError, message: /cannot open/ });
});

test('a shape mismatch names the key and both shapes', async (t) => {
  // swap in an encoder whose pos_embed has another size: the strict load names it
  const dir = tmpdir();
  const { writeTorchFile } = require('inp-former/internal');
  const file = await readCheckpointFile(path.join(FIXTURE, 'dinov2_encoder.pth'));
  const tensors = [...file.root].map(([name, v]) => ({ name, data: v.toFloat32(), shape: v.shape }));
  const qkv = tensors.find((x) => x.name === 'blocks.3.attn.qkv.bias');
  qkv.data = new Float32Array(100);
  qkv.shape = [100];
  const enc = path.join(dir, 'bad-encoder.pth');
  await writeTorchFile(enc, tensors, {});
  const err = await t.throwsAsync(InpFormer.load(path.join(FIXTURE, 'inp_former.pth'), { ...FIXTURE_SIZES, encoder: enc }), {
    instanceOf: CheckpointError,
  });
  t.regex(err.message, /encoder\.blocks\.3\.attn\.qkv\.bias/);
  t.regex(err.message, /\[100\]/);
  t.regex(err.message, /\[288\]/);
});

test('an encoder-only file is refused by load() with a pointer to create()', async (t) => {
  await t.throwsAsync(InpFormer.load(path.join(FIXTURE, 'dinov2_encoder.pth')), { instanceOf: CheckpointError, message: /create/ });
});

test('safetensors encoders (timm names, registers folded into cls) give the same network', async (t) => {
  // Build a timm-style safetensors file from the Meta weights, as timm's converter does.
  const file = await readCheckpointFile(path.join(FIXTURE, 'dinov2_encoder.pth'));
  const entries = [];
  for (const [name, v] of file.root) {
    if (name === 'mask_token') continue;
    let data = v.toFloat32();
    let shape = v.shape;
    let key = name;
    if (name === 'register_tokens') key = 'reg_token';
    if (name === 'pos_embed') {
      data = data.slice(shape[2]);
      shape = [1, shape[1] - 1, shape[2]];
    }
    if (name === 'cls_token') {
      const pos = file.root.get('pos_embed').toFloat32();
      data = data.map((x, i) => Math.fround(x + pos[i]));
    }
    entries.push({ key, data, shape });
  }
  const header = {};
  let offset = 0;
  for (const e of entries) {
    header[e.key] = { dtype: 'F32', shape: e.shape, data_offsets: [offset, offset + e.data.byteLength] };
    offset += e.data.byteLength;
  }
  let json = Buffer.from(JSON.stringify(header));
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const dir = tmpdir();
  const st = path.join(dir, 'timm.safetensors');
  fs.writeFileSync(st, Buffer.concat([len, json, ...entries.map((e) => Buffer.from(e.data.buffer))]));

  const input = inputBatch([0, 1]);
  const a = await InpFormer.load(path.join(FIXTURE, 'inp_former.pth'), FIXTURE_SIZES);
  const b = await InpFormer.load(path.join(FIXTURE, 'inp_former.pth'), { ...FIXTURE_SIZES, encoder: st });
  const ra = await a.inferTensor(input.data, input.shape);
  const rb = await b.inferTensor(input.data, input.shape);
  let err = 0;
  for (let i = 0; i < ra.anomalyMaps.length; i++) err = Math.max(err, Math.abs(ra.anomalyMaps[i] - rb.anomalyMaps[i]));
  t.log(`max map difference ${err}`);
  t.true(err < 1e-5);
  await a.dispose();
  await b.dispose();
});

// The two memory tests below run serially, before the concurrent ones, whose buffers would count too.
test.serial("load() keeps no JS copy of the checkpoint's weights once the network holds its own", async (t) => {
  const file = path.join(tmpdir(), 'wide.pth');
  const made = await InpFormer.create({ encoder: { embedDim: 384, depth: 10, numHeads: 6, posGridSize: 4 }, imageSize: 56, cropSize: 56 });
  const input = new Float32Array(3 * 56 * 56).fill(0.5);
  const expected = (await made.inferTensor(input, [1, 3, 56, 56])).scores[0];
  await made.save(file);
  await made.dispose();
  const size = fs.statSync(file).size;
  const before = process.memoryUsage().arrayBuffers;
  const model = await InpFormer.load(file);
  t.teardown(() => model.dispose());
  const held = process.memoryUsage().arrayBuffers - before;
  t.log(`file ${(size / 2 ** 20).toFixed(1)} MiB; array buffers after the load +${(held / 2 ** 20).toFixed(1)} MiB`);
  t.true(held < size / 10, 'the records were freed at the load, not left to a later collection');
  t.is((await model.inferTensor(input, [1, 3, 56, 56])).scores[0], expected, 'and the network has the weights');
});

test('a reader asked to defer large storages leaves them in the file until read, with the same bytes', async (t) => {
  const file = path.join(FIXTURE, 'inp_former.pth');
  const eager = await readCheckpointFile(file);
  const lazy = await readCheckpointFile(file, { deferStoragesAbove: 64 * 1024 });
  t.teardown(() => lazy.close());
  const deferred = [...lazy.root].filter(([, v]) => !v.isRead);
  t.true(deferred.length > 0 && deferred.length < lazy.root.size, `${deferred.length} of ${lazy.root.size} deferred`);
  for (const [, v] of deferred) t.true(v.byteSize > 64 * 1024);
  t.throws(() => deferred[0][1].toFloat32(), { message: /not been read/ });
  for (const [name, v] of deferred) {
    await v.source.read();
    t.deepEqual(v.toFloat32(), eager.root.get(name).toFloat32(), name);
  }
  await lazy.close();
  t.is(await eager.close(), undefined, 'a file read whole is already closed');
});

test('deferred safetensors tensors read the same bytes, and a read after close is a CheckpointError', async (t) => {
  const dir = tmpdir();
  const big = Float32Array.from({ length: 40000 }, (_, i) => Math.sin(i));
  const small = Float32Array.from([1, 2, 3]);
  const header = Buffer.from(JSON.stringify({
    small: { dtype: 'F32', shape: [3], data_offsets: [0, 12] },
    big: { dtype: 'F32', shape: [200, 200], data_offsets: [12, 12 + big.byteLength] },
  }));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  const file = path.join(dir, 't.safetensors');
  fs.writeFileSync(file, Buffer.concat([len, header, Buffer.from(small.buffer), Buffer.from(big.buffer)]));
  const lazy = await readCheckpointFile(file, { deferStoragesAbove: 1024 });
  t.true(lazy.root.get('small').isRead);
  t.false(lazy.root.get('big').isRead);
  await lazy.root.get('big').source.read();
  t.deepEqual(lazy.root.get('big').toFloat32(), big);
  const again = await readCheckpointFile(file, { deferStoragesAbove: 1024 });
  await again.close();
  await t.throwsAsync(again.root.get('big').source.read(), { instanceOf: CheckpointError, message: /tensor 'big'/ });
  await lazy.close();
});

/** A 384-wide model saved to a file whose larger storages a load brings in parts. */
async function wideModelFile(name) {
  const file = path.join(tmpdir(), name);
  const made = await InpFormer.create({ encoder: { embedDim: 384, depth: 10, numHeads: 6, posGridSize: 4 }, imageSize: 56, cropSize: 56 });
  const input = new Float32Array(3 * 56 * 56).fill(0.5);
  const expected = (await made.inferTensor(input, [1, 3, 56, 56])).scores[0];
  await made.save(file);
  await made.dispose();
  return { file, input, expected };
}

/** The most array-buffer memory above its start seen at any turn of the event loop while `call` runs. */
async function arrayBufferPeakDuring(call) {
  const before = process.memoryUsage().arrayBuffers;
  let peak = 0;
  let sampling = true;
  const sample = () => {
    peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
    if (sampling) setImmediate(sample);
  };
  sample();
  try {
    return { result: await call(), peak };
  } finally {
    sampling = false;
  }
}

test.serial('load() brings a large checkpoint into the network in parts: its bytes are never all in memory at once', async (t) => {
  const { file, input, expected } = await wideModelFile('parts.pth');
  const size = fs.statSync(file).size;
  const { result: model, peak } = await arrayBufferPeakDuring(() => InpFormer.load(file));
  t.teardown(() => model.dispose());
  t.log(`file ${(size / 2 ** 20).toFixed(1)} MiB; array buffers at most +${(peak / 2 ** 20).toFixed(1)} MiB during the load`);
  t.true(peak < 0.75 * size, 'at most about one part (64 MiB) of the file beside the network');
  t.is((await model.inferTensor(input, [1, 3, 56, 56])).scores[0], expected, 'every part reached the network');
});

test('a mis-shaped tensor among the deferred ones is refused by name before any part is copied', async (t) => {
  const { file } = await wideModelFile('bad-part.pth');
  const { writeTorchFile } = require('inp-former/internal');
  const read = await readCheckpointFile(file);
  const tensors = [...read.root].filter(([, v]) => v.toFloat32).map(([name, v]) => ({ name, data: v.toFloat32(), shape: v.shape }));
  const fc1 = tensors.find((x) => x.name === 'decoder.7.mlp.fc1.weight');
  t.true(fc1.data.byteLength > 1 << 20, 'a storage the load defers');
  fc1.shape = [fc1.shape[1], fc1.shape[0]];
  const bad = path.join(tmpdir(), 'bad-part-2.pth');
  await writeTorchFile(bad, tensors, {});
  const err = await t.throwsAsync(InpFormer.load(bad), { instanceOf: CheckpointError });
  t.is(err.file, bad);
  t.regex(err.message, /shape mismatch for 'decoder\.7\.mlp\.fc1\.weight'.*\[384, 1536\].*\[1536, 384\]/);
});

test('load() of a timm-layout encoder whose positions it leaves in the file still points to create()', async (t) => {
  // timm stores patch positions only (a square grid), which the reader pads with the class
  // token's; a load defers this 2 MiB storage, so the padding must wait for its bytes
  const pos = new Float32Array(1369 * 384);
  const proj = new Float32Array(384 * 3 * 14 * 14);
  const header = Buffer.from(JSON.stringify({
    pos_embed: { dtype: 'F32', shape: [1, 1369, 384], data_offsets: [0, pos.byteLength] },
    'patch_embed.proj.weight': { dtype: 'F32', shape: [384, 3, 14, 14], data_offsets: [pos.byteLength, pos.byteLength + proj.byteLength] },
  }));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  const file = path.join(tmpdir(), 'timm-encoder.safetensors');
  fs.writeFileSync(file, Buffer.concat([len, header, Buffer.from(pos.buffer), Buffer.from(proj.buffer)]));
  await t.throwsAsync(InpFormer.load(file), { instanceOf: CheckpointError, message: /create/ });
});

test('a checkpoint cut short while load() reads its parts is a CheckpointError; an abort stops before the next part', async (t) => {
  const { file } = await wideModelFile('cut.pth');
  const cutAtBuild = (extra = () => {}) => (e) => {
    if (e.stage !== 'build') return;
    fs.truncateSync(file, Math.floor(fs.statSync(file).size / 2)); // the deferred records are not read yet
    extra();
  };
  const bytes = fs.readFileSync(file);
  const err = await t.throwsAsync(InpFormer.load(file, { onProgress: cutAtBuild() }), { instanceOf: CheckpointError });
  t.is(err.file, file);
  t.log(err.message);
  fs.writeFileSync(file, bytes);
  const ac = new AbortController();
  await t.throwsAsync(InpFormer.load(file, { signal: ac.signal, onProgress: cutAtBuild(() => ac.abort()) }), {
    instanceOf: AbortError,
    message: /aborted while the network was built/,
  });
});

test.serial("create() takes a large encoder file's weights in parts too, the same values, never the whole file at once", async (t) => {
  const { file } = await wideModelFile('encoder-source.pth'); // an INP-Former checkpoint also holds an encoder
  const eager = await readCheckpointFile(file);
  const { result: model, peak } = await arrayBufferPeakDuring(() => InpFormer.create({ encoder: file, imageSize: 56, cropSize: 56 }));
  t.teardown(() => model.dispose());
  const encoderBytes = [...eager.root].filter(([k]) => k.startsWith('encoder.')).reduce((n, [, v]) => n + v.byteSize, 0);
  const size = fs.statSync(file).size;
  t.log(`file ${(size / 2 ** 20).toFixed(1)} MiB, its encoder ${(encoderBytes / 2 ** 20).toFixed(1)} MiB; array buffers at most +${(peak / 2 ** 20).toFixed(1)} MiB during create()`);
  t.true(peak < 0.75 * size, 'about one part (64 MiB) at a time, and nothing of the decoder, which create() does not use');
  let compared = 0;
  for (const p of await model.stateDict()) {
    if (!p.name.startsWith('encoder.')) continue;
    const bytes = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    t.true(bytes(p.data).equals(bytes(eager.root.get(p.name).toFloat32())), p.name);
    compared++;
  }
  t.true(compared > 100, `${compared} encoder tensors compared`);
});
