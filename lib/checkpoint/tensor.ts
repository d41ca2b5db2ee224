/**
 * HostTensor: a tensor read from a file, kept as raw bytes with its dtype, shape and strides
 * until someone asks for values (as float32, the network's input format).
 */
import { DTYPE_BYTES, DType } from './pickle';

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/**
 * A storage's bytes: read with the file, or (a large storage of a file opened with
 * `deferStoragesAbove`) left in the file until `read()`, so that a load can bring a checkpoint
 * into the network a few storages at a time.
 */
export class StorageBytes {
  #bytes: Buffer | undefined;
  #fetch: (() => Promise<Buffer>) | undefined;

  constructor(bytes: Buffer | undefined, fetch?: () => Promise<Buffer>) {
    this.#bytes = bytes;
    this.#fetch = fetch;
  }

  get isRead(): boolean {
    return this.#bytes !== undefined;
  }

  get bytes(): Buffer {
    if (!this.#bytes) throw new Error('this storage has not been read from its file yet (StorageBytes.read)');
    return this.#bytes;
  }

  async read(): Promise<void> {
    if (this.#bytes) return;
    if (!this.#fetch) throw new Error('this storage has been released');
    this.#bytes = await this.#fetch();
  }

  /** Lets go of the bytes (a load has copied them): the storage cannot be read again. */
  release(): void {
    this.#bytes = undefined;
    this.#fetch = undefined;
  }
}

export class HostTensor {
  readonly source: StorageBytes;

  constructor(
    readonly dtype: DType,
    readonly shape: number[],
    readonly stride: number[],
    readonly offset: number,     // in elements
    storage: Buffer | StorageBytes,  // the whole storage
  ) {
    this.source = storage instanceof StorageBytes ? storage : new StorageBytes(storage);
  }

  /** The whole storage's bytes; throws for a deferred storage not read yet. */
  get storage(): Buffer {
    return this.source.bytes;
  }

  get isRead(): boolean {
    return this.source.isRead;
  }

  static contiguousStrides(shape: number[]): number[] {
    const s = new Array<number>(shape.length);
    let acc = 1;
    for (let i = shape.length - 1; i >= 0; i--) {
      s[i] = acc;
      acc *= shape[i];
    }
    return s;
  }

  static fromFloat32(data: Float32Array, shape: number[]): HostTensor {
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    return new HostTensor('float32', shape, HostTensor.contiguousStrides(shape), 0, buf);
  }

  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  get isContiguous(): boolean {
    const c = HostTensor.contiguousStrides(this.shape);
    return this.shape.every((d, i) => d === 1 || c[i] === this.stride[i]);
  }

  /** Highest element index touched + 1 (0 for empty tensors). */
  get extent(): number {
    if (this.numel === 0) return 0;
    return this.offset + this.shape.reduce((acc, d, i) => acc + (d - 1) * this.stride[i], 0) + 1;
  }

  private readElement(index: number): number {
    const b = this.storage;
    switch (this.dtype) {
      case 'float32':
        return b.readFloatLE(index * 4);
      case 'float64':
        return b.readDoubleLE(index * 8);
      case 'float16':
        return halfToFloat(b.readUInt16LE(index * 2));
      case 'bfloat16': {
        const tmp = Buffer.alloc(4);
        tmp.writeUInt16LE(b.readUInt16LE(index * 2), 2);
        return tmp.readFloatLE(0);
      }
      case 'int64':
        return Number(b.readBigInt64LE(index * 8));
      case 'int32':
        return b.readInt32LE(index * 4);
      case 'int16':
        return b.readInt16LE(index * 2);
      case 'int8':
        return b.readInt8(index);
      case 'uint8':
      case 'bool':
        return b.readUInt8(index);
    }
  }

  /**
   * Values as float32, C order. A contiguous float32 tensor whose bytes are 4-byte aligned is a
   * view of its storage (the file's bytes), not a copy: do not write to the result.
   */
  toFloat32(): Float32Array {
    const n = this.numel;
    if (this.dtype === 'float32' && this.isContiguous) {
      const start = this.storage.byteOffset + this.offset * 4;
      if (start % 4 === 0) return new Float32Array(this.storage.buffer, start, n);
      const out = new Float32Array(n);
      Buffer.from(out.buffer).set(this.storage.subarray(this.offset * 4, this.offset * 4 + n * 4));
      return out;
    }
    const out = new Float32Array(n);
    const nd = this.shape.length;
    const idx = new Array<number>(nd).fill(0);
    for (let i = 0; i < n; i++) {
      let e = this.offset;
      for (let d = 0; d < nd; d++) e += idx[d] * this.stride[d];
      out[i] = this.readElement(e);
      for (let d = nd - 1; d >= 0; d--) {
        if (++idx[d] < this.shape[d]) break;
        idx[d] = 0;
      }
    }
    return out;
  }

  /** A scalar's value (any dtype). */
  item(): number {
    if (this.numel !== 1) throw new Error('item() of a tensor with ' + this.numel + ' elements');
    return this.readElement(this.offset);
  }

  get byteSize(): number {
    return this.numel * DTYPE_BYTES[this.dtype];
  }
}
