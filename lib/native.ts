/**
 * Loads the native addon (prebuilt or built from source) through node-gyp-build, and turns a
 * failure into a NativeLoadError that says which library is missing and how to get it.
 */
import * as path from 'node:path';
import { NativeLoadError } from './errors';

export interface NativeTensor {
  name?: string;
  data: Float32Array;
  shape: number[];
}

export interface NativeRuntime {
  torchVersion: string;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
  availableCores: number;
  bf16MatmulAvailable: boolean;
  parallelInfo: string;
  defaultThreads: number;
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
}

export interface NativeOptimizerState {
  step: number;
  expAvg: NativeTensor[];
  expAvgSq: NativeTensor[];
  maxExpAvgSq: NativeTensor[];
}

export interface NativeModelInstance {
  load(config: object, runtime: object, weights: NativeTensor[] | null, seed: number, encoderOnly: boolean): Promise<void>;
  loadWeights(weights: NativeTensor[]): Promise<void>;
  infer(data: Float32Array, shape: number[], features: boolean): Promise<NativeInferResult>;
  stateDict(): Promise<NativeTensor[]>;
  beginTraining(options: object): Promise<void>;
  trainStep(data: Float32Array, shape: number[]): Promise<NativeStepStats>;
  optimizerState(): Promise<NativeOptimizerState>;
  setOptimizerState(state: NativeOptimizerState): Promise<void>;
  dispose(): void;
}

export interface NativeAddon {
  runtime(): NativeRuntime;
  preprocess(images: { data: Uint8Array; width: number; height: number }[], resize: number, crop: number): Promise<Float32Array>;
  NativeModel: new (threads?: number) => NativeModelInstance;
}

const packageRoot = path.join(__dirname, '..');

/** Advice for a dlopen message: which library is missing and what provides it. */
export function explainLoadFailure(message: string): string {
  const missing = /(lib[\w.+-]+\.so[\w.]*): cannot open shared object file/.exec(message)?.[1];
  const lines: string[] = [];
  if (missing) {
    lines.push(`inp-former: the native addon needs ${missing}, which was not found.`);
    if (/^lib(torch|c10)/.test(missing)) {
      lines.push(
        '  On Debian/Ubuntu: sudo apt-get install libtorch-dev libopenblas0-pthread',
        '  With another libtorch (official zip, CUDA build): rebuild against it with',
        '    LIBTORCH=/path/to/libtorch npm rebuild inp-former --build-from-source',
        '  (the addon records where libtorch was found at build time in its RUNPATH).',
      );
    } else if (/blas|lapack|gomp/.test(missing)) {
      lines.push('  On Debian/Ubuntu: sudo apt-get install libopenblas0-pthread');
    } else {
      lines.push('  Install the package that provides it (on Debian: apt-file search ' + missing + ').');
    }
  } else if (/No native build was found/.test(message)) {
    lines.push(
      'inp-former: no prebuilt binary fits this platform and none was built from source.',
      '  Build it: npm rebuild inp-former --build-from-source (needs cmake, a C++17 compiler and libtorch).',
    );
  } else {
    lines.push('inp-former: the native addon could not be loaded.');
  }
  lines.push(`  Loader message: ${message.split('\n')[0]}`);
  return lines.join('\n');
}

let cached: NativeAddon | undefined;

/**
 * libtorch's OpenMP workers (libgomp) spin for a while after each parallel region. fp32 matrix
 * products run on OpenBLAS's own threads, as many as there are cores, and spinning workers steal
 * those cores: on 2 cores a ViT-S/14 at 392 px ran about 2x slower with 2 spinning intra-op
 * threads than with 1 (`node bench/run.js`, docs/benchmarks.md). libgomp reads this when it is
 * loaded, i.e. with the addon below, so it is set just before, unless the user chose.
 */
function preferPassiveOpenMpWaiting(): void {
  if (process.env.OMP_WAIT_POLICY === undefined && process.env.GOMP_SPINCOUNT === undefined) {
    process.env.OMP_WAIT_POLICY = 'PASSIVE';
  }
}

/** The addon, loaded on first use. Throws NativeLoadError. */
export function native(): NativeAddon {
  if (cached) return cached;
  preferPassiveOpenMpWaiting();
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const load = require('node-gyp-build') as (dir: string) => NativeAddon;
    cached = load(process.env.INP_FORMER_NATIVE_DIR ?? packageRoot);
  } catch (err) {
    throw new NativeLoadError(explainLoadFailure((err as Error).message ?? String(err)), { cause: err });
  }
  return cached;
}
