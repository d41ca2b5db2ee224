/**
 * Loads the native addon (prebuilt or built from source) through node-gyp-build, and turns a
 * failure into a NativeLoadError that says which library is missing and how to get it.
 */
import * as path from 'node:path';
import { existsSync } from 'node:fs';
import type { NetworkConfig } from '../model/architecture';
import { NativeLoadError } from '../errors';

export interface NativeTensor {
  name?: string;
  data: Float32Array;
  shape: number[];
}

/** A weight of a load; one without data is named (and its shape checked) now and comes later, through loadWeights(part, true). */
export interface NativeWeight {
  name: string;
  data?: Float32Array;
  shape: number[];
}

export interface NativeRuntime {
  torchVersion: string;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
  availableCores: number;
  bf16MatmulAvailable: boolean;
  cpuBf16Products: boolean;
  parallelInfo: string;
  defaultThreads: number;
  openblasCore: string;
  openblasConfig: string;
  cpuGemm: string;
  cpuPackedWeights: boolean;
  tensorCache: boolean;
  cachedTensorBytes: number;
}

export interface NativeInferResult {
  scores: Float32Array;
  anomalyMaps: Float32Array;
  mapShape: number[];
  encoderFeatures?: NativeTensor[];
  decoderFeatures?: NativeTensor[];
  prototypes?: NativeTensor;
  inpLoss?: number;
  anomalyMapsRaw?: Float32Array;
}

export interface NativeStepStats {
  step: number;
  lr: number;
  loss: number;
  lossCos: number;
  inpLoss: number;
  gradNorm: number;
  reluMargin: number;
  /** images the encoder ran on (the others came from the feature cache) */
  encodedImages: number;
  /** the feature cache after the step */
  cachedImages: number;
  cachedBytes: number;
}

export interface NativeOptimizerState {
  step: number;
  expAvg: NativeTensor[];
  expAvgSq: NativeTensor[];
  maxExpAvgSq: NativeTensor[];
}

/** What crosses into cpp/core/config.h's RuntimeOptions: every key required. */
export interface NativeRuntimeOptions {
  device: string;
  precision: 'float32' | 'bfloat16';
  /** intra-op threads of the model's native thread */
  threads: number;
}

/** What crosses into cpp/core/trainer.h's TrainOptions: every key required. */
export interface NativeTrainingOptions {
  totalSteps: number;
  warmupSteps: number;
  learningRate: number;
  finalLearningRate: number;
  weightDecay: number;
  gradClipNorm: number;
  /** where the trainable layers' float32 CPU products run: fit's matmul */
  matmul: 'auto' | 'libtorch' | 'onednn';
  bfloat16Products: boolean;
  /** bytes of encoder outputs kept across epochs for images trainStep names by key; 0 keeps none */
  featureCacheBytes: number;
}

export interface NativeModelInstance {
  /**
   * `config` mirrors cpp/core/config.h's InpFormerConfig, every key required. load and
   * loadWeights read the weights' memory on the model's thread, after returning (no copy on the
   * JS thread): call them through `whileBorrowed`, which keeps the arrays alive until they settle.
   */
  load(config: NetworkConfig, runtime: NativeRuntimeOptions, weights: NativeWeight[] | null, seed: number, encoderOnly: boolean): Promise<void>;
  /** part: the rest of a load whose names and shapes load() has checked; otherwise a strict load of the whole network */
  loadWeights(weights: NativeTensor[], part?: boolean): Promise<void>;
  infer(data: Float32Array, shape: number[], features: boolean): Promise<NativeInferResult>;
  stateDict(): Promise<NativeTensor[]>;
  beginTraining(options: NativeTrainingOptions): Promise<void>;
  /** keys: one per image, the same for the same pre-processed pixels throughout the run (the feature cache's) */
  trainStep(data: Float32Array, shape: number[], keys?: number[]): Promise<NativeStepStats>;
  /** frees the optimizer's moments and the gradients */
  endTraining(): Promise<void>;
  optimizerState(): Promise<NativeOptimizerState>;
  setOptimizerState(state: NativeOptimizerState): Promise<void>;
  dispose(): void;
}

/** Arrays native calls are reading (Memory::kBorrow in cpp/napi/convert.h): referenced here until those calls settle. */
const borrowed = new Set<unknown>();

/** Run `call`, which borrows `arrays`' memory, keeping them alive (and so their memory valid) until it settles. */
export async function whileBorrowed<T>(arrays: unknown, call: () => Promise<T>): Promise<T> {
  borrowed.add(arrays);
  try {
    return await call();
  } finally {
    borrowed.delete(arrays);
  }
}

export interface NativeAddon {
  runtime(): NativeRuntime;
  preprocess(images: { data: Uint8Array; width: number; height: number }[], resize: number, crop: number): Promise<Float32Array>;
  /** [N, 3, H, W] pre-processed images -> their 22 few-shot views each, [22 N, 3, H, W] (cpp/core/augment.h) */
  fewShotViews(data: Float32Array, shape: number[]): Promise<Float32Array>;
  NativeModel: new (threads?: number) => NativeModelInstance;
  /**
   * Detaches each ArrayBuffer: its memory is freed now, not at a later garbage collection, and
   * every view of it reads as empty. Only for buffers nothing else will read: never Node's
   * shared Buffer pool (small Buffers are slices of it).
   */
  detachArrayBuffers(buffers: ArrayBufferLike[]): void;
}

const packageRoot = path.join(__dirname, '..', '..');

/** scripts/libtorch.js: the one libtorch locator, shared with the build (plain JS, no build step). */
export interface LibtorchLocation {
  source: 'LIBTORCH' | 'system' | 'python';
  root: string;
  libDir: string;
  version: string | null;
  soVersion: string | null;
  cuda: boolean;
  python?: string;
  tried: string[];
  error?: undefined;
}
interface LibtorchScripts {
  findLibtorch(options?: { python?: boolean }): LibtorchLocation | { error: string; tried: string[] };
  selectPrebuild(root: string, t: unknown): { file: string | null; available: string[] };
}
interface AdviceScripts {
  installAdvice(): string;
  notFoundMessage(t: { error: string; tried: string[] }): string;
  buildFromSourceCommand(libtorchDir: string): string;
}
// eslint-disable-next-line @typescript-eslint/no-var-requires
const libtorchScripts = require(path.join(packageRoot, 'scripts', 'libtorch.js')) as LibtorchScripts;
// eslint-disable-next-line @typescript-eslint/no-var-requires
export const advice = require(path.join(packageRoot, 'scripts', 'advice.js')) as AdviceScripts;

let located: ReturnType<LibtorchScripts['findLibtorch']> | undefined;

/**
 * The libtorch this process would use, looked up once (the Python step spawns python3): the
 * loader and doctor() ask the same question.
 */
export function locateLibtorch(): ReturnType<LibtorchScripts['findLibtorch']> {
  located ??= libtorchScripts.findLibtorch();
  return located;
}

/** Advice for a dlopen message: which library is missing and what provides it. */
export function explainLoadFailure(message: string): string {
  const missing = /(lib[\w.+-]+\.so[\w.]*): cannot open shared object file/.exec(message)?.[1];
  const lines: string[] = [];
  if (missing) {
    lines.push(`inp-former: the native addon needs ${missing}, which was not found.`);
    if (/^lib(torch|c10)/.test(missing)) {
      lines.push(advice.installAdvice(), '  (the addon records where libtorch was found at build time in its RUNPATH).');
    } else if (/blas|lapack|gomp/.test(missing)) {
      lines.push('  On Debian/Ubuntu: sudo apt-get install libopenblas0-pthread');
    } else {
      lines.push('  Install the package that provides it (on Debian: apt-file search ' + missing + ').');
    }
  } else {
    lines.push('inp-former: the native addon could not be loaded.');
  }
  lines.push(`  Loader message: ${message.split('\n')[0]}`);
  return lines.join('\n');
}

/** Which binary was loaded, and why that one. */
export interface LoadedBinary {
  /** absolute path of the .node file */
  file: string;
  /** 'source' (build/Release, built here), 'prebuild' (shipped, matched to the libtorch found), 'override' (INP_FORMER_NATIVE_DIR) */
  kind: 'source' | 'prebuild' | 'override';
  /** the libtorch the locator found (LIBTORCH, the system's, Python's); null for source builds and overrides */
  libtorch: LibtorchLocation | null;
}

/**
 * The binary to load: INP_FORMER_NATIVE_DIR (tests, experiments), then a source build
 * (build/Release), then the prebuild made for the libtorch that scripts/libtorch.js finds.
 * Throws NativeLoadError with the exact build command when nothing fits.
 */
export function chooseBinary(): LoadedBinary {
  const override = process.env.INP_FORMER_NATIVE_DIR;
  if (override) {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return { file: (require('node-gyp-build') as { path(dir: string): string }).path(override), kind: 'override', libtorch: null };
  }
  const built = path.join(packageRoot, 'build', 'Release', 'inp_former.node');
  if (existsSync(built)) return { file: built, kind: 'source', libtorch: null };
  const t = locateLibtorch();
  if (t.error !== undefined) throw new NativeLoadError(advice.notFoundMessage(t));
  const pick = libtorchScripts.selectPrebuild(packageRoot, t);
  if (pick.file) return { file: pick.file, kind: 'prebuild', libtorch: t };
  const has = pick.available.length ? `prebuilt for libtorch ${pick.available.join(', ')} (Debian's packages)` : 'no prebuilt binaries in this package';
  throw new NativeLoadError(
    [
      `inp-former: no prebuilt binary fits libtorch ${t.version ?? '?'} at ${t.libDir} (found through ${t.source}; ${has}).`,
      '  Build one against it (needs g++ and cmake or node-gyp):',
      `    ${advice.buildFromSourceCommand(t.root)}`,
    ].join('\n'),
  );
}

let cached: NativeAddon | undefined;
let loadedBinary: LoadedBinary | undefined;

/** The binary native() loaded (undefined before the first native call). */
export function nativeBinary(): LoadedBinary | undefined {
  return loadedBinary;
}

/** The addon, loaded on first use. Throws NativeLoadError. */
export function native(): NativeAddon {
  if (cached) return cached;
  const binary = chooseBinary();
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    cached = require(binary.file) as NativeAddon;
  } catch (err) {
    throw new NativeLoadError(explainLoadFailure((err as Error).message ?? String(err)), { cause: err });
  }
  loadedBinary = binary;
  return cached;
}
