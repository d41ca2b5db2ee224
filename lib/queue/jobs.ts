/**
 * The jobs of the queue as they travel through Redis (JSON): what producers send, what workers
 * return, and the encodings that keep binary data (encoded images, anomaly maps) compact on the
 * way. Both sides use these; neither knows the other's process.
 */
import type { CreateOptions } from '../model/options';
import type { FitOptions, FitProgress, FitSummary } from '../model/training';
import type { CategoryReport, EvaluationReport } from '../results/report';
import type { LabelledSource } from '../data/dataset';

export type JobKind = 'fit' | 'predict' | 'evaluate';

/** Per-job options of every enqueue call. */
export interface JobOptions {
  /** a job id of your own: a second job with an id already in the queue is not added */
  id?: string;
  /** 1 is the highest; jobs without one go before all prioritised jobs */
  priority?: number;
  /** tries of a job that fails for a reason other than its input (default 1) */
  attempts?: number;
}

/** fit()'s options a queued fit takes: the worker owns checkpointing, resume and the callbacks. */
export type QueuedFitOptions = Omit<FitOptions, 'checkpoint' | 'resumeFrom' | 'signal' | 'onProgress' | 'onWarning'>;

export interface FitJob extends JobOptions {
  /** the model file the worker writes, relative to the workers' models folder ('bottle/cam1.pth') */
  model: string;
  /** the normal images as the workers see them: a folder, an MVTec category or a Folder dataset (its paths as the workers see them) */
  data: LabelledSource;
  /** InpFormer.create()'s options; an encoder file is read by the worker */
  create: CreateOptions;
  fit?: QueuedFitOptions;
  /** epochs between checkpoints (default 1): a worker that takes over a dead worker's fit resumes from the last one */
  checkpointEveryEpochs?: number;
}

export interface PredictJob extends JobOptions {
  /** the model file, relative to the workers' models folder */
  model: string;
  /** image paths as the workers see them, or encoded images (PNG, JPEG, ...) */
  inputs: Array<string | Uint8Array>;
  /** 'input' (default): maps at the input image's size; 'crop': at the model's crop */
  mapSize?: 'input' | 'crop';
  /** also return anomaly maps and masks (default false: scores and labels only) */
  maps?: boolean;
}

export interface EvaluateJob extends JobOptions {
  model: string;
  /** a labelled set as the workers see it: an MVTec-layout category or a Folder dataset */
  data: LabelledSource;
}

export interface FitJobResult {
  /** the model written, relative to the models folder */
  model: string;
  summary: FitSummary;
  /** the step of the checkpoint this run resumed from (a worker died, or a retry), or null */
  resumedFromStep: number | null;
  /** the worker that finished the job */
  worker: string;
}

export interface QueuedPrediction {
  score: number;
  normalizedScore: number | null;
  isAnomalous: boolean | null;
  width: number;
  height: number;
  /** with `maps: true` */
  anomalyMap?: Float32Array;
  /** with `maps: true`; null until the model is calibrated */
  mask?: Uint8Array | null;
}

export interface PredictJobResult {
  predictions: QueuedPrediction[];
  worker: string;
}

export interface EvaluateJobResult {
  report: EvaluationReport | CategoryReport;
  worker: string;
}

/** A job's progress events: when a worker takes it (again, after another one died), and a fit's steps and epochs. */
export type JobProgress =
  | { type: 'started'; worker: string; attempt: number; resumeFromStep: number | null }
  | (FitProgress & { worker: string });

/** An encoded image in job data: base64, which JSON carries at 4/3 of the bytes (a Buffer's JSON is ~3.5x). */
export interface EncodedImage {
  base64: string;
}

export type WirePredictJob = Omit<PredictJob, 'inputs' | keyof JobOptions> & { inputs: Array<string | EncodedImage> };

export const toWireInput = (x: string | Uint8Array): string | EncodedImage =>
  typeof x === 'string' ? x : { base64: Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString('base64') };

export const fromWireInput = (x: string | EncodedImage): string | Buffer => (typeof x === 'string' ? x : Buffer.from(x.base64, 'base64'));

/** A prediction on the wire: arrays as base64 of their bytes. */
export interface WirePrediction extends Omit<QueuedPrediction, 'anomalyMap' | 'mask'> {
  anomalyMap?: string;
  mask?: string | null;
}

const bytesOf = (a: Float32Array | Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');

function typed<T extends Float32Array | Uint8Array>(b64: string, Type: { new (buffer: ArrayBuffer): T; BYTES_PER_ELEMENT: number }): T {
  const bytes = Buffer.from(b64, 'base64');
  const copy = new ArrayBuffer(bytes.length); // own, aligned memory for the typed view
  new Uint8Array(copy).set(bytes);
  return new Type(copy);
}

export function toWirePrediction(p: QueuedPrediction & { anomalyMap: Float32Array; mask: Uint8Array | null }, maps: boolean): WirePrediction {
  const out: WirePrediction = { score: p.score, normalizedScore: p.normalizedScore, isAnomalous: p.isAnomalous, width: p.width, height: p.height };
  if (maps) {
    out.anomalyMap = bytesOf(p.anomalyMap);
    out.mask = p.mask ? bytesOf(p.mask) : null;
  }
  return out;
}

export function fromWirePrediction(w: WirePrediction): QueuedPrediction {
  const out: QueuedPrediction = { score: w.score, normalizedScore: w.normalizedScore, isAnomalous: w.isAnomalous, width: w.width, height: w.height };
  if (w.anomalyMap !== undefined) out.anomalyMap = typed(w.anomalyMap, Float32Array);
  if (w.mask !== undefined) out.mask = w.mask === null ? null : typed(w.mask, Uint8Array);
  return out;
}

/** JSON turns NaN (a metric with one class only) into null: turn it back in a report's numbers. */
export function nanFromJson<T>(v: T): T {
  if (v === null) return NaN as unknown as T;
  if (Array.isArray(v)) return v.map(nanFromJson) as unknown as T;
  if (typeof v === 'object') return Object.fromEntries(Object.entries(v as object).map(([k, x]) => [k, nanFromJson(x)])) as T;
  return v;
}
