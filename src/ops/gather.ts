/** Embedding lookup: rows of a [vocab, dim] table selected by token ids. */
import { DTYPE_BYTES, type DType } from '../engine/dtype.js';
import { formatShape, type Tensor } from '../engine/tensor.js';
import { rowChunks } from './support/chunks.js';
import { expectDType, FLOAT_DTYPES } from './support/shape.js';

/**
 * out[..., :] = table[ids[...], :]. Ids given as numbers are checked on the CPU (an id outside
 * [0, vocab) is an error naming it); ids already on the GPU cannot be, and give zero rows instead.
 */
export function embedding(table: Tensor, ids: Tensor | ArrayLike<number>, dtype?: DType): Tensor {
  expectDType('embedding', table, FLOAT_DTYPES, 'table');
  if (table.rank !== 2) throw new RangeError(`embedding: table ${formatShape(table.shape)} must be [vocab, dim]`);
  const [vocab, dim] = table.shape as [number, number];
  const engine = table.engine;
  let idTensor: Tensor;
  if (ArrayBuffer.isView(ids) || Array.isArray(ids)) {
    const list = ids as ArrayLike<number>;
    for (let i = 0; i < list.length; i++) {
      const id = list[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new RangeError(`embedding: id ${id} at position ${i} is outside the vocabulary [0, ${vocab})`);
    }
    idTensor = engine.tensor(Uint32Array.from(list), [list.length], 'u32');
  } else {
    idTensor = (ids as Tensor).view((ids as Tensor).shape);
    expectDType('embedding', idTensor, ['i32', 'u32'], 'ids');
  }
  const outType = dtype ?? table.dtype;
  const count = idTensor.size;
  const out = engine.empty([...idTensor.shape, dim], outType);
  const flatIds = idTensor.reshape([count]);
  const flatOut = out.reshape([count, dim]);
  const tableChunks = rowChunks(engine, 'embedding', vocab, [dim * DTYPE_BYTES[table.dtype]]);
  const idChunks = rowChunks(engine, 'embedding', count, [4, dim * DTYPE_BYTES[outType]]);
  for (const [t0, t1] of idChunks) {
    const idPart = flatIds.rows(t0, t1);
    const outPart = flatOut.rows(t0, t1);
    for (const [r0, r1] of tableChunks) {
      const rows = r0 === 0 && r1 === vocab ? table.view(table.shape) : table.rows(r0, r1);
      engine.run(
        { file: 'gather.wgsl', entry: 'gather', dtypes: { table: table.dtype, out: outType } },
        { ids: idPart, table: rows, out: outPart },
        { n: (t1 - t0) * dim, dim, vocab, row_begin: r0, row_end: r1 },
        Math.ceil(((t1 - t0) * dim) / 64),
      );
      rows.dispose();
    }
    idPart.dispose();
    outPart.dispose();
  }
  flatIds.dispose();
  flatOut.dispose();
  idTensor.dispose();
  return out;
}
