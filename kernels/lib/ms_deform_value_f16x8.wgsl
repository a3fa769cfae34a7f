// value as f16, head_dim a multiple of 32: a corner's 32 channels are 4 aligned 16-byte loads of 8 halves.
@group(0) @binding(1) var<storage, read> value: array<vec4<u32>>;

fn gather(w: f32, at: u32, first: u32) {
  let v = (at + first) / 8u;
  for (var c = 0u; c < 4u; c++) {
    let h = value[v + c];
    acc[2u * c] += w * vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y));
    acc[2u * c + 1u] += w * vec4<f32>(unpack2x16float(h.z), unpack2x16float(h.w));
  }
}
