/**
 * Calibration and evaluation on a labelled set (MVTec AD layout or a Folder dataset), as anomalib's PostProcessor
 * and Evaluator do it: F1-maximising image and pixel thresholds with min/max normalisation
 * statistics; image AUROC, AP, F1-max and pixel AUROC, AP, F1-max, AUPRO (FPR <= 0.3).
 * Pixel metrics are computed at the model's crop resolution, masks transformed as the images
 * (nearest resize, centre crop).
 */
import type { Thresholds } from './postprocess';
import { LabelledImage, ResolvedFolderDataset, describeSet, readLabelledSet, readMask } from '../data/dataset';
import { connectedComponents } from './metrics';
import { maskToCrop } from './postprocess';
import { AbortError } from '../errors';

export interface ScoredSet {
  items: LabelledImage[];
  scores: Float32Array;
  /** crop x crop maps of all images, concatenated */
  maps: Float32Array;
  /** 0/1 per pixel, or undefined where no image has a mask */
  pixelLabels?: Uint8Array;
  /** ground-truth region ids per pixel, unique over the set (0: normal) */
  regions?: Int32Array;
  crop: number;
}

/**
 * Scores and crop-size maps of a labelled set (8 images in flight), with its masks.
 * `score` scores one image file; `index` is its position, for error messages.
 */
export async function scoreLabelledSet(
  source: string | ResolvedFolderDataset,
  score: (file: string, index: number) => Promise<{ score: number; map: Float32Array }>,
  o: { cropSize: number; imageSize: number; maxImagePixels: number; signal?: AbortSignal; onProgress?: (p: { done: number; total: number }) => void },
): Promise<ScoredSet> {
  const items = await readLabelledSet(source);
  const c = o.cropSize;
  const scores = new Float32Array(items.length);
  const maps = new Float32Array(items.length * c * c);
  const chunk = 8;
  for (let k = 0; k < items.length; k += chunk) {
    if (k > 0) o.onProgress?.({ done: k, total: items.length });
    if (o.signal?.aborted) throw new AbortError(`scoring ${describeSet(source)} was aborted after ${k} of ${items.length} images`);
    const part = items.slice(k, k + chunk);
    const results = await Promise.all(part.map((it, j) => score(it.file, k + j)));
    results.forEach((r, j) => {
      scores[k + j] = r.score;
      maps.set(r.map, (k + j) * c * c);
    });
  }
  o.onProgress?.({ done: items.length, total: items.length });
  return attachMasks({ items, scores, maps, crop: c }, o.imageSize, o.maxImagePixels);
}

export async function attachMasks(set: Omit<ScoredSet, 'pixelLabels' | 'regions'>, resize: number, maxPixels: number): Promise<ScoredSet> {
  const { items, crop } = set;
  if (!items.some((i) => i.maskFile)) return set;
  const per = crop * crop;
  const pixelLabels = new Uint8Array(items.length * per);
  const regions = new Int32Array(items.length * per);
  let nextRegion = 0;
  for (let k = 0; k < items.length; k++) {
    const item = items[k];
    if (!item.maskFile) continue;
    const m = await readMask(item.maskFile, maxPixels);
    const cropped = maskToCrop(m.data, m.height, m.width, resize, crop);
    pixelLabels.set(cropped, k * per);
    const cc = connectedComponents(cropped, crop, crop);
    for (let i = 0; i < per; i++) if (cc.labels[i]) regions[k * per + i] = cc.labels[i] + nextRegion;
    nextRegion += cc.count;
  }
  return { ...set, pixelLabels, regions };
}

