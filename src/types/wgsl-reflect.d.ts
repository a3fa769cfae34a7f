// wgsl_reflect's "main" is a CommonJS file inside a "type": "module" package, so Node's ESM loader
// sees no named exports; its ES module build is the one that loads. It has the same types.
declare module 'wgsl_reflect/wgsl_reflect.module.js' {
  export * from 'wgsl_reflect';
}
