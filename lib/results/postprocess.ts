/**
 * From the network's crop-size map to what predict() returns: the map back on the input image,
 * and post-processing as anomalib's PostProcessor does it: min-max normalisation around the
 * threshold, v' = clamp((v - threshold) / (max - min) + 0.5, 0, 1), so the threshold maps to 0.5,
 * the mask being the normalised map above 0.5. Also the image geometry evaluation needs (masks
 * transformed as the images are).
 */
import type { RgbImage } from '../data/images';

/** anomalib's PostProcessor buffers. */
export interface Thresholds {
  imageThreshold: number;
  pixelThreshold: number;
  imageMin: number;
  imageMax: number;
  pixelMin: number;
  pixelMax: number;
}

export function normalizeValue(v: number, threshold: number, min: number, max: number): number {
  const x = (v - threshold) / (max - min) + 0.5;
  return Math.min(1, Math.max(0, x));
}

/** Normalised image score (0.5 at the image threshold). */
export function normalizeScore(score: number, t: Thresholds): number {
  return normalizeValue(score, t.imageThreshold, t.imageMin, t.imageMax);
}

/** Normalised anomaly map (0.5 at the pixel threshold), a new array. */
export function normalizeMap(map: Float32Array, t: Thresholds): Float32Array {
  const out = new Float32Array(map.length);
  for (let i = 0; i < map.length; i++) out[i] = normalizeValue(map[i], t.pixelThreshold, t.pixelMin, t.pixelMax);
  return out;
}

export interface Tensor {
  data: Float32Array;
  shape: number[];
}

export interface InferTensorResult {
  /** image scores, one per batch item (mean of the top 1% of the blurred map) */
  scores: Float32Array;
  /** B x H x W anomaly maps, blurred */
  anomalyMaps: Float32Array;
  encoderFeatures?: Tensor[];
  decoderFeatures?: Tensor[];
  prototypes?: Tensor;
  inpLoss?: number;
  /** B x H x W maps before the Gaussian blur */
  anomalyMapsRaw?: Float32Array;
}

export interface PredictOptions {
  /** 'input' (default): the map at the input image's size; 'crop': at the model's crop */
  mapSize?: 'input' | 'crop';
  /** write a heatmap PNG: a file path for one input, a folder for an array */
  heatmap?: string;
  /** cancels the images not yet started: the call rejects with AbortError */
  signal?: AbortSignal;
  /** a multi-class model: label and mask with this category's thresholds (see calibrate() on a category set) */
  category?: string;
}

/** Options of predictEach(). */
export interface PredictEachOptions extends PredictOptions {
  /** images decoded or scored at once (default 4): memory stays flat in the number of images */
  window?: number;
  /** called with the images done so far; `total` is null for an iterable source */
  onProgress?: (p: { done: number; total: number | null }) => void;
}

/** What predictEach() yields, in the order of the inputs. */
export interface PredictEachResult {
  index: number;
  /** the input's path, or its index for bytes and raw pixels */
  input: string | number;
  prediction: Prediction;
}

/** Options of evaluate() and calibrate(). */
export interface LabelledSetOptions {
  /** cancels the scoring between images: the call rejects with AbortError */
  signal?: AbortSignal;
  /** called with the images scored so far, and for a category set the category they are of (an exception thrown here is reported as a warning) */
  onProgress?: (p: { done: number; total: number; category?: string }) => void;
  /** calibrate(): warnings, e.g. a set of one class (default: process.emitWarning) */
  onWarning?: (message: string) => void;
}

export interface EvaluateOptions extends Omit<LabelledSetOptions, 'onWarning'> {
  /**
   * Also write a visual report into this folder (replacing an earlier report there): a panel
   * per image (image | anomaly map with colour bar | predicted mask | ground truth, score and
   * labels), the ROC and PRO curves as SVG and PNG, and index.html. Labels use the model's
   * thresholds, or the set's own F1-max thresholds when the model is not calibrated.
   */
  report?: string;
}

export interface Prediction {
  /** raw image score (mean of the top 1% of the blurred map) */
  score: number;
  /** in [0, 1], 0.5 at the image threshold; null until the model is calibrated */
  normalizedScore: number | null;
  isAnomalous: boolean | null;
  anomalyMap: Float32Array;
  width: number;
  height: number;
  /** 1 where the map exceeds the pixel threshold; null until calibrated */
  mask: Uint8Array | null;
  /** the heatmap written, if asked for */
  heatmap?: string;
}

/**
 * The crop's map back on the input image: the crop covers [top, top + crop) of the
 * resize x resize image, which stretches to height x width. Outside the crop the nearest crop
 * value is used (replicate padding); sampling is bilinear (align_corners=False).
 */
export function mapToInput(map: Float32Array, crop: number, resize: number, height: number, width: number): Float32Array {
  const top = Math.round((resize - crop) / 2);
  const out = new Float32Array(height * width);
  const sample = (v: number) => Math.min(crop - 1, Math.max(0, v - top));
  for (let y = 0; y < height; y++) {
    const sy = sample(((y + 0.5) * resize) / height - 0.5);
    const y0 = Math.floor(sy);
    const y1 = Math.min(crop - 1, y0 + 1);
    const fy = sy - y0;
    for (let x = 0; x < width; x++) {
      const sx = sample(((x + 0.5) * resize) / width - 0.5);
      const x0 = Math.floor(sx);
      const x1 = Math.min(crop - 1, x0 + 1);
      const fx = sx - x0;
      const a = map[y0 * crop + x0] * (1 - fx) + map[y0 * crop + x1] * fx;
      const b = map[y1 * crop + x0] * (1 - fx) + map[y1 * crop + x1] * fx;
      out[y * width + x] = a * (1 - fy) + b * fy;
    }
  }
  return out;
}

/** Nearest-neighbour resize then centre crop: what the image transform does to a mask. */
export function maskToCrop(mask: Uint8Array, height: number, width: number, resize: number, crop: number): Uint8Array {
  const top = Math.round((resize - crop) / 2);
  const out = new Uint8Array(crop * crop);
  for (let y = 0; y < crop; y++) {
    const sy = Math.min(height - 1, Math.floor(((y + top) * height) / resize));
    for (let x = 0; x < crop; x++) {
      const sx = Math.min(width - 1, Math.floor(((x + top) * width) / resize));
      out[y * crop + x] = mask[sy * width + sx] ? 1 : 0;
    }
  }
  return out;
}

/** The heatmap's layers: the map shown (in [0, 1], at the input's size) and the mask outlined. */
export interface HeatmapLayers {
  map: Float32Array;
  mask: Uint8Array | null;
}

/**
 * A prediction from a scored image: `map` is the crop x crop anomaly map. With `withHeatmap`,
 * also the heatmap's layers: the normalised map and mask when calibrated, else the map
 * min-max scaled, always at the input's size.
 */
export function predictionOf(
  scored: { image: RgbImage; score: number; map: Float32Array },
  geometry: { cropSize: number; imageSize: number },
  t: Thresholds | undefined,
  mapSize: 'input' | 'crop',
  withHeatmap: boolean,
): { prediction: Prediction; heatmapLayers?: HeatmapLayers } {
  const { image, score, map } = scored;
  const { cropSize: crop, imageSize: resize } = geometry;
  const full = mapSize === 'crop' && !withHeatmap ? undefined : mapToInput(map, crop, resize, image.height, image.width);
  const anomalyMap = mapSize === 'crop' ? map : full!;
  const [width, height] = mapSize === 'crop' ? [crop, crop] : [image.width, image.height];
  const normalizedScore = t ? normalizeScore(score, t) : null;
  const post = t ? normalizeMap(anomalyMap, t) : null;
  const mask = post ? Uint8Array.from(post, (v) => (v > 0.5 ? 1 : 0)) : null;
  const prediction: Prediction = {
    score, normalizedScore, isAnomalous: normalizedScore === null ? null : normalizedScore > 0.5, anomalyMap, width, height, mask,
  };
  if (!withHeatmap) return { prediction };
  if (t) {
    // the heatmap is always at the input's size: reuse the post-processed map when it is that one
    const shown = anomalyMap === full ? post! : normalizeMap(full!, t);
    return { prediction, heatmapLayers: { map: shown, mask: anomalyMap === full ? mask : Uint8Array.from(shown, (v) => (v > 0.5 ? 1 : 0)) } };
  }
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of full!) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  return { prediction, heatmapLayers: { map: Float32Array.from(full!, (v) => (hi > lo ? (v - lo) / (hi - lo) : 0)), mask: null } };
}
