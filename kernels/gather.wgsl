// Embedding lookup: out[t, :] = table[ids[t], :]. Ids outside [0, vocab) give zero rows (negative
// i32 ids read as huge u32). A table too big for one binding is bound in row ranges
// [row_begin, row_end), one dispatch per range, each writing only the rows it holds.

struct Params {
  n: u32,          // output elements (ids x dim)
  dim: u32,
  vocab: u32,
  row_begin: u32,
  row_end: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<table_t>;
@group(0) @binding(3) var<storage, read_write> out: array<out_t>;

@compute @workgroup_size(64)
fn gather(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let i = (wg.x + wg.y * nwg.x) * 64u + lid;
  if (i >= p.n) { return; }
  let t = i / p.dim;
  let j = i % p.dim;
  let id = ids[t];
  if (id >= p.vocab) {
    out_st(i, 0.0);
  } else if (id >= p.row_begin && id < p.row_end) {
    out_st(i, table_ld((id - p.row_begin) * p.dim + j));
  }
}
