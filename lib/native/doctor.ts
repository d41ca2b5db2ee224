/**
 * doctor(): checks this installation without throwing — which libtorch was found and loaded,
 * which binary, the BLAS in use, the CPU features that matter, threads, CUDA — and says what to
 * install when something is missing or slow. `inp-former doctor` prints it.
 */
import { advice, locateLibtorch } from './native';
import { cpuInfo, packageVersion, runtime, type CpuInfo, type RuntimeInfo } from './runtime';

export interface DoctorReport {
  /** false when the addon cannot load; slow set-ups still count as ok, with advice */
  ok: boolean;
  version: string;
  node: string;
  platform: string;
  /** what the libtorch locator finds (LIBTORCH, the system's, Python's), or why it found none */
  libtorchFound: { source?: string; root?: string; libDir?: string; version?: string | null; error?: string; tried: string[] };
  /** present when the addon loaded */
  runtime?: RuntimeInfo;
  cpu: CpuInfo;
  /** why the addon did not load, in full */
  loadError?: string;
  /** what to do, one line each */
  advice: string[];
}

export function doctor(): DoctorReport {
  const found = locateLibtorch();
  const report: DoctorReport = {
    ok: false,
    version: packageVersion(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    libtorchFound: found.error !== undefined ? { error: found.error, tried: found.tried } : {
      source: found.source, root: found.root, libDir: found.libDir, version: found.version, tried: found.tried,
    },
    cpu: cpuInfo(),
    advice: [],
  };
  try {
    report.runtime = runtime();
    report.ok = true;
  } catch (err) {
    report.loadError = (err as Error).message;
    if (found.error !== undefined) report.advice.push(...advice.installAdvice().split('\n').map((l) => l.trim()));
    return report;
  }
  const r = report.runtime;
  const blas = r.blas.library ?? '';
  if (!blas) {
    report.advice.push('No BLAS library is mapped: float32 products may run on a slow fallback.');
  } else if (!/openblas|mkl|blis/i.test(blas)) {
    report.advice.push(`BLAS is ${blas}, the reference implementation (~35x slower): sudo apt-get install libopenblas0-pthread`);
  }
  const f = report.cpu.features;
  if (!f.avx512_bf16 && !f.amx_bf16 && !r.cudaAvailable) {
    report.advice.push("This CPU has neither avx512_bf16 nor AMX: precision 'bfloat16' runs slower than 'float32' here.");
  }
  if (r.binary.kind === 'prebuild' && r.libtorch.path && report.libtorchFound.libDir && r.libtorch.path !== report.libtorchFound.libDir) {
    report.advice.push(`The prebuild loaded libtorch from ${r.libtorch.path}, not the one found in ${report.libtorchFound.libDir}: ${advice.buildFromSourceCommand(report.libtorchFound.root ?? '/path/to/libtorch')}`);
  }
  return report;
}

/** The report as lines of text for a terminal. */
export function formatDoctorReport(d: DoctorReport): string {
  const yes = (b: boolean) => (b ? 'yes' : 'no');
  const lines = [`inp-former ${d.version} on Node ${d.node} (${d.platform})`];
  const lf = d.libtorchFound;
  lines.push(lf.error ? `libtorch found:   none (${lf.error}; looked at: ${lf.tried.join('; ')})` : `libtorch found:   ${lf.version} in ${lf.libDir} (through ${lf.source})`);
  if (d.runtime) {
    const r = d.runtime;
    lines.push(
      `binary:           ${r.binary.file} (${r.binary.kind})`,
      `libtorch loaded:  ${r.libtorch.version} from ${r.libtorch.path ?? '?'}`,
      `BLAS:             ${r.blas.library ?? 'none mapped'}${r.blas.openblasCore ? ` (OpenBLAS ${r.blas.openblasCore} kernels)` : ''}`,
      `CPU products:     ${r.cpuGemm}${r.cpuPackedWeights ? ', packed weights' : ''} (float32, inference and the frozen encoder)`,
      `threads:          ${r.threads} by default (cores this process may use)`,
      `CUDA:             ${r.cudaAvailable ? `${r.cudaDeviceCount} device(s)` : 'not available'}`,
      `bf16 matmul:      ${yes(r.bf16)}`,
    );
  } else {
    lines.push(`binary:           not loaded`, '', d.loadError ?? '');
  }
  const f = d.cpu.features;
  lines.push(`CPU:              ${d.cpu.model}; avx2 ${yes(f.avx2)}, avx512f ${yes(f.avx512f)}, avx512_bf16 ${yes(f.avx512_bf16)}, amx ${yes(f.amx_tile && f.amx_bf16)}`);
  lines.push(d.advice.length ? `\nTo do:\n${d.advice.map((a) => `  - ${a}`).join('\n')}` : d.ok ? '\nAll set.' : '');
  return lines.join('\n');
}
