/** runtime(): what this installation runs on. */
import * as path from 'node:path';
import { readFileSync } from 'node:fs';
import { native } from './native';

export interface RuntimeInfo {
  /** this package's version */
  version: string;
  /** libtorch the addon runs on */
  torchVersion: string;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
  /** intra-op threads a model uses by default: the cores this process may run on */
  threads: number;
  /** whether bf16 matrix kernels are available (oneDNN with avx512_bf16/AMX, or CUDA) */
  bf16: boolean;
  /** libtorch's own description of its parallel back-ends */
  parallelInfo: string;
}

let version: string | undefined;

/** This package's version (read once from its package.json). */
export function packageVersion(): string {
  version ??= (JSON.parse(readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;
  return version;
}

export function runtime(): RuntimeInfo {
  const r = native().runtime();
  return {
    version: packageVersion(),
    torchVersion: r.torchVersion,
    cudaAvailable: r.cudaAvailable,
    cudaDeviceCount: r.cudaDeviceCount,
    threads: r.defaultThreads,
    bf16: r.bf16MatmulAvailable,
    parallelInfo: r.parallelInfo,
  };
}
