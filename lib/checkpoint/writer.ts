/**
 * Writes a state dict as torch.save does (zip archive, pickle protocol 2): Python's
 * `torch.load` opens it as an OrderedDict of float32 tensors that
 * `INP_Former.load_state_dict(..., strict=True)` accepts. Our configuration travels in the
 * dict's `_metadata` attribute (where torch keeps per-module versions and which
 * load_state_dict only consults by module name), so the keys are exactly the model's.
 * The file is written to a temporary name and renamed: a crash leaves no partial checkpoint.
 */
import { createWriteStream } from 'node:fs';
import * as path from 'node:path';
import * as yazl from 'yazl';
import { Readable } from 'node:stream';
import { writeAtomically } from '../files';
import { CheckpointError } from '../errors';
import { HostTensor } from './tensor';

class PickleWriter {
  private chunks: Buffer[] = [];
  private op(...bytes: number[]) {
    this.chunks.push(Buffer.from(bytes));
  }
  raw(b: Buffer) {
    this.chunks.push(b);
  }
  proto() {
    this.op(0x80, 2);
  }
  stop() {
    this.op(0x2e);
  }
  mark() {
    this.op(0x28);
  }
  global(module: string, name: string) {
    this.op(0x63);
    this.raw(Buffer.from(`${module}\n${name}\n`, 'latin1'));
  }
  str(s: string) {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    this.op(0x58);
    this.raw(len);
    this.raw(b);
  }
  int(n: number) {
    if (!Number.isInteger(n)) throw new Error('not an integer: ' + n);
    if (n >= 0 && n < 256) this.op(0x4b, n);
    else if (n >= 0 && n < 65536) this.op(0x4d, n & 0xff, n >> 8);
    else if (n >= -0x80000000 && n <= 0x7fffffff) {
      const b = Buffer.alloc(4);
      b.writeInt32LE(n);
      this.op(0x4a);
      this.raw(b);
    } else {
      const b = Buffer.alloc(8);
      b.writeBigInt64LE(BigInt(n));
      this.op(0x8a, 8);
      this.raw(b);
    }
  }
  /** An int, or a BINFLOAT for a non-integer (only crafted test files have those). */
  num(n: number) {
    if (Number.isInteger(n) && Math.abs(n) < 2 ** 63) return this.int(n);
    const b = Buffer.alloc(8);
    b.writeDoubleBE(n);
    this.op(0x47);
    this.raw(b);
  }
  bool(v: boolean) {
    this.op(v ? 0x88 : 0x89);
  }
  tupleOfInts(xs: number[]) {
    if (xs.length === 0) return this.op(0x29);
    this.mark();
    xs.forEach((x) => this.num(x));
    this.op(0x74);
  }
  emptyOrderedDict() {
    this.global('collections', 'OrderedDict');
    this.op(0x29, 0x52); // EMPTY_TUPLE, REDUCE
  }
  emptyDict() {
    this.op(0x7d);
  }
  tuple() {
    this.op(0x74);
  }
  reduce() {
    this.op(0x52);
  }
  binpersid() {
    this.op(0x51);
  }
  setitem() {
    this.op(0x73);
  }
  setitems() {
    this.op(0x75);
  }
  build() {
    this.op(0x62);
  }
  result(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

export interface TensorToSave {
  name: string;
  data: Float32Array;
  shape: number[];
}

/**
 * A tensor entry of a state-dict pickle as torch writes it: a strided view (`offset`, `shape`,
 * `stride`, in elements) of float32 storage record `storageKey` holding `storageNumel` values.
 */
export interface TensorRefToSave {
  name: string;
  storageKey: string;
  storageNumel: number;
  offset: number;
  shape: number[];
  stride: number[];
}

/** The pickle of an OrderedDict of float32 tensors with `_metadata = {namespace: {k: str}}`. */
export function statePickle(tensors: TensorToSave[], metadata: Record<string, Record<string, string>>): Buffer {
  return statePickleOf(
    tensors.map((t, i) => ({ name: t.name, storageKey: String(i), storageNumel: t.data.length, offset: 0, shape: t.shape, stride: HostTensor.contiguousStrides(t.shape) })),
    metadata,
  );
}

/** statePickle with every tensor reference spelled out (the tests craft hostile files with it). */
export function statePickleOf(refs: TensorRefToSave[], metadata: Record<string, Record<string, string>>): Buffer {
  const w = new PickleWriter();
  w.proto();
  w.emptyOrderedDict();
  w.mark();
  for (const t of refs) {
    w.str(t.name);
    w.global('torch._utils', '_rebuild_tensor_v2');
    w.mark();
    // persistent id ('storage', torch.FloatStorage, key, location, numel)
    w.mark();
    w.str('storage');
    w.global('torch', 'FloatStorage');
    w.str(t.storageKey);
    w.str('cpu');
    w.num(t.storageNumel);
    w.tuple();
    w.binpersid();
    w.num(t.offset);
    w.tupleOfInts(t.shape);
    w.tupleOfInts(t.stride);
    w.bool(false);
    w.emptyOrderedDict();
    w.tuple();
    w.reduce();
  }
  w.setitems();
  // BUILD state {'_metadata': {namespace: {key: value}}}
  w.emptyDict();
  w.str('_metadata');
  w.emptyOrderedDict();
  w.mark();
  for (const [ns, entries] of Object.entries(metadata)) {
    w.str(ns);
    w.emptyDict();
    w.mark();
    for (const [k, v] of Object.entries(entries)) {
      w.str(k);
      w.str(v);
    }
    w.setitems();
  }
  w.setitems();
  w.setitem();
  w.build();
  w.stop();
  return w.result();
}

const PIECE = 1 << 20;

/** `bytes` as a stream of views of at most PIECE bytes (no copy). */
function inPieces(bytes: Buffer): Readable {
  return Readable.from((function* () {
    for (let at = 0; at < bytes.length; at += PIECE) yield bytes.subarray(at, Math.min(at + PIECE, bytes.length));
  })());
}

/** Write `tensors` to `file` atomically as a torch.save zip archive. */
export async function writeTorchFile(
  file: string,
  tensors: TensorToSave[],
  metadata: Record<string, Record<string, string>>,
): Promise<void> {
  const stem = path.basename(file).replace(/\.[^.]*$/, '').replace(/[^A-Za-z0-9_-]/g, '_') || 'archive';
  const zip = new yazl.ZipFile();
  const opts = { compress: false, mtime: new Date(0) };
  zip.addBuffer(statePickle(tensors, metadata), `${stem}/data.pkl`, opts);
  tensors.forEach((t, i) => {
    const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    // a stream of 1 MiB pieces, not addBuffer: yazl computes addBuffer's CRC-32 at once, in JS,
    // on the event loop (a ViT-B's weights held it ~0.5-2 s); a stream's, piece by piece
    zip.addReadStream(inPieces(bytes), `${stem}/data/${i}`, { ...opts, size: bytes.length });
  });
  zip.addBuffer(Buffer.from('3\n'), `${stem}/version`, opts);
  zip.end();
  await writeAtomically(
    file,
    (tmp) =>
      new Promise<void>((resolve, reject) => {
        const out = createWriteStream(tmp);
        out.on('error', reject);
        zip.outputStream.on('error', reject);
        out.on('close', () => resolve());
        zip.outputStream.pipe(out);
      }),
    (message, cause) => new CheckpointError(message, file, { cause }),
  );
}
