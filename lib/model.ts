/**
 * InpFormer: the public model class. Thin: it validates options, turns checkpoints into named
 * tensors (lib/architecture.ts), and drives the native model (cpp/) whose every call runs on
 * the model's own native thread and settles a Promise.
 */
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import {
  ArchitectureOptions,
  EncoderSpec,
  InterpretedCheckpoint,
  NetworkConfig,
  TensorMap,
  Thresholds,
  defaultTargetLayers,
  inferEncoderSpec,
  inferNetworkConfig,
  interpretCheckpoint,
  withEncoderPrefix,
} from './architecture';
import { readCheckpointFile } from './checkpoint/reader';
import { HostTensor } from './checkpoint/tensor';
import { TensorToSave, writeTorchFile } from './checkpoint/writer';
import { BusyError, CheckpointError, DisposedError, InpFormerError, InvalidArgumentError, fromNativeError } from './errors';
import { NativeInferResult, NativeModelInstance, NativeTensor, native } from './native';
import { normal, rng } from './random';
import { FitSource } from './data';
import { FitOptions, TrainingRun, runTraining } from './training';
import { ImageInput, RgbImage, decodeImage } from './images';
import {
  CREATE, DEFAULT_FUSE_GROUPS, DEFAULT_INP_NUM, FIT, INFER, LOAD, MAX_RANDOM_ENCODER_PARAMETERS, PREDICT, RANDOM_ENCODER, RUNTIME, Resolved, invalid, resolve, text,
} from './options';
import { MicroBatcher, mapToInput } from './predict';
import { normalizeMap, normalizeScore } from './postprocess';
import { writeHeatmap } from './heatmap';
import { readLabelledSet } from './dataset';
import { EvaluationReport, attachMasks, calibrationFrom, evaluationFrom } from './evaluation';
import { resolveEncoderName } from './weights';
import { packageVersion } from './runtime';
import { ensureDir, removeMadeDirs } from './files';

export type Precision = 'float32' | 'bfloat16';

/** An encoder built from an architecture with random weights: for tests and the offline demo only. */
export interface RandomEncoderSpec {
  embedDim: number;
  depth: number;
  numHeads: number;
  numRegisterTokens?: number;
  patchSize?: number;
  posGridSize?: number;
  mlpHiddenDim?: number;
  /** seed of the random weights (default 0) */
  seed?: number;
}

export interface CreateOptions extends ArchitectureOptions {
  /**
   * DINOv2 weights (Meta .pth, timm .safetensors, TorchScript); a name of downloaded weights
   * ('dinov2_vitb14_reg', or anomalib's 'dinov2reg_vit_base_14'); or a random-encoder spec.
   */
  encoder?: string | RandomEncoderSpec;
  /** 'cpu' (default), 'cuda', 'cuda:N' or 'auto' */
  device?: string;
  precision?: Precision;
  /** intra-op threads of this model's native thread (default: the cores this process may use) */
  threads?: number;
  /** resize to imageSize x imageSize before the crop (default 448) */
  imageSize?: number;
  /** centre crop (default 392); a multiple of the patch size */
  cropSize?: number;
  /** seed of the trainable part's initialisation (default 0) */
  seed?: number;
  /**
   * Most images one native run of concurrent predict() calls may take (micro-batching).
   * Default 8 on CUDA and 1 on the CPU, where batching was measured slower per image
   * (docs/benchmarks.md): there concurrent calls queue instead.
   */
  predictBatchSize?: number;
  /**
   * Largest image decoded, in pixels (width x height; default 64,000,000), checked from the
   * file's header before any pixel memory is allocated. Decoding needs ~3 bytes a pixel, so
   * this bounds the memory one image can take (docs/reliability.md).
   */
  maxImagePixels?: number;
}

export type LoadOptions = Omit<CreateOptions, 'encoder' | 'seed'> & {
  /** replace the encoder weights with those of another file */
  encoder?: string;
};

export interface ModelConfig {
  network: NetworkConfig;
  imageSize: number;
  cropSize: number;
  precision: Precision;
  device: string;
  threads: number;
  predictBatchSize: number;
  maxImagePixels: number;
  /** where the weights came from */
  source: { kind: InterpretedCheckpoint['kind'] | 'new'; path?: string; encoder: string };
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

function toNativeTensors(m: TensorMap): NativeTensor[] {
  return [...m].map(([name, t]) => ({ name, data: t.toFloat32(), shape: t.shape }));
}

/** The encoder a random-encoder spec describes; refused when larger than any DINOv2. */
function randomEncoderSpec(r: Resolved<typeof RANDOM_ENCODER>): EncoderSpec {
  if (r.embedDim % r.numHeads !== 0) throw invalid('encoder.numHeads', `a divisor of embedDim ${r.embedDim}`, r.numHeads);
  const mlp = r.mlpHiddenDim ?? r.embedDim * 4;
  const params = r.depth * (4 * r.embedDim ** 2 + 2 * r.embedDim * mlp) + (r.posGridSize ** 2 + 1 + r.numRegisterTokens) * r.embedDim;
  if (params > MAX_RANDOM_ENCODER_PARAMETERS)
    throw invalid('encoder', `a random encoder of at most ${MAX_RANDOM_ENCODER_PARAMETERS.toExponential(1)} parameters (DINOv2-g has 1.1e9)`, `${params.toExponential(2)} parameters`);
  return {
    embedDim: r.embedDim, depth: r.depth, numHeads: r.numHeads, numRegisterTokens: r.numRegisterTokens, patchSize: r.patchSize,
    posGridSize: r.posGridSize, mlpHiddenDim: mlp, swiglu: false, lnEps: 1e-6, interpolateOffset: 0.1,
  };
}

/** Random DINOv2-shaped weights (Meta names), reproducible from the spec's seed. */
function randomEncoderWeights(spec: EncoderSpec, seed: number): TensorMap {
  const gauss = normal(rng(seed * 7919 + 17));
  const uniform = rng(seed * 104729 + 3);
  const out: TensorMap = new Map();
  const add = (name: string, shape: number[], fill: (i: number) => number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = fill(i);
    out.set(name, HostTensor.fromFloat32(data, shape));
  };
  const D = spec.embedDim;
  const H = spec.mlpHiddenDim;
  add('cls_token', [1, 1, D], () => 0.05 * gauss());
  add('pos_embed', [1, spec.posGridSize ** 2 + 1, D], () => 0.05 * gauss());
  if (spec.numRegisterTokens > 0) add('register_tokens', [1, spec.numRegisterTokens, D], () => 0.05 * gauss());
  add('mask_token', [1, D], () => 0);
  add('patch_embed.proj.weight', [D, 3, spec.patchSize, spec.patchSize], () => 0.05 * gauss());
  add('patch_embed.proj.bias', [D], () => 0.02 * gauss());
  for (let b = 0; b < spec.depth; b++) {
    const p = `blocks.${b}.`;
    add(p + 'norm1.weight', [D], () => 1 + 0.1 * gauss());
    add(p + 'norm1.bias', [D], () => 0.02 * gauss());
    add(p + 'attn.qkv.weight', [3 * D, D], () => 0.05 * gauss());
    add(p + 'attn.qkv.bias', [3 * D], () => 0.02 * gauss());
    add(p + 'attn.proj.weight', [D, D], () => 0.05 * gauss());
    add(p + 'attn.proj.bias', [D], () => 0.02 * gauss());
    add(p + 'ls1.gamma', [D], () => 0.2 + 0.8 * uniform());
    add(p + 'norm2.weight', [D], () => 1 + 0.1 * gauss());
    add(p + 'norm2.bias', [D], () => 0.02 * gauss());
    add(p + 'mlp.fc1.weight', [H, D], () => 0.05 * gauss());
    add(p + 'mlp.fc1.bias', [H], () => 0.02 * gauss());
    add(p + 'mlp.fc2.weight', [D, H], () => 0.05 * gauss());
    add(p + 'mlp.fc2.bias', [D], () => 0.02 * gauss());
    add(p + 'ls2.gamma', [D], () => 0.2 + 0.8 * uniform());
  }
  add('norm.weight', [D], () => 1);
  add('norm.bias', [D], () => 0);
  return out;
}

async function readEncoderFile(file: string): Promise<TensorMap> {
  const ck = interpretCheckpoint(await readCheckpointFile(file));
  if (ck.kind === 'encoder') return ck.weights;
  // an INP-Former checkpoint also holds an encoder
  const enc: TensorMap = new Map();
  for (const [k, v] of ck.weights) if (k.startsWith('encoder.')) enc.set(k.slice(8), v);
  if (enc.size === 0) throw new CheckpointError('holds no encoder weights', file);
  return enc;
}

export class InpFormer {
  #native: NativeModelInstance;
  #config: ModelConfig;
  #thresholds: Thresholds | undefined;
  #exclusive: string | undefined;
  /** the running fit: aborted and awaited by dispose() */
  #fit: { abort: AbortController; done: Promise<unknown> } | undefined;
  #pending = new Set<Promise<unknown>>();
  #batcher: MicroBatcher<{ score: number; map: Float32Array }> | undefined;
  #disposed = false;

  private constructor(nativeModel: NativeModelInstance, config: ModelConfig, thresholds?: Thresholds) {
    this.#native = nativeModel;
    this.#config = config;
    this.#thresholds = thresholds;
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
    if (typeof o.encoder === 'string') {
      const file = resolveEncoderName(o.encoder) ?? o.encoder;
      encWeights = await readEncoderFile(file);
      encoderSource = file;
      spec = inferEncoderSpec(encWeights, o.encoderHeads, file);
    } else {
      const r = resolve(RANDOM_ENCODER, o.encoder, 'InpFormer.create()', 'encoder.');
      spec = randomEncoderSpec(r);
      encWeights = randomEncoderWeights(spec, r.seed);
      encoderSource = `random encoder (seed ${r.seed}; untrained, for tests and demos only)`;
    }
    const network: NetworkConfig = {
      encoder: spec,
      targetLayers: o.targetLayers ?? defaultTargetLayers(spec.depth),
      fuseLayerEncoder: o.fuseLayerEncoder ?? DEFAULT_FUSE_GROUPS,
      fuseLayerDecoder: o.fuseLayerDecoder ?? DEFAULT_FUSE_GROUPS,
      removeClassToken: o.removeClassToken ?? true,
      inpNum: o.inpNum ?? DEFAULT_INP_NUM,
      numHeads: spec.numHeads,
      decoderDepth: 8,
      extractorDepth: 1,
      mlpRatio: 4,
      qkvBias: true,
      mlpBias: true,
      inpLnEps: 1e-8,
    };
    const config = InpFormer.#runtimeConfig(network, o, { kind: 'new', encoder: encoderSource });
    return InpFormer.#open(config, encWeights, true, o.seed, undefined);
  }

  /** Load an upstream INP-Former .pth, an anomalib .ckpt, or a file saved by `save()`. */
  static async load(file: string, options: LoadOptions = {}): Promise<InpFormer> {
    text(file, 'the file of InpFormer.load()');
    resolve(LOAD, options, 'InpFormer.load()'); // checked before the file is read; resolved again with what it records
    const ck = interpretCheckpoint(await readCheckpointFile(file));
    if (ck.kind === 'encoder') {
      throw new CheckpointError("holds only encoder weights: use InpFormer.create({ encoder: file }) and fit()", file);
    }
    const { imageSize, cropSize, precision } = ck.recorded;
    const o = resolve(LOAD, options, 'InpFormer.load()', '', { imageSize, cropSize, precision });
    const weights = ck.weights;
    let encoderSource = file;
    if (o.encoder) {
      for (const k of [...weights.keys()]) if (k.startsWith('encoder.')) weights.delete(k);
      for (const [k, v] of withEncoderPrefix(await readEncoderFile(resolveEncoderName(o.encoder) ?? o.encoder))) weights.set(k, v);
      encoderSource = o.encoder;
    }
    const network = inferNetworkConfig(weights, ck.recorded, o, file);
    const config = InpFormer.#runtimeConfig(network, o, { kind: ck.kind, path: path.resolve(file), encoder: encoderSource });
    try {
      return await InpFormer.#open(config, weights, false, 0, ck.thresholds);
    } catch (err) {
      if (err instanceof CheckpointError && !err.file) throw new CheckpointError(err.message, file, { cause: err });
      throw err;
    }
  }

  static #runtimeConfig(network: NetworkConfig, o: Resolved<typeof RUNTIME>, source: ModelConfig['source']): ModelConfig {
    const { imageSize, cropSize, precision, device, maxImagePixels } = o;
    if (cropSize > imageSize) throw new InvalidArgumentError(`cropSize ${cropSize} is larger than imageSize ${imageSize}`);
    if (cropSize % network.encoder.patchSize !== 0)
      throw new InvalidArgumentError(`cropSize ${cropSize} is not a multiple of the patch size ${network.encoder.patchSize}`);
    const rt = native().runtime();
    const threads = o.threads ?? rt.defaultThreads;
    // batching pays on a GPU; on the CPU it was measured slower per image (docs/benchmarks.md)
    const onCuda = device.startsWith('cuda') || (device === 'auto' && rt.cudaAvailable);
    const predictBatchSize = o.predictBatchSize ?? (onCuda ? 8 : 1);
    return { network, imageSize, cropSize, precision, device, threads, predictBatchSize, maxImagePixels, source };
  }

  static async #open(config: ModelConfig, weights: TensorMap, encoderOnly: boolean, seed: number, thresholds?: Thresholds) {
    const addon = native();
    const nativeModel = new addon.NativeModel(config.threads);
    try {
      await nativeModel.load(config.network, { device: config.device, precision: config.precision, threads: config.threads },
        toNativeTensors(weights), seed, encoderOnly);
    } catch (err) {
      nativeModel.dispose();
      throw fromNativeError(err);
    }
    return new InpFormer(nativeModel, config, thresholds);
  }

  /** The configuration (a copy): architecture, preprocessing sizes, runtime, source. */
  get config(): ModelConfig {
    return structuredClone(this.#config);
  }

  /** Calibrated post-processing thresholds, if any (from an anomalib checkpoint, calibration or a saved model). */
  get thresholds(): Thresholds | undefined {
    return this.#thresholds ? { ...this.#thresholds } : undefined;
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
  inferTensor(data: Float32Array, shape: [number, number, number, number], options: { features?: boolean } = {}): Promise<InferTensorResult> {
    let o: Resolved<typeof INFER>;
    try {
      o = resolve(INFER, options, 'inferTensor()');
    } catch (err) {
      return Promise.reject(err);
    }
    if (!(data instanceof Float32Array)) return Promise.reject(new InvalidArgumentError('data must be a Float32Array'));
    if (!Array.isArray(shape) || shape.length !== 4 || shape[1] !== 3 || !shape.every((d) => Number.isInteger(d) && d > 0)) {
      return Promise.reject(new InvalidArgumentError(`shape must be [B, 3, H, W], got ${JSON.stringify(shape)}`));
    }
    const p = this.#config.network.encoder.patchSize;
    if (shape[2] % p || shape[3] % p) {
      return Promise.reject(new InvalidArgumentError(`H and W must be multiples of the patch size ${p}, got ${shape[2]}x${shape[3]}`));
    }
    if (data.length !== shape.reduce((a, b) => a * b, 1)) {
      return Promise.reject(new InvalidArgumentError(`data has ${data.length} values, shape ${JSON.stringify(shape)} needs ${shape.reduce((a, b) => a * b, 1)}`));
    }
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
   * array of paths / encoded Buffers / raw pixels, or an iterable of ready [B,3,H,W] batches.
   * Returns a TrainingRun: `await` it for the summary, `for await` it for progress events.
   * While it runs, other calls on this model reject with BusyError.
   */
  fit(source: FitSource, options: FitOptions = {}): TrainingRun {
    const run = new TrainingRun(async (emit) => {
      const o = resolve(FIT, options, 'fit()');
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
            saveModel: (file, extra) => this.#saveUnchecked(file, extra),
          },
          source,
          { ...o, signal: abort.signal },
          emit,
        );
      } finally {
        o.signal?.removeEventListener('abort', forward);
        this.#fit = undefined;
        release();
      }
      if (o.validation) return { ...summary, thresholds: await this.calibrate(o.validation, o.onWarning) };
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

  async #scoreImage(input: ImageInput, index: number): Promise<{ image: RgbImage; score: number; map: Float32Array }> {
    if (this.#disposed) throw new DisposedError();
    const image = await decodeImage(input, index, this.#config.maxImagePixels);
    const data = await native().preprocess([image], this.#config.imageSize, this.#config.cropSize);
    return { image, ...(await this.#batcherFor().submit(data)) };
  }

  /**
   * Score images: file paths, encoded Buffers or raw pixels { data, width, height, channels }.
   * Concurrent calls are batched together natively. With thresholds (calibrate(), an anomalib
   * checkpoint, fit's validation), results carry normalised scores, labels and masks.
   */
  predict(input: ImageInput, options?: PredictOptions): Promise<Prediction>;
  predict(inputs: ImageInput[], options?: PredictOptions): Promise<Prediction[]>;
  async predict(input: ImageInput | ImageInput[], options: PredictOptions = {}): Promise<Prediction | Prediction[]> {
    const o = resolve(PREDICT, options, 'predict()');
    if (Array.isArray(input)) {
      return Promise.all(
        input.map((x, i) => {
          const name = typeof x === 'string' ? path.basename(x).replace(/\.[^.]+$/, '') : String(i);
          return this.#predictOne(x, i, o.heatmap ? path.join(o.heatmap, `${name}.png`) : undefined, o);
        }),
      );
    }
    return this.#predictOne(input, 0, o.heatmap, o);
  }

  async #predictOne(input: ImageInput, index: number, heatmap: string | undefined, options: Resolved<typeof PREDICT>): Promise<Prediction> {
    const { image, score, map } = await this.#scoreImage(input, index);
    const { cropSize: crop, imageSize: resize } = this.#config;
    const t = this.#thresholds;
    const full = options.mapSize === 'crop' && !heatmap ? undefined : mapToInput(map, crop, resize, image.height, image.width);
    const anomalyMap = options.mapSize === 'crop' ? map : full!;
    const [width, height] = options.mapSize === 'crop' ? [crop, crop] : [image.width, image.height];
    const normalizedScore = t ? normalizeScore(score, t) : null;
    // anomalib's post-processing: the mask is the normalised map above 0.5
    const post = t ? normalizeMap(anomalyMap, t) : null;
    const mask = post ? Uint8Array.from(post, (v) => (v > 0.5 ? 1 : 0)) : null;
    const result: Prediction = {
      score, normalizedScore, isAnomalous: normalizedScore === null ? null : normalizedScore > 0.5, anomalyMap, width, height, mask,
    };
    if (heatmap) {
      let shown: Float32Array;
      let outline: Uint8Array | null = null;
      if (t) {
        // the heatmap is always at the input's size: reuse the post-processed map when it is that one
        shown = anomalyMap === full ? post! : normalizeMap(full!, t);
        outline = anomalyMap === full ? mask : Uint8Array.from(shown, (v) => (v > 0.5 ? 1 : 0));
      } else {
        let lo = Infinity;
        let hi = -Infinity;
        for (const v of full!) {
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
        }
        shown = Float32Array.from(full!, (v) => (hi > lo ? (v - lo) / (hi - lo) : 0));
      }
      await writeHeatmap(heatmap, { image, map: shown, mask: outline });
      result.heatmap = heatmap;
    }
    return result;
  }

  /** Scores and crop-size maps of a labelled set, with its masks. */
  async #scoreLabelledSet(dir: string) {
    const items = await readLabelledSet(dir);
    const c = this.#config.cropSize;
    const scores = new Float32Array(items.length);
    const maps = new Float32Array(items.length * c * c);
    const chunk = 8;
    for (let k = 0; k < items.length; k += chunk) {
      const part = items.slice(k, k + chunk);
      const results = await Promise.all(part.map((it, j) => this.#scoreImage(it.file, k + j)));
      results.forEach((r, j) => {
        scores[k + j] = r.score;
        maps.set(r.map, (k + j) * c * c);
      });
    }
    return attachMasks({ items, scores, maps, crop: c }, this.#config.imageSize, this.#config.maxImagePixels);
  }

  /**
   * Choose image and pixel thresholds that maximise F1 on a labelled set (MVTec layout:
   * good/ and defect folders, masks in ground_truth/), with anomalib's min-max normalisation
   * statistics. They are kept with the model (and saved by save()).
   */
  async calibrate(dir: string, onWarning?: (m: string) => void): Promise<Thresholds> {
    const warn = onWarning ?? ((m: string) => process.emitWarning(m, { code: 'INP_FORMER' }));
    const set = await this.#scoreLabelledSet(dir);
    this.#thresholds = calibrationFrom(set, warn);
    return { ...this.#thresholds };
  }

  /** Image and pixel metrics on an MVTec AD-layout category, overall and per defect type. */
  async evaluate(dir: string): Promise<EvaluationReport> {
    return evaluationFrom(await this.#scoreLabelledSet(dir));
  }

  /** Every parameter under upstream INP-Former's names, in its state_dict order. */
  async stateDict(): Promise<TensorToSave[]> {
    return this.#track(() => this.#stateDictUnchecked(), 'stateDict');
  }

  async #stateDictUnchecked(): Promise<TensorToSave[]> {
    const list = await this.#native.stateDict();
    if (this.#config.network.mlpBias) return list.map((t) => ({ name: t.name!, data: t.data, shape: t.shape }));
    // anomalib's bias-free MLPs: upstream has a slot for each bias, so write zeros there.
    const out: TensorToSave[] = [];
    for (const t of list) {
      out.push({ name: t.name!, data: t.data, shape: t.shape });
      const m = /^((?:aggregation|decoder)\.\d+\.mlp\.fc[12])\.weight$/.exec(t.name!);
      if (m) out.push({ name: `${m[1]}.bias`, data: new Float32Array(t.shape[0]), shape: [t.shape[0]] });
    }
    return out;
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

  /** `extra`: more entries for the file's inp_former metadata (a checkpoint's training step). */
  async #saveUnchecked(file: string, extra: Record<string, string> = {}): Promise<void> {
    const tensors = await this.#stateDictUnchecked();
    const saved = {
      network: this.#config.network,
      imageSize: this.#config.imageSize,
      cropSize: this.#config.cropSize,
      thresholds: this.#thresholds,
    };
    const made = await ensureDir(path.dirname(path.resolve(file)), (m, cause) => new InvalidArgumentError(`cannot save ${file}: ${m}`, { cause }));
    try {
      await writeTorchFile(file, tensors, {
        inp_former: { format: 'inp-former-checkpoint', version: '1', package_version: packageVersion(), config: JSON.stringify(saved), ...extra },
      });
    } catch (err) {
      await removeMadeDirs(made); // nothing half-made left behind
      throw err;
    }
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

export { InpFormerError };
