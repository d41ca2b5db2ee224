/**
 * Thresholds and metrics of a scored labelled set, as anomalib's PostProcessor and Evaluator
 * compute them: F1-maximising image and pixel thresholds with min/max normalisation statistics;
 * image AUROC, AP, F1-max and pixel AUROC, AP, F1-max, AUPRO (FPR <= 0.3). Pure computation
 * over typed arrays (seconds of CPU on a full category): report-thread.ts runs it off the
 * event loop; nothing here may import the native addon or sharp.
 */
import type { Thresholds } from './postprocess';
import type { ScoredSet } from './evaluation';
import { aupro, auroc, averagePrecision, binaryCurve, f1Max, proCurve, rocCurve } from './metrics';

function minMax(a: ArrayLike<number>): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < a.length; i++) {
    if (a[i] < lo) lo = a[i];
    if (a[i] > hi) hi = a[i];
  }
  return [lo, hi];
}

/** anomalib PostProcessor statistics from a labelled set. */
export function calibrationFrom(set: ScoredSet, warn: (m: string) => void): Thresholds {
  const labels = set.items.map((i) => i.label);
  let imageThreshold: number;
  if (labels.includes(1) && labels.includes(0)) {
    imageThreshold = f1Max(set.scores, labels).threshold;
  } else {
    warn('the calibration set has only one class: the image threshold is its highest score');
    imageThreshold = minMax(set.scores)[1];
  }
  let pixelThreshold = imageThreshold;
  if (set.pixelLabels) pixelThreshold = f1Max(set.maps, set.pixelLabels).threshold;
  else warn('no ground-truth masks: the pixel threshold equals the image threshold');
  const [imageMin, imageMax] = minMax(set.scores);
  const [pixelMin, pixelMax] = minMax(set.maps);
  return { imageThreshold, pixelThreshold, imageMin, imageMax, pixelMin, pixelMax };
}

export interface MetricSet {
  auroc: number;
  ap: number;
  f1Max: number;
}

export interface EvaluationReport {
  images: number;
  anomalous: number;
  image: MetricSet;
  pixel?: MetricSet & { aupro: number };
  /** each defect type against the good images */
  perDefectType: Record<string, { images: number; image: MetricSet; pixel?: MetricSet & { aupro: number } }>;
  /** the visual report's index.html, when evaluate() was asked for one */
  reportFile?: string;
}

/** evaluate() over a category set: a report per category and their means, as upstream prints them. */
export interface CategoryReport {
  images: number;
  anomalous: number;
  categories: Record<string, EvaluationReport>;
  /** the mean of each metric over the categories (pixel metrics when every category has masks) */
  mean: { image: MetricSet; pixel?: MetricSet & { aupro: number } };
}

function meanOf<T extends object>(sets: T[]): T {
  const out: Record<string, number> = {};
  for (const k of Object.keys(sets[0])) out[k] = sets.reduce((a, m) => a + (m as Record<string, number>)[k], 0) / sets.length;
  return out as T;
}

/** Per-category reports into one: sums of counts and means of metrics. */
export function categoryReportOf(reports: Record<string, EvaluationReport>): CategoryReport {
  const all = Object.values(reports);
  const mean: CategoryReport['mean'] = { image: meanOf(all.map((r) => r.image)) };
  if (all.every((r) => r.pixel)) mean.pixel = meanOf(all.map((r) => r.pixel!));
  return { images: all.reduce((a, r) => a + r.images, 0), anomalous: all.reduce((a, r) => a + r.anomalous, 0), categories: reports, mean };
}

function imageMetrics(scores: ArrayLike<number>, labels: ArrayLike<number>): MetricSet {
  return { auroc: auroc(scores, labels), ap: averagePrecision(scores, labels), f1Max: f1Max(scores, labels).f1 };
}

/** Pixel metrics over the given images (undefined: all of them, without copying). */
function pixelMetrics(set: ScoredSet, pick?: number[]): MetricSet & { aupro: number } {
  let maps = set.maps;
  let labels = set.pixelLabels!;
  let regions = set.regions!;
  if (pick) {
    const per = set.crop * set.crop;
    maps = new Float32Array(pick.length * per);
    labels = new Uint8Array(pick.length * per);
    regions = new Int32Array(pick.length * per);
    pick.forEach((k, j) => {
      maps.set(set.maps.subarray(k * per, (k + 1) * per), j * per);
      labels.set(set.pixelLabels!.subarray(k * per, (k + 1) * per), j * per);
      regions.set(set.regions!.subarray(k * per, (k + 1) * per), j * per);
    });
  }
  return { ...imageMetrics(maps, labels), aupro: aupro(maps, regions, 0.3) };
}

export function evaluationFrom(set: ScoredSet): EvaluationReport {
  const labels = set.items.map((i) => i.label);
  const all = set.items.map((_, k) => k);
  const report: EvaluationReport = {
    images: set.items.length,
    anomalous: labels.filter((l) => l === 1).length,
    image: imageMetrics(set.scores, labels),
    perDefectType: {},
  };
  if (set.pixelLabels) report.pixel = pixelMetrics(set);
  const types = [...new Set(set.items.map((i) => i.type))].filter((t) => t !== 'good');
  for (const type of types) {
    const pick = all.filter((k) => set.items[k].type === 'good' || set.items[k].type === type);
    const entry: EvaluationReport['perDefectType'][string] = {
      images: pick.length,
      image: imageMetrics(pick.map((k) => set.scores[k]), pick.map((k) => labels[k])),
    };
    if (set.pixelLabels && pick.some((k) => set.items[k].maskFile)) entry.pixel = pixelMetrics(set, pick);
    report.perDefectType[type] = entry;
  }
  return report;
}

/** A curve for a picture: at most a few hundred points, each step of at least 1/512 in x or y kept. */
export interface CurvePoints {
  x: number[];
  y: number[];
}

/** The curves of a report: image and pixel ROC, and the PRO curve up to FPR 0.3 (anomalib's AUPRO). */
export interface EvaluationCurves {
  imageRoc: CurvePoints;
  pixelRoc?: CurvePoints;
  pro?: CurvePoints;
}

function thin(x: ArrayLike<number>, y: ArrayLike<number>, step = 1 / 512): CurvePoints {
  const out: CurvePoints = { x: [], y: [] };
  for (let i = 0; i < x.length; i++) {
    const k = out.x.length - 1;
    const last = i === x.length - 1;
    if (k < 0 || last || Math.abs(x[i] - out.x[k]) >= step || Math.abs(y[i] - out.y[k]) >= step) {
      out.x.push(x[i]);
      out.y.push(y[i]);
    }
  }
  return out;
}

export function curvesFrom(set: ScoredSet): EvaluationCurves {
  const labels = set.items.map((i) => i.label);
  const roc = (scores: ArrayLike<number>, l: ArrayLike<number>) => {
    const c = rocCurve(binaryCurve(scores, l));
    return thin(c.fpr, c.tpr);
  };
  const curves: EvaluationCurves = { imageRoc: roc(set.scores, labels) };
  if (set.pixelLabels) {
    curves.pixelRoc = roc(set.maps, set.pixelLabels);
    const pro = proCurve(set.maps, set.regions!, 0.3);
    if (pro) curves.pro = thin(pro.fpr, pro.pro, 0.3 / 512);
  }
  return curves;
}
