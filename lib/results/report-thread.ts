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
import { EvaluationReport, calibrationFrom, evaluationFrom } from './report';

type Request = { kind: 'evaluation' | 'calibration'; set: ScoredSet };
type Answer<T> = { result: T; warnings: string[] };

if (!isMainThread && workerData?.inpFormerReport) {
  const { kind, set } = workerData.request as Request;
  const warnings: string[] = [];
  const result = kind === 'evaluation' ? evaluationFrom(set) : calibrationFrom(set, (m) => warnings.push(m));
  parentPort!.postMessage({ result, warnings } satisfies Answer<unknown>);
}

/** Run a request on a thread of its own; `set` is unusable afterwards (its arrays moved). */
function offThread<T>(request: Request): Promise<Answer<T>> {
  const { set } = request;
  const arrays = [set.scores, set.maps, set.pixelLabels, set.regions].filter((a) => a !== undefined);
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
