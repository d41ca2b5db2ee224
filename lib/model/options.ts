/**
 * The one owner of every user-facing option: its type, range, default and help text.
 * create(), load(), fit(), predict(), inferTensor() and the CLI resolve their options here, and
 * nothing else holds a default or a range. Unknown option names are refused (naming the closest
 * known one), and every refusal has one shape, as sharp's: "expected <what> for <name>, got <value>".
 * Ranges are what the package can honour: beyond them a typo becomes a 100 GB allocation or a
 * run that never ends.
 */
import type { ArchitectureOptions, InterpretedCheckpoint, NetworkConfig } from './architecture';
import { InvalidArgumentError } from '../errors';

/** A value as a message shows it: strings quoted, objects by their class. */
export function show(v: unknown): string {
  if (typeof v === 'string') return `'${v.length > 80 ? v.slice(0, 77) + '...' : v}'`;
  if (v === null || v === undefined || typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (typeof v === 'function') return 'a function';
  if (Array.isArray(v)) return v.length <= 8 ? JSON.stringify(v) ?? 'an array' : `an array of ${v.length}`;
  return `a${/^[AEIOU]/.test((v as object).constructor?.name ?? 'O') ? 'n' : ''} ${(v as object).constructor?.name ?? 'object'}`;
}

/** The one error shape for a bad option. */
export function invalid(name: string, expected: string, got: unknown): InvalidArgumentError {
  return new InvalidArgumentError(`expected ${expected} for ${name}, got ${show(got)}`);
}

type Check<T> = (v: unknown, name: string) => T;

export const integer = (min: number, max: number): Check<number> => (v, name) => {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw invalid(name, `an integer from ${min} to ${max}`, v);
  return v;
};

/** A finite number in [min, max], or in (min, max] with `aboveMin`. */
export const number = (min: number, max: number, aboveMin = false): Check<number> => (v, name) => {
  const low = aboveMin ? (v as number) <= min : (v as number) < min;
  if (typeof v !== 'number' || !Number.isFinite(v) || low || v > max) throw invalid(name, `a number ${aboveMin ? 'above' : 'from'} ${min} ${aboveMin ? 'and at most' : 'to'} ${max}`, v);
  return v;
};

export const boolean: Check<boolean> = (v, name) => {
  if (typeof v !== 'boolean') throw invalid(name, 'true or false', v);
  return v;
};

export const text: Check<string> = (v, name) => {
  if (typeof v !== 'string' || v.length === 0 || v.includes('\0')) throw invalid(name, 'a non-empty string', v);
  return v;
};

export const oneOf = <T extends string>(...values: T[]): Check<T> => (v, name) => {
  if (!values.includes(v as T)) throw invalid(name, `one of ${values.map((x) => `'${x}'`).join(', ')}`, v);
  return v as T;
};

export const matching = (pattern: RegExp, what: string): Check<string> => (v, name) => {
  if (typeof v !== 'string' || !pattern.test(v)) throw invalid(name, what, v);
  return v;
};

export const list = <T>(item: Check<T>, maxLength: number): Check<T[]> => (v, name) => {
  if (!Array.isArray(v) || v.length === 0 || v.length > maxLength) throw invalid(name, `an array of 1 to ${maxLength} items`, v);
  return v.map((x, i) => item(x, `${name}[${i}]`));
};

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- callbacks of any signature
type Callback = (...args: any[]) => void;
export const func: Check<Callback> = (v, name) => {
  if (typeof v !== 'function') throw invalid(name, 'a function', v);
  return v as Callback;
};

export const abortSignal: Check<AbortSignal> = (v, name) => {
  if (!(v instanceof AbortSignal)) throw invalid(name, 'an AbortSignal', v);
  return v;
};

export interface Rule<T> {
  check: Check<T>;
  /** applied when the option is not given; `undefined`: the option stays unset */
  fallback?: T;
  required?: boolean;
  doc: string;
}

/** An option with a default. */
const def = <T>(check: Check<T>, fallback: T, doc: string): Rule<T> => ({ check, fallback, doc });
/** An option that may stay unset. */
const opt = <T>(check: Check<T>, doc: string): Rule<T | undefined> => ({ check: check as Check<T | undefined>, doc });
/** An option that must be given. */
const req = <T>(check: Check<T>, doc: string): Rule<T> => ({ check, doc, required: true });

export type Schema = Record<string, Rule<unknown>>;
export type Resolved<S extends Schema> = { [K in keyof S]: S[K] extends Rule<infer T> ? T : never };

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diag + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1));
      diag = up;
    }
  }
  return row[b.length];
}

/** The known name closest to `name`, when it is close enough to be a typo. */
export function closest(name: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = distance(name, k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return bestD <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

/**
 * Check `given` against `schema` and fill the defaults. `where` names the call in messages
 * ("fit()"); `prefix` names nested options ("checkpoint."); `fallbacks` are values from
 * elsewhere (a checkpoint's record) used before the schema's defaults, and checked as well.
 */
export function resolve<S extends Schema>(schema: S, given: unknown, where: string, prefix = '', fallbacks: Record<string, unknown> = {}): Resolved<S> {
  if (given === undefined) given = {};
  if (given === null || typeof given !== 'object' || Array.isArray(given)) throw invalid(prefix ? prefix.slice(0, -1) : `the options of ${where}`, 'an object', given);
  const known = Object.keys(schema);
  for (const k of Object.keys(given)) {
    if (!(k in schema)) {
      const near = closest(k, known);
      throw new InvalidArgumentError(`unknown option '${prefix}${k}' for ${where}${near ? `: did you mean '${prefix}${near}'?` : ` (known: ${known.join(', ')})`}`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const [k, rule] of Object.entries(schema)) {
    let v = (given as Record<string, unknown>)[k];
    let name = prefix + k;
    if (v === undefined && fallbacks[k] !== undefined) [v, name] = [fallbacks[k], `${name} (recorded in the checkpoint)`];
    if (v === undefined) {
      if (rule.required) throw invalid(name, describe(rule), undefined);
      out[k] = rule.fallback;
    } else {
      out[k] = rule.check(v, name);
    }
  }
  return out as Resolved<S>;
}

/** What a rule expects, from its check's own message. */
function describe(rule: Rule<unknown>): string {
  try {
    rule.check(Symbol('probe'), '');
  } catch (err) {
    const m = /^expected (.*) for /.exec((err as Error).message);
    if (m) return m[1];
  }
  return 'a value';
}

export const SEED = integer(0, 2 ** 32 - 1);
const COUNT_OF_LAYERS = integer(0, 255);
const groups = list(list(COUNT_OF_LAYERS, 64), 64);
export const DEFAULT_FUSE_GROUPS = [[0, 1, 2, 3], [4, 5, 6, 7]];
export const DEFAULT_INP_NUM = 6;
/**
 * Largest image decoded, in pixels (width x height), checked from the header before any pixel
 * memory is allocated: 64 megapixels (e.g. 8000 x 8000) need ~200 MB as RGB while decoding; a
 * 12000 x 12000 PNG of 420 KB asked for 5.9 GB without it.
 */
export const DEFAULT_MAX_IMAGE_PIXELS = 64_000_000;

/** A random DINOv2-shaped encoder for tests and demos: `create({ encoder: { ... } })`. */
export const RANDOM_ENCODER = {
  embedDim: req(integer(1, 4096), 'width of the tokens'),
  depth: req(integer(1, 64), 'transformer blocks'),
  numHeads: req(integer(1, 256), 'attention heads; must divide embedDim'),
  numRegisterTokens: def(integer(0, 64), 0, 'register tokens'),
  patchSize: def(integer(1, 64), 14, 'patch size in pixels'),
  posGridSize: def(integer(1, 512), 37, 'side of the position-embedding grid'),
  mlpHiddenDim: opt(integer(1, 65536), 'MLP width (default 4 x embedDim)'),
  seed: def(SEED, 0, 'seed of the random weights'),
};

/** Most parameters a random encoder may have: DINOv2-g has 1.1e9. */
export const MAX_RANDOM_ENCODER_PARAMETERS = 1.2e9;

/** The network's options beyond the encoder; their defaults depend on the encoder (architecture.ts). */
const ARCHITECTURE = {
  encoderHeads: opt(integer(1, 256), "the encoder's attention heads (cannot be read from weight shapes)"),
  targetLayers: opt(list(COUNT_OF_LAYERS, 64), 'encoder blocks whose tokens are used (default [2..9]; large: [4,6,..,18])'),
  fuseLayerEncoder: opt(groups, 'groups of target layers averaged (default [[0..3],[4..7]])'),
  fuseLayerDecoder: opt(groups, 'groups of decoder blocks averaged (default [[0..3],[4..7]])'),
  removeClassToken: opt(boolean, 'drop the class and register tokens (default true)'),
  inpNum: opt(integer(1, 1024), 'number of INPs (default 6)'),
};

const DEVICE = matching(/^(cpu|auto|cuda(:\d{1,3})?)$/, "'cpu', 'cuda', 'cuda:N' or 'auto'");

/** Runtime and preprocessing options shared by create() and load(). */
export const RUNTIME = {
  device: def(DEVICE, 'cpu', "'cpu', 'cuda', 'cuda:N' or 'auto'"),
  precision: def(
    oneOf('float32', 'bfloat16', 'auto'),
    'float32',
    "'float32' (exact to the reference), 'bfloat16', or 'auto': bfloat16 where its products are fast (CUDA, or a CPU with avx512_bf16 or AMX), float32 elsewhere",
  ),
  threads: opt(integer(1, 1024), "threads of the model's matrix products and ops (default: the cores this process may use that other processes leave free, looked at before each job)"),
  imageSize: def(integer(1, 4096), 448, 'resize to imageSize x imageSize before the crop'),
  cropSize: def(integer(1, 4096), 392, 'centre crop; a multiple of the patch size'),
  predictBatchSize: opt(integer(1, 1024), 'most images one native run of concurrent predict() calls takes (default 8 on CUDA, 1 on the CPU)'),
  maxImagePixels: def(integer(1, 1e10), DEFAULT_MAX_IMAGE_PIXELS, "largest image decoded, in pixels, checked from the file's header"),
};

const encoderChoice: Check<string | Record<string, unknown>> = (v, name) => {
  if (typeof v === 'string') return text(v, name);
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  throw invalid(name, 'a weights file, a weights name or a random-encoder spec { embedDim, depth, numHeads }', v);
};

export const CREATE = {
  ...ARCHITECTURE,
  ...RUNTIME,
  encoder: req(encoderChoice, 'DINOv2 weights (file or name) or a random-encoder spec'),
  seed: def(SEED, 0, "seed of the trainable part's initialisation"),
};

/** One folder or a list of them. */
const folders: Check<string[]> = (v, name) => {
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length === 0 || !list.every((x) => typeof x === 'string' && x.length > 0)) throw invalid(name, 'a folder or a non-empty array of folders', v);
  return list as string[];
};

/** A Folder-style dataset, as anomalib's Folder: named folders instead of the MVTec layout. */
export const FOLDER_DATASET = {
  normalDir: req(text, 'normal images: training, and the normal test split'),
  abnormalDirs: opt(folders, 'abnormal images, a folder per defect type (test only)'),
  maskDirs: opt(folders, "ground-truth masks: one folder for all abnormal folders or one each; a mask is named as its image, or <stem>_mask"),
  normalTestDir: opt(text, 'normal test images; without it normalSplitRatio of normalDir is held out for testing'),
  normalSplitRatio: def(number(0, 1), 0.2, 'share of normalDir held out as normal test images when there is no normalTestDir'),
  seed: def(SEED, 0, 'seed of the normal split'),
  root: opt(text, 'folder that relative folders are resolved against'),
};

/** Several MVTec-layout categories (upstream's multi-class setting). */
export const CATEGORY_SET = {
  root: opt(text, "the dataset's folder"),
  categories: opt(folders, 'category names under root, or category folders (default: every category folder under root)'),
};

type LabelledSetValue = string | Resolved<typeof FOLDER_DATASET> | Resolved<typeof CATEGORY_SET>;

/**
 * Which kind of dataset object `v` is meant to be: the schema its keys fit best (a key of the
 * schema counts 2, a near miss 1), so that a misspelt key is refused with the right suggestion
 * ({ root, normalDirs } is a Folder dataset with a typo, { root, categoriez } a category set);
 * a plain { root } is a category set. Undefined for what is neither (arrays, iterables, ...).
 */
export function datasetKind(v: unknown): 'folder' | 'categories' | undefined {
  if (!v || typeof v !== 'object' || Array.isArray(v) || Symbol.iterator in v || Symbol.asyncIterator in v) return undefined;
  const keys = Object.keys(v);
  const fit = (schema: Schema) => keys.reduce((n, k) => n + (k in schema ? 2 : closest(k, Object.keys(schema)) ? 1 : 0), 0);
  const folder = fit(FOLDER_DATASET);
  const categories = fit(CATEGORY_SET);
  if (folder === 0 && categories === 0) return undefined;
  return folder > categories ? 'folder' : 'categories';
}

/** A labelled set: an MVTec AD category or test folder, a Folder-style dataset, or a category set. */
export const labelledSet: Check<LabelledSetValue> = (v, name) => {
  if (typeof v === 'string') return text(v, name);
  const kind = datasetKind(v);
  if (kind === 'folder') return resolve(FOLDER_DATASET, v, `the Folder dataset of ${name}`);
  if (kind === 'categories') return resolve(CATEGORY_SET, v, `the category set of ${name}`);
  throw invalid(name, 'a folder (MVTec AD layout), a Folder-style dataset { normalDir, abnormalDirs, maskDirs, ... } or a category set { root, categories }', v);
};

export const LOAD = {
  ...ARCHITECTURE,
  ...RUNTIME,
  encoder: opt(text, 'replace the encoder weights with those of another file'),
  signal: opt(abortSignal, 'cancels the load between its stages and between the parts of a large checkpoint (AbortError; nothing is kept)'),
  onProgress: opt(func, "called with { stage: 'read' | 'build' | 'ready', file }"),
};

/**
 * Upstream's recipes (INP_Former_*.py): one schedule for every setting (batch 16, 200 epochs,
 * lr 1e-3 with 100 warm-up steps and a cosine to 1e-4, weight decay 1e-4, clip 0.1); few-shot
 * trains on 4 shots per category, each expanded into 22 views.
 */
const UPSTREAM_SCHEDULE = { epochs: 200, batchSize: 16, learningRate: 1e-3, finalLearningRate: 1e-4, warmupSteps: 100, weightDecay: 1e-4, gradClipNorm: 0.1 };
export const RECIPES: Record<'single-class' | 'multi-class' | 'few-shot', Record<string, unknown>> = {
  'single-class': UPSTREAM_SCHEDULE,
  'multi-class': UPSTREAM_SCHEDULE,
  'few-shot': { ...UPSTREAM_SCHEDULE, fewShot: 4 },
};

export const FIT = {
  epochs: def(integer(1, 1_000_000), 200, 'passes over the data'),
  maxSteps: opt(integer(1, 1e12), 'stop after this many steps (the schedule spans min(epochs x steps per epoch, maxSteps))'),
  batchSize: def(integer(1, 4096), 16, 'images a step'),
  learningRate: def(number(0, 1, true), 1e-3, 'peak learning rate'),
  finalLearningRate: def(number(0, 1), 1e-4, 'learning rate at the end of the cosine'),
  warmupSteps: def(integer(0, 1e12), 100, 'linear warm-up steps'),
  weightDecay: def(number(0, 1), 1e-4, 'StableAdamW weight decay'),
  gradClipNorm: def(number(0, 1e6), 0.1, 'gradient-norm clip'),
  precision: opt(
    oneOf('float32', 'bfloat16', 'auto'),
    "the step's matrix products: 'float32', 'bfloat16' (mixed precision: bfloat16 products, float32 weights, optimizer and everything else) or 'auto' (bfloat16 where its products are fast); default the model's precision",
  ),
  matmul: def(
    oneOf('auto', 'libtorch', 'onednn'),
    'auto',
    "float32 products of the trainable layers on the CPU: 'auto' (the forward's on libtorch's BLAS, the reference's values to the bit, the gradients' on oneDNN), 'libtorch' (forward and backward: the reference's roundings throughout) or 'onednn' (forward and backward, fastest; other last bits in the forward, which a decoder ReLU score near 0 can turn into other gradients)",
  ),
  seed: def(SEED, 0, 'shuffle seed'),
  shuffle: def(boolean, true, 'shuffle the images each epoch'),
  skipBadImages: def(boolean, false, 'skip unreadable images with a warning instead of failing'),
  prefetchBatches: def(integer(1, 64), 2, 'batches prepared ahead of the model'),
  featureCacheMiB: def(
    number(0, 1_048_576),
    1024,
    "MiB of the frozen encoder's outputs kept across epochs for the images of a folder, dataset or image list (not for ready batches), so that later epochs skip the encoder for them: the same results bit for bit, ~20% faster steps; 0 keeps none",
  ),
  checkpoint: opt((v, name) => resolve(CHECKPOINT, v, 'fit()', `${name}.`), 'save model + training state every everyEpochs epochs and at the end'),
  fewShot: opt(integer(1, 100_000), "few-shot: K normal images per category (picked with the seed), each expanded into 22 views, as upstream's few-shot setting"),
  recipe: opt(oneOf('single-class', 'multi-class', 'few-shot'), "upstream's recipe, 'single-class', 'multi-class' or 'few-shot': its values fill the options not given"),
  validation: opt(labelledSet, 'a labelled set (MVTec folder or Folder-style dataset) on which to calibrate thresholds after training'),
  resumeFrom: opt(text, 'continue a run from a checkpoint written by `checkpoint`'),
  signal: opt(abortSignal, 'cancels the fit'),
  onProgress: opt(func, 'called with each progress event'),
  onWarning: opt(func, 'warnings (default: process.emitWarning)'),
};

const CHECKPOINT = {
  path: req(text, 'the checkpoint file'),
  everyEpochs: def(integer(1, 1_000_000), 1, 'epochs between checkpoints'),
};

export const PREDICT = {
  category: opt(text, "use this category's thresholds (a model calibrated on a category set)"),
  mapSize: def(oneOf('input', 'crop'), 'input', "'input': the map at the input image's size; 'crop': at the model's crop"),
  heatmap: opt(text, 'write a heatmap PNG: a file path for one input, a folder for an array'),
  signal: opt(abortSignal, 'cancels the images not yet started (AbortError)'),
};

/** predictEach(): predict()'s options, a bounded window and progress. */
export const PREDICT_EACH = {
  ...PREDICT,
  heatmap: opt(text, "write heatmap PNGs into this folder, mirroring the inputs' folders (a folder or array source)"),
  window: def(integer(1, 256), 4, 'images decoded or scored at once: memory stays flat in the number of images'),
  onProgress: opt(func, 'called with { done, total } (total: null for an iterable)'),
};

/** evaluate() over a labelled set. */
/** Scoring a labelled set (evaluate, calibrate). */
export const LABELLED = {
  signal: opt(abortSignal, 'cancels the scoring between images (AbortError)'),
  onProgress: opt(func, 'called with { done, total } images scored'),
};

export const EVALUATE = {
  ...LABELLED,
  report: opt(text, 'also write a visual report into this folder: panels, ROC and PRO curves, index.html'),
};

/** calibrate() over a labelled set. */
export const CALIBRATE = {
  ...LABELLED,
  onWarning: opt(func, 'warnings, e.g. a set of one class (default: process.emitWarning)'),
};

/** exportOnnx(): the graph's fixed input shape. */
export const EXPORT_ONNX = {
  batch: def(integer(1, 4096), 1, 'images per run of the exported graph (its batch is fixed)'),
  size: opt(integer(1, 8192), "the square input's side, a multiple of the patch size (default: the model's crop)"),
};

export const INFER = {
  features: def(boolean, false, 'also return encoder/decoder group features, prototypes and the INP loss'),
};

// The queue (inp-former/queue): producers' jobs and the worker. Job options must survive JSON
// through Redis, so they hold no functions or signals; the worker owns checkpointing and resume.

/** A model's file name under the workers' models folder: relative, inside it, no hidden parts. */
const modelName = matching(/^(?!\/)(?!.*(^|\/)\.)[^\0\\]{1,255}$/, "a file name relative to the models folder (no leading '/', no '..' or hidden parts)");

const redisChoice: Check<string | Record<string, unknown>> = (v, name) => {
  if (typeof v === 'string' && /^rediss?:\/\/[^\s]+$/.test(v)) return v;
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  throw invalid(name, "a Redis URL ('redis://host:port/db') or ioredis options { host, port, ... }", v);
};

/** Where the queue lives: shared by producers and workers. */
export const QUEUE = {
  redis: req(redisChoice, "Redis URL ('redis://[user:password@]host:port[/db]', rediss:// for TLS) or ioredis options"),
  name: def(matching(/^[A-Za-z0-9_.-]{1,100}$/, 'letters, digits, _ . - (1 to 100)'), 'inp-former', 'the queue name'),
  prefix: def(matching(/^[A-Za-z0-9_.:-]{1,100}$/, 'letters, digits, _ . : - (1 to 100)'), 'bull', "BullMQ's key prefix in Redis"),
};

export const WORKER = {
  ...QUEUE,
  models: req(text, 'the folder of models and fit checkpoints, shared by all workers'),
  concurrency: def(integer(1, 64), 1, 'jobs this worker runs at once'),
  cacheSize: def(integer(1, 1024), 4, 'models kept loaded for predict and evaluate jobs'),
  threads: opt(integer(1, 1024), "intra-op threads of each model (default: the model's own default)"),
  device: opt(DEVICE, "device of the models this worker loads or creates (default: the job's, else 'cpu')"),
  lockDurationMs: def(integer(1000, 86_400_000), 30_000, "a job's lock: a dead worker's job is handed on after about this long"),
  stalledIntervalMs: def(integer(500, 86_400_000), 30_000, 'how often this worker looks for jobs of dead workers'),
  maxStalledCount: def(integer(0, 1000), 1, 'times a job may lose its worker before it fails'),
  onEvent: opt(func, "called with each job's start, progress and end (logging)"),
};

/** Per-job options of every enqueue call. */
const JOB = {
  id: opt(matching(/^(?!\d+$)[A-Za-z0-9_.-]{1,200}$/, 'letters, digits, _ . - (not all digits)'), 'job id; a second job with an id already queued is not added'),
  priority: opt(integer(1, 2_097_152), '1 is the highest; unset: before all prioritised jobs'),
  attempts: def(integer(1, 100), 1, 'tries of a job that fails with an error that is not an input error'),
};

/** fit()'s options that a queued fit takes: the worker owns checkpointing, resume and callbacks. */
const WORKER_OWNED_FIT = ['checkpoint', 'resumeFrom', 'signal', 'onProgress', 'onWarning'];
const FIT_OF_JOB = Object.fromEntries(Object.entries(FIT).filter(([k]) => !WORKER_OWNED_FIT.includes(k))) as Omit<typeof FIT, 'checkpoint' | 'resumeFrom' | 'signal' | 'onProgress' | 'onWarning'>;

/** Check a nested object against a schema; the object itself (not its resolved form) is kept. */
const checkedBy = (schema: Schema, where: string): Check<Record<string, unknown>> => (v, name) => {
  resolve(schema, v, where, `${name}.`);
  return v as Record<string, unknown>;
};

export const FIT_JOB = {
  ...JOB,
  model: req(modelName, "the model file to write, relative to the workers' models folder"),
  data: req(labelledSet, 'the normal images as the workers see them: a folder, an MVTec category or a Folder dataset'),
  create: req(checkedBy(CREATE, 'InpFormer.create()'), 'the options of InpFormer.create() (encoder, sizes, seed, ...)'),
  fit: opt(checkedBy(FIT_OF_JOB, 'fit()'), 'the options of fit() (epochs, batchSize, validation, ...)'),
  checkpointEveryEpochs: def(integer(1, 1_000_000), 1, 'epochs between checkpoints, from which another worker resumes'),
};

const encodedOrPath: Check<string | Uint8Array> = (v, name) => (v instanceof Uint8Array && v.length > 0 ? v : text(v, name));

export const PREDICT_JOB = {
  ...JOB,
  model: req(modelName, "the model file, relative to the workers' models folder"),
  inputs: req(list(encodedOrPath, 100_000), 'image paths as the workers see them, or encoded images (Buffer, Uint8Array)'),
  mapSize: def(oneOf('input', 'crop'), 'input', "'input': maps at the input image's size; 'crop': at the model's crop"),
  maps: def(boolean, false, 'return anomaly maps and masks, not only scores'),
};

export const EVALUATE_JOB = {
  ...JOB,
  model: req(modelName, "the model file, relative to the workers' models folder"),
  data: req(labelledSet, 'a labelled set as the workers see it: an MVTec-layout category or a Folder dataset'),
};

/** What every enqueue call takes beside its job. */
export const ENQUEUE = {
  signal: opt(abortSignal, 'cancels the job (queued or running)'),
  onProgress: opt(func, "called with the job's progress events"),
};

/** What the runtime reports that per-device defaults depend on (native().runtime()). */
export interface DeviceFacts {
  cudaAvailable: boolean;
  cpuBf16Products: boolean;
}

function onCuda(device: string, rt: DeviceFacts): boolean {
  return device.startsWith('cuda') || (device === 'auto' && rt.cudaAvailable);
}

/**
 * What precision 'auto' means on a device: bfloat16 where its products are fast (CUDA, whose
 * GPUs since Ampere have bfloat16 tensor cores; a CPU with avx512_bf16 or AMX, through oneDNN),
 * float32 elsewhere (there bfloat16 would be emulated, and slower than float32).
 */
export function autoPrecision(device: string, rt: DeviceFacts): Precision {
  return onCuda(device, rt) || rt.cpuBf16Products ? 'bfloat16' : 'float32';
}

/**
 * A model's configuration from its network and resolved runtime options: the per-device
 * defaults are decided here, from what the runtime reports (`rt`).
 */
export function modelConfig(
  network: NetworkConfig, o: Resolved<typeof RUNTIME>, rt: DeviceFacts & { defaultThreads: number }, source: ModelConfig['source'],
): ModelConfig {
  const { imageSize, cropSize, device, maxImagePixels } = o;
  const precision = o.precision === 'auto' ? autoPrecision(device, rt) : o.precision;
  if (cropSize > imageSize) throw invalid('cropSize', `at most imageSize ${imageSize}`, cropSize);
  if (cropSize % network.encoder.patchSize !== 0) throw invalid('cropSize', `a multiple of the patch size ${network.encoder.patchSize}`, cropSize);
  const threads = o.threads ?? rt.defaultThreads;
  // batching pays on a GPU; on the CPU it was measured slower per image (docs/benchmarks.md)
  const predictBatchSize = o.predictBatchSize ?? (onCuda(device, rt) ? 8 : 1);
  return { network, imageSize, cropSize, precision, device, threads, adaptiveThreads: o.threads === undefined, predictBatchSize, maxImagePixels, source };
}

// The public option types, documented for editors; their rules are above.

export type Precision = 'float32' | 'bfloat16';
/** Where a model runs: 'cpu', the current CUDA device, CUDA device N, or CUDA when available. */
export type Device = 'cpu' | 'cuda' | `cuda:${number}` | 'auto';

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
  device?: Device;
  /**
   * 'float32' (default: exact to the reference), 'bfloat16' (inference in bfloat16; fit trains
   * float32 master weights with bfloat16 products), or 'auto': bfloat16 where its products are
   * fast (CUDA, or a CPU with avx512_bf16 or AMX), float32 elsewhere. `config.precision` says
   * what was chosen.
   */
  precision?: Precision | 'auto';
  /**
   * Threads of the model's matrix products and ops, fixed. Default: before each job, the cores
   * this process may use less those other processes keep busy (a busy neighbour on one of 2
   * cores made a 2-thread job up to 20x slower than a 1-thread one: docs/benchmarks.md).
   */
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
  /** cancels the load between its stages and between the ~64 MiB parts a large checkpoint is read in: the call rejects with AbortError and keeps nothing */
  signal?: AbortSignal;
  /** called as the load reaches each stage; what it throws becomes a warning */
  onProgress?: (event: LoadProgress) => void;
};

/** A stage of InpFormer.load(): reading the file, building the network on its thread, done. */
export interface LoadProgress {
  stage: 'read' | 'build' | 'ready';
  file: string;
}

export interface ModelConfig {
  network: NetworkConfig;
  imageSize: number;
  cropSize: number;
  precision: Precision;
  device: string;
  /** the most threads a job uses: the `threads` option, or the cores this process may use */
  threads: number;
  /** true when `threads` was not given: each job uses the cores other processes leave free, at most `threads` */
  adaptiveThreads: boolean;
  predictBatchSize: number;
  maxImagePixels: number;
  /** where the weights came from */
  source: { kind: InterpretedCheckpoint['kind'] | 'new'; path?: string; encoder: string };
}
