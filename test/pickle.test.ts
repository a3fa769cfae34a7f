/** The restricted unpickler on pickles Python wrote (hex below, with the expression that made each). */
import { describe, expect, it } from 'vitest';
import { PyDict, PyTuple, unpickle, type PyGlobal, type UnpicklerHooks } from '../src/io/pickle.js';

const bytes = (hex: string) => Uint8Array.from(Buffer.from(hex, 'hex'));

/** Allows collections.OrderedDict only. */
const hooks: UnpicklerHooks = {
  findGlobal(module, name) {
    if (`${module}.${name}` === 'collections.OrderedDict') return { qualifiedName: 'collections.OrderedDict', call: () => new PyDict() } satisfies PyGlobal;
    throw new Error(`global '${module}.${name}' is not allowed`);
  },
};

describe('unpickle', () => {
  it('decodes protocol 3 data: ints, floats, big ints, None/True/False, unicode, bytes, memo', () => {
    // pickle.dumps({'a': 1, 'b': [1.5, -2, 2**70, -(2**40)], 'c': (None, True, False), 'd': 'é✓', 'e': b'\x00\x01'}, protocol=3)
    const v = unpickle(bytes('80037d71002858010000006171014b0158010000006271025d710328473ff80000000000004afeffffff8a090000000000000000408a060000000000ff6558010000006371044e888987710558010000006471065805000000c3a9e29c9371075801000000657108430200017109752e'), hooks, 'p3') as PyDict;
    expect(v).toBeInstanceOf(PyDict);
    expect([...v.map.keys()]).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(v.map.get('a')).toBe(1);
    expect(v.map.get('b')).toEqual([1.5, -2, 2n ** 70n, -(2 ** 40)]);
    expect((v.map.get('c') as PyTuple).items).toEqual([null, true, false]);
    expect(v.map.get('d')).toBe('é✓');
    expect(Array.from(v.map.get('e') as Uint8Array)).toEqual([0, 1]);
  });

  it('decodes protocol 4 (FRAME, STACK_GLOBAL, MEMOIZE, frozenset) through the allowed global', () => {
    // pickle.dumps(OrderedDict([('x', (1, 2, 3)), ('y', {'z': frozenset([1])})]), protocol=4)
    const v = unpickle(bytes('80049540000000000000008c0b636f6c6c656374696f6e73948c0b4f72646572656444696374949394295294288c0178944b014b024b0387948c0179947d948c017a94284b01919473752e'), hooks, 'p4') as PyDict;
    expect((v.map.get('x') as PyTuple).items).toEqual([1, 2, 3]);
    expect((v.map.get('y') as PyDict).map.get('z')).toEqual(new Set([1]));
  });

  it('decodes protocol 0 text opcodes', () => {
    // pickle.dumps({'a': [1, 'x', 2.5]}, protocol=0)
    const v = unpickle(bytes('286470300a56610a70310a286c70320a49310a6156780a70330a6146322e350a61732e'), hooks, 'p0') as PyDict;
    expect(v.map.get('a')).toEqual([1, 'x', 2.5]);
  });

  it('refuses a global it was not given, naming the key being read', () => {
    // pickle.dumps({'k': E()}, protocol=2) where E.__reduce__ returns (os.system, ('true',))
    expect(() => unpickle(bytes('80027d710058010000006b710163706f7369780a73797374656d0a71025804000000747275657103857104527105732e'), hooks, 'evil.pkl'))
      .toThrow(/^evil\.pkl: tensor 'k': global 'posix\.system' is not allowed \(pickle byte 13\)$/);
  });

  it('refuses opcodes that build arbitrary objects, unknown opcodes, and broken streams', () => {
    expect(() => unpickle(bytes('28695f5f6d61696e5f5f0a4f0a2e'), hooks, 'inst.pkl')).toThrow(/inst\.pkl: pickle opcode INST is not allowed/); // (i__main__\nO\n.
    expect(() => unpickle(bytes('8002ff'), hooks, 'x.pkl')).toThrow(/unknown pickle opcode 0xff/);
    expect(() => unpickle(bytes('80025801000000'), hooks, 'x.pkl')).toThrow(/truncated pickle/);
    expect(() => unpickle(bytes('80022e'), hooks, 'x.pkl')).toThrow(/stack underflow/);
    // {'a': 1, 'a': 2} built by hand: EMPTY_DICT MARK 'a' 1 'a' 2 SETITEMS STOP
    expect(() => unpickle(bytes('80027d28580100000061' + '4b01' + '5801000000614b02' + '752e'), hooks, 'dup.pkl')).toThrow(/dup\.pkl: .*duplicate key "a"/);
    expect(() => unpickle(bytes('80024b01512e'), { findGlobal: hooks.findGlobal }, 'pid.pkl')).toThrow(/persistent ids are not allowed/);
  });

  it('reads a million-item APPENDS and lists nested 200,000 deep without recursing', () => {
    const n = 1_000_000;
    // EMPTY_LIST MARK BININT1(1) x n APPENDS STOP
    const long = unpickle(Buffer.concat([bytes('80025d28'), Buffer.from('4b01'.repeat(n), 'hex'), bytes('652e')]), hooks, 'long.pkl') as number[];
    expect(long.length).toBe(n);
    expect(long[n - 1]).toBe(1);
    // EMPTY_LIST x d, then APPEND x (d - 1): each list goes into the one below it.
    const d = 200_000;
    let list = unpickle(Buffer.concat([bytes('8002'), Buffer.alloc(d, 0x5d), Buffer.alloc(d - 1, 0x61), bytes('2e')]), hooks, 'deep.pkl') as unknown[];
    let depth = 0;
    for (; list.length; depth++) list = list[0] as unknown[];
    expect(depth).toBe(d - 1);
  });

  it('reads a huge LONG4 in linear time', () => {
    // LONG4 of 1 MB of 0x01 bytes, STOP; shifting them in one by one took minutes.
    const n = 1 << 20;
    const data = Buffer.concat([bytes('80028b00000000'), Buffer.alloc(n, 1), bytes('2e')]);
    data.writeUInt32LE(n, 3);
    const v = unpickle(data, hooks, 'long4.pkl') as bigint;
    expect(v % 65536n).toBe(0x0101n);
    expect(v >> BigInt(8 * n - 8)).toBe(1n);
  });
});
