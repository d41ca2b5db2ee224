/**
 * Thresholds and metrics (report.ts) on a worker thread: over a full category they are seconds
 * of pure JS (sorting every pixel score, AUPRO), which on the main thread stalled the event loop
 * of a service, and made a queue worker lose its job's lock, for their whole length. The thread
 * loads report.ts and metrics.ts only (no native addon, no sharp); the set's arrays are moved to
 * it, not copied.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { fromNativeError } from '../errors';
import type { ScoredSet } from './evaluation';
import type { Thresholds } from './postprocess';
import { EvaluationCurves, EvaluationReport, calibrationFrom, curvesFrom, evaluationFrom } from './report';

/** 'visual': the metrics, their curves and the set's own F1-max thresholds, for a visual report. */
type Request = { kind: 'evaluation' | 'calibration' | 'visual'; set: ScoredSet };
type Answer<T> = { result: T; warnings: string[] };

export interface VisualAnswer {
  report: EvaluationReport;
  curves: EvaluationCurves;
  /** thresholds calibrated on this very set */
  ownThresholds: Thresholds;
}

function answer(kind: Request['kind'], set: ScoredSet, warn: (m: string) => void): unknown {
  if (kind === 'evaluation') return evaluationFrom(set);
  if (kind === 'calibration') return calibrationFrom(set, warn);
  return { report: evaluationFrom(set), curves: curvesFrom(set), ownThresholds: calibrationFrom(set, warn) } satisfies VisualAnswer;
}

if (!isMainThread && workerData?.inpFormerReport) {
  const { kind, set } = workerData.request as Request;
  const warnings: string[] = [];
  const result = answer(kind, set, (m) => warnings.push(m));
  parentPort!.postMessage({ result, warnings } satisfies Answer<unknown>);
}

/**
 * Run a request on a thread of its own. The set's arrays are moved to it (`set` is unusable
 * afterwards), except for a visual report, whose panels still need them: there they are copied.
 */
function offThread<T>(request: Request): Promise<Answer<T>> {
  const { set } = request;
  const arrays = request.kind === 'visual' ? [] : [set.scores, set.maps, set.pixelLabels, set.regions].filter((a) => a !== undefined);
  return new Promise((resolve, reject) => {
    const thread = new Worker(__filename, { workerData: { inpFormerReport: true, request }, transferList: arrays.map((a) => a.buffer as ArrayBuffer) });
    let answer: Answer<T> | undefined;
    thread.once('message', (m: Answer<T>) => (answer = m));
    thread.once('error', (err) => reject(fromNativeError(err)));
    thread.once('exit', (code) => (answer ? resolve(answer) : reject(fromNativeError(new Error(`the metrics thread exited with code ${code} and no result`)))));
  });
}

export async function evaluationOffThread(set: ScoredSet): Promise<EvaluationReport> {
  return (await offThread<EvaluationReport>({ kind: 'evaluation', set })).result;
}

export async function calibrationOffThread(set: ScoredSet, warn: (m: string) => void): Promise<Thresholds> {
  const { result, warnings } = await offThread<Thresholds>({ kind: 'calibration', set });
  warnings.forEach((m) => warn(m));
  return result;
}

/** Metrics, curves and the set's own thresholds; the set stays usable. */
export async function visualReportOffThread(set: ScoredSet, warn: (m: string) => void): Promise<VisualAnswer> {
  const { result, warnings } = await offThread<VisualAnswer>({ kind: 'visual', set });
  warnings.forEach((m) => warn(m));
  return result;
}
