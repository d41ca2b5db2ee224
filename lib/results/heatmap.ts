/**
 * Heatmaps: the anomaly map in viridis, blended over the image, with the predicted mask's
 * outline, written as PNG through sharp (atomically: temporary file, then rename).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { sharp } from '../data/sharp';
import { RgbImage } from '../data/images';
import { FileWriteError } from '../errors';
import { ensureDir, writeAtomically } from '../files';

// matplotlib's viridis sampled at 9 evenly spaced points (a perceptually uniform map).
export const VIRIDIS = [
  [68, 1, 84], [72, 40, 120], [62, 73, 137], [49, 104, 142], [38, 130, 142],
  [31, 158, 137], [53, 183, 121], [110, 206, 88], [253, 231, 37],
];

export function viridis(t: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const a = VIRIDIS[i];
  const b = VIRIDIS[i + 1];
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
}

export interface HeatmapInput {
  image: RgbImage;
  /** values in [0, 1] (normalised map), image.width x image.height */
  map: Float32Array;
  mask?: Uint8Array | null;
  /** weight of the colour map over the image (default 0.5) */
  alpha?: number;
}

/** RGB pixels of the heatmap. */
export function renderHeatmap({ image, map, mask, alpha = 0.5 }: HeatmapInput): Buffer {
  const { width, height } = image;
  const out = Buffer.alloc(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    const c = viridis(map[i]);
    for (let k = 0; k < 3; k++) out[i * 3 + k] = Math.round((1 - alpha) * image.data[i * 3 + k] + alpha * c[k]);
  }
  if (mask) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = y * width + x;
        if (!mask[i]) continue;
        const edge =
          x === 0 || y === 0 || x === width - 1 || y === height - 1 ||
          !mask[i - 1] || !mask[i + 1] || !mask[i - width] || !mask[i + width];
        if (edge) out.set([255, 0, 0], i * 3);
      }
    }
  }
  return out;
}

export async function writeHeatmap(file: string, input: HeatmapInput): Promise<void> {
  const pixels = renderHeatmap(input);
  const dir = path.dirname(path.resolve(file));
  await ensureDir(dir, (m, cause) => new FileWriteError(file, m, { cause }));
  // encoded in memory first, so that a failed write is the file system's error, with its code
  const png = await sharp(pixels, { raw: { width: input.image.width, height: input.image.height, channels: 3 } }).png().toBuffer();
  await writeAtomically(file, (tmp) => fs.writeFile(tmp, png), (message, cause) => new FileWriteError(file, message, { cause }));
}

/**
 * The heatmap file of each input of a predict() over an array, in `folder`: a path keeps its
 * place under the inputs' common folder (good/000.png and hole/000.png stay apart), other inputs
 * (bytes, raw pixels) are named by their index; a name met twice gets its index appended, so no
 * heatmap overwrites another.
 */
export function heatmapFiles(inputs: unknown[], folder: string): string[] {
  const paths = inputs.filter((x): x is string => typeof x === 'string').map((p) => path.resolve(p));
  const within = (p: string, dir: string) => p.startsWith(dir.endsWith(path.sep) ? dir : dir + path.sep);
  let common = paths.length ? path.dirname(paths[0]) : '';
  while (!paths.every((p) => within(p, common))) common = path.dirname(common); // ends at the root at worst
  const taken = new Set<string>();
  return inputs.map((x, i) => {
    let name = typeof x === 'string' ? path.relative(common, path.resolve(x)).replace(/\.[^./\\]+$/, '') : String(i);
    if (taken.has(name)) name = `${name}~${i}`;
    taken.add(name);
    return path.join(folder, `${name}.png`);
  });
}
