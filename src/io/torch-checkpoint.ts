/**
 * PyTorch checkpoints written by torch.save (zip format, torch >= 1.6): `<name>/data.pkl` is a
 * pickle of the state dict whose tensors point, through persistent ids, at storages stored as
 * `<name>/data/<key>` entries. The pickle is read with the restricted unpickler and only these
 * globals: collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter and the
 * typed storage classes (torch.FloatStorage, torch.BFloat16Storage, ...). Anything else, such as
 * a global that would run code on load, is refused.
 *
 * A tensor is a view of a storage (offset, sizes, strides); several tensors may share one storage.
 * Contiguous views are read straight from the file by range; others are gathered on the CPU.
 */
import { RandomAccessFile } from './file.js';
import { STORED_DTYPE_BYTES, type StoredDType } from './elements.js';
import { PyDict, PyTuple, describe, unpickle, type PickleValue, type PyGlobal } from './pickle.js';
import { numelOf, pieceBytes, type TensorInfo, type TensorSource } from './tensor-source.js';
import { ZipArchive, type ZipEntry } from './zip.js';

const STORAGE_DTYPES: Record<string, StoredDType> = {
  FloatStorage: 'F32', DoubleStorage: 'F64', HalfStorage: 'F16', BFloat16Storage: 'BF16',
  LongStorage: 'I64', IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8', BoolStorage: 'BOOL',
};

interface StorageType extends PyGlobal {
  readonly storageDType: StoredDType;
}

interface StorageRef {
  readonly kind: 'storage';
  readonly key: string;
  readonly dtype: StoredDType;
  /** Elements the pickle says the storage has. */
  readonly numel: number;
}

interface TensorRef {
  readonly kind: 'tensor';
  readonly storage: StorageRef;
  readonly offset: number;
  readonly shape: number[];
  readonly stride: number[];
}

interface TorchTensor extends TensorInfo {
  ref: TensorRef;
  entry: ZipEntry;
}

const ALLOWED = 'collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter and torch.<Type>Storage';

function intList(v: PickleValue, what: string): number[] {
  const items = v instanceof PyTuple ? v.items : Array.isArray(v) ? v : null;
  if (!items || !items.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
    throw new Error(`${what} must be a tuple of non-negative integers, got ${describe(v)}`);
  }
  return items as number[];
}

/** The globals a torch.save state dict may reference, as data-building functions of our own. */
function torchGlobals(storages: Map<string, StorageRef>) {
  const orderedDict: PyGlobal = { qualifiedName: 'collections.OrderedDict', call: () => new PyDict() };
  const rebuildTensor: PyGlobal = {
    qualifiedName: 'torch._utils._rebuild_tensor_v2',
    call(args): TensorRef {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      if (args.length < 4) throw new Error(`expects at least 4 arguments, got ${args.length}`);
      const storage = args[0] as StorageRef;
      if (!storage || (storage as { kind?: string }).kind !== 'storage') throw new Error(`first argument must be a storage, got ${describe(args[0])}`);
      const offset = args[1];
      if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) throw new Error(`storage offset must be a non-negative integer, got ${String(offset)}`);
      const shape = intList(args[2]!, 'size');
      const stride = intList(args[3]!, 'stride');
      if (shape.length !== stride.length) throw new Error(`size ${JSON.stringify(shape)} and stride ${JSON.stringify(stride)} differ in rank`);
      return { kind: 'tensor', storage, offset, shape, stride };
    },
  };
  const rebuildParameter: PyGlobal = {
    qualifiedName: 'torch._utils._rebuild_parameter',
    call(args) {
      const data = args[0] as TensorRef | undefined;
      if (!data || data.kind !== 'tensor') throw new Error(`expects a tensor, got ${describe(args[0])}`);
      return data;
    },
  };
  return {
    findGlobal(module: string, name: string): PyGlobal {
      const q = `${module}.${name}`;
      if (q === 'collections.OrderedDict') return orderedDict;
      if (q === 'torch._utils._rebuild_tensor_v2') return rebuildTensor;
      if (q === 'torch._utils._rebuild_parameter') return rebuildParameter;
      if (module === 'torch' && name in STORAGE_DTYPES) {
        const t: StorageType = { qualifiedName: q, storageDType: STORAGE_DTYPES[name]! };
        return t;
      }
      if (module === 'torch' && name.endsWith('Storage')) throw new Error(`unsupported storage type ${q} (supported: ${Object.keys(STORAGE_DTYPES).join(', ')})`);
      throw new Error(`global '${q}' is not allowed: a state dict may only reference ${ALLOWED}; refusing to load (it could run code)`);
    },
    persistentLoad(pid: PickleValue): PickleValue {
      // ('storage', storage_type, key, location, numel)
      if (!(pid instanceof PyTuple) || pid.items[0] !== 'storage' || pid.items.length < 5) {
        throw new Error(`unexpected persistent id ${describe(pid)}: expected ('storage', type, key, location, numel)`);
      }
      const [, type, key, , numel] = pid.items;
      const dtype = (type as StorageType | null)?.storageDType;
      if (!dtype) throw new Error(`persistent id names storage type ${describe(type)}, not a torch.<Type>Storage`);
      if (typeof key !== 'string') throw new Error(`storage key must be a string, got ${describe(key)}`);
      if (typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) throw new Error(`storage '${key}' has a bad element count ${String(numel)}`);
      const known = storages.get(key);
      if (known) {
        if (known.dtype !== dtype) throw new Error(`storage '${key}' is used as both ${known.dtype} and ${dtype}`);
        return known;
      }
      const ref: StorageRef = { kind: 'storage', key, dtype, numel };
      storages.set(key, ref);
      return ref;
    },
  };
}

/**
 * Nesting deeper than this is refused rather than followed: a state dict nests a few levels, and
 * following a corrupt or hostile one (a list 200,000 deep, a dict holding itself) would overflow the stack.
 */
const MAX_NESTING = 1000;
/** Values visited in all: shared (memoised) lists and dicts can make a small pickle name exponentially many. */
const MAX_VALUES = 10_000_000;

/** Tensors in a (possibly nested) dict, named by their keys joined with dots. */
function collectTensors(root: PickleValue, file: string): Map<string, TensorRef> {
  const out = new Map<string, TensorRef>();
  let values = 0;
  const visit = (value: PickleValue, prefix: string, depth: number): void => {
    if (depth > MAX_NESTING) throw new Error(`${file}: nesting too deep: lists, tuples or dicts more than ${MAX_NESTING} levels deep (under '${prefix.split('.', 4).join('.')}...'; corrupt, or a container that holds itself)`);
    if (++values > MAX_VALUES) throw new Error(`${file}: the pickle's shared lists and dicts expand to more than ${MAX_VALUES} values (corrupt, or built to exhaust the reader)`);
    const name = (k: unknown) => (prefix ? `${prefix}.${String(k)}` : String(k));
    if (value instanceof PyDict) {
      for (const [k, v] of value.map) visit(v, name(k), depth + 1);
    } else if (Array.isArray(value) || value instanceof PyTuple) {
      const items = Array.isArray(value) ? value : value.items;
      items.forEach((v, i) => visit(v, name(i), depth + 1));
    } else if (value && typeof value === 'object' && (value as { kind?: string }).kind === 'tensor') {
      if (out.has(prefix)) throw new Error(`${file}: duplicate tensor name '${prefix}'`);
      out.set(prefix, value as unknown as TensorRef);
    }
    // Numbers, strings and the like (an epoch counter, a version) are not tensors: skipped.
  };
  visit(root, '', 0);
  return out;
}

function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d]! !== 1 && stride[d] !== expected) return false;
    expected *= shape[d]!;
  }
  return true;
}

export class TorchCheckpoint implements TensorSource {
  readonly format = 'pytorch' as const;
  readonly metadata: Record<string, string> = {};

  private constructor(
    private readonly zip: ZipArchive,
    private readonly records: Map<string, TorchTensor>,
  ) {}

  get path(): string {
    return this.zip.path;
  }

  get tensors(): ReadonlyMap<string, TensorInfo> {
    return this.records;
  }

  static async open(path: string): Promise<TorchCheckpoint> {
    const file = await RandomAccessFile.open(path);
    try {
      return await TorchCheckpoint.read(file);
    } catch (err) {
      await file.close();
      throw err;
    }
  }

  private static async read(file: RandomAccessFile): Promise<TorchCheckpoint> {
    const path = file.path;
    const magic = await file.read(0, Math.min(2, file.size), 'the file signature');
    if (magic[0] === 0x80 && magic[1]! <= 5) {
      throw new Error(`${path}: a legacy (pre-zip) torch.save file; only the zip format of torch >= 1.6 is supported. Re-save it with torch.save(state_dict, path) in a recent PyTorch`);
    }
    const zip = await ZipArchive.open(file);
    const pkls = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (pkls.length !== 1) throw new Error(`${path}: expected exactly one '<name>/data.pkl' in the archive, found ${pkls.length ? pkls.join(', ') : 'none'}`);
    const prefix = pkls[0]!.slice(0, -'data.pkl'.length);
    const byteorder = zip.entries.get(`${prefix}byteorder`);
    if (byteorder) {
      const order = new TextDecoder().decode(await zip.read(byteorder)).trim();
      if (order !== 'little') throw new Error(`${path}: storages are ${order}-endian; only little-endian checkpoints are supported`);
    }
    const storages = new Map<string, StorageRef>();
    const root = unpickle(await zip.read(zip.entry(pkls[0]!)), torchGlobals(storages), `${path} (${pkls[0]})`);
    const refs = collectTensors(root, path);
    if (!refs.size && !(root instanceof PyDict)) throw new Error(`${path}: the pickle holds ${describe(root)}, not a state dict of tensors`);

    const records = new Map<string, TorchTensor>();
    for (const [name, ref] of refs) {
      const where = `${path}: tensor '${name}'`;
      const { storage } = ref;
      const size = STORED_DTYPE_BYTES[storage.dtype];
      const entry = zip.entries.get(`${prefix}data/${storage.key}`);
      if (!entry) throw new Error(`${where}: its storage '${prefix}data/${storage.key}' is missing from the archive`);
      if (entry.method !== 0) throw new Error(`${where}: storage '${storage.key}' is compressed (zip method ${entry.method}); torch.save stores storages uncompressed, so the file was re-zipped: re-save it with torch.save`);
      if (entry.size < storage.numel * size) {
        throw new Error(`${where}: storage '${storage.key}' should hold ${storage.numel} ${storage.dtype} elements (${storage.numel * size} bytes) but has ${entry.size} bytes`);
      }
      const numel = numelOf(ref.shape);
      if (numel > 0) {
        const last = ref.offset + ref.shape.reduce((acc, d, i) => acc + (d - 1) * ref.stride[i]!, 0);
        if (last >= storage.numel) {
          throw new Error(`${where}: view (offset ${ref.offset}, size ${JSON.stringify(ref.shape)}, stride ${JSON.stringify(ref.stride)}) reaches element ${last} of a ${storage.numel}-element storage`);
        }
      }
      records.set(name, { name, dtype: storage.dtype, shape: ref.shape, byteLength: numel * size, file: path, ref, entry });
    }
    return new TorchCheckpoint(zip, records);
  }

  async *chunks(name: string, maxBytes: number): AsyncGenerator<Uint8Array> {
    const t = this.records.get(name);
    if (!t) throw new Error(`${this.path}: no tensor '${name}'`);
    const size = STORED_DTYPE_BYTES[t.dtype];
    const step = pieceBytes(maxBytes, size);
    const { begin } = await this.zip.range(t.entry);
    const what = `tensor '${name}'`;
    if (isContiguous(t.ref.shape, t.ref.stride)) {
      const start = begin + t.ref.offset * size;
      for (let at = 0; at < t.byteLength; at += step) {
        yield await this.zip.file.read(start + at, Math.min(step, t.byteLength - at), what);
      }
      return;
    }
    // A strided view: read the span of storage it touches, then gather its elements in order.
    const last = t.ref.offset + t.ref.shape.reduce((acc, d, i) => acc + (d - 1) * t.ref.stride[i]!, 0);
    const span = await this.zip.file.read(begin + t.ref.offset * size, (last - t.ref.offset + 1) * size, what);
    const gathered = gather(span, size, t.ref.shape, t.ref.stride);
    for (let at = 0; at < gathered.byteLength; at += step) yield gathered.slice(at, Math.min(at + step, gathered.byteLength));
  }

  async close(): Promise<void> {
    await this.zip.file.close();
  }
}

/** Copies a strided view (element 0 at span[0]) into a contiguous row-major buffer. */
function gather(span: Uint8Array, size: number, shape: readonly number[], stride: readonly number[]): Uint8Array {
  const numel = numelOf(shape);
  const out = new Uint8Array(numel * size);
  // Elements move as 1, 2 or 4-byte words (8-byte ones as two words) so that no float is reinterpreted.
  const word = Math.min(size, 4);
  const perElement = size / word;
  const view = (b: Uint8Array) => (word === 1 ? b : word === 2 ? new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2) : new Uint32Array(b.buffer, b.byteOffset, b.byteLength / 4));
  const src = view(span);
  const dst = view(out);
  const rank = shape.length;
  const index = new Array<number>(rank).fill(0);
  let from = 0;
  for (let i = 0; i < numel; i++) {
    for (let w = 0; w < perElement; w++) dst[i * perElement + w] = src[from * perElement + w]!;
    // Advance the multi-index odometer-style, keeping the source element offset in step.
    for (let d = rank - 1; d >= 0; d--) {
      if (++index[d]! < shape[d]!) {
        from += stride[d]!;
        break;
      }
      from -= (shape[d]! - 1) * stride[d]!;
      index[d] = 0;
    }
  }
  return out;
}
