/**
 * InpFormer: the public model class. Thin: it validates options, turns checkpoints into named
 * tensors (lib/architecture.ts), and drives the native model (cpp/) whose every call runs on
 * the model's own native thread and settles a Promise.
 */
import * as path from 'node:path';
import {
  EncoderSpec, TensorMap, inferEncoderSpec, inferNetworkConfig, interpretCheckpoint,
  encoderWeightsOf, newNetworkConfig, withEncoderPrefix,
} from './architecture';
import { CheckpointFile, readCheckpointFile } from '../checkpoint/reader';
import { DTYPE_BYTES } from '../checkpoint/pickle';
import { HostTensor, StorageBytes } from '../checkpoint/tensor';
import { upstreamStateDict, writeModelFile } from '../checkpoint/model-file';
import { TensorToSave } from '../checkpoint/writer';
import { AbortError, BusyError, CheckpointError, DisposedError, FileWriteError, InvalidArgumentError, fromNativeError } from '../errors';
import { ensureDir, writeAtomically } from '../files';
import { promises as fs } from 'node:fs';
import { NativeInferResult, NativeModelInstance, NativeTensor, NativeWeight, native, whileBorrowed } from '../native/native';
import { FitSource, checkTensorBatch } from '../data/batches';
import { FitOptions, TrainingRun, runTraining } from './training';
import { ImageInput, RgbImage, decodeImage, listImages } from '../data/images';
import { CategorySet, FolderDataset, LabelledSource, ResolvedFolderDataset, isCategorySet, resolveCategories } from '../data/dataset';
import { autoPrecision, CREATE, CreateOptions, EXPORT_ONNX, FIT, RECIPES, INFER, CALIBRATE, EVALUATE, LABELLED, LOAD, labelledSet, PREDICT_EACH, LoadOptions, LoadProgress, ModelConfig, PREDICT, RANDOM_ENCODER, Resolved, modelConfig, resolve, text } from './options';
import { callSafely, emitWarning } from '../callbacks';
import { randomEncoderSpec, randomEncoderWeights } from './random-encoder';
import { MicroBatcher } from './batcher';
import { EvaluateOptions, InferTensorResult, LabelledSetOptions, Prediction, PredictEachOptions, PredictEachResult, PredictOptions, Thresholds, predictionOf } from '../results/postprocess';
import { heatmapFiles, writeHeatmap } from '../results/heatmap';
import { ScoredSet, scoreLabelledSet } from '../results/evaluation';
import { CategoryReport, EvaluationReport, categoryReportOf } from '../results/report';
import { calibrationOffThread, evaluationOffThread, visualReportOffThread } from '../results/report-thread';
import { writeVisualReport } from '../results/visual-report';
import { resolveEncoderName } from '../weights';
import { packageVersion } from '../native/runtime';

export type { CreateOptions, LoadOptions, LoadProgress, ModelConfig, Precision, RandomEncoderSpec } from './options';
export type { InferTensorResult, Tensor } from '../results/postprocess';

/**
 * Not Node's shared Buffer pool (Buffer.poolSize bytes, 8 KiB by default), which the rest of the
 * process goes on using. The checkpoint reader copies even small tensors into their own memory
 * (lib/checkpoint/reader.ts); this guards against a slice of the pool all the same.
 */
const ownBuffer = (b: ArrayBufferLike) => b.byteLength > Buffer.poolSize;

function toNativeTensors(m: Iterable<[string, HostTensor]>): (NativeTensor & NativeWeight)[] {
  return [...m].map(([name, t]) => ({ name, data: t.toFloat32(), shape: t.shape }));
}

/** Storages above this size stay in the checkpoint file until the network is built (InpFormer.load). */
const DEFER_STORAGES_ABOVE = 1 << 20;
/** About this many bytes of a checkpoint are in memory at a time beside the network. */
const LOAD_PART_BYTES = 64 << 20;

/**
 * Tensors grouped into parts of about `bytes` bytes of storage, the tensors of one storage
 * always in the same part (a part's storages are released once the network has copied it).
 */
function storageParts(tensors: [string, HostTensor][], bytes: number): [string, HostTensor][][] {
  const byStorage = new Map<StorageBytes, [string, HostTensor][]>();
  for (const e of tensors) {
    const group = byStorage.get(e[1].source);
    if (group) group.push(e);
    else byStorage.set(e[1].source, [e]);
  }
  const parts: [string, HostTensor][][] = [];
  let part: [string, HostTensor][] = [];
  let size = 0;
  for (const group of byStorage.values()) {
    if (part.length && size >= bytes) {
      parts.push(part);
      part = [];
      size = 0;
    }
    part.push(...group);
    size += Math.max(...group.map(([, t]) => t.extent * DTYPE_BYTES[t.dtype]));
  }
  if (part.length) parts.push(part);
  return parts;
}

export class InpFormer {
  #native: NativeModelInstance;
  #config: ModelConfig;
  #thresholds: Thresholds | undefined;
  /** thresholds per category, from a calibration on a category set (multi-class models) */
  #categoryThresholds = new Map<string, Thresholds>();
  #exclusive: string | undefined;
  /** the running fit: aborted and awaited by dispose() */
  #fit: { abort: AbortController; done: Promise<unknown> } | undefined;
  #pending = new Set<Promise<unknown>>();
  #batcher: MicroBatcher<{ score: number; map: Float32Array }> | undefined;
  #disposed = false;

  private constructor(nativeModel: NativeModelInstance, config: ModelConfig, thresholds?: Thresholds, categoryThresholds?: Record<string, Thresholds>) {
    this.#native = nativeModel;
    this.#config = config;
    this.#thresholds = thresholds;
    for (const [k, v] of Object.entries(categoryThresholds ?? {})) this.#categoryThresholds.set(k, v);
  }

  /** A new model: encoder from DINOv2 weights (or a random-encoder spec), trainable part initialised as the reference does. */
  static async create(options: CreateOptions = {}): Promise<InpFormer> {
    if (options?.encoder === undefined && options !== null && typeof options === 'object') {
      throw new InvalidArgumentError(
        "create() needs options.encoder: a DINOv2 weights file (e.g. 'dinov2_vitb14_reg4_pretrain.pth'), or a random-encoder spec { embedDim, depth, numHeads } for tests",
      );
    }
    const o = resolve(CREATE, options, 'InpFormer.create()');
    let encWeights: TensorMap;
    let encoderSource: string;
    let spec: EncoderSpec;
    let opened: CheckpointFile | undefined;
    try {
      if (typeof o.encoder === 'string') {
        const file = resolveEncoderName(o.encoder) ?? o.encoder;
        // large storages stay in the file until the network exists, as in load()
        opened = await readCheckpointFile(file, { deferStoragesAbove: DEFER_STORAGES_ABOVE });
        encWeights = encoderWeightsOf(opened);
        encoderSource = file;
        spec = inferEncoderSpec(encWeights, o.encoderHeads, file);
      } else {
        const r = resolve(RANDOM_ENCODER, o.encoder, 'InpFormer.create()', 'encoder.');
        spec = randomEncoderSpec(r);
        encWeights = randomEncoderWeights(spec, r.seed);
        encoderSource = `random encoder (seed ${r.seed}; untrained, for tests and demos only)`;
      }
      const network = newNetworkConfig(spec, o);
      const config = modelConfig(network, o, native().runtime(), { kind: 'new', encoder: encoderSource });
      return await InpFormer.#open(config, encWeights, true, o.seed, undefined);
    } finally {
      await opened?.close();
    }
  }

  /** Load an upstream INP-Former .pth, an anomalib .ckpt, or a file saved by `save()`. */
  static async load(file: string, options: LoadOptions = {}): Promise<InpFormer> {
    text(file, 'the file of InpFormer.load()');
    const { signal, onProgress } = resolve(LOAD, options, 'InpFormer.load()'); // checked before the file is read; resolved again with what it records
    const reach = (stage: LoadProgress['stage']) => {
      if (signal?.aborted) throw new AbortError(`InpFormer.load(${file}) was aborted before the '${stage}' stage`);
      callSafely(onProgress, { stage, file }, 'load() onProgress');
    };
    reach('read');
    // large storages stay in the file until the network exists (#open brings them in parts)
    const opened = await readCheckpointFile(file, { deferStoragesAbove: DEFER_STORAGES_ABOVE });
    let encoderFile: CheckpointFile | undefined;
    try {
      const ck = interpretCheckpoint(opened);
      if (ck.kind === 'encoder') {
        throw new CheckpointError("holds only encoder weights: use InpFormer.create({ encoder: file }) and fit()", file);
      }
      const { imageSize, cropSize, precision } = ck.recorded;
      const o = resolve(LOAD, options, 'InpFormer.load()', '', { imageSize, cropSize, precision });
      const weights = ck.weights;
      let encoderSource = file;
      if (o.encoder) {
        for (const k of [...weights.keys()]) if (k.startsWith('encoder.')) weights.delete(k);
        encoderFile = await readCheckpointFile(resolveEncoderName(o.encoder) ?? o.encoder, { deferStoragesAbove: DEFER_STORAGES_ABOVE });
        for (const [k, v] of withEncoderPrefix(encoderWeightsOf(encoderFile))) weights.set(k, v);
        encoderSource = o.encoder;
      }
      const network = inferNetworkConfig(weights, ck.recorded, o, file);
      const config = modelConfig(network, o, native().runtime(), { kind: ck.kind, path: path.resolve(file), encoder: encoderSource });
      reach('build');
      const abortedWhileBuilt = () => new AbortError(`InpFormer.load(${file}) was aborted while the network was built`);
      let model: InpFormer;
      try {
        model = await InpFormer.#open(config, weights, false, 0, ck.thresholds, ck.categoryThresholds, () => {
          if (signal?.aborted) throw abortedWhileBuilt();
        });
      } catch (err) {
        if (err instanceof CheckpointError && !err.file) throw new CheckpointError(err.message, file, { cause: err });
        throw err;
      }
      if (signal?.aborted) {
        await model.dispose();
        throw abortedWhileBuilt();
      }
      callSafely(onProgress, { stage: 'ready', file }, 'load() onProgress');
      return model;
    } finally {
      await encoderFile?.close();
      await opened.close();
    }
  }

  /** `checkAbort` runs between the parts of a load and throws to stop it (the network is freed). */
  static async #open(config: ModelConfig, weights: TensorMap, encoderOnly: boolean, seed: number, thresholds?: Thresholds, categoryThresholds?: Record<string, Thresholds>, checkAbort?: () => void) {
    const addon = native();
    const nativeModel = new addon.NativeModel(config.adaptiveThreads ? 0 : config.threads); // 0: adaptive (cpp/core/cpu_load.h)
    // The weights were read or made for this call alone, and the network holds its own copy:
    // each part's memory is freed as soon as the network has it rather than at some later
    // collection, so that neither the rest of the load nor the first inferences stack on a
    // second copy of the checkpoint (peak RSS, docs/benchmarks.md).
    const release = (part: [string, HostTensor][], tensors: NativeWeight[]) => {
      const buffers = [...part.filter(([, t]) => t.isRead).map(([, t]) => t.storage.buffer), ...tensors.flatMap((t) => (t.data ? [t.data.buffer] : []))];
      for (const [, t] of part) t.source.release();
      addon.detachArrayBuffers([...new Set(buffers)].filter(ownBuffer));
    };
    const [now, later] = [[...weights].filter(([, t]) => t.isRead), [...weights].filter(([, t]) => !t.isRead)];
    let tensors: NativeWeight[] = [];
    try {
      // the storages left in the file (large ones, InpFormer.load) come as names and shapes,
      // checked with the rest before any value is copied; their values follow in parts
      tensors = [...toNativeTensors(now), ...later.map(([name, t]) => ({ name, shape: t.shape }))];
      await whileBorrowed(tensors, () =>
        nativeModel.load(config.network, { device: config.device, precision: config.precision, threads: config.threads }, tensors, seed, encoderOnly));
      release(now, tensors);
      for (const part of storageParts(later, LOAD_PART_BYTES)) {
        checkAbort?.();
        for (const [, t] of part) await t.source.read();
        const values = toNativeTensors(part);
        tensors = values;
        await whileBorrowed(values, () => nativeModel.loadWeights(values, true));
        release(part, tensors);
      }
    } catch (err) {
      nativeModel.dispose();
      throw fromNativeError(err);
    } finally {
      release([...weights], tensors);
      weights.clear();
    }
    return new InpFormer(nativeModel, config, thresholds, categoryThresholds);
  }

  /** The configuration (a copy): architecture, preprocessing sizes, runtime, source. */
  get config(): ModelConfig {
    return structuredClone(this.#config);
  }

  /** Calibrated post-processing thresholds, if any (from an anomalib checkpoint, calibration or a saved model). */
  get thresholds(): Thresholds | undefined {
    return this.#thresholds ? { ...this.#thresholds } : undefined;
  }

  /** Thresholds per category of a model calibrated on a category set (predict's `category` picks one). */
  get categoryThresholds(): Record<string, Thresholds> {
    return Object.fromEntries([...this.#categoryThresholds].map(([k, v]) => [k, { ...v }]));
  }

  /** The thresholds predict() uses: the category's, or the model's. */
  #thresholdsFor(category: string | undefined): Thresholds | undefined {
    if (category === undefined) return this.#thresholds;
    const t = this.#categoryThresholds.get(category);
    if (!t) {
      const known = [...this.#categoryThresholds.keys()];
      throw new InvalidArgumentError(`no thresholds for category '${category}' (${known.length ? `calibrated: ${known.join(', ')}` : 'the model was not calibrated on a category set'})`);
    }
    return t;
  }

  /** Run one native call: refused while disposed or during fit, tracked for dispose(), errors typed. */
  #track<T>(job: () => Promise<T>, name: string): Promise<T> {
    if (this.#disposed) return Promise.reject(new DisposedError());
    if (this.#exclusive) return Promise.reject(new BusyError(`the model is busy with ${this.#exclusive}; ${name} must wait until it ends`));
    const p = job().catch((err) => {
      throw fromNativeError(err);
    });
    this.#pending.add(p);
    const done = () => this.#pending.delete(p);
    p.then(done, done);
    return p;
  }

  /** Mark the model as taken by a long job (fit) until the returned release is called. */
  #takeExclusive(name: string): () => void {
    if (this.#disposed) throw new DisposedError();
    if (this.#exclusive) throw new BusyError(`the model is busy with ${this.#exclusive}`);
    this.#exclusive = name;
    return () => {
      this.#exclusive = undefined;
    };
  }

  /**
   * Run the network on normalised images [B, 3, H, W] (H, W multiples of the patch size).
   * Maps are H x W; with `features`, encoder/decoder group features, prototypes and the INP loss too.
   */
  async inferTensor(data: Float32Array, shape: [number, number, number, number], options: { features?: boolean } = {}): Promise<InferTensorResult> {
    const o = resolve(INFER, options, 'inferTensor()');
    checkTensorBatch({ data, shape }, 'inferTensor()', this.#config.network.encoder.patchSize);
    return this.#track(async () => {
      const r: NativeInferResult = await this.#native.infer(data, shape, o.features);
      const out: InferTensorResult = { scores: r.scores, anomalyMaps: r.anomalyMaps };
      if (o.features) {
        out.encoderFeatures = r.encoderFeatures!.map(({ data, shape }) => ({ data, shape }));
        out.decoderFeatures = r.decoderFeatures!.map(({ data, shape }) => ({ data, shape }));
        out.prototypes = { data: r.prototypes!.data, shape: r.prototypes!.shape };
        out.inpLoss = r.inpLoss;
        out.anomalyMapsRaw = r.anomalyMapsRaw;
      }
      return out;
    }, 'inferTensor');
  }

  /**
   * Train on normal images: a folder (recursive; an MVTec category root means train/good), an
   * array of paths / encoded images (Buffer or Uint8Array) / raw pixels, or an iterable of ready [B,3,H,W] batches.
   * Returns a TrainingRun: `await` it for the summary, `for await` it for progress events.
   * While it runs, other calls on this model reject with BusyError.
   */
  fit(source: FitSource, options: FitOptions = {}): TrainingRun {
    const run = new TrainingRun(async (emit) => {
      // a recipe's values fill what the caller did not give
      const recipe = options !== null && typeof options === 'object' ? RECIPES[options.recipe as keyof typeof RECIPES] : undefined;
      const o = resolve(FIT, recipe ? { ...recipe, ...options } : options, 'fit()');
      const release = this.#takeExclusive('fit');
      // one signal for the user's abort and dispose()
      const abort = new AbortController();
      const forward = () => abort.abort(o.signal?.reason);
      let summary;
      try {
        if (o.signal?.aborted) forward();
        o.signal?.addEventListener('abort', forward, { once: true });
        this.#fit = { abort, done: Promise.resolve() }; // fit() below replaces done with the run
        summary = await runTraining(
          {
            native: this.#native,
            imageSize: this.#config.imageSize,
            cropSize: this.#config.cropSize,
            maxImagePixels: this.#config.maxImagePixels,
            precision: this.#config.precision,
            autoPrecision: autoPrecision(this.#config.device, native().runtime()),
            saveModel: (file, extra) => this.#saveUnchecked(file, extra),
          },
          source,
          { ...o, signal: abort.signal },
          emit,
        );
      } finally {
        o.signal?.removeEventListener('abort', forward);
        // the optimizer's moments and the gradients (~4x the trainable weights) are not kept after a fit
        await this.#native.endTraining().catch(() => undefined);
        this.#fit = undefined;
        release();
      }
      const validation = o.validation as LabelledSource | undefined;
      const calibration = { onWarning: o.onWarning, signal: o.signal };
      if (validation && isCategorySet(validation)) return { ...summary, categoryThresholds: await this.calibrate(validation, calibration) };
      if (validation) return { ...summary, thresholds: await this.calibrate(validation, calibration) };
      return summary;
    });
    if (this.#fit) this.#fit.done = run.then(undefined, () => undefined);
    return run;
  }

  #batcherFor(): MicroBatcher<{ score: number; map: Float32Array }> {
    const c = this.#config.cropSize;
    this.#batcher ??= new MicroBatcher<{ score: number; map: Float32Array }>(
      async (data, n) => {
        const r = await this.inferTensor(data, [n, 3, c, c]);
        return Array.from({ length: n }, (_, i) => ({ score: r.scores[i], map: r.anomalyMaps.slice(i * c * c, (i + 1) * c * c) }));
      },
      3 * c * c,
      this.#config.predictBatchSize,
    );
    return this.#batcher;
  }

  async #scoreImage(input: ImageInput, index: number, signal?: AbortSignal): Promise<{ image: RgbImage; score: number; map: Float32Array }> {
    if (this.#disposed) throw new DisposedError();
    const aborted = () => new AbortError(`predict() was aborted before image #${index} was scored`);
    if (signal?.aborted) throw aborted();
    const image = await decodeImage(input, index, this.#config.maxImagePixels);
    const data = await native().preprocess([image], this.#config.imageSize, this.#config.cropSize);
    if (signal?.aborted) throw aborted();
    return { image, ...(await this.#batcherFor().submit(data)) };
  }

  /**
   * Score images: file paths, encoded images (Buffer or any Uint8Array) or raw pixels { data, width, height, channels }.
   * Concurrent calls are batched together natively. With thresholds (calibrate(), an anomalib
   * checkpoint, fit's validation), results carry normalised scores, labels and masks.
   */
  predict(input: ImageInput, options?: PredictOptions): Promise<Prediction>;
  predict(inputs: ImageInput[], options?: PredictOptions): Promise<Prediction[]>;
  async predict(input: ImageInput | ImageInput[], options: PredictOptions = {}): Promise<Prediction | Prediction[]> {
    const o = resolve(PREDICT, options, 'predict()');
    if (Array.isArray(input)) {
      const heatmaps = o.heatmap ? heatmapFiles(input, o.heatmap) : undefined;
      return Promise.all(input.map((x, i) => this.#predictOne(x, i, heatmaps?.[i], o)));
    }
    return this.#predictOne(input, 0, o.heatmap, o);
  }

  /**
   * Score many images with bounded memory: a folder (searched recursively), an array, or any
   * iterable or async iterable of inputs. Yields { index, input, prediction } in input order as
   * soon as each is ready, keeping at most `window` images in flight, so memory does not grow
   * with the number of images. Abort with `signal`; breaking out of the loop stops it too.
   */
  async *predictEach(source: string | Iterable<ImageInput> | AsyncIterable<ImageInput>, options: PredictEachOptions = {}): AsyncGenerator<PredictEachResult> {
    const o = resolve(PREDICT_EACH, options, 'predictEach()');
    const items: Iterable<ImageInput> | AsyncIterable<ImageInput> = typeof source === 'string' ? await listImages(source) : source;
    const known = Array.isArray(items) ? items : undefined;
    if (o.heatmap !== undefined && !known) throw new InvalidArgumentError('predictEach(): heatmap needs a folder or an array as source (names mirror their folders)');
    const heatmaps = o.heatmap !== undefined ? heatmapFiles(known!, o.heatmap) : undefined;
    const total = known ? known.length : null;
    const onProgress = o.onProgress as PredictEachOptions['onProgress'];
    const pending: Promise<PredictEachResult>[] = [];
    let done = 0;
    /** Yield the oldest results, in order, until `keep` are left in flight. */
    async function* settle(keep: number): AsyncGenerator<PredictEachResult> {
      while (pending.length > keep) {
        yield await pending.shift()!;
        callSafely(onProgress, { done: ++done, total }, 'onProgress');
      }
    }
    try {
      let index = 0;
      for await (const input of items) {
        const i = index++;
        const result = this.#predictOne(input, i, heatmaps?.[i], o).then((prediction) => ({ index: i, input: typeof input === 'string' ? input : i, prediction }));
        result.catch(() => undefined); // awaited in order by settle(); not unhandled meanwhile
        pending.push(result);
        yield* settle(o.window - 1);
      }
      yield* settle(0);
    } finally {
      await Promise.allSettled(pending); // an early exit leaves nothing running
    }
  }

  async #predictOne(input: ImageInput, index: number, heatmap: string | undefined, options: Pick<Resolved<typeof PREDICT>, 'mapSize' | 'signal' | 'category'>): Promise<Prediction> {
    const thresholds = this.#thresholdsFor(options.category); // an unknown category fails before any work
    const scored = await this.#scoreImage(input, index, options.signal);
    const { prediction, heatmapLayers } = predictionOf(scored, this.#config, thresholds, options.mapSize, heatmap !== undefined);
    if (heatmap) {
      await writeHeatmap(heatmap, { image: scored.image, ...heatmapLayers! });
      prediction.heatmap = heatmap;
    }
    return prediction;
  }

  /** Scores and crop-size maps of a labelled set, with its masks. */
  #scoreLabelledSet(set: string | ResolvedFolderDataset, o: Resolved<typeof LABELLED>): Promise<ScoredSet> {
    const { cropSize, imageSize, maxImagePixels } = this.#config;
    const onProgress = o.onProgress as LabelledSetOptions['onProgress'];
    return scoreLabelledSet(set, (file, i) => this.#scoreImage(file, i), {
      cropSize, imageSize, maxImagePixels, signal: o.signal,
      onProgress: onProgress && ((p) => callSafely(onProgress, p, 'onProgress')),
    });
  }

  /**
   * Choose image and pixel thresholds that maximise F1 on a labelled set (MVTec layout:
   * good/ and defect folders, masks in ground_truth/; or a Folder-style dataset's test part:
   * its normal test images and abnormal folders), with anomalib's min-max normalisation
   * statistics. They are kept with the model (and saved by save()). The second argument is the
   * options, or (as before) the warning callback alone.
   */
  calibrate(set: CategorySet, options?: LabelledSetOptions | ((m: string) => void)): Promise<Record<string, Thresholds>>;
  calibrate(set: string | FolderDataset, options?: LabelledSetOptions | ((m: string) => void)): Promise<Thresholds>;
  calibrate(set: LabelledSource, options?: LabelledSetOptions | ((m: string) => void)): Promise<Thresholds | Record<string, Thresholds>>;
  async calibrate(set: LabelledSource, options: LabelledSetOptions | ((m: string) => void) = {}): Promise<Thresholds | Record<string, Thresholds>> {
    const o = resolve(CALIBRATE, typeof options === 'function' ? { onWarning: options } : options, 'calibrate()');
    const warn = (o.onWarning as ((m: string) => void) | undefined) ?? emitWarning;
    const source = labelledSet(set, 'calibrate()');
    if (isCategorySet(source)) {
      // each category's thresholds from its own test set, all set together once every one is done
      const out: Record<string, Thresholds> = {};
      for (const c of await resolveCategories(source)) {
        out[c.name] = await calibrationOffThread(await this.#scoreLabelledSet(c.dir, this.#forCategory(o, c.name)), (m) => warn(`${c.name}: ${m}`));
      }
      for (const [k, v] of Object.entries(out)) this.#categoryThresholds.set(k, v);
      return this.categoryThresholds;
    }
    const scored = await this.#scoreLabelledSet(source, o);
    this.#thresholds = await calibrationOffThread(scored, warn);
    return { ...this.#thresholds };
  }

  /** A category's progress events say which category they count. */
  #forCategory<T extends Resolved<typeof LABELLED>>(o: T, category: string): T {
    const onProgress = o.onProgress as LabelledSetOptions['onProgress'];
    return { ...o, onProgress: onProgress && ((p: { done: number; total: number }) => onProgress({ ...p, category })) };
  }


  /**
   * Image and pixel metrics on a labelled set, overall and per defect type: an MVTec AD-layout
   * category, or a Folder-style dataset's test part.
   */
  evaluate(set: CategorySet, options?: EvaluateOptions): Promise<CategoryReport>;
  evaluate(set: string | FolderDataset, options?: EvaluateOptions): Promise<EvaluationReport>;
  evaluate(set: LabelledSource, options?: EvaluateOptions): Promise<EvaluationReport | CategoryReport>;
  async evaluate(set: LabelledSource, options: EvaluateOptions = {}): Promise<EvaluationReport | CategoryReport> {
    const o = resolve(EVALUATE, options, 'evaluate()');
    const source = labelledSet(set, 'evaluate()');
    if (isCategorySet(source)) {
      // each category against its own thresholds, as upstream reports the multi-class setting
      const reports: Record<string, EvaluationReport> = {};
      for (const c of await resolveCategories(source)) {
        const one = { ...this.#forCategory(o, c.name), report: o.report === undefined ? undefined : path.join(o.report, c.name) };
        reports[c.name] = await this.#evaluateOne(c.dir, one, this.#categoryThresholds.get(c.name) ?? this.#thresholds);
      }
      return categoryReportOf(reports);
    }
    return this.#evaluateOne(source, o, this.#thresholds);
  }

  async #evaluateOne(set: string | ResolvedFolderDataset, o: Resolved<typeof EVALUATE>, thresholds: Thresholds | undefined): Promise<EvaluationReport> {
    const scored = await this.#scoreLabelledSet(set, o);
    if (o.report === undefined) return evaluationOffThread(scored);
    const visual = await visualReportOffThread(scored, () => {}); // a one-class set is told by its metrics
    const { imageSize, maxImagePixels } = this.#config;
    const reportFile = await writeVisualReport(o.report, {
      set: scored, report: visual.report, curves: visual.curves, imageSize, maxImagePixels, signal: o.signal,
      thresholds: thresholds ?? visual.ownThresholds, thresholdsFrom: thresholds ? 'model' : 'set',
      title: typeof set === 'string' ? set : `Folder dataset ${set.normalDir}`,
    });
    return { ...visual.report, reportFile };
  }



  /**
   * Write the network with its map and score computation as an ONNX graph (opset 17) for
   * onnxruntime and other runtimes, from this model's weights, without Python. Input 'images':
   * pre-processed images [batch, 3, size, size] (resize, centre crop, ImageNet mean/std, as
   * predict() does); outputs 'anomaly_map' [batch, 1, size, size] (blurred) and 'score' [batch].
   * Written atomically.
   */
  async exportOnnx(file: string, options: { batch?: number; size?: number } = {}): Promise<void> {
    text(file, 'the file of exportOnnx()');
    const o = resolve(EXPORT_ONNX, options, 'exportOnnx()');
    const params = await this.stateDict();
    // loaded here, not with the package: onnx-proto and protobufjs map ~8 MiB that only export needs
    const { buildOnnxModel } = await import('../export/onnx-export');
    const bytes = buildOnnxModel({ network: this.#config.network, params, batch: o.batch, size: o.size ?? this.#config.cropSize, producerVersion: packageVersion() });
    await ensureDir(path.dirname(path.resolve(file)), (m, cause) => new FileWriteError(file, m, { cause }));
    await writeAtomically(file, (tmp) => fs.writeFile(tmp, bytes), (m, cause) => new FileWriteError(file, m, { cause }));
  }

  /** Every parameter under upstream INP-Former's names, in its state_dict order. */
  async stateDict(): Promise<TensorToSave[]> {
    return this.#track(() => this.#stateDictUnchecked(), 'stateDict');
  }

  async #stateDictUnchecked(): Promise<TensorToSave[]> {
    const params = (await this.#native.stateDict()).map((t) => ({ name: t.name!, data: t.data, shape: t.shape }));
    return upstreamStateDict(params, this.#config.network.mlpBias);
  }

  /**
   * Save as a torch.save file that Python's torch.load opens and upstream's
   * INP_Former.load_state_dict(strict=True) accepts; configuration and thresholds travel in its
   * metadata, so InpFormer.load restores everything. Written atomically.
   */
  async save(file: string): Promise<void> {
    text(file, 'the file of save()');
    return this.#track(() => this.#saveUnchecked(file), 'save');
  }

  /** `extra`: more metadata entries (a checkpoint's training step). */
  async #saveUnchecked(file: string, extra: Record<string, string> = {}): Promise<void> {
    const params = (await this.#native.stateDict()).map((t) => ({ name: t.name!, data: t.data, shape: t.shape }));
    const { network, imageSize, cropSize } = this.#config;
    const categoryThresholds = this.#categoryThresholds.size ? this.categoryThresholds : undefined;
    await writeModelFile(file, params, { network, imageSize, cropSize, thresholds: this.#thresholds, categoryThresholds }, packageVersion(), extra);
  }

  /** Free the native model. Stops a running fit (within a step), waits for calls in flight; later calls reject with DisposedError. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.#fit) {
      this.#fit.abort.abort(new DisposedError());
      await this.#fit.done;
    }
    await Promise.allSettled([...this.#pending]);
    this.#native.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }

  get disposed(): boolean {
    return this.#disposed;
  }
}

