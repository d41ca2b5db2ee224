/**
 * A pickle reader that never executes or imports anything. It understands the opcodes of
 * protocols 0-5, rebuilds plain containers and torch tensors (as references to storages), and
 * turns every other class (Lightning's, anomalib's, numpy's, TorchScript's) into an inert
 * PyObject that records its class name, arguments and state. Loading an untrusted file therefore
 * cannot run code: the worst it can do is fail to parse, which throws PickleError.
 */

export class PickleError extends Error {}

/** A reference to a global such as `torch._utils._rebuild_tensor_v2`, never resolved. */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An instance of a class this reader does not know: data only. */
export class PyObject {
  state: unknown = undefined;
  listItems: unknown[] = [];
  dictItems = new Map<unknown, unknown>();
  constructor(readonly cls: PyGlobal, readonly args: unknown[]) {}
}

export class PyTuple extends Array<unknown> {}

export type DType = 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';

export const DTYPE_BYTES: Record<DType, number> = {
  float32: 4, float64: 8, float16: 2, bfloat16: 2, int64: 8, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1,
};

const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'float32', DoubleStorage: 'float64', HalfStorage: 'float16', BFloat16Storage: 'bfloat16',
  LongStorage: 'int64', IntStorage: 'int32', ShortStorage: 'int16', CharStorage: 'int8', ByteStorage: 'uint8',
  BoolStorage: 'bool',
};
const TORCH_DTYPES: Record<string, DType> = {
  float32: 'float32', float: 'float32', float64: 'float64', double: 'float64', float16: 'float16', half: 'float16',
  bfloat16: 'bfloat16', int64: 'int64', long: 'int64', int32: 'int32', int: 'int32', int16: 'int16', int8: 'int8',
  uint8: 'uint8', bool: 'bool',
};

/** A storage named by a persistent id: ('storage', torch.FloatStorage, key, location, numel). */
export class StorageRef {
  constructor(readonly key: string, readonly dtype: DType, readonly location: string, readonly numel: number) {}
}

/** A tensor rebuilt by torch._utils._rebuild_tensor_v2: a strided view of a storage. */
export class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly storageOffset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
  get dtype(): DType {
    return this.storage.dtype;
  }
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
}

function asNumberList(v: unknown, what: string): number[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number')) throw new PickleError(`${what} is not a list of integers`);
  return v as number[];
}

/** Calls of known globals; everything else becomes a PyObject. Nothing is imported. */
function reduce(callable: unknown, args: unknown[]): unknown {
  if (!(callable instanceof PyGlobal)) {
    throw new PickleError('REDUCE on a value that is not a global');
  }
  switch (callable.qualified) {
    case 'collections.OrderedDict':
    case 'builtins.dict':
    case '__builtin__.dict':
      return new Map();
    case 'torch._utils._rebuild_tensor':
    case 'torch._utils._rebuild_tensor_v2': {
      const [storage, offset, size, stride] = args;
      if (!(storage instanceof StorageRef)) throw new PickleError('tensor without a storage');
      return new TensorRef(storage, Number(offset), asNumberList(size, 'tensor size'), asNumberList(stride, 'tensor stride'));
    }
    case 'torch._utils._rebuild_parameter':
    case 'torch._utils._rebuild_parameter_with_state':
      return args[0];
    case 'torch.jit._pickle.restore_type_tag':
    case 'torch.jit._pickle.build_intlist':
    case 'torch.jit._pickle.build_doublelist':
    case 'torch.jit._pickle.build_boollist':
    case 'torch.jit._pickle.build_tensorlist':
      return args[0];
    case '_codecs.encode':
      return Buffer.from(String(args[0]), 'latin1');
    case 'builtins.set':
    case '__builtin__.set':
    case 'builtins.frozenset':
    case '__builtin__.frozenset':
      return PyTuple.from((args[0] as unknown[]) ?? []);
    case 'numpy.core.multiarray.scalar':
    case 'numpy._core.multiarray.scalar':
      return numpyScalar(args[0], args[1]);
    default:
      return new PyObject(callable, args);
  }
}

/** numpy scalars (float64 learning rates, ...) decoded from their raw bytes when simple. */
function numpyScalar(dtype: unknown, bytes: unknown): unknown {
  if (dtype instanceof PyObject && Buffer.isBuffer(bytes)) {
    const code = String(dtype.args[0]);
    if (code === 'f8' && bytes.length === 8) return bytes.readDoubleLE(0);
    if (code === 'f4' && bytes.length === 4) return bytes.readFloatLE(0);
    if (code === 'i8' && bytes.length === 8) return Number(bytes.readBigInt64LE(0));
    if (code === 'i4' && bytes.length === 4) return bytes.readInt32LE(0);
  }
  return new PyObject(new PyGlobal('numpy.core.multiarray', 'scalar'), [dtype, bytes]);
}

function persistentLoad(pid: unknown): unknown {
  if (!Array.isArray(pid) || pid[0] !== 'storage') throw new PickleError('unsupported persistent id');
  const [, type, key, location, numel] = pid;
  let dtype: DType | undefined;
  if (type instanceof PyGlobal) dtype = STORAGE_DTYPES[type.name] ?? TORCH_DTYPES[type.name];
  if (!dtype) throw new PickleError(`unsupported storage type ${type instanceof PyGlobal ? type.qualified : String(type)}`);
  return new StorageRef(String(key), dtype, String(location), Number(numel));
}

/** Attach BUILD state: to PyObjects as .state, to dicts (OrderedDict._metadata) as a hidden field. */
export const DICT_STATE = Symbol('pickleState');

function build(obj: unknown, state: unknown): void {
  if (obj instanceof PyObject) {
    obj.state = state;
  } else if (obj instanceof Map) {
    (obj as unknown as Record<symbol, unknown>)[DICT_STATE] = state;
  }
  // Tensors (parameter state) and others: the state carries nothing we use.
}

const MAX_MEMO = 50_000_000;

/** Parse one pickle. */
export function unpickle(buf: Buffer): unknown {
  let pos = 0;
  const stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();
  const need = (n: number) => {
    if (pos + n > buf.length) throw new PickleError('truncated pickle');
  };
  const u8 = () => {
    need(1);
    return buf[pos++];
  };
  const u16 = () => {
    need(2);
    const v = buf.readUInt16LE(pos);
    pos += 2;
    return v;
  };
  const u32 = () => {
    need(4);
    const v = buf.readUInt32LE(pos);
    pos += 4;
    return v;
  };
  const i32 = () => {
    need(4);
    const v = buf.readInt32LE(pos);
    pos += 4;
    return v;
  };
  const u64 = () => {
    need(8);
    const v = buf.readBigUInt64LE(pos);
    pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new PickleError('length too large');
    return Number(v);
  };
  const bytes = (n: number) => {
    need(n);
    const b = buf.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const line = () => {
    const end = buf.indexOf(0x0a, pos);
    if (end < 0) throw new PickleError('truncated pickle');
    const s = buf.toString('latin1', pos, end);
    pos = end + 1;
    return s;
  };
  const pop = () => {
    if (stack.length === 0) throw new PickleError('stack underflow');
    return stack.pop();
  };
  const top = () => {
    if (stack.length === 0) throw new PickleError('stack underflow');
    return stack[stack.length - 1];
  };
  // push(...items) passes every item as an argument: a list of a few 100,000 items overflows the
  // call stack, so lists grow item by item.
  const pushAll = (target: unknown[], items: unknown[]) => {
    for (const x of items) target.push(x);
  };
  const popMark = () => {
    const items = stack.splice(0);
    const prev = metastack.pop();
    if (!prev) throw new PickleError('MARK missing');
    pushAll(stack, prev);
    return items;
  };
  const memoPut = (k: number, v: unknown) => {
    if (memo.size > MAX_MEMO) throw new PickleError('memo too large');
    memo.set(k, v);
  };
  const memoGet = (k: number) => {
    if (!memo.has(k)) throw new PickleError(`memo key ${k} missing`);
    return memo.get(k);
  };
  const setItems = (target: unknown, items: unknown[]) => {
    if (items.length % 2) throw new PickleError('odd number of dict items');
    const map = target instanceof Map ? target : target instanceof PyObject ? target.dictItems : undefined;
    if (!map) throw new PickleError('SETITEM on a value that is not a dict');
    for (let i = 0; i < items.length; i += 2) map.set(items[i], items[i + 1]);
  };
  const appendItems = (target: unknown, items: unknown[]) => {
    if (Array.isArray(target)) pushAll(target, items);
    else if (target instanceof PyObject) pushAll(target.listItems, items);
    else throw new PickleError('APPEND on a value that is not a list');
  };
  const decodeLong = (b: Buffer) => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    const n = Number(v);
    return Number.isSafeInteger(n) ? n : v;
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        u8();
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: // STOP
        return pop();
      case 0x28: // MARK
        metastack.push(stack.splice(0));
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(decodeLong(bytes(u8())));
        break;
      case 0x8b: // LONG4
        stack.push(decodeLong(bytes(u32())));
        break;
      case 0x49: { // INT
        const s = line();
        stack.push(s === '01' ? true : s === '00' ? false : parseInt(s, 10));
        break;
      }
      case 0x4c: // LONG
        stack.push(parseInt(line().replace(/L$/, ''), 10));
        break;
      case 0x47: // BINFLOAT
        need(8);
        stack.push(buf.readDoubleBE(pos));
        pos += 8;
        break;
      case 0x46: // FLOAT
        stack.push(parseFloat(line()));
        break;
      case 0x58: // BINUNICODE
        stack.push(bytes(u32()).toString('utf8'));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(bytes(u8()).toString('utf8'));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(bytes(u64()).toString('utf8'));
        break;
      case 0x56: // UNICODE
        stack.push(line());
        break;
      case 0x54: // BINSTRING
        stack.push(bytes(u32()).toString('latin1'));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(bytes(u8()).toString('latin1'));
        break;
      case 0x53: { // STRING
        const s = line();
        stack.push(s.slice(1, -1));
        break;
      }
      case 0x42: // BINBYTES
        stack.push(Buffer.from(bytes(u32())));
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(Buffer.from(bytes(u8())));
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        stack.push(Buffer.from(bytes(u64())));
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(new PyTuple());
        break;
      case 0x8f: // EMPTY_SET
        stack.push(new PyTuple());
        break;
      case 0x74: // TUPLE
        stack.push(PyTuple.from(popMark()));
        break;
      case 0x85: // TUPLE1
        stack.push(PyTuple.of(pop()));
        break;
      case 0x86: { // TUPLE2
        const b = pop();
        const a = pop();
        stack.push(PyTuple.of(a, b));
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push(PyTuple.of(a, b, c));
        break;
      }
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x64: { // DICT
        const m = new Map();
        setItems(m, popMark());
        stack.push(m);
        break;
      }
      case 0x91: // FROZENSET
        stack.push(PyTuple.from(popMark()));
        break;
      case 0x90: { // ADDITEMS
        const items = popMark();
        const s = top();
        if (s instanceof PyTuple) pushAll(s, items);
        break;
      }
      case 0x61: { // APPEND
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x73: { // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x63: { // GLOBAL
        const module = line();
        const name = line();
        stack.push(new PyGlobal(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        stack.push(new PyGlobal(String(module), String(name)));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        const callable = pop();
        stack.push(reduce(callable, Array.isArray(args) ? args : []));
        break;
      }
      case 0x81: { // NEWOBJ
        const args = pop();
        const cls = pop();
        if (!(cls instanceof PyGlobal)) throw new PickleError('NEWOBJ on a value that is not a class');
        stack.push(reduce(cls, Array.isArray(args) ? args : []));
        break;
      }
      case 0x92: { // NEWOBJ_EX
        pop();
        const args = pop();
        const cls = pop();
        if (!(cls instanceof PyGlobal)) throw new PickleError('NEWOBJ_EX on a value that is not a class');
        stack.push(reduce(cls, Array.isArray(args) ? args : []));
        break;
      }
      case 0x6f: { // OBJ
        const items = popMark();
        const cls = items.shift();
        if (!(cls instanceof PyGlobal)) throw new PickleError('OBJ on a value that is not a class');
        stack.push(reduce(cls, items));
        break;
      }
      case 0x69: { // INST
        const module = line();
        const name = line();
        stack.push(reduce(new PyGlobal(module, name), popMark()));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        build(top(), state);
        break;
      }
      case 0x51: // BINPERSID
        stack.push(persistentLoad(pop()));
        break;
      case 0x50: // PERSID
        throw new PickleError('text persistent ids are not supported');
      case 0x71: // BINPUT
        memoPut(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memoPut(u32(), top());
        break;
      case 0x70: // PUT
        memoPut(parseInt(line(), 10), top());
        break;
      case 0x94: // MEMOIZE
        memoPut(memo.size, top());
        break;
      case 0x68: // BINGET
        stack.push(memoGet(u8()));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(memoGet(u32()));
        break;
      case 0x67: // GET
        stack.push(memoGet(parseInt(line(), 10)));
        break;
      default:
        throw new PickleError(`unsupported pickle opcode 0x${op.toString(16)} at byte ${pos - 1}`);
    }
  }
}
