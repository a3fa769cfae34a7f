// The register tile of the subgroup-broadcast matrix kernels (matmul_subgroup, conv_subgroup):
// an 8-lane subgroup owns 8 rows; each lane keeps vec4 accumulators for those rows and its 4
// columns. rank1(av, bv) adds one k step: lane r's A value for row r, broadcast to every lane,
// times the lane's 4 B values. Lavapipe does the broadcasts in registers.

var<private> acc0: vec4<f32>;
var<private> acc1: vec4<f32>;
var<private> acc2: vec4<f32>;
var<private> acc3: vec4<f32>;
var<private> acc4: vec4<f32>;
var<private> acc5: vec4<f32>;
var<private> acc6: vec4<f32>;
var<private> acc7: vec4<f32>;

fn rank1(av: f32, bv: vec4<f32>) {
  acc0 += subgroupBroadcast(av, 0u) * bv;
  acc1 += subgroupBroadcast(av, 1u) * bv;
  acc2 += subgroupBroadcast(av, 2u) * bv;
  acc3 += subgroupBroadcast(av, 3u) * bv;
  acc4 += subgroupBroadcast(av, 4u) * bv;
  acc5 += subgroupBroadcast(av, 5u) * bv;
  acc6 += subgroupBroadcast(av, 6u) * bv;
  acc7 += subgroupBroadcast(av, 7u) * bv;
}
