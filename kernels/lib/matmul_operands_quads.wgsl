// The matmul's operands a and b bound four elements at a time: one load brings four consecutive k of
// a row of a or of a column of b (a_ld4 / b_ld4 take the quad's index, element index / 4). Needs k
// contiguous in both (b transposed: Linear weights) and every stride and K a multiple of 4. On
// lavapipe a storage load costs a per-lane loop whatever its width, so wider loads mean fewer loops.
@group(0) @binding(1) var<storage, read> a: array<a_t4>;
@group(0) @binding(2) var<storage, read> b: array<b_t4>;
