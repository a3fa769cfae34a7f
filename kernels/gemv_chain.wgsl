// Consecutive one-row products (LLM decoding) in one dispatch, for CPU adapters: up to four GEMV
// stages, each able to feed on the outputs of earlier ones. On lavapipe a dispatch boundary costs
// far more than the work of a small GEMV's last rows: the hand-over to the worker threads and back,
// and a core idle while the slowest worker finishes. Here the dispatch's NWG workgroups, one per
// worker thread, take chunks of rows from a shared counter stage after stage, and a stage starts
// once every chunk of the one before is finished (counted in memory).
//
// A workgroup only ever waits for chunks that others have taken, and a workgroup that has taken a
// chunk is running, so no order or grouping of threads can deadlock it; ops/gemv-chain.ts asks for
// one workgroup per worker thread and no more than there are cores, since a waiting workgroup
// spins. GPUs run the stages as separate GEMVs: many workgroups suit them better.
//
// Stage s writes out_s[o] = W_s[o]·x_s (+ residual_s[o]) into the arena, where
//   x_s is the stage's input, RMS-normalised first under PRE_NORM: x[k] * norm_s[k] / rms(x);
//   GATED: out[o] = act(W[o]·x) * (W[N + o]·x), W holding N gate rows then N up rows (SwiGLU).
// Inputs and residuals come from src0 or src1 (tensors from before the chain) or from the arena
// (earlier stages' outputs). Work split as in gemv_rows: a lane owns 4 weight rows (4 outputs, or
// 2 gate/up pairs) and walks k in steps of 8, the 8 input values of a step shared by
// subgroupBroadcast; the workgroups take chunks of 32 rows as they finish their last.
// Entry attend_then_chain first runs a layer's decoding attention (lib/chain_attention.wgsl),
// whose output starts the arena: with the next layer's q|k|v as the last stage, a whole decoding
// layer is one dispatch.
//
// The stage index is a literal at each call of run_stage, so once the shader compiler has inlined
// the call, every switch on it below selects one binding at compile time.
// A workgroup is one subgroup, and every branch on a shared value (a chunk index, a count of
// finished chunks) takes a value broadcast from lane 0 or read by every lane alike, so all lanes
// always take it together; WGSL's analysis cannot see through the broadcast of an atomic's result.
diagnostic(off, subgroup_uniformity);
#include "lib/activation.wgsl"

struct Params {
  eps: vec4<f32>,                // per stage: RMSNorm epsilon under PRE_NORM
  dims: array<vec4<u32>, 4>,     // per stage: outputs N, K, input offset, output offset (arena)
  residual_at: vec4<u32>,        // per stage: residual offset
  // attend_then_chain only (lib/chain_attention.wgsl):
  attend: vec4<u32>,             // the step's position, its rotary table offset, output offset (arena), cache rows per head
  heads: vec4<u32>,              // query heads, kv heads, head dim
  scale: f32,                    // softmax scale
}

// What each stage does and where it reads, fixed per pipeline so that the shader compiler folds
// every choice on it away: flags in bits 0-2, the input's source in bits 4-5, the residual's in
// bits 6-7, the gate's activation code (lib/activation.wgsl) from bit 8.
override STAGES: u32 = 1u;
override FORM0: u32 = 0u;
override FORM1: u32 = 0u;
override FORM2: u32 = 0u;
override FORM3: u32 = 0u;
const PRE_NORM = 1u;
const GATED = 2u;
const RESIDUAL = 4u;
const SRC0 = 0u;
const SRC1 = 1u;   // anything else: the arena

override NWG: u32 = 1u;    // workgroups: each runs on its own worker thread
override B_PAIRS: bool = false;  // every weight row starts at an even element: load f16 weights in pairs

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w0: array<w0_t>;
@group(0) @binding(2) var<storage, read> w1: array<w1_t>;
@group(0) @binding(3) var<storage, read> w2: array<w2_t>;
@group(0) @binding(4) var<storage, read> w3: array<w3_t>;
@group(0) @binding(5) var<storage, read> norm0: array<norm0_t>;
@group(0) @binding(6) var<storage, read> norm1: array<norm1_t>;
@group(0) @binding(7) var<storage, read> norm2: array<norm2_t>;
@group(0) @binding(8) var<storage, read> norm3: array<norm3_t>;
@group(0) @binding(9) var<storage, read> src0: array<src0_t>;
@group(0) @binding(10) var<storage, read> src1: array<src1_t>;
@group(0) @binding(11) var<storage, read_write> arena: array<f32>;
// Shared with other on-demand kernels (src/ops/support/work-sharing.ts), zero between dispatches. Here
// [s]: chunks of stage s handed out; [4 + s]: chunks of stage s finished; [8]: workgroups done;
// [9], [10]: attention heads handed out and finished (lib/chain_attention.wgsl).
@group(0) @binding(12) var<storage, read_write> counters: array<atomic<u32>>;

fn form(s: u32) -> u32 {
  switch s {
    case 0u: { return FORM0; }
    case 1u: { return FORM1; }
    case 2u: { return FORM2; }
    default: { return FORM3; }
  }
}

fn w_ld(s: u32, i: u32) -> f32 {
  switch s {
    case 0u: { return w0_ld(i); }
    case 1u: { return w1_ld(i); }
    case 2u: { return w2_ld(i); }
    default: { return w3_ld(i); }
  }
}

fn w_ld2(s: u32, i: u32) -> vec2<f32> {
  switch s {
    case 0u: { return w0_ld2(i); }
    case 1u: { return w1_ld2(i); }
    case 2u: { return w2_ld2(i); }
    default: { return w3_ld2(i); }
  }
}

fn norm_ld(s: u32, i: u32) -> f32 {
  switch s {
    case 0u: { return norm0_ld(i); }
    case 1u: { return norm1_ld(i); }
    case 2u: { return norm2_ld(i); }
    default: { return norm3_ld(i); }
  }
}

/** Element i of a vector source: src0, src1 or the arena. */
fn source_ld(source: u32, i: u32) -> f32 {
  switch source {
    case SRC0: { return src0_ld(i); }
    case SRC1: { return src1_ld(i); }
    default: { return arena[i]; }
  }
}

/** Weights k..k+7 of a row. */
fn w8(s: u32, base: u32) -> array<vec4<f32>, 2> {
  if (B_PAIRS) {
    return array<vec4<f32>, 2>(vec4<f32>(w_ld2(s, base), w_ld2(s, base + 2u)), vec4<f32>(w_ld2(s, base + 4u), w_ld2(s, base + 6u)));
  }
  return array<vec4<f32>, 2>(vec4<f32>(w_ld(s, base), w_ld(s, base + 1u), w_ld(s, base + 2u), w_ld(s, base + 3u)),
                             vec4<f32>(w_ld(s, base + 4u), w_ld(s, base + 5u), w_ld(s, base + 6u), w_ld(s, base + 7u)));
}

/** Chunks of 32 weight rows (16 gate/up pairs) in stage s. */
fn chunks_in(s: u32) -> u32 {
  let per_chunk = select(32u, 16u, (form(s) & GATED) != 0u);
  return (p.dims[s].x + per_chunk - 1u) / per_chunk;
}

/**
 * The next chunk of stage s for this workgroup. Chunks are handed out as asked for, not dealt in
 * turn: a worker thread the OS pre-empts (for our own host thread, say) then holds up the others
 * for at most the chunk it is in, not for its whole share.
 */
fn next_chunk(s: u32, lane: u32) -> u32 {
  var taken = 0u;
  if (lane == 0u) { taken = atomicAdd(&counters[s], 1u); }
  return subgroupBroadcast(taken, 0u);
}

/** Counts a finished chunk of stage s, after its stores. */
fn chunk_done(s: u32, lane: u32) {
  if (lane == 0u) { atomicAdd(&counters[4u + s], 1u); }
}

/**
 * Waits until every chunk of stage s is finished. It waits for chunks, not for the other
 * workgroups: one that starts late (its thread slow to wake) holds nobody up, and finds the early
 * stages' chunks all taken. Atomic read-modify-writes order the stages' plain stores and loads
 * around it, and (unlike atomicLoad) a compiler cannot hoist them out of the loop. Every lane
 * spins alike: a workgroup is one subgroup.
 */
fn wait_for_stage(s: u32) {
  let all = chunks_in(s);
  loop {
    if (atomicAdd(&counters[4u + s], 0u) >= all) { break; }
  }
}

/** The last workgroup out resets the counters for the next dispatch (all others are done with them). */
fn leave(lane: u32) {
  if (lane == 0u && atomicAdd(&counters[8], 1u) == NWG - 1u) {
    for (var i = 0u; i < 11u; i++) { atomicStore(&counters[i], 0u); }
  }
}

fn run_stage(s: u32, lane: u32) {
  let N = p.dims[s].x;
  let K = p.dims[s].y;
  let input_at = p.dims[s].z;
  let input = (form(s) >> 4u) & 3u;
  let pre_norm = (form(s) & PRE_NORM) != 0u;
  let gated = (form(s) & GATED) != 0u;
  let chunks = chunks_in(s);
  let k8 = K & ~7u;
  loop {
    let chunk = next_chunk(s, lane);
    if (chunk >= chunks) { break; }
    // The lane's outputs, and the weight rows behind them: 4 plain rows, or 2 gate/up pairs.
    var outputs: array<u32, 4>;
    var rows: array<u32, 4>;
    for (var j = 0u; j < 4u; j++) {
      if (gated) {
        outputs[j] = chunk * 16u + lane * 2u + j / 2u;
        rows[j] = min(outputs[j], N - 1u) + (j % 2u) * N;
      } else {
        outputs[j] = chunk * 32u + lane * 4u + j;
        rows[j] = min(outputs[j], N - 1u);
      }
    }
    // Explicitly zeroed: lavapipe does not re-zero a `var` declared without initialiser in a loop.
    var sums = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    var sum_sq = 0.0;
    for (var k = 0u; k < k8; k += 8u) {
      let raw = source_ld(input, input_at + k + lane);
      sum_sq += raw * raw;
      var mine = raw;
      if (pre_norm) { mine *= norm_ld(s, k + lane); }
      let x0 = vec4<f32>(subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u), subgroupBroadcast(mine, 2u), subgroupBroadcast(mine, 3u));
      let x1 = vec4<f32>(subgroupBroadcast(mine, 4u), subgroupBroadcast(mine, 5u), subgroupBroadcast(mine, 6u), subgroupBroadcast(mine, 7u));
      for (var j = 0u; j < 4u; j++) {
        let w = w8(s, rows[j] * K + k);
        sums[j] += x0 * w[0] + x1 * w[1];
      }
    }
    for (var k = k8; k < K; k++) {
      let raw = source_ld(input, input_at + k);
      sum_sq += select(0.0, raw * raw, lane == 0u); // every lane loads the tail: count it once
      var xk = raw;
      if (pre_norm) { xk *= norm_ld(s, k); }
      for (var j = 0u; j < 4u; j++) { sums[j].x += xk * w_ld(s, rows[j] * K + k); }
    }
    let scale = select(1.0, inverseSqrt(subgroupAdd(sum_sq) / f32(K) + p.eps[s]), pre_norm);
    var dots: array<f32, 4>;
    for (var j = 0u; j < 4u; j++) { dots[j] = dot(sums[j], vec4<f32>(1.0)) * scale; }
    if (gated) {
      let act = form(s) >> 8u;
      finish(s, outputs[0], activate(dots[0], act) * dots[1]);
      finish(s, outputs[2], activate(dots[2], act) * dots[3]);
    } else {
      for (var j = 0u; j < 4u; j++) { finish(s, outputs[j], dots[j]); }
    }
    chunk_done(s, lane);
  }
}

/** Stores output o of stage s, plus its residual. */
fn finish(s: u32, o: u32, value: f32) {
  if (o >= p.dims[s].x) { return; }
  var v = value;
  if ((form(s) & RESIDUAL) != 0u) { v += source_ld((form(s) >> 6u) & 3u, p.residual_at[s] + o); }
  arena[p.dims[s].w + o] = v;
}

/** The stages in order, each once the one before is finished; then the counters are reset. */
fn run_stages(lane: u32) {
  run_stage(0u, lane);
  if (STAGES > 1u) {
    wait_for_stage(0u);
    run_stage(1u, lane);
  }
  if (STAGES > 2u) {
    wait_for_stage(1u);
    run_stage(2u, lane);
  }
  if (STAGES > 3u) {
    wait_for_stage(2u);
    run_stage(3u, lane);
  }
  leave(lane);
}

@compute @workgroup_size(8)
fn gemv_chain(@builtin(local_invocation_index) lane: u32) {
  run_stages(lane);
}

// A layer's attention for the decoding step first, its output in the arena for the stages.
#include "lib/chain_attention.wgsl"

@compute @workgroup_size(8)
fn attend_then_chain(@builtin(local_invocation_index) lane: u32) {
  run_attention(lane);
  run_stages(lane);
}
