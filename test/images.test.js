// Image decoding to 8-bit RGB as PIL's convert("RGB"), for every format fit and predict accept,
// and the reference initialisation of a new model's trainable part.
'use strict';
const test = require('ava');
const fs = require('node:fs');
const path = require('node:path');
const sharp = require('sharp');
const { InpFormer, InvalidArgumentError } = require('..');
const { decodeImage, listImages } = require('inp-former/internal');
const { tmpdir } = require('./helpers');

const W = 6;
const H = 4;
const rgb = Buffer.alloc(W * H * 3);
for (let i = 0; i < W * H; i++) rgb.set([i * 10, 255 - i * 10, (i * 37) % 256], i * 3);

async function roundTrip(t, name, encode, expected) {
  const file = path.join(tmpdir(), name);
  fs.writeFileSync(file, await encode());
  const img = await decodeImage(file);
  t.is(img.width, W, name);
  t.is(img.height, H, name);
  t.is(img.data.length, W * H * 3, `${name}: 3 channels`);
  if (expected) t.deepEqual([...img.data], [...expected], name);
  return img;
}

test('lossless formats decode exactly: PNG, TIFF, WebP (lossless), BMP', async (t) => {
  const raw = { raw: { width: W, height: H, channels: 3 } };
  await roundTrip(t, 'a.png', () => sharp(rgb, raw).png().toBuffer(), rgb);
  await roundTrip(t, 'a.tiff', () => sharp(rgb, raw).tiff({ compression: 'lzw' }).toBuffer(), rgb);
  await roundTrip(t, 'a.webp', () => sharp(rgb, raw).webp({ lossless: true }).toBuffer(), rgb);
  // a 24-bit bottom-up BMP written by hand (libvips has no BMP saver)
  const stride = Math.ceil((W * 3) / 4) * 4;
  const bmp = Buffer.alloc(54 + stride * H);
  bmp.write('BM', 0, 'latin1');
  bmp.writeUInt32LE(bmp.length, 2);
  bmp.writeUInt32LE(54, 10);
  bmp.writeUInt32LE(40, 14);
  bmp.writeInt32LE(W, 18);
  bmp.writeInt32LE(H, 22);
  bmp.writeUInt16LE(1, 26);
  bmp.writeUInt16LE(24, 28);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      const s = (y * W + x) * 3;
      const d = 54 + (H - 1 - y) * stride + x * 3;
      bmp.set([rgb[s + 2], rgb[s + 1], rgb[s]], d);
    }
  await roundTrip(t, 'a.bmp', async () => bmp, rgb);
});

test('JPEG decodes to RGB of the right size', async (t) => {
  await roundTrip(t, 'a.jpg', () => sharp(rgb, { raw: { width: W, height: H, channels: 3 } }).jpeg({ quality: 95 }).toBuffer());
});

test('grayscale, palette, alpha and 16-bit images become 8-bit RGB', async (t) => {
  const gray = Buffer.from(Array.from({ length: W * H }, (_, i) => i * 10));
  const g = await roundTrip(t, 'g.png', () => sharp(gray, { raw: { width: W, height: H, channels: 1 } }).png().toBuffer());
  for (let i = 0; i < W * H; i++) t.deepEqual([...g.data.subarray(i * 3, i * 3 + 3)], [gray[i], gray[i], gray[i]]);

  const rgba = Buffer.alloc(W * H * 4);
  for (let i = 0; i < W * H; i++) rgba.set([rgb[i * 3], rgb[i * 3 + 1], rgb[i * 3 + 2], i % 2 ? 0 : 255], i * 4);
  // alpha dropped, colour kept (as PIL's convert("RGB"), no compositing)
  await roundTrip(t, 'rgba.png', () => sharp(rgba, { raw: { width: W, height: H, channels: 4 } }).png().toBuffer(), rgb);

  const four = Buffer.alloc(W * H * 3);
  for (let i = 0; i < W * H; i++) four.set(i % 2 ? [255, 0, 0] : [0, 0, 255], i * 3);
  await roundTrip(t, 'palette.png', () => sharp(four, { raw: { width: W, height: H, channels: 3 } }).png({ palette: true, colours: 4, dither: 0 }).toBuffer(), four);

  const deep = await roundTrip(t, '16bit.png', () => sharp(rgb, { raw: { width: W, height: H, channels: 3 } }).toColourspace('rgb16').png().toBuffer());
  t.deepEqual([...deep.data], [...rgb], '16-bit reduced back to the same 8-bit values');
});

test('folders are searched recursively for the accepted extensions; MVTec roots mean train/good', async (t) => {
  const dir = tmpdir();
  fs.mkdirSync(path.join(dir, 'a', 'b'), { recursive: true });
  for (const f of ['1.png', 'a/2.JPG', 'a/b/3.webp', 'a/notes.txt', 'a/b/4.tif']) fs.writeFileSync(path.join(dir, f), 'x');
  t.deepEqual((await listImages(dir)).map((f) => path.relative(dir, f)), ['1.png', 'a/2.JPG', 'a/b/3.webp', 'a/b/4.tif']);
  const mvtec = tmpdir();
  fs.mkdirSync(path.join(mvtec, 'train', 'good'), { recursive: true });
  fs.mkdirSync(path.join(mvtec, 'test', 'crack'), { recursive: true });
  fs.writeFileSync(path.join(mvtec, 'train', 'good', '0.png'), 'x');
  fs.writeFileSync(path.join(mvtec, 'test', 'crack', '0.png'), 'x');
  t.deepEqual((await listImages(mvtec)).map((f) => path.relative(mvtec, f)), ['train/good/0.png']);
});

test('a new model starts from the reference initialisation', async (t) => {
  const model = await InpFormer.create({ encoder: { embedDim: 32, depth: 10, numHeads: 2, posGridSize: 8 }, cropSize: 56, imageSize: 64, seed: 3 });
  const sd = new Map((await model.stateDict()).map((p) => [p.name, p.data]));
  const w = sd.get('decoder.0.mlp.fc1.weight');
  const mean = w.reduce((a, b) => a + b, 0) / w.length;
  const std = Math.sqrt(w.reduce((a, b) => a + (b - mean) ** 2, 0) / w.length);
  t.true(w.every((v) => Math.abs(v) <= 0.03 + 1e-7), 'truncated at +-0.03');
  t.true(Math.abs(std - 0.0097) < 0.001, `std ${std} (a normal of std 0.01 truncated at 3 sigma has 0.0099)`);
  t.true(sd.get('decoder.0.mlp.fc1.bias').every((v) => v === 0));
  t.true(sd.get('aggregation.0.norm1.weight').every((v) => v === 1));
  t.true(sd.get('decoder.3.attn.learn_scale').every((v) => v === 1));
  const proto = sd.get('prototype_token');
  t.true(Math.abs(Math.sqrt(proto.reduce((a, b) => a + b * b, 0) / proto.length) - 1) < 0.2, 'INPs ~ N(0, 1)');
  await model.dispose();
  await t.throwsAsync(InpFormer.create({ encoder: 'dinov2reg_vit_base_14' }), { instanceOf: InvalidArgumentError, message: /weights download dinov2_vitb14_reg/ });
});
