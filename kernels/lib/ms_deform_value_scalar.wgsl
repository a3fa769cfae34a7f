// value as any float dtype and any head_dim: channel by channel, clamped into the head (channels
// past head_dim load harmlessly and are never stored).
@group(0) @binding(1) var<storage, read> value: array<value_t>;

fn gather(w: f32, at: u32, first: u32) {
  let last = p.head_dim - 1u;
  for (var c = 0u; c < 8u; c++) {
    let ch = min(vec4<u32>(first + 4u * c) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last));
    acc[c] += w * vec4<f32>(value_ld(at + ch.x), value_ld(at + ch.y), value_ld(at + ch.z), value_ld(at + ch.w));
  }
}
