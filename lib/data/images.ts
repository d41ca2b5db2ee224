/**
 * Finding and decoding images. Decoding uses sharp (libvips) for PNG, JPEG, TIFF and WebP, to
 * 8-bit RGB as PIL's convert("RGB") gives it (alpha dropped, grayscale and palette expanded,
 * 16-bit reduced). libvips has no BMP loader, so a small reader here handles uncompressed
 * 24/32-bit BMP.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { sharp } from './sharp';
import { ImageDecodeError, InvalidArgumentError } from '../errors';
import { DEFAULT_MAX_IMAGE_PIXELS } from '../model/options';
import { openRegularFile } from '../files';

export const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp']);

export interface RgbImage {
  data: Buffer; // interleaved RGB, 8-bit
  width: number;
  height: number;
}

/** Raw pixels given by a caller. */
export interface RawPixels {
  data: Uint8Array | Uint8ClampedArray | Buffer;
  width: number;
  height: number;
  /** 1 (gray), 3 (RGB) or 4 (RGBA) */
  channels: number;
}

/** A file path, an encoded image (PNG, JPEG, TIFF, WebP, BMP: a Buffer or any Uint8Array), or raw pixels. */
export type ImageInput = string | Uint8Array | RawPixels;

/** Encoded image bytes (Buffer is a Uint8Array too). */
export const isEncoded = (x: unknown): x is Uint8Array => x instanceof Uint8Array;


function describe(input: ImageInput, index?: number): string {
  if (typeof input === 'string') return input;
  if (isEncoded(input)) return `buffer #${index ?? 0}`;
  return `raw image #${index ?? 0}`;
}

export function rgbFromRaw(px: RawPixels, what = 'raw image'): RgbImage {
  if (px === null || typeof px !== 'object') throw new InvalidArgumentError(`${what}: expected a path, an encoded Buffer or { data, width, height, channels }, got ${px === null ? 'null' : typeof px}`);
  const { width, height, channels } = px;
  if (!(px.data instanceof Uint8Array || px.data instanceof Uint8ClampedArray)) {
    const got = px.data === null || px.data === undefined ? String(px.data) : (px.data as object).constructor?.name ?? typeof px.data;
    throw new InvalidArgumentError(`${what}: data must be 8-bit pixels (Uint8Array, Uint8ClampedArray or Buffer), got ${got}`);
  }
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
    throw new InvalidArgumentError(`${what}: width and height must be positive integers`);
  if (![1, 3, 4].includes(channels)) throw new InvalidArgumentError(`${what}: channels must be 1, 3 or 4`);
  if (px.data.length !== width * height * channels)
    throw new InvalidArgumentError(`${what}: expected ${width * height * channels} bytes for ${width}x${height}x${channels}, got ${px.data.length}`);
  if (channels === 3) return { data: Buffer.from(px.data.buffer, px.data.byteOffset, px.data.length), width, height };
  const out = Buffer.alloc(width * height * 3);
  for (let i = 0, n = width * height; i < n; i++) {
    for (let c = 0; c < 3; c++) out[i * 3 + c] = px.data[i * channels + (channels === 1 ? 0 : c)];
  }
  return { data: out, width, height };
}

/** Uncompressed BMP (24/32-bit, BI_RGB or BI_BITFIELDS in BGRA order), bottom-up or top-down. */
function decodeBmp(buf: Buffer, what: string, maxPixels: number): RgbImage {
  if (buf.length < 54 || buf.toString('latin1', 0, 2) !== 'BM') throw new ImageDecodeError(what, 'not a BMP file');
  const offset = buf.readUInt32LE(10);
  const width = buf.readInt32LE(18);
  const rawHeight = buf.readInt32LE(22);
  const bpp = buf.readUInt16LE(28);
  const compression = buf.readUInt32LE(30);
  if ((bpp !== 24 && bpp !== 32) || (compression !== 0 && compression !== 3))
    throw new ImageDecodeError(what, `unsupported BMP (${bpp}-bit, compression ${compression}); convert it to PNG`);
  const height = Math.abs(rawHeight);
  const stride = Math.ceil((width * bpp) / 32) * 4;
  if (width < 1 || height < 1 || offset + stride * height > buf.length) throw new ImageDecodeError(what, 'truncated BMP');
  if (width * height > maxPixels) throw new ImageDecodeError(what, `${width}x${height} exceeds the limit of ${maxPixels} pixels (see maxImagePixels)`);
  const out = Buffer.alloc(width * height * 3);
  const bytes = bpp / 8;
  for (let y = 0; y < height; y++) {
    const row = rawHeight > 0 ? height - 1 - y : y;
    for (let x = 0; x < width; x++) {
      const s = offset + row * stride + x * bytes;
      const d = (y * width + x) * 3;
      out[d] = buf[s + 2];
      out[d + 1] = buf[s + 1];
      out[d + 2] = buf[s];
    }
  }
  return { data: out, width, height };
}

/** A regular file's bytes; devices, FIFOs and folders are refused before reading. */
export async function readRegularFile(file: string): Promise<Buffer> {
  const { fh } = await openRegularFile(file, (m, cause) => new ImageDecodeError(file, m, { cause }));
  try {
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

/**
 * Decode a file, an encoded Buffer or raw pixels to 8-bit RGB. Errors name the input. Images
 * over `maxPixels` are refused from their header, before decoding.
 */
export async function decodeImage(input: ImageInput, index?: number, maxPixels = DEFAULT_MAX_IMAGE_PIXELS): Promise<RgbImage> {
  if (input === null || input === undefined) throw new InvalidArgumentError(`image #${index ?? 0}: expected a path, an encoded Buffer or raw pixels, got ${input}`);
  const what = describe(input, index);
  if (!(typeof input === 'string') && !isEncoded(input)) return rgbFromRaw(input, what);
  const bytes = typeof input === 'string' ? await readRegularFile(input) : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  if (bytes.length >= 2 && bytes.toString('latin1', 0, 2) === 'BM') return decodeBmp(bytes, what, maxPixels);
  try {
    const { data, info } = await sharp(bytes, { failOn: 'error', limitInputPixels: maxPixels })
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { data, width: info.width, height: info.height };
  } catch (err) {
    throw sharpFailure(err, what, maxPixels, 'image');
  }
}

/** sharp's error for `what` as an ImageDecodeError; the pixel limit gets a message of its own. */
export function sharpFailure(err: unknown, what: string, maxPixels: number, kind: 'image' | 'mask'): ImageDecodeError {
  const msg = (err as Error).message;
  if (/exceeds pixel limit/.test(msg))
    return new ImageDecodeError(what, `larger than the limit of ${maxPixels} pixels (checked from its header; nothing was decoded; see maxImagePixels)`, { cause: err });
  return new ImageDecodeError(what, `cannot decode ${kind}: ${msg}`, { cause: err });
}

/** Image files under `dir`, following symlinks (to files and folders) but never a cycle. */
async function walk(dir: string, out: string[], visited = new Set<string>()): Promise<void> {
  const real = await fs.realpath(dir);
  if (visited.has(real)) return;
  visited.add(real);
  const entries = await fs.readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const p = path.join(dir, e.name);
    let isDir = e.isDirectory();
    let isFile = e.isFile();
    if (e.isSymbolicLink()) {
      const target = await fs.stat(p).catch(() => undefined); // a dangling link is skipped
      isDir = target?.isDirectory() ?? false;
      isFile = target?.isFile() ?? false;
    }
    if (isDir) await walk(p, out, visited);
    else if (isFile && IMAGE_EXTENSIONS.has(path.extname(e.name).toLowerCase())) out.push(p);
  }
}

/**
 * Image files under a folder, recursively, sorted. An MVTec-style category root (a folder with
 * train/good) means its train/good.
 */
export async function listImages(dir: string): Promise<string[]> {
  let stat;
  try {
    stat = await fs.stat(dir);
  } catch {
    throw new InvalidArgumentError(`${dir}: no such folder`);
  }
  if (!stat.isDirectory()) throw new InvalidArgumentError(`${dir}: not a folder`);
  const trainGood = path.join(dir, 'train', 'good');
  const root = await fs.stat(trainGood).then((s) => (s.isDirectory() ? trainGood : dir), () => dir);
  const files: string[] = [];
  await walk(root, files);
  if (files.length === 0) throw new InvalidArgumentError(`${root}: no images (${[...IMAGE_EXTENSIONS].join(', ')})`);
  return files;
}
