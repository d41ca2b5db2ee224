// Image inputs that hung, ate memory or resolved with garbage: typed errors naming the input,
// and folders of symlinks that were silently skipped.
'use strict';
const test = require('ava');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const sharp = require('sharp');
const { InpFormer, ImageDecodeError, InvalidArgumentError } = require('..');
const { listImages, decodeImage, DEFAULT_MAX_IMAGE_PIXELS } = require('inp-former/internal');
const { FIXTURES, tmpdir } = require('./helpers');

const GOOD = path.join(FIXTURES, 'datasets', 'synth-ad', 'weave', 'test', 'good');
const tiny = { encoder: { embedDim: 32, depth: 10, numHeads: 2, posGridSize: 8 }, imageSize: 64, cropSize: 56 };

test('devices and FIFOs are refused at once, never read (they grew past 11 GiB or hung)', async (t) => {
  const model = await InpFormer.create(tiny);
  for (const dev of ['/dev/zero', '/dev/urandom']) {
    const err = await t.throwsAsync(model.predict(dev), { instanceOf: ImageDecodeError });
    t.regex(err.message, new RegExp(`${dev}.*a device, not a regular file`));
  }
  const fifo = path.join(tmpdir(), 'fifo.png');
  execFileSync('mkfifo', [fifo]);
  const err = await t.throwsAsync(model.predict(fifo), { instanceOf: ImageDecodeError });
  t.regex(err.message, /a FIFO, not a regular file/);
  await t.throwsAsync(model.predict(tmpdir()), { instanceOf: ImageDecodeError, message: /a folder/ });
  await model.dispose();
});

test('an image over the pixel limit is refused from its header, before decoding', async (t) => {
  const side = Math.ceil(Math.sqrt(DEFAULT_MAX_IMAGE_PIXELS)) + 1;
  const file = path.join(tmpdir(), 'huge.png');
  await sharp({ create: { width: side, height: side, channels: 3, background: { r: 9, g: 9, b: 9 } } }).png({ compressionLevel: 9 }).toFile(file);
  t.log(`${side}x${side} PNG of ${(fs.statSync(file).size / 1024).toFixed(0)} KiB`);
  const before = process.memoryUsage().rss;
  const err = await t.throwsAsync(decodeImage(file), { instanceOf: ImageDecodeError });
  t.true(err.message.includes(file));
  t.regex(err.message, new RegExp(`larger than the limit of ${DEFAULT_MAX_IMAGE_PIXELS} pixels`));
  t.true(process.memoryUsage().rss - before < 100 * 2 ** 20, 'nothing decoded');
  // a BMP header declaring more than the limit
  const bmp = Buffer.alloc(54);
  bmp.write('BM', 0, 'latin1');
  bmp.writeUInt32LE(54, 10);
  bmp.writeInt32LE(side, 18);
  bmp.writeInt32LE(side, 22);
  bmp.writeUInt16LE(24, 28);
  await t.throwsAsync(decodeImage(Buffer.concat([bmp, Buffer.alloc(side * side * 3 + side * 4)])), { instanceOf: ImageDecodeError, message: /exceeds the limit/ });
});

test('maxImagePixels is a public option: predict, fit and evaluate (masks too) refuse larger images', async (t) => {
  const model = await InpFormer.create({ ...tiny, maxImagePixels: 1000 });
  t.teardown(() => model.dispose());
  t.is(model.config.maxImagePixels, 1000);
  const good = fs.readdirSync(GOOD).map((f) => path.join(GOOD, f));
  const err = await t.throwsAsync(model.predict(good[0]), { instanceOf: ImageDecodeError });
  t.true(err.message.startsWith(good[0]));
  t.regex(err.message, /larger than the limit of 1000 pixels .*maxImagePixels/);
  await t.throwsAsync(model.fit(good.slice(0, 2), { epochs: 1, batchSize: 2 }), { instanceOf: ImageDecodeError, message: /limit of 1000 pixels/ });
  // a category whose images fit but whose masks do not
  const { width, height } = await sharp(good[0]).metadata();
  const roomy = await InpFormer.create({ ...tiny, maxImagePixels: width * height });
  t.teardown(() => roomy.dispose());
  const cat = path.join(tmpdir(), 'category');
  fs.mkdirSync(path.join(cat, 'test', 'good'), { recursive: true });
  fs.mkdirSync(path.join(cat, 'test', 'hole'), { recursive: true });
  fs.mkdirSync(path.join(cat, 'ground_truth', 'hole'), { recursive: true });
  fs.copyFileSync(good[0], path.join(cat, 'test', 'good', '000.png'));
  fs.copyFileSync(good[1], path.join(cat, 'test', 'hole', '000.png'));
  const mask = path.join(cat, 'ground_truth', 'hole', '000_mask.png');
  await sharp({ create: { width: width + 1, height, channels: 3, background: { r: 0, g: 0, b: 0 } } }).png().toFile(mask);
  await t.throwsAsync(roomy.evaluate(cat), { instanceOf: ImageDecodeError, message: new RegExp(`^${mask}: larger than the limit`) });
  await t.throwsAsync(InpFormer.create({ ...tiny, maxImagePixels: 0 }), { instanceOf: InvalidArgumentError, message: /maxImagePixels/ });
});

test('null, undefined and non-8-bit raw pixels are InvalidArgumentErrors, not TypeErrors or garbage', async (t) => {
  const model = await InpFormer.create(tiny);
  const png = path.join(GOOD, fs.readdirSync(GOOD)[0]);
  await t.throwsAsync(model.predict(null), { instanceOf: InvalidArgumentError });
  await t.throwsAsync(model.predict(undefined), { instanceOf: InvalidArgumentError });
  await t.throwsAsync(model.predict([png, null]), { instanceOf: InvalidArgumentError });
  await t.throwsAsync(model.predict({ data: null, width: 2, height: 2, channels: 3 }), { instanceOf: InvalidArgumentError, message: /8-bit pixels/ });
  for (const Typed of [Float32Array, Uint16Array]) {
    const err = await t.throwsAsync(model.predict({ data: new Typed(4 * 4 * 3), width: 4, height: 4, channels: 3 }), { instanceOf: InvalidArgumentError });
    t.regex(err.message, new RegExp(`got ${Typed.name}`));
  }
  const ok = await model.predict({ data: new Uint8Array(64 * 64 * 3).fill(100), width: 64, height: 64, channels: 3 });
  t.true(Number.isFinite(ok.score), '8-bit raw pixels still work');
  await model.dispose();
});

test('symlinked images and symlinked subfolders are found; a symlink cycle ends', async (t) => {
  const files = fs.readdirSync(GOOD).filter((f) => f.endsWith('.png')).slice(0, 3);
  const root = tmpdir();
  const links = path.join(root, 'links');
  fs.mkdirSync(links);
  for (const f of files) fs.symlinkSync(path.join(GOOD, f), path.join(links, f));
  t.is((await listImages(links)).length, 3, 'a folder of symlinked PNGs');
  const parent = path.join(root, 'parent');
  fs.mkdirSync(parent);
  fs.symlinkSync(GOOD, path.join(parent, 'good'));
  fs.symlinkSync(parent, path.join(parent, 'loop'));
  fs.symlinkSync(path.join(root, 'nowhere.png'), path.join(parent, 'dangling.png'));
  const found = await listImages(parent);
  t.is(found.length, fs.readdirSync(GOOD).filter((f) => f.endsWith('.png')).length, 'a symlinked subfolder, once; the loop and the dangling link skipped');
});
