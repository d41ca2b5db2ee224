/**
 * fit(): the INP-Former recipe driven from JS, one native step at a time. Each step runs on the
 * model's own native thread, so the event loop stays free; between steps we check the
 * AbortSignal, report progress and write checkpoints. The run is a TrainingRun: await it for
 * the summary, or iterate it (`for await`) for progress events.
 */
import { interpretCheckpoint } from './architecture';
import type { Thresholds } from '../results/postprocess';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { readCheckpointFile, stateDictMetadata } from '../checkpoint/reader';
import { trainingStepOf } from '../checkpoint/model-file';
import { HostTensor } from '../checkpoint/tensor';
import { writeTorchFile } from '../checkpoint/writer';
import { BatchSource, FitSource, batchSource } from '../data/batches';
import type { LabelledSource } from '../data/dataset';
import { AbortError, CheckpointError, InvalidArgumentError, fromNativeError } from '../errors';
import { NativeModelInstance, NativeOptimizerState, NativeTensor, whileBorrowed } from '../native/native';
import { FIT, Precision, Resolved } from './options';
import { callSafely, emitWarning } from '../callbacks';

export interface FitProgress {
  type: 'step' | 'epoch';
  /** 1-based */
  epoch: number;
  epochs: number;
  /** 1-based, over the whole run */
  step: number;
  steps: number;
  /** total loss of the step (for 'epoch': the epoch's mean) */
  loss: number;
  /** INP coherence loss (before its 0.2 weight) */
  inpLoss: number;
  lr: number;
  /** gradient norm before clipping */
  gradNorm: number;
  /**
   * 'step' only: the smallest |cos(q, k)| at a decoder ReLU in this step. Below ~1e-5, float32
   * rounding under another BLAS kernel can flip that score's sign and change the gradient
   * (docs/parity.md): a diagnostic for comparing runs across CPUs.
   */
  reluMargin?: number;
  imagesPerSecond: number;
  etaSeconds: number;
}

export interface FitSummary {
  steps: number;
  epochs: number;
  finalLoss: number;
  seconds: number;
  imagesSeen: number;
  imagesPerSecond: number;
  /** seconds the model waited for data (decode + preprocess not ready in time) */
  dataWaitSeconds: number;
  dataWaitShare: number;
  /** images the frozen encoder ran on; the rest of imagesSeen came from the feature cache (`featureCacheMiB`) */
  imagesEncoded: number;
  /** the feature cache at the end of the run (freed with it) */
  featureCache: { images: number; bytes: number };
  /** thresholds per category, calibrated on a `validation` category set */
  categoryThresholds?: Record<string, Thresholds>;
  /** thresholds calibrated on `validation`, when given */
  thresholds?: Thresholds;
}

export interface FitOptions {
  /** default 200 (anomalib's) */
  epochs?: number;
  /** stop after this many steps (the schedule spans min(epochs * stepsPerEpoch, maxSteps)) */
  maxSteps?: number;
  /** default 16 */
  batchSize?: number;
  /** peak learning rate, default 1e-3 */
  learningRate?: number;
  /** final learning rate of the cosine, default 1e-4 */
  finalLearningRate?: number;
  /** linear warm-up steps, default 100 */
  warmupSteps?: number;
  weightDecay?: number;
  gradClipNorm?: number;
  /**
   * float32 matrix products of the trainable layers on the CPU. 'auto' (default): the forward's on
   * libtorch's BLAS, as the reference computes them, so every forward value (each decoder ReLU
   * score) is the reference's to the bit, and the gradients' products, twice the forward's work, on
   * oneDNN's sgemm where libtorch has it (about 1.3x faster steps; gradients within the fixture's
   * tolerances, docs/parity.md). 'libtorch': forward and backward on libtorch's BLAS, the
   * reference's roundings throughout. 'onednn': forward and backward on oneDNN (about 1.8x
   * faster steps; last-bit differences in the forward that a decoder ReLU score near 0 can turn
   * into different gradients). Inference and the frozen encoder use oneDNN either way.
   */
  matmul?: 'auto' | 'libtorch' | 'onednn';
  /**
   * The step's matrix products. 'float32' is exact to the reference trace; 'bfloat16' is mixed
   * precision: every product in bfloat16 (oneDNN's avx512_bf16 / AMX kernels, tensor cores on
   * CUDA), the weights, gradients, optimizer state and everything between products in float32
   * (its loss trajectory and detection quality against float32: docs/parity.md); 'auto' takes
   * bfloat16 where its products are fast. Default: the model's precision (a bfloat16 model
   * trains float32 master weights and is rounded back to bfloat16 after the fit).
   */
  precision?: Precision | 'auto';
  /** shuffle seed, default 0 */
  seed?: number;
  shuffle?: boolean;
  /** skip unreadable images with a warning instead of failing */
  skipBadImages?: boolean;
  /** batches prepared ahead of the model (default 2) */
  prefetchBatches?: number;
  /**
   * MiB of the frozen encoder's outputs kept across epochs (default 1024; 0 keeps none): from the
   * second epoch, the encoder runs only on images not kept. For images (a folder, a dataset, an
   * image list, few-shot views), not for ready batches. The weights are the same to the bit.
   */
  featureCacheMiB?: number;
  /** save model + training state every `everyEpochs` epochs and at the end */
  checkpoint?: { path: string; everyEpochs?: number };
  /**
   * few-shot: train on K normal images per category (picked with `seed`), each expanded into 22
   * views (rotations, translations, a flip, greyscale, quarter turns), as upstream's few-shot setting
   */
  fewShot?: number;
  /** upstream's recipe for a setting; its values fill the options not given (docs/settings.md) */
  recipe?: 'single-class' | 'multi-class' | 'few-shot';
  /** a labelled set (MVTec-layout folder or Folder dataset) on which to calibrate thresholds after training */
  validation?: LabelledSource;
  /** continue a run from a checkpoint written by `checkpoint` */
  resumeFrom?: string;
  signal?: AbortSignal;
  onProgress?: (event: FitProgress) => void;
  /** warnings (default: process.emitWarning) */
  onWarning?: (message: string) => void;
}

export interface TrainingContext {
  native: NativeModelInstance;
  imageSize: number;
  cropSize: number;
  maxImagePixels: number;
  /** the model's precision, fit's default */
  precision: Precision;
  /** what precision 'auto' means on the model's device */
  autoPrecision: Precision;
  saveModel(file: string, extraMetadata?: Record<string, string>): Promise<void>;
}

/** A running fit: await it for the summary, or `for await` it for progress events. */
export class TrainingRun implements PromiseLike<FitSummary>, AsyncIterable<FitProgress> {
  readonly #promise: Promise<FitSummary>;
  readonly #subscribers = new Set<(e: FitProgress | null) => void>();

  constructor(start: (emit: (e: FitProgress) => void) => Promise<FitSummary>) {
    this.#promise = start((e) => this.#subscribers.forEach((s) => s(e)));
    const end = () => this.#subscribers.forEach((s) => s(null));
    this.#promise.then(end, end);
  }

  then<A = FitSummary, B = never>(
    onfulfilled?: ((value: FitSummary) => A | PromiseLike<A>) | null,
    onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.#promise.then(onfulfilled, onrejected);
  }

  catch<B = never>(onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<FitSummary | B> {
    return this.#promise.catch(onrejected);
  }

  finally(onfinally?: (() => void) | null): Promise<FitSummary> {
    return this.#promise.finally(onfinally);
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<FitProgress, FitSummary> {
    const queue: (FitProgress | null)[] = [];
    let wake: (() => void) | undefined;
    const sub = (e: FitProgress | null) => {
      queue.push(e);
      wake?.();
    };
    this.#subscribers.add(sub);
    try {
      for (;;) {
        if (queue.length === 0) await new Promise<void>((r) => (wake = r));
        wake = undefined;
        const e = queue.shift()!;
        if (e === null) return await this.#promise;
        yield e;
      }
    } finally {
      this.#subscribers.delete(sub);
    }
  }
}

/** The options that decide a run's numbers, as the training state records them. */
function recipeOf(o: Resolved<typeof FIT>, precision: Precision): Record<string, number | boolean | string> {
  const { epochs, batchSize, learningRate, finalLearningRate, warmupSteps, weightDecay, gradClipNorm, seed, shuffle, matmul } = o;
  return { epochs, batchSize, learningRate, finalLearningRate, warmupSteps, weightDecay, gradClipNorm, seed, shuffle, precision, matmul };
}

/** fit's precision option against the model's: the precision of the run's products. */
function trainingPrecision(ctx: TrainingContext, choice: Precision | 'auto' | undefined): Precision {
  if (choice === 'auto') return ctx.autoPrecision;
  return choice ?? ctx.precision;
}

interface TrainingState {
  epochsDone: number;
  totalSteps: number;
  options: Record<string, number | boolean | string>;
}

/**
 * A checkpoint is two files: the model (`path`, which Python opens as a state dict) and the
 * training state of the same step (`path.train-state.<step>`). They are committed in an order
 * that a kill -9 at any point leaves a matching pair: the new state is written first under a new
 * name, then the model is replaced (atomically, recording its step), then the old state is
 * deleted. Resume reads the step from the model and opens that state: exact, or refused when
 * the pair is missing, never a model of one epoch with the moments of another.
 */
function stateFile(checkpointPath: string, step: number): string {
  return `${checkpointPath}.train-state.${step}`;
}

/** Older states of this checkpoint (of our naming), to delete once a newer pair is committed. */
async function staleStates(checkpointPath: string, keepStep: number): Promise<string[]> {
  const dir = path.dirname(path.resolve(checkpointPath));
  const prefix = `${path.basename(checkpointPath)}.train-state`;
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  const isStale = (n: string) => {
    if (n === prefix) return true; // the unversioned state of earlier releases
    const step = n.startsWith(prefix + '.') ? n.slice(prefix.length + 1) : '';
    return /^\d+$/.test(step) && Number(step) !== keepStep;
  };
  return names.filter(isStale).map((n) => path.join(dir, n));
}

async function saveTrainingState(ctx: TrainingContext, file: string, state: TrainingState): Promise<void> {
  const opt = await ctx.native.optimizerState();
  const tensors: { name: string; data: Float32Array; shape: number[] }[] = [];
  const add = (prefix: string, list: NativeTensor[]) =>
    list.forEach((t, i) => tensors.push({ name: `${prefix}.${i}`, data: t.data, shape: t.shape }));
  add('exp_avg', opt.expAvg);
  add('exp_avg_sq', opt.expAvgSq);
  add('max_exp_avg_sq', opt.maxExpAvgSq);
  await writeTorchFile(stateFile(file, opt.step), tensors, {
    inp_former_training: { format: 'inp-former-training-state', step: String(opt.step), state: JSON.stringify(state) },
  });
  await ctx.saveModel(file, { training_step: String(opt.step) });
  for (const old of await staleStates(file, opt.step)) await fs.rm(old, { force: true });
}

async function loadTrainingState(file: string): Promise<{ state: TrainingState; optimizer: NativeOptimizerState; weights: NativeTensor[] }> {
  const ck = await readCheckpointFile(file);
  const model = interpretCheckpoint(ck);
  const step = trainingStepOf(ck.root);
  if (step === undefined || !/^\d+$/.test(step)) {
    throw new CheckpointError('not a training checkpoint (no training step recorded): write one with fit({ checkpoint })', file);
  }
  const sfile = stateFile(file, Number(step));
  const raw = await readCheckpointFile(sfile).catch((err) => {
    throw new CheckpointError(`the training state of step ${step} is missing (${sfile}): ${(err as Error).message}`, file);
  });
  const root = raw.root as Map<string, unknown>;
  const info = stateDictMetadata(root, 'inp_former_training') as Map<string, string> | undefined;
  if (!info || info.get('step') !== step) throw new CheckpointError(`not the training state of step ${step}`, sfile);
  const list = (prefix: string) => {
    const out: NativeTensor[] = [];
    for (let i = 0; root.has(`${prefix}.${i}`); i++) {
      const t = root.get(`${prefix}.${i}`) as HostTensor;
      out.push({ data: t.toFloat32(), shape: t.shape });
    }
    return out;
  };
  return {
    state: JSON.parse(info.get('state')!),
    optimizer: { step: Number(step), expAvg: list('exp_avg'), expAvgSq: list('exp_avg_sq'), maxExpAvgSq: list('max_exp_avg_sq') },
    weights: [...model.weights].map(([name, t]) => ({ name, data: t.toFloat32(), shape: t.shape })),
  };
}

export async function runTraining(
  ctx: TrainingContext,
  source: FitSource,
  o: Resolved<typeof FIT>,
  emit: (e: FitProgress) => void,
): Promise<FitSummary> {
  const warn = o.onWarning ?? emitWarning;
  const report = (e: FitProgress) => {
    emit(e);
    callSafely(o.onProgress, e, 'onProgress', warn);
  };
  if (o.signal?.aborted) throw new AbortError('training aborted before it started');

  const source_: BatchSource = await batchSource(source, {
    batchSize: o.batchSize,
    shuffle: o.shuffle,
    seed: o.seed,
    imageSize: ctx.imageSize,
    cropSize: ctx.cropSize,
    maxImagePixels: ctx.maxImagePixels,
    skipBadImages: o.skipBadImages,
    prefetchBatches: o.prefetchBatches,
    decodeConcurrency: 4,
    fewShot: o.fewShot,
    warn,
  });
  const perEpoch = source_.stepsPerEpoch;
  if (perEpoch === undefined && o.maxSteps === undefined)
    throw new InvalidArgumentError('with an iterable of batches of unknown length, pass maxSteps (it sets the learning-rate schedule)');
  let totalSteps = Math.min(perEpoch === undefined ? Infinity : perEpoch * o.epochs, o.maxSteps ?? Infinity);

  const precision = trainingPrecision(ctx, o.precision as Precision | 'auto' | undefined);
  let epochsDone = 0;
  let resume: Awaited<ReturnType<typeof loadTrainingState>> | undefined;
  if (o.resumeFrom) {
    resume = await loadTrainingState(o.resumeFrom);
    totalSteps = resume.state.totalSteps;
    epochsDone = resume.state.epochsDone;
    // a resume equals an uninterrupted run only with the same recipe: say what differs
    const now = recipeOf(o, precision);
    const changed = Object.entries(resume.state.options ?? {}).filter(([k, v]) => k in now && now[k] !== v);
    if (changed.length) warn(`resuming ${o.resumeFrom} with ${changed.map(([k, v]) => `${k} ${now[k]} (the run used ${v})`).join(', ')}: the result will differ from an uninterrupted run`);
  }
  try {
    const { warmupSteps, learningRate, finalLearningRate, weightDecay, gradClipNorm } = o;
    await ctx.native.beginTraining({
      totalSteps, warmupSteps, learningRate, finalLearningRate, weightDecay, gradClipNorm,
      matmul: o.matmul,
      bfloat16Products: precision === 'bfloat16',
      featureCacheBytes: Math.floor(o.featureCacheMiB * 2 ** 20),
    });
    if (resume) {
      await whileBorrowed(resume.weights, () => ctx.native.loadWeights(resume.weights));
      await ctx.native.setOptimizerState(resume.optimizer);
    }
  } catch (err) {
    throw fromNativeError(err);
  }

  const started = performance.now();
  let step = resume?.optimizer.step ?? 0;
  const firstStep = step;
  let imagesSeen = 0;
  let dataWait = 0;
  let finalLoss = NaN;
  let lastLr = 0;
  let lastGrad = 0;
  let imagesEncoded = 0;
  const featureCache = { images: 0, bytes: 0 };
  const rate = () => imagesSeen / Math.max(1e-9, (performance.now() - started) / 1000);
  const eta = () => {
    const done = step - firstStep;
    const elapsed = (performance.now() - started) / 1000;
    return done > 0 ? ((totalSteps - step) * elapsed) / done : NaN;
  };
  for (let epoch = epochsDone; epoch < o.epochs && step < totalSteps; epoch++) {
    let lossSum = 0;
    let inpSum = 0;
    let n = 0;
    for await (const batch of source_.epoch(epoch)) {
      if (o.signal?.aborted) throw new AbortError(`training aborted after step ${step}`);
      dataWait += batch.waitSeconds;
      let s;
      try {
        s = await ctx.native.trainStep(batch.data, batch.shape, batch.keys);
      } catch (err) {
        throw fromNativeError(err);
      }
      step = s.step;
      imagesSeen += batch.shape[0];
      imagesEncoded += s.encodedImages;
      featureCache.images = s.cachedImages;
      featureCache.bytes = s.cachedBytes;
      finalLoss = s.loss;
      lastLr = s.lr;
      lastGrad = s.gradNorm;
      lossSum += s.loss;
      inpSum += s.inpLoss;
      n++;
      report({
        type: 'step', epoch: epoch + 1, epochs: o.epochs, step, steps: totalSteps, loss: s.loss, inpLoss: s.inpLoss,
        lr: s.lr, gradNorm: s.gradNorm, reluMargin: s.reluMargin, imagesPerSecond: rate(), etaSeconds: eta(),
      });
      if (step >= totalSteps) break;
    }
    if (n === 0) throw new InvalidArgumentError(`epoch ${epoch + 1} produced no batch (every image was skipped?)`);
    epochsDone = epoch + 1;
    report({
      type: 'epoch', epoch: epoch + 1, epochs: o.epochs, step, steps: totalSteps, loss: lossSum / n, inpLoss: inpSum / n,
      lr: lastLr, gradNorm: lastGrad, imagesPerSecond: rate(), etaSeconds: eta(),
    });
    const last = epochsDone >= o.epochs || step >= totalSteps;
    if (o.checkpoint && (epochsDone % o.checkpoint.everyEpochs === 0 || last)) {
      await saveTrainingState(ctx, o.checkpoint.path, { epochsDone, totalSteps, options: recipeOf(o, precision) });
    }
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    steps: step,
    epochs: epochsDone,
    finalLoss,
    seconds,
    imagesSeen,
    imagesPerSecond: imagesSeen / Math.max(seconds, 1e-9),
    dataWaitSeconds: dataWait,
    dataWaitShare: dataWait / Math.max(seconds, 1e-9),
    imagesEncoded,
    featureCache,
  };
}
