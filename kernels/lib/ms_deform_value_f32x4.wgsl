// value as f32, head_dim a multiple of 32: a corner's 32 channels are 8 aligned 16-byte loads.
@group(0) @binding(1) var<storage, read> value: array<vec4<f32>>;

fn gather(w: f32, at: u32, first: u32) {
  let v = (at + first) / 4u;
  for (var c = 0u; c < 8u; c++) {
    acc[c] += w * value[v + c];
  }
}
