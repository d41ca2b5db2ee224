/**
 * `inp-former weights download`: Meta's official DINOv2 backbones into a cache folder, with
 * progress, resume of partial downloads (HTTP Range) and an atomic rename at the end.
 * INP_FORMER_WEIGHTS_URL overrides the base URL (tests use a server on 127.0.0.1);
 * INP_FORMER_CACHE the folder (default ~/.cache/inp-former).
 */
import { createWriteStream, existsSync, promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InpFormerError, InvalidArgumentError } from './errors';
import { ensureDir } from './files';

export const DINOV2_WEIGHTS: Record<string, string> = {
  dinov2_vits14: 'dinov2_vits14/dinov2_vits14_pretrain.pth',
  dinov2_vitb14: 'dinov2_vitb14/dinov2_vitb14_pretrain.pth',
  dinov2_vitl14: 'dinov2_vitl14/dinov2_vitl14_pretrain.pth',
  dinov2_vits14_reg: 'dinov2_vits14/dinov2_vits14_reg4_pretrain.pth',
  dinov2_vitb14_reg: 'dinov2_vitb14/dinov2_vitb14_reg4_pretrain.pth',
  dinov2_vitl14_reg: 'dinov2_vitl14/dinov2_vitl14_reg4_pretrain.pth',
};

export function weightsBaseUrl(): string {
  return (process.env.INP_FORMER_WEIGHTS_URL ?? 'https://dl.fbaipublicfiles.com/dinov2').replace(/\/+$/, '');
}

export function cacheDir(): string {
  return process.env.INP_FORMER_CACHE ?? path.join(os.homedir(), '.cache', 'inp-former');
}

export interface DownloadProgress {
  received: number;
  total: number | undefined;
}

/** Download `name` (a key of DINOV2_WEIGHTS) unless present; resolves to the file's path. */
export async function downloadWeights(name: string, options: { dir?: string; onProgress?: (p: DownloadProgress) => void; signal?: AbortSignal } = {}): Promise<string> {
  const rel = DINOV2_WEIGHTS[name];
  if (!rel) throw new InvalidArgumentError(`unknown weights '${name}' (known: ${Object.keys(DINOV2_WEIGHTS).join(', ')})`);
  const dir = options.dir ?? cacheDir();
  await ensureDir(dir, (m, cause) => new InpFormerError(m, 'ERR_INP_DOWNLOAD', { cause }));
  const file = path.join(dir, path.basename(rel));
  if (await fs.stat(file).then(() => true, () => false)) return file;
  const partial = `${file}.partial`;
  const have = await fs.stat(partial).then((s) => s.size, () => 0);
  const url = `${weightsBaseUrl()}/${rel}`;
  let res: Response;
  try {
    res = await fetch(url, { headers: have ? { Range: `bytes=${have}-` } : {}, signal: options.signal });
  } catch (err) {
    throw new InpFormerError(`cannot download ${url}: ${(err as Error).message}`, 'ERR_INP_DOWNLOAD', { cause: err });
  }
  if (res.status === 416 && have) {
    await fs.rename(partial, file); // the partial file is already complete
    return file;
  }
  if (!res.ok || !res.body) throw new InpFormerError(`cannot download ${url}: HTTP ${res.status}`, 'ERR_INP_DOWNLOAD');
  const resumed = res.status === 206;
  const length = Number(res.headers.get('content-length') ?? NaN);
  const total = Number.isFinite(length) ? length + (resumed ? have : 0) : undefined;
  let received = resumed ? have : 0;
  const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream);
  body.on('data', (chunk: Buffer) => {
    received += chunk.length;
    options.onProgress?.({ received, total });
  });
  await pipeline(body, createWriteStream(partial, { flags: resumed ? 'a' : 'w' }));
  if (total !== undefined && received !== total) throw new InpFormerError(`download of ${url} ended early (${received} of ${total} bytes); run again to resume`, 'ERR_INP_DOWNLOAD');
  await fs.rename(partial, file);
  return file;
}

/** anomalib's encoder names -> ours. */
const ANOMALIB_NAMES: Record<string, string> = {
  dinov2_vit_small_14: 'dinov2_vits14',
  dinov2_vit_base_14: 'dinov2_vitb14',
  dinov2_vit_large_14: 'dinov2_vitl14',
  dinov2reg_vit_small_14: 'dinov2_vits14_reg',
  dinov2reg_vit_base_14: 'dinov2_vitb14_reg',
  dinov2reg_vit_large_14: 'dinov2_vitl14_reg',
};

/**
 * An encoder given by name (ours, e.g. 'dinov2_vitb14_reg', or anomalib's, e.g.
 * 'dinov2reg_vit_base_14') -> the cached weights file; undefined when `name` is not a name.
 * Throws when the weights are not downloaded yet, saying how to get them.
 */
export function resolveEncoderName(name: string): string | undefined {
  const key = ANOMALIB_NAMES[name] ?? name;
  const rel = DINOV2_WEIGHTS[key];
  if (!rel) return undefined;
  const file = path.join(cacheDir(), path.basename(rel));
  if (!existsSync(file)) {
    throw new InvalidArgumentError(`encoder '${name}' is not downloaded: run \`npx inp-former weights download ${key}\` (or pass a weights file)`);
  }
  return file;
}
