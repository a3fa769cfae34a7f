// Keys and values bound read-write: a decoding kernel that appends the step's row to a KV cache
// (see lib/attention_common.wgsl and attention_decode.wgsl).
@group(0) @binding(2) var<storage, read_write> keys: array<keys_t4>;
@group(0) @binding(3) var<storage, read_write> values: array<values_t4>;

// Stores two elements (from an even index) of the appended key and value rows.
fn cache_st2(k_index: u32, k: vec2<f32>, v_index: u32, v: vec2<f32>) {
  keys_st2(k_index, k);
  values_st2(v_index, v);
}
