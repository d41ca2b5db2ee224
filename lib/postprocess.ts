/**
 * Post-processing as anomalib's PostProcessor does it: min-max normalisation around the
 * threshold, v' = clamp((v - threshold) / (max - min) + 0.5, 0, 1), so the threshold maps to 0.5.
 */
import { Thresholds } from './architecture';

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
