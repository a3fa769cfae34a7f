// Keys and values bound read-only (see lib/attention_common.wgsl).
@group(0) @binding(2) var<storage, read> keys: array<keys_t4>;
@group(0) @binding(3) var<storage, read> values: array<values_t4>;

// Nothing is appended to read-only keys and values (appending kernels bind them read-write).
fn cache_st2(k_index: u32, k: vec2<f32>, v_index: u32, v: vec2<f32>) {}
