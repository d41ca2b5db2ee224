/**
 * Opens a checkpoint file of any supported kind without executing anything:
 * - torch.save zip archives (.pth, .pt, .ckpt: `<stem>/data.pkl` + `<stem>/data/<key>`),
 * - TorchScript archives (the same layout; module attributes become nested PyObjects),
 * - safetensors (.safetensors: a JSON header and raw little-endian data).
 * Tensors come back as HostTensors in place of the pickle's tensor references.
 */
import { promises as fs } from 'node:fs';
import { CheckpointError } from '../errors';
import { DICT_STATE, DTYPE_BYTES, DType, PickleError, PyObject, TensorRef, unpickle } from './pickle';
import { HostTensor } from './tensor';
import { isZipMagic, readZip } from './zip';

export type CheckpointFormat = 'torch' | 'torchscript' | 'safetensors';

export interface CheckpointFile {
  path: string;
  format: CheckpointFormat;
  /** The unpickled root object (Maps for dicts, arrays, PyObjects, HostTensors). */
  root: unknown;
}

const SAFETENSORS_DTYPES: Record<string, DType> = {
  F32: 'float32', F64: 'float64', F16: 'float16', BF16: 'bfloat16', I64: 'int64', I32: 'int32', I16: 'int16',
  I8: 'int8', U8: 'uint8', BOOL: 'bool',
};

async function readSafetensors(path: string, buf: Buffer): Promise<CheckpointFile> {
  if (buf.length < 8) throw new CheckpointError('file too short for safetensors', path);
  const headerLen = Number(buf.readBigUInt64LE(0));
  if (headerLen <= 0 || 8 + headerLen > buf.length) throw new CheckpointError('truncated safetensors header', path);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(buf.toString('utf8', 8, 8 + headerLen));
  } catch {
    throw new CheckpointError('invalid safetensors header (not JSON)', path);
  }
  const data = buf.subarray(8 + headerLen);
  const root = new Map<string, unknown>();
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const dtype = SAFETENSORS_DTYPES[info.dtype];
    if (!dtype) throw new CheckpointError(`tensor '${name}' has unsupported dtype ${info.dtype}`, path);
    const [begin, end] = info.data_offsets;
    const numel = info.shape.reduce((a, b) => a * b, 1);
    if (end > data.length || end - begin !== numel * DTYPE_BYTES[dtype])
      throw new CheckpointError(`tensor '${name}' lies outside the file (truncated?)`, path);
    const storage = Buffer.from(data.subarray(begin, end)); // own, aligned copy
    root.set(name, new HostTensor(dtype, info.shape, HostTensor.contiguousStrides(info.shape), 0, storage));
  }
  return { path, format: 'safetensors', root };
}

/** Replace TensorRefs by HostTensors everywhere in the tree (shared references stay shared). */
function resolveTensors(root: unknown, storageOf: (ref: TensorRef) => Buffer): unknown {
  const done = new Map<unknown, unknown>();
  const visit = (v: unknown): unknown => {
    if (v === null || typeof v !== 'object') return v;
    if (done.has(v)) return done.get(v);
    if (v instanceof TensorRef) {
      const t = new HostTensor(v.dtype, v.shape, v.stride, v.storageOffset, storageOf(v));
      done.set(v, t);
      return t;
    }
    done.set(v, v);
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) v[i] = visit(v[i]);
    } else if (v instanceof Map) {
      for (const [k, x] of v) v.set(k, visit(x));
      const st = (v as unknown as Record<symbol, unknown>)[DICT_STATE];
      if (st !== undefined) (v as unknown as Record<symbol, unknown>)[DICT_STATE] = visit(st);
    } else if (v instanceof PyObject) {
      for (let i = 0; i < v.args.length; i++) v.args[i] = visit(v.args[i]);
      v.state = visit(v.state);
      for (let i = 0; i < v.listItems.length; i++) v.listItems[i] = visit(v.listItems[i]);
      for (const [k, x] of v.dictItems) v.dictItems.set(k, visit(x));
    }
    return v;
  };
  return visit(root);
}

export async function readCheckpointFile(path: string): Promise<CheckpointFile> {
  let head: Buffer;
  try {
    const fh = await fs.open(path, 'r');
    try {
      head = Buffer.alloc(16);
      await fh.read(head, 0, 16, 0);
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw new CheckpointError(`cannot open: ${(err as Error).message}`, path, { cause: err });
  }
  if (!isZipMagic(head)) {
    if (head[0] === 0x80 && head[1] <= 5) {
      throw new CheckpointError(
        'this is the legacy (pre-1.6) torch.save format, which is not supported; re-save it with a current torch: torch.save(torch.load(f), f2)',
        path,
      );
    }
    const buf = await fs.readFile(path);
    if (buf.length > 9 && buf[8] === 0x7b /* { */) return readSafetensors(path, buf);
    throw new CheckpointError('unknown file format (expected a torch.save zip, a TorchScript archive or .safetensors)', path);
  }
  let records: Map<string, Buffer>;
  try {
    ({ records } = await readZip(path));
  } catch (err) {
    throw new CheckpointError(`corrupt or truncated archive: ${(err as Error).message}`, path, { cause: err });
  }
  const pklName = [...records.keys()].find((n) => /^[^/]+\/data\.pkl$/.test(n)) ?? (records.has('data.pkl') ? 'data.pkl' : undefined);
  if (!pklName) throw new CheckpointError('no data.pkl record: not a torch.save or TorchScript archive', path);
  const prefix = pklName.slice(0, pklName.length - 'data.pkl'.length);
  const isTorchScript = [...records.keys()].some((n) => n.startsWith(prefix + 'code/') || n === prefix + 'constants.pkl');
  let root: unknown;
  try {
    root = unpickle(records.get(pklName)!);
  } catch (err) {
    const msg = err instanceof PickleError ? err.message : String(err);
    throw new CheckpointError(`cannot parse data.pkl: ${msg}`, path, { cause: err });
  }
  root = resolveTensors(root, (ref) => {
    const name = `${prefix}data/${ref.storage.key}`;
    const storage = records.get(name);
    if (!storage) throw new CheckpointError(`storage record '${name}' is missing`, path);
    const need = ref.storage.numel * DTYPE_BYTES[ref.dtype];
    if (storage.length < need) throw new CheckpointError(`storage record '${name}' is truncated (${storage.length} of ${need} bytes)`, path);
    const t = new HostTensor(ref.dtype, ref.shape, ref.stride, ref.storageOffset, storage);
    if (t.extent > ref.storage.numel) throw new CheckpointError(`a tensor reaches past the end of storage '${name}'`, path);
    // Own, 8-byte-aligned copy of each storage (zip buffers are slices of larger chunks).
    return storage.byteOffset % 8 === 0 ? storage : Buffer.from(storage);
  });
  return { path, format: isTorchScript ? 'torchscript' : 'torch', root };
}

/**
 * One namespace of a state dict's `_metadata` (the OrderedDict attribute torch keeps per-module
 * versions in, where writeTorchFile puts ours), or undefined.
 */
export function stateDictMetadata(root: unknown, namespace: string): Map<unknown, unknown> | undefined {
  if (!(root instanceof Map)) return undefined;
  const state = (root as unknown as Record<symbol, unknown>)[DICT_STATE];
  const meta = state instanceof Map ? state.get('_metadata') : undefined;
  const entry = meta instanceof Map ? meta.get(namespace) : undefined;
  return entry instanceof Map ? entry : undefined;
}

/** Collect every HostTensor under a TorchScript module tree, named by attribute path. */
export function collectModuleTensors(root: unknown): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  const seen = new Set<unknown>();
  const visit = (v: unknown, prefix: string) => {
    if (v instanceof HostTensor) {
      if (prefix) out.set(prefix, v);
      return;
    }
    if (v === null || typeof v !== 'object' || seen.has(v)) return;
    seen.add(v);
    const state = v instanceof PyObject ? v.state : v;
    if (state instanceof Map) {
      for (const [k, x] of state) {
        if (typeof k === 'string') visit(x, prefix ? `${prefix}.${k}` : k);
      }
    }
  };
  visit(root, '');
  return out;
}
