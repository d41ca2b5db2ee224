/**
 * Evaluation metrics, computed as scikit-learn / torchmetrics / anomalib define them:
 * ROC and precision-recall curves over the distinct score values (ties share one threshold),
 * AUROC by the trapezoid rule, average precision as sum_n (R_n - R_{n-1}) P_n without
 * interpolation, F1-max over the precision-recall curve, and anomalib's AUPRO (per-region
 * overlap against the false-positive rate, integrated up to FPR 0.3 and normalised).
 * Numbers are float64 throughout.
 */

export interface BinaryCurve {
  /** distinct thresholds, descending: predicting `score >= threshold` positive */
  thresholds: Float64Array;
  /** true / false positives at each threshold */
  tps: Float64Array;
  fps: Float64Array;
}

type Scores = ArrayLike<number>;
type Labels = ArrayLike<number | boolean>;

function check(scores: Scores, labels: Labels): void {
  if (scores.length !== labels.length) throw new RangeError(`${scores.length} scores but ${labels.length} labels`);
  if (scores.length === 0) throw new RangeError('no samples');
}

/** Split by label and sort each side ascending (typed-array sort: fast on millions of pixels). */
export function splitSorted(scores: Scores, isPositive: (i: number) => boolean): { pos: Float64Array; neg: Float64Array } {
  let np = 0;
  let nn = 0;
  for (let i = 0; i < scores.length; i++) {
    if (isPositive(i)) np++;
    else nn++;
  }
  const pos = new Float64Array(np);
  const neg = new Float64Array(nn);
  np = 0;
  nn = 0;
  for (let i = 0; i < scores.length; i++) {
    if (isPositive(i)) pos[np++] = scores[i];
    else neg[nn++] = scores[i];
  }
  return { pos: pos.sort(), neg: neg.sort() };
}

/** sklearn's _binary_clf_curve from ascending-sorted positive and negative scores. */
export function curveFromSorted(pos: Float64Array, neg: Float64Array): BinaryCurve {
  // at most one point per score: typed arrays sized for that, trimmed at the end (pushing onto
  // plain arrays made this the hot spot of AUPRO, called once per region over all normal pixels)
  const th = new Float64Array(pos.length + neg.length);
  const tp = new Float64Array(th.length);
  const fp = new Float64Array(th.length);
  let n = 0;
  let i = pos.length - 1;
  let j = neg.length - 1;
  let t = 0;
  let f = 0;
  while (i >= 0 || j >= 0) {
    const v = Math.max(i >= 0 ? pos[i] : -Infinity, j >= 0 ? neg[j] : -Infinity);
    while (i >= 0 && pos[i] === v) {
      t++;
      i--;
    }
    while (j >= 0 && neg[j] === v) {
      f++;
      j--;
    }
    th[n] = v;
    tp[n] = t;
    fp[n] = f;
    n++;
  }
  return { thresholds: th.slice(0, n), tps: tp.slice(0, n), fps: fp.slice(0, n) };
}

export function binaryCurve(scores: Scores, labels: Labels): BinaryCurve {
  const { pos, neg } = splitSorted(scores, (i) => Boolean(labels[i]));
  return curveFromSorted(pos, neg);
}

export interface RocCurve {
  fpr: Float64Array;
  tpr: Float64Array;
  thresholds: Float64Array;
}

/** ROC curve starting at (0, 0) (torchmetrics binary_roc / sklearn roc_curve without dropping). */
export function rocCurve(c: BinaryCurve): RocCurve {
  const n = c.tps.length + 1;
  const fpr = new Float64Array(n);
  const tpr = new Float64Array(n);
  const P = c.tps[c.tps.length - 1] ?? 0;
  const N = c.fps[c.fps.length - 1] ?? 0;
  for (let i = 1; i < n; i++) {
    fpr[i] = N > 0 ? c.fps[i - 1] / N : 0;
    tpr[i] = P > 0 ? c.tps[i - 1] / P : 0;
  }
  const thresholds = new Float64Array(n);
  thresholds[0] = Infinity;
  thresholds.set(c.thresholds, 1);
  return { fpr, tpr, thresholds };
}

/** Trapezoid area under y(x), x sorted ascending. */
export function trapezoid(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let a = 0;
  for (let i = 1; i < x.length; i++) a += ((x[i] - x[i - 1]) * (y[i] + y[i - 1])) / 2;
  return a;
}

export function auroc(scores: Scores, labels: Labels): number {
  check(scores, labels);
  const r = rocCurve(binaryCurve(scores, labels));
  if (r.tpr[r.tpr.length - 1] === 0 || r.fpr[r.fpr.length - 1] === 0) return NaN; // one class only
  return trapezoid(r.fpr, r.tpr);
}

/** sklearn average_precision_score. */
export function averagePrecision(scores: Scores, labels: Labels): number {
  check(scores, labels);
  const c = binaryCurve(scores, labels);
  const P = c.tps[c.tps.length - 1];
  if (!P) return NaN;
  let ap = 0;
  let prevRecall = 0;
  for (let i = 0; i < c.tps.length; i++) {
    const recall = c.tps[i] / P;
    const precision = c.tps[i] / (c.tps[i] + c.fps[i]);
    ap += (recall - prevRecall) * precision;
    prevRecall = recall;
  }
  return ap;
}

/**
 * anomalib F1Max / F1AdaptiveThreshold: the best F1 over torchmetrics' precision-recall curve
 * and its threshold. That curve stops where full recall is reached and runs from low to high
 * thresholds, so among equal F1 values the lowest threshold wins, as torch.argmax picks it.
 */
export function f1Max(scores: Scores, labels: Labels): { f1: number; threshold: number } {
  check(scores, labels);
  const c = binaryCurve(scores, labels);
  const P = c.tps[c.tps.length - 1];
  let last = c.tps.length - 1;
  if (P > 0) last = c.tps.findIndex((t) => t === P);
  let best = -1;
  let threshold = c.thresholds[last];
  for (let i = last; i >= 0; i--) {
    const precision = c.tps[i] / (c.tps[i] + c.fps[i]);
    const recall = P > 0 ? c.tps[i] / P : 0;
    const f1 = (2 * precision * recall) / (precision + recall + 1e-10);
    if (f1 > best) {
      best = f1;
      threshold = c.thresholds[i];
    }
  }
  return { f1: best, threshold };
}

/** anomalib's interp1d: piecewise-linear with end slopes extended. */
function interp1d(oldX: ArrayLike<number>, oldY: ArrayLike<number>, newX: ArrayLike<number>): Float64Array {
  const n = oldX.length;
  const out = new Float64Array(newX.length);
  const eps = 1.1920928955078125e-7;
  for (let k = 0; k < newX.length; k++) {
    const x = newX[k];
    // searchsorted (left) - 1, clamped to [0, n - 2]
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (oldX[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    const i = Math.min(Math.max(lo - 1, 0), Math.max(n - 2, 0));
    if (n < 2) {
      out[k] = oldY[0];
      continue;
    }
    const slope = (oldY[i + 1] - oldY[i]) / (eps + (oldX[i + 1] - oldX[i]));
    out[k] = oldY[i] + slope * (x - oldX[i]);
  }
  return out;
}

/**
 * 8-connected components of a binary mask (as OpenCV's connectedComponents, which anomalib uses
 * on the CPU). Returns labels (0 background) and the number of components.
 */
export function connectedComponents(mask: ArrayLike<number | boolean>, width: number, height: number): { labels: Int32Array; count: number } {
  const labels = new Int32Array(width * height);
  let count = 0;
  const stack: number[] = [];
  for (let start = 0; start < labels.length; start++) {
    if (!mask[start] || labels[start]) continue;
    count++;
    labels[start] = count;
    stack.push(start);
    while (stack.length) {
      const p = stack.pop()!;
      const x = p % width;
      const y = (p - x) / width;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= width || (dx === 0 && dy === 0)) continue;
          const q = yy * width + xx;
          if (mask[q] && !labels[q]) {
            labels[q] = count;
            stack.push(q);
          }
        }
      }
    }
  }
  return { labels, count };
}

/**
 * anomalib AUPRO: `regions` labels each pixel with its ground-truth region id (unique over the
 * whole set; 0 = normal). For every region, the ROC over that region's pixels plus all normal
 * pixels is resampled on the global curve's grid up to `fprLimit` (with the point at the limit
 * interpolated), the per-region TPR (= overlap) and FPR are averaged, integrated, and divided
 * by the last FPR.
 */
export function aupro(scores: Scores, regions: ArrayLike<number>, fprLimit = 0.3): number {
  const curve = proCurve(scores, regions, fprLimit);
  if (!curve) return NaN;
  return trapezoid(curve.fpr, curve.pro) / curve.lastFpr;
}

/**
 * The PRO curve of aupro(): the mean per-region overlap against the mean false-positive rate,
 * sorted by FPR (stable), up to `fprLimit`; undefined without regions or enough points.
 */
export function proCurve(scores: Scores, regions: ArrayLike<number>, fprLimit = 0.3): { fpr: number[]; pro: number[]; lastFpr: number } | undefined {
  const n = scores.length;
  if (regions.length !== n) throw new RangeError('scores and regions differ in length');
  const { pos: allPos, neg: normal } = splitSorted(scores, (i) => regions[i] > 0);
  const globalRoc = rocCurve(curveFromSorted(allPos, normal));
  const byRegion = new Map<number, number[]>();
  for (let i = 0; i < n; i++) {
    const id = regions[i];
    if (id > 0) (byRegion.get(id) ?? byRegion.set(id, []).get(id)!).push(scores[i]);
  }
  let outputSize = 0;
  for (const f of globalRoc.fpr) if (f <= fprLimit) outputSize++;
  const ids = [...byRegion.keys()].sort((a, b) => a - b);
  if (ids.length === 0 || outputSize < 2) return undefined;
  const tprSum = new Float64Array(outputSize);
  const fprSum = new Float64Array(outputSize);
  const grid = Float64Array.from({ length: outputSize }, (_, k) => k);
  for (const id of ids) {
    const newIdx = grid.slice();
    // the region's pixels against the normal pixels only: other regions are not false positives
    const roc = rocCurve(curveFromSorted(Float64Array.from(byRegion.get(id)!).sort(), normal));
    const fprAll = roc.fpr;
    const tprAll = roc.tpr;
    let maxBelow = 0;
    let minAbove = Infinity;
    for (let q = 0; q < fprAll.length; q++) {
      const f = fprAll[q];
      if (f <= fprLimit) maxBelow = Math.max(maxBelow, f);
      else minAbove = Math.min(minAbove, f);
    }
    // edge case: the curve has no point with 0 < fpr <= limit
    const limit = maxBelow === 0 && minAbove !== Infinity ? minAbove : fprLimit;
    // fpr is ascending, so the points at or below the limit are a prefix: indices 0..count-1
    let count = 0;
    let maxSel = 0;
    while (count < fprAll.length && fprAll[count] <= limit) maxSel = Math.max(maxSel, fprAll[count++]);
    let extra = -1; // the first index past the limit, interpolated to it
    let slope = 0;
    if (Math.abs(maxSel - fprLimit) > 1e-8 + 1e-5 * fprLimit) {
      // torch.searchsorted(fpr, limit): the first index with fpr >= limit
      let tmp = 0;
      while (tmp < fprAll.length && fprAll[tmp] < fprLimit) tmp++;
      if (tmp < fprAll.length) {
        extra = tmp;
        slope = 1 - (fprAll[tmp] - fprLimit) / (fprAll[tmp] - fprAll[tmp - 1]);
      }
    }
    const points = count + (extra >= 0 ? 1 : 0);
    const fpr = new Float64Array(points);
    const tpr = new Float64Array(points);
    const scaled = new Float64Array(points);
    const maxIdx = extra >= 0 ? extra : count - 1;
    for (let q = 0; q < points; q++) {
      const i = q < count ? q : extra;
      fpr[q] = fprAll[i];
      tpr[q] = tprAll[i];
      scaled[q] = (i / maxIdx) * (outputSize - 1);
    }
    if (extra >= 0) newIdx[outputSize - 1] = scaled[points - 2] + (scaled[points - 1] - scaled[points - 2]) * slope;
    const t = interp1d(scaled, tpr, newIdx);
    const f = interp1d(scaled, fpr, newIdx);
    for (let k = 0; k < outputSize; k++) {
      tprSum[k] += t[k];
      fprSum[k] += f[k];
    }
  }
  const m = ids.length;
  const fpr = Array.from(fprSum, (v) => v / m);
  const tpr = Array.from(tprSum, (v) => v / m);
  // torchmetrics auc(reorder=True): sort by x (stable), then the trapezoid (aupro)
  const order2 = Array.from(fpr, (_, i) => i).sort((a, b) => fpr[a] - fpr[b] || a - b);
  // anomalib divides by the last FPR of the curve before the sort
  return { fpr: order2.map((i) => fpr[i]), pro: order2.map((i) => tpr[i]), lastFpr: fpr[fpr.length - 1] };
}
