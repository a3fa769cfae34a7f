/**
 * A restricted pickle reader. It understands the data opcodes of protocols 0-5 (numbers, strings,
 * bytes, lists, tuples, dicts, sets, memo) and hands every reference to a global, every call and
 * every persistent id to the caller's hooks, which decide what they mean. Nothing is ever executed:
 * a global the hooks do not know is an error, and so are the opcodes that exist only to build
 * arbitrary objects (INST, OBJ, extension registry, out-of-band buffers).
 */

/** A Python tuple (kept apart from lists so callers can check what they were given). */
export class PyTuple {
  constructor(readonly items: readonly PickleValue[]) {}
}

/** A Python dict (or OrderedDict) with insertion order kept; `attributes` holds BUILD state. */
export class PyDict {
  readonly map = new Map<DictKey, PickleValue>();
  attributes?: PickleValue;
}

export type DictKey = string | number | bigint | boolean | null;

/** What a global resolves to: a callable the hooks implement (REDUCE, NEWOBJ), or a plain marker value. */
export interface PyGlobal {
  readonly qualifiedName: string;
  call?(args: readonly PickleValue[]): PickleValue;
}

/**
 * A decoded value: null, booleans, numbers (bigint beyond 2^53), strings, Uint8Array (bytes),
 * arrays (lists), PyTuple, PyDict, Set, or whatever object a hook returned.
 */
export type PickleValue = null | boolean | number | bigint | string | object;

export interface UnpicklerHooks {
  /** Resolves `module.name`, or throws when it is not allowed. */
  findGlobal(module: string, name: string): PyGlobal;
  /** Resolves a persistent id (torch: a storage). */
  persistentLoad?(pid: PickleValue): PickleValue;
  /** Applies BUILD state to an object the hooks made; PyDicts keep it as `attributes` by default. */
  build?(target: PickleValue, state: PickleValue): void;
}

export class PickleError extends Error {}

const OPCODE_NAMES: Record<number, string> = {
  0x69: 'INST', 0x6f: 'OBJ', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

const MARK = Symbol('mark');
type StackItem = PickleValue | typeof MARK;

/** Unpickles `data`; `source` names the file (and entry) in errors. */
export function unpickle(data: Uint8Array, hooks: UnpicklerHooks, source: string): PickleValue {
  return new Unpickler(data, hooks, source).load();
}

class Unpickler {
  private pos = 0;
  private stack: StackItem[] = [];
  private readonly metastack: StackItem[][] = [];
  private readonly memo = new Map<number, PickleValue>();
  private readonly view: DataView;
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  private opStart = 0;

  constructor(
    private readonly data: Uint8Array,
    private readonly hooks: UnpicklerHooks,
    private readonly source: string,
  ) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  load(): PickleValue {
    try {
      return this.run();
    } catch (err) {
      if (err instanceof PickleError) throw err;
      throw this.fail((err as Error).message);
    }
  }

  /** An error naming the source, the byte offset and, inside a dict of named items, the item being read. */
  private fail(message: string): PickleError {
    const key = this.currentKey();
    return new PickleError(`${this.source}: ${key !== undefined ? `tensor '${key}': ` : ''}${message} (pickle byte ${this.opStart})`);
  }

  /**
   * The key whose value is being unpickled, when the outermost MARK region holds key/value pairs
   * (a state dict's SETITEMS): items alternate key, value, and a value still being built has its
   * pieces (callable, arguments) after its key, so the key is the last one at an even index.
   * A one-item dict is filled by SETITEM without a MARK: then the items sit above the dict itself.
   */
  private currentKey(): string | undefined {
    const regions = [...this.metastack, this.stack];
    const items = regions.length > 1 ? regions[1] : regions[0]!.slice(1);
    if (!items?.length) return undefined;
    const key = items[2 * Math.floor((items.length - 1) / 2)];
    return typeof key === 'string' ? key : undefined;
  }

  private run(): PickleValue {
    for (;;) {
      this.opStart = this.pos;
      const op = this.byte();
      switch (op) {
        case 0x80: this.byte(); break; // PROTO
        case 0x95: this.bytes(8); break; // FRAME: a length hint only
        case 0x2e: { // STOP
          const v = this.pop();
          if (this.stack.length || this.metastack.length) throw this.fail('STOP with items left on the stack');
          return v;
        }
        case 0x28: this.metastack.push(this.stack); this.stack = []; break; // MARK
        case 0x30: this.pop(); break; // POP
        case 0x31: this.popMark(); break; // POP_MARK
        case 0x32: this.push(this.top()); break; // DUP
        case 0x4e: this.push(null); break; // NONE
        case 0x88: this.push(true); break; // NEWTRUE
        case 0x89: this.push(false); break; // NEWFALSE
        case 0x4a: this.push(this.view.getInt32(this.advance(4), true)); break; // BININT
        case 0x4b: this.push(this.byte()); break; // BININT1
        case 0x4d: this.push(this.view.getUint16(this.advance(2), true)); break; // BININT2
        case 0x8a: this.push(this.long(this.byte())); break; // LONG1
        case 0x8b: this.push(this.long(this.count32())); break; // LONG4
        case 0x49: this.push(this.textInt()); break; // INT
        case 0x4c: this.push(this.textLong()); break; // LONG
        case 0x47: this.push(this.view.getFloat64(this.advance(8), false)); break; // BINFLOAT (big-endian)
        case 0x46: this.push(this.textFloat()); break; // FLOAT
        case 0x58: this.push(this.utf8.decode(this.bytes(this.count32()))); break; // BINUNICODE
        case 0x8c: this.push(this.utf8.decode(this.bytes(this.byte()))); break; // SHORT_BINUNICODE
        case 0x8d: this.push(this.utf8.decode(this.bytes(this.count64()))); break; // BINUNICODE8
        case 0x56: this.push(this.rawUnicode(this.line())); break; // UNICODE
        case 0x54: this.push(latin1(this.bytes(this.count32()))); break; // BINSTRING (Python 2 str: bytes as latin-1)
        case 0x55: this.push(latin1(this.bytes(this.byte()))); break; // SHORT_BINSTRING
        case 0x53: this.push(this.quotedString(this.line())); break; // STRING
        case 0x42: this.push(this.bytes(this.count32()).slice()); break; // BINBYTES
        case 0x43: this.push(this.bytes(this.byte()).slice()); break; // SHORT_BINBYTES
        case 0x8e: this.push(this.bytes(this.count64()).slice()); break; // BINBYTES8
        case 0x96: this.push(this.bytes(this.count64()).slice()); break; // BYTEARRAY8
        case 0x5d: this.push([]); break; // EMPTY_LIST
        case 0x6c: this.push(this.popMark()); break; // LIST
        case 0x61: { // APPEND
          const v = this.pop();
          this.list(this.top()).push(v);
          break;
        }
        case 0x65: { // APPENDS
          const items = this.popMark();
          const list = this.list(this.top());
          for (const item of items) list.push(item); // not push(...items): a long list overflows the call stack as arguments
          break;
        }
        case 0x29: this.push(new PyTuple([])); break; // EMPTY_TUPLE
        case 0x74: this.push(new PyTuple(this.popMark())); break; // TUPLE
        case 0x85: this.push(new PyTuple(this.popN(1))); break; // TUPLE1
        case 0x86: this.push(new PyTuple(this.popN(2))); break; // TUPLE2
        case 0x87: this.push(new PyTuple(this.popN(3))); break; // TUPLE3
        case 0x7d: this.push(new PyDict()); break; // EMPTY_DICT
        case 0x64: { // DICT
          const d = new PyDict();
          this.setItems(d, this.popMark());
          this.push(d);
          break;
        }
        case 0x73: { // SETITEM
          const [k, v] = this.popN(2);
          this.setItems(this.dict(this.top()), [k!, v!]);
          break;
        }
        case 0x75: { // SETITEMS
          const items = this.popMark();
          this.setItems(this.dict(this.top()), items);
          break;
        }
        case 0x8f: this.push(new Set<DictKey>()); break; // EMPTY_SET
        case 0x90: { // ADDITEMS
          const items = this.popMark();
          const s = this.top();
          if (!(s instanceof Set)) throw this.fail('ADDITEMS on something that is not a set');
          for (const item of items) s.add(this.key(item));
          break;
        }
        case 0x91: this.push(new Set(this.popMark().map((v) => this.key(v)))); break; // FROZENSET
        case 0x67: this.push(this.memoGet(Number(this.line()))); break; // GET
        case 0x68: this.push(this.memoGet(this.byte())); break; // BINGET
        case 0x6a: this.push(this.memoGet(this.count32())); break; // LONG_BINGET
        case 0x70: this.memo.set(Number(this.line()), this.top()); break; // PUT
        case 0x71: this.memo.set(this.byte(), this.top()); break; // BINPUT
        case 0x72: this.memo.set(this.count32(), this.top()); break; // LONG_BINPUT
        case 0x94: this.memo.set(this.memo.size, this.top()); break; // MEMOIZE
        case 0x63: { // GLOBAL
          const module = this.line();
          const name = this.line();
          this.push(this.global(module, name));
          break;
        }
        case 0x93: { // STACK_GLOBAL
          const [module, name] = this.popN(2);
          if (typeof module !== 'string' || typeof name !== 'string') throw this.fail('STACK_GLOBAL needs two strings');
          this.push(this.global(module, name));
          break;
        }
        case 0x52: { // REDUCE
          const args = this.pop();
          const fn = this.pop();
          if (!(args instanceof PyTuple)) throw this.fail('REDUCE arguments are not a tuple');
          this.push(this.call(fn, args.items));
          break;
        }
        case 0x81: { // NEWOBJ: cls.__new__(cls, *args), which the hooks treat as a call
          const args = this.pop();
          const cls = this.pop();
          if (!(args instanceof PyTuple)) throw this.fail('NEWOBJ arguments are not a tuple');
          this.push(this.call(cls, args.items));
          break;
        }
        case 0x92: { // NEWOBJ_EX
          const [cls, args, kwargs] = this.popN(3);
          if (!(args instanceof PyTuple) || !(kwargs instanceof PyDict) || kwargs.map.size) throw this.fail('NEWOBJ_EX with keyword arguments is not supported');
          this.push(this.call(cls!, args.items));
          break;
        }
        case 0x62: { // BUILD
          const state = this.pop();
          const target = this.top();
          if (this.hooks.build) this.hooks.build(target, state);
          else if (target instanceof PyDict) target.attributes = state;
          else throw this.fail(`BUILD (setting object state) on ${describe(target)} is not supported`);
          break;
        }
        case 0x51: { // BINPERSID
          const pid = this.pop();
          this.push(this.persistent(pid));
          break;
        }
        case 0x50: this.push(this.persistent(this.line())); break; // PERSID
        default: {
          const known = OPCODE_NAMES[op];
          throw this.fail(known
            ? `pickle opcode ${known} is not allowed: it builds arbitrary objects`
            : `unknown pickle opcode 0x${op.toString(16).padStart(2, '0')} (corrupt data, or a protocol newer than 5)`);
        }
      }
    }
  }

  private global(module: string, name: string): PyGlobal {
    try {
      return this.hooks.findGlobal(module, name);
    } catch (err) {
      throw this.fail((err as Error).message);
    }
  }

  private call(fn: PickleValue, args: readonly PickleValue[]): PickleValue {
    const g = fn as PyGlobal;
    if (!fn || typeof fn !== 'object' || typeof g.call !== 'function') throw this.fail(`${describe(fn)} is not callable`);
    try {
      return g.call(args);
    } catch (err) {
      throw this.fail(`${g.qualifiedName}: ${(err as Error).message}`);
    }
  }

  private persistent(pid: PickleValue): PickleValue {
    if (!this.hooks.persistentLoad) throw this.fail('persistent ids are not allowed here');
    try {
      return this.hooks.persistentLoad(pid);
    } catch (err) {
      throw this.fail((err as Error).message);
    }
  }

  private setItems(d: PyDict, items: PickleValue[]): void {
    if (items.length % 2) throw this.fail('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) {
      const k = this.key(items[i]!);
      if (d.map.has(k)) throw this.fail(`duplicate key ${JSON.stringify(typeof k === 'bigint' ? String(k) : k)} in a dict`);
      d.map.set(k, items[i + 1]!);
    }
  }

  private key(v: PickleValue): DictKey {
    if (v === null || ['string', 'number', 'bigint', 'boolean'].includes(typeof v)) return v as DictKey;
    throw this.fail(`dict or set key of type ${describe(v)} is not supported`);
  }

  private list(v: StackItem): PickleValue[] {
    if (!Array.isArray(v)) throw this.fail('APPEND to something that is not a list');
    return v;
  }

  private dict(v: StackItem): PyDict {
    if (!(v instanceof PyDict)) throw this.fail(`SETITEM on ${describe(v as PickleValue)}, not a dict`);
    return v;
  }

  private memoGet(i: number): PickleValue {
    if (!this.memo.has(i)) throw this.fail(`memo entry ${i} does not exist`);
    return this.memo.get(i)!;
  }

  private push(v: PickleValue): void {
    this.stack.push(v);
  }

  private top(): PickleValue {
    if (!this.stack.length) throw this.fail('stack underflow');
    return this.stack[this.stack.length - 1] as PickleValue;
  }

  private pop(): PickleValue {
    if (!this.stack.length) throw this.fail('stack underflow');
    return this.stack.pop() as PickleValue;
  }

  private popN(n: number): PickleValue[] {
    if (this.stack.length < n) throw this.fail('stack underflow');
    return this.stack.splice(this.stack.length - n, n) as PickleValue[];
  }

  private popMark(): PickleValue[] {
    const items = this.stack;
    const outer = this.metastack.pop();
    if (!outer) throw this.fail('no MARK to pop to');
    this.stack = outer;
    return items as PickleValue[];
  }

  private advance(n: number): number {
    const at = this.pos;
    if (at + n > this.data.byteLength) throw this.fail('truncated pickle');
    this.pos += n;
    return at;
  }

  private byte(): number {
    return this.data[this.advance(1)]!;
  }

  private bytes(n: number): Uint8Array {
    const at = this.advance(n);
    return this.data.subarray(at, at + n);
  }

  private count32(): number {
    return this.view.getUint32(this.advance(4), true);
  }

  private count64(): number {
    const v = this.view.getBigUint64(this.advance(8), true);
    if (v > BigInt(this.data.byteLength)) throw this.fail('truncated pickle');
    return Number(v);
  }

  /** Little-endian two's complement integer of n bytes: a number when exact, else a bigint. */
  private long(n: number): number | bigint {
    const bytes = this.bytes(n);
    if (!n) return 0;
    // Read as one hex literal: shifting the bytes in one at a time is quadratic in n, which LONG4 lets reach gigabytes.
    let v = BigInt(`0x${Buffer.from(bytes).reverse().toString('hex')}`);
    if (bytes[n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  private line(): string {
    const end = this.data.indexOf(0x0a, this.pos);
    if (end < 0) throw this.fail('truncated pickle (no newline)');
    const s = new TextDecoder().decode(this.data.subarray(this.pos, end));
    this.pos = end + 1;
    return s;
  }

  private textInt(): number | boolean | bigint {
    const s = this.line();
    if (s === '00') return false;
    if (s === '01') return true;
    return this.parseInt(s);
  }

  private textLong(): number | bigint {
    return this.parseInt(this.line().replace(/L$/, ''));
  }

  private parseInt(s: string): number | bigint {
    if (!/^[-+]?\d+$/.test(s)) throw this.fail(`bad integer literal ${JSON.stringify(s)}`);
    const v = BigInt(s);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  private textFloat(): number {
    const s = this.line();
    const v = Number(s);
    if (Number.isNaN(v) && !/nan/i.test(s)) throw this.fail(`bad float literal ${JSON.stringify(s)}`);
    return v;
  }

  private rawUnicode(s: string): string {
    return s.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, u4: string, u8: string) => String.fromCodePoint(parseInt(u4 ?? u8, 16)));
  }

  private quotedString(s: string): string {
    const m = /^(['"])(.*)\1$/s.exec(s);
    if (!m) throw this.fail(`bad STRING literal ${JSON.stringify(s)}`);
    return m[2]!.replace(/\\(x[0-9a-fA-F]{2}|.)/g, (_, e: string) => {
      if (e[0] === 'x') return String.fromCharCode(parseInt(e.slice(1), 16));
      return ({ n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"' } as Record<string, string>)[e] ?? `\\${e}`;
    });
  }
}

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

export function describe(v: PickleValue | undefined): string {
  if (v === null) return 'None';
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof PyTuple) return 'a tuple';
  if (v instanceof PyDict) return 'a dict';
  if (v instanceof Set) return 'a set';
  if (v instanceof Uint8Array) return 'bytes';
  if (typeof v === 'object' && typeof (v as PyGlobal).qualifiedName === 'string') return (v as PyGlobal).qualifiedName;
  return typeof v;
}
