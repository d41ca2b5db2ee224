/** runtime(): what this installation runs on — the binary, libtorch, BLAS, CPU and threads. */
import * as path from 'node:path';
import { readFileSync } from 'node:fs';
import { native, nativeBinary } from './native';

export interface CpuInfo {
  model: string;
  /** the instruction-set extensions that decide speed and summation orders here */
  features: { avx2: boolean; avx512f: boolean; avx512_bf16: boolean; amx_bf16: boolean; amx_tile: boolean };
}

export interface RuntimeInfo {
  /** this package's version */
  version: string;
  /** the native binary that was loaded: a source build, a prebuild matched to libtorch, or an override */
  binary: { file: string; kind: 'source' | 'prebuild' | 'override' };
  /** libtorch version the addon was compiled against */
  torchVersion: string;
  /** libtorch as loaded: its folder (from the process's mappings) and how it was found */
  libtorch: { version: string; path: string | null; foundThrough: 'LIBTORCH' | 'system' | 'python' | null };
  /** the BLAS that serves float32 matrix products, and OpenBLAS's kernel choice for this CPU */
  blas: { library: string | null; openblasCore: string | null; openblasConfig: string | null };
  /**
   * what runs float32 CPU matrix products outside training's recorded layers: oneDNN's sgemm
   * (e.g. 'oneDNN 2.6.3') where libtorch brings it, else 'libtorch' (its BLAS); INP_FORMER_CPU_GEMM=libtorch forces the latter
   */
  cpuGemm: string;
  /**
   * whether float32 CPU models keep their linear weights in oneDNN's packed layout once they have
   * inferred (packed once instead of on every product; rebuilt exactly for save, export and
   * training). INP_FORMER_CPU_GEMM=sgemm turns it off
   */
  cpuPackedWeights: boolean;
  /**
   * freed CPU tensor blocks of 1 MiB or more kept for the next call (no page faults, no zeroing):
   * whether the cache is on (INP_FORMER_TENSOR_CACHE=0 turns it off) and the bytes it holds now
   */
  tensorCache: { enabled: boolean; cachedBytes: number };
  cpu: CpuInfo;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
  /** intra-op threads a model uses by default: the cores this process may run on */
  threads: number;
  /** whether bf16 matrix kernels are available (oneDNN with avx512_bf16/AMX, or CUDA) */
  bf16: boolean;
  /** whether this CPU's bfloat16 products are fast (avx512_bf16 or AMX, through oneDNN): what precision 'auto' asks on the CPU */
  cpuBf16: boolean;
  /** libtorch's own description of its parallel back-ends */
  parallelInfo: string;
}

let version: string | undefined;

/** This package's version (read once from its package.json). */
export function packageVersion(): string {
  version ??= (JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;
  return version;
}

/** CPU model and feature flags from /proc/cpuinfo (Linux); all false where it cannot be read. */
export function cpuInfo(): CpuInfo {
  let text = '';
  try {
    text = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {}
  const flags = new Set((/^flags\s*:\s*(.*)$/m.exec(text)?.[1] ?? '').split(/\s+/));
  return {
    model: /^model name\s*:\s*(.*)$/m.exec(text)?.[1]?.trim() ?? 'unknown',
    features: {
      avx2: flags.has('avx2'),
      avx512f: flags.has('avx512f'),
      avx512_bf16: flags.has('avx512_bf16'),
      amx_bf16: flags.has('amx_bf16'),
      amx_tile: flags.has('amx_tile'),
    },
  };
}

/** The shared libraries mapped into this process (Linux; empty elsewhere). */
function mappedLibraries(): string[] {
  try {
    return readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('/')).map((l) => l.slice(l.indexOf('/')));
  } catch {
    return [];
  }
}

export function runtime(): RuntimeInfo {
  const r = native().runtime();
  const binary = nativeBinary()!;
  const mapped = mappedLibraries();
  const mappedAs = (pattern: RegExp) => mapped.find((f) => pattern.test(path.basename(f))) ?? null;
  const torchCpu = mappedAs(/^libtorch_cpu\.so/);
  return {
    version: packageVersion(),
    binary: { file: binary.file, kind: binary.kind },
    torchVersion: r.torchVersion,
    libtorch: { version: r.torchVersion, path: torchCpu && path.dirname(torchCpu), foundThrough: binary.libtorch?.source ?? null },
    blas: {
      library: mappedAs(/^lib(open)?blas(64)?(_pthread|_openmp|p)?\.so|^libmkl_rt|^libblis/),
      openblasCore: r.openblasCore || null,
      openblasConfig: r.openblasConfig || null,
    },
    cpuGemm: r.cpuGemm,
    cpuPackedWeights: r.cpuPackedWeights,
    tensorCache: { enabled: r.tensorCache, cachedBytes: r.cachedTensorBytes },
    cpu: cpuInfo(),
    cudaAvailable: r.cudaAvailable,
    cudaDeviceCount: r.cudaDeviceCount,
    threads: r.defaultThreads,
    bf16: r.bf16MatmulAvailable,
    cpuBf16: r.cpuBf16Products,
    parallelInfo: r.parallelInfo,
  };
}
