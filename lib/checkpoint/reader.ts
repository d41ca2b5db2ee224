/**
 * Opens a checkpoint file of any supported kind without executing anything:
 * - torch.save zip archives (.pth, .pt, .ckpt: `<stem>/data.pkl` + `<stem>/data/<key>`),
 * - TorchScript archives (the same layout; module attributes become nested PyObjects),
 * - safetensors (.safetensors: a JSON header and raw little-endian data).
 * Tensors come back as HostTensors in place of the pickle's tensor references.
 */
import type { FileHandle } from 'node:fs/promises';
import { CheckpointError } from '../errors';
import { openRegularFile, readExactly } from '../files';
import { DICT_STATE, DTYPE_BYTES, DType, PickleError, PyObject, TensorRef, unpickle } from './pickle';
import { HostTensor, StorageBytes } from './tensor';
import { ArchiveClosedError, ZipArchive, isZipMagic } from './zip';

export type CheckpointFormat = 'torch' | 'torchscript' | 'safetensors';

export interface CheckpointFile {
  path: string;
  format: CheckpointFormat;
  /** The unpickled root object (Maps for dicts, arrays, PyObjects, HostTensors). */
  root: unknown;
  /**
   * Closes the file, which stays open while deferred storages may still be read
   * (`deferStoragesAbove`); a no-op otherwise. Deferred storages cannot be read after it.
   */
  close(): Promise<void>;
}

export interface ReadOptions {
  /**
   * Storages of more bytes than this are not read with the file but left in it until their
   * tensors' `source.read()` (HostTensor): a load then copies them into the network a few at a
   * time instead of holding the whole checkpoint beside it. The caller must `close()` the file.
   */
  deferStoragesAbove?: number;
}

const closed = async () => {};

const SAFETENSORS_DTYPES: Record<string, DType> = {
  F32: 'float32', F64: 'float64', F16: 'float16', BF16: 'bfloat16', I64: 'int64', I32: 'int32', I16: 'int16',
  I8: 'int8', U8: 'uint8', BOOL: 'bool',
};

/** The safetensors reference implementation's header limit. */
const SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024;
/** data.pkl of a state dict is KBs to a few MBs; a larger one is not a checkpoint we can use. */
const MAX_PICKLE_BYTES = 256 * 1024 * 1024;
/**
 * Checkpoints nest a few levels, TorchScript modules a few dozen. Deeper trees are refused, so
 * no walk over them (here or in the architecture code) can exhaust the stack.
 */
const MAX_NESTING = 1000;

const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;

/** numel of a shape, or undefined when an entry is not a count or the product overflows. */
function elementCount(shape: unknown): number | undefined {
  if (!Array.isArray(shape) || !shape.every(isCount)) return undefined;
  let n = 1;
  for (const d of shape as number[]) {
    n *= d;
    if (!Number.isSafeInteger(n)) return undefined;
  }
  return n;
}

/**
 * An own, aligned copy of a tensor's bytes: never a slice of Node's shared Buffer pool (which
 * Buffer.from uses for small sizes), so a load may free it early (InpFormer.#open).
 */
function ownCopy(bytes: Buffer): Buffer {
  const out = Buffer.allocUnsafeSlow(bytes.length);
  bytes.copy(out);
  return out;
}

/** readExactly, its failure a CheckpointError naming the file and, when given, what was read. */
async function readRange(fh: FileHandle, position: number, length: number, path: string, what?: string): Promise<Buffer> {
  return readExactly(fh, position, length).catch((err) => {
    const message = (err as Error).message;
    throw new CheckpointError(what ? `cannot read ${what}: ${message}` : message, path, { cause: err });
  });
}

async function readSafetensors(path: string, fh: FileHandle, size: number, options: ReadOptions): Promise<CheckpointFile> {
  if (size < 8) throw new CheckpointError('file too short for safetensors', path);
  const headerLen = (await readRange(fh, 0, 8, path)).readBigUInt64LE(0);
  if (headerLen === 0n || headerLen > BigInt(Math.min(SAFETENSORS_MAX_HEADER, size - 8)))
    throw new CheckpointError(`safetensors header length ${headerLen} does not fit the file (${size} bytes)`, path);
  const dataStart = 8 + Number(headerLen);
  const headerText = (await readRange(fh, 8, Number(headerLen), path)).toString('utf8');
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch {
    throw new CheckpointError('invalid safetensors header (not JSON)', path);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw new CheckpointError('safetensors header is not a JSON object', path);
  const dataLength = size - dataStart;
  const ranges: { name: string; begin: number; end: number; dtype: DType; shape: number[] }[] = [];
  for (const [name, info] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') continue;
    const bad = (what: string) => new CheckpointError(`safetensors tensor '${name}': ${what}`, path);
    if (info === null || typeof info !== 'object') throw bad('entry is not an object');
    const { dtype: code, shape, data_offsets: offsets } = info as Record<string, unknown>;
    const dtype = typeof code === 'string' ? SAFETENSORS_DTYPES[code] : undefined;
    if (!dtype) throw bad(`unsupported or missing dtype ${JSON.stringify(code)}`);
    const numel = elementCount(shape);
    if (numel === undefined) throw bad(`shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) throw bad(`data_offsets ${JSON.stringify(offsets)} are not two non-negative integers`);
    const [begin, end] = offsets as number[];
    if (begin > end || end > dataLength) throw bad(`bytes ${begin}..${end} lie outside the data (${dataLength} bytes; truncated?)`);
    if (end - begin !== numel * DTYPE_BYTES[dtype]) throw bad(`${end - begin} bytes for ${numel} ${dtype} values`);
    ranges.push({ name, begin, end, dtype, shape: shape as number[] });
  }
  const sorted = [...ranges].sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end)
      throw new CheckpointError(`safetensors tensors '${sorted[i - 1].name}' and '${sorted[i].name}' overlap`, path);
  }
  // All checked; now each tensor's bytes in memory of their own, or left in the file.
  const root = new Map<string, unknown>();
  let deferred = false;
  for (const { name, begin, end, dtype, shape } of ranges) {
    const fetch = () => readRange(fh, dataStart + begin, end - begin, path, `tensor '${name}'`);
    const defer = end - begin > (options.deferStoragesAbove ?? Infinity);
    deferred ||= defer;
    root.set(name, new HostTensor(dtype, shape, HostTensor.contiguousStrides(shape), 0, new StorageBytes(defer ? undefined : await fetch(), fetch)));
  }
  return { path, format: 'safetensors', root, close: deferred ? () => fh.close() : closed };
}

/** Children of a node of the unpickled tree, for the walks below. */
function children(v: object): unknown[] {
  if (Array.isArray(v)) return v;
  if (v instanceof Map) {
    const st = (v as unknown as Record<symbol, unknown>)[DICT_STATE];
    return st === undefined ? [...v.values()] : [...v.values(), st];
  }
  if (v instanceof PyObject) return [...v.args, v.state, ...v.listItems, ...v.dictItems.values()];
  return [];
}

/** Every TensorRef in the tree; refuses trees nested deeper than MAX_NESTING. Iterative. */
function collectTensorRefs(root: unknown, path: string): Set<TensorRef> {
  const refs = new Set<TensorRef>();
  const seen = new Set<unknown>();
  const stack: [unknown, number][] = [[root, 0]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object' || seen.has(v)) continue;
    seen.add(v);
    if (depth > MAX_NESTING) throw new CheckpointError(`objects nested deeper than ${MAX_NESTING} levels`, path);
    if (v instanceof TensorRef) refs.add(v);
    else for (const c of children(v)) stack.push([c, depth + 1]);
  }
  return refs;
}

/**
 * A tensor reference checked against its storage before anything is allocated: whole,
 * non-negative offsets, sizes and strides (torch refuses negative strides), no view with more
 * elements than its storage (expanded or self-overlapping views are not state-dict tensors), and
 * every element inside the storage.
 */
function checkTensorRef(ref: TensorRef, record: string, path: string): void {
  const bad = (what: string) => new CheckpointError(`tensor on storage '${record}': ${what}`, path);
  const storageNumel = ref.storage.numel;
  if (!isCount(storageNumel)) throw bad(`storage size ${storageNumel} is not a non-negative integer`);
  if (!isCount(ref.storageOffset)) throw bad(`storage offset ${ref.storageOffset} is not a non-negative integer`);
  const numel = elementCount(ref.shape);
  if (numel === undefined) throw bad(`size ${JSON.stringify(ref.shape)} is not a list of non-negative integers`);
  if (ref.stride.length !== ref.shape.length || !ref.stride.every(isCount)) throw bad(`stride ${JSON.stringify(ref.stride)} does not fit size ${JSON.stringify(ref.shape)}`);
  if (numel === 0) return;
  if (numel > storageNumel) throw bad(`${numel} elements in a storage of ${storageNumel} (an expanded or overlapping view)`);
  let extent = ref.storageOffset + 1;
  for (let d = 0; d < ref.shape.length; d++) extent += (ref.shape[d] - 1) * ref.stride[d];
  if (!Number.isSafeInteger(extent) || extent > storageNumel) throw bad(`reaches element ${extent - 1} of a storage of ${storageNumel}`);
}

/** Replace TensorRefs by HostTensors everywhere in the tree (shared references stay shared). Iterative. */
function replaceTensorRefs(root: unknown, makeTensor: (ref: TensorRef) => HostTensor): unknown {
  const made = new Map<TensorRef, HostTensor>();
  const tensorOf = (ref: TensorRef) => made.get(ref) ?? made.set(ref, makeTensor(ref)).get(ref)!;
  if (root instanceof TensorRef) return tensorOf(root);
  const swap = (x: unknown) => (x instanceof TensorRef ? tensorOf(x) : x);
  const seen = new Set<unknown>();
  const stack: unknown[] = [root];
  while (stack.length) {
    const v = stack.pop();
    if (v === null || typeof v !== 'object' || seen.has(v)) continue;
    seen.add(v);
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) v[i] = swap(v[i]);
    } else if (v instanceof Map) {
      for (const [k, x] of v) v.set(k, swap(x));
      const rec = v as unknown as Record<symbol, unknown>;
      if (rec[DICT_STATE] !== undefined) rec[DICT_STATE] = swap(rec[DICT_STATE]);
    } else if (v instanceof PyObject) {
      for (let i = 0; i < v.args.length; i++) v.args[i] = swap(v.args[i]);
      v.state = swap(v.state);
      for (let i = 0; i < v.listItems.length; i++) v.listItems[i] = swap(v.listItems[i]);
      for (const [k, x] of v.dictItems) v.dictItems.set(k, swap(x));
    }
    for (const c of children(v)) stack.push(c); // not push(...): a huge list would overflow the call
  }
  return root;
}

export async function readCheckpointFile(path: string, options: ReadOptions = {}): Promise<CheckpointFile> {
  const { fh, size } = await openRegularFile(path, (m, cause) => new CheckpointError(m, path, { cause }));
  let keepOpen = false;
  try {
    const head = Buffer.alloc(16);
    await fh.read(head, 0, 16, 0);
    if (!isZipMagic(head)) {
      if (head[0] === 0x80 && head[1] <= 5) {
        throw new CheckpointError(
          'this is the legacy (pre-1.6) torch.save format, which is not supported; re-save it with a current torch: torch.save(torch.load(f), f2)',
          path,
        );
      }
      if (size > 9 && head[8] === 0x7b /* { */) {
        const file = await readSafetensors(path, fh, size, options);
        keepOpen = file.close !== closed;
        return file;
      }
      throw new CheckpointError('unknown file format (expected a torch.save zip, a TorchScript archive or .safetensors)', path);
    }
  } finally {
    if (!keepOpen) await fh.close();
  }
  let zip: ZipArchive;
  try {
    zip = await ZipArchive.open(path);
  } catch (err) {
    throw new CheckpointError(`corrupt or truncated archive: ${(err as Error).message}`, path, { cause: err });
  }
  let zipOpen = false;
  try {
    const file = await readTorchArchive(path, zip, options);
    zipOpen = file.close !== closed;
    return file;
  } finally {
    if (!zipOpen) await zip.close();
  }
}

async function readTorchArchive(path: string, zip: ZipArchive, options: ReadOptions): Promise<CheckpointFile> {
  const names = zip.names();
  const pklName = names.find((n) => /^[^/]+\/data\.pkl$/.test(n)) ?? (zip.has('data.pkl') ? 'data.pkl' : undefined);
  if (!pklName) throw new CheckpointError('no data.pkl record: not a torch.save or TorchScript archive', path);
  const prefix = pklName.slice(0, pklName.length - 'data.pkl'.length);
  const isTorchScript = names.some((n) => n.startsWith(prefix + 'code/') || n === prefix + 'constants.pkl');
  const read = async (name: string): Promise<Buffer> => {
    try {
      return (await zip.read(name))!;
    } catch (err) {
      const what = err instanceof ArchiveClosedError ? 'cannot read' : 'corrupt';
      throw new CheckpointError(`${what} record '${name}': ${(err as Error).message}`, path, { cause: err });
    }
  };
  if ((zip.size(pklName) ?? 0) > MAX_PICKLE_BYTES) throw new CheckpointError(`'${pklName}' declares ${zip.size(pklName)} bytes: not a state dict`, path);
  let root: unknown;
  try {
    root = unpickle(await read(pklName));
  } catch (err) {
    if (err instanceof CheckpointError) throw err;
    const msg = err instanceof PickleError ? err.message : String(err);
    throw new CheckpointError(`cannot parse data.pkl: ${msg}`, path, { cause: err });
  }
  // Check every reference against the sizes the archive declares, then read only the
  // storages that are referenced, each once.
  const recordOf = (ref: TensorRef) => `${prefix}data/${ref.storage.key}`;
  const refs = collectTensorRefs(root, path);
  const storages = new Map<string, StorageBytes>();
  for (const ref of refs) {
    const name = recordOf(ref);
    checkTensorRef(ref, name, path);
    if (!zip.has(name)) throw new CheckpointError(`storage record '${name}' is missing`, path);
    const need = ref.storage.numel * DTYPE_BYTES[ref.dtype];
    const declared = zip.size(name)!;
    if (declared < need) throw new CheckpointError(`storage record '${name}' is truncated (${declared} of ${need} bytes)`, path);
  }
  // Own, 8-byte-aligned memory for each storage (zip buffers could be slices of larger chunks).
  const fetch = async (name: string) => {
    const data = await read(name);
    return data.byteOffset % 8 === 0 ? data : ownCopy(data);
  };
  let deferred = false;
  for (const name of new Set([...refs].map(recordOf))) {
    const defer = zip.size(name)! > (options.deferStoragesAbove ?? Infinity);
    deferred ||= defer;
    storages.set(name, new StorageBytes(defer ? undefined : await fetch(name), () => fetch(name)));
  }
  root = replaceTensorRefs(root, (ref) => new HostTensor(ref.dtype, ref.shape, ref.stride, ref.storageOffset, storages.get(recordOf(ref))!));
  return { path, format: isTorchScript ? 'torchscript' : 'torch', root, close: deferred ? () => zip.close() : closed };
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
