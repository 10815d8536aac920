// Whether to run a row kernel on WebAssembly SIMD or in JavaScript: a kernel module is built and validated
// once, on first use; where the runtime cannot compile it (no WebAssembly, or no SIMD) the caller runs the
// kernel's float64 JavaScript twin instead.

export type SimdModule = () => Uint8Array<ArrayBuffer> | null;

/** `build`'s module bytes (built on the first call, then cached), or null where they do not validate. */
export function simdModule(build: () => Uint8Array<ArrayBuffer>): SimdModule {
  let bytes: Uint8Array<ArrayBuffer> | null | undefined;
  return () => {
    if (bytes === undefined) {
      const built = build();
      bytes = typeof WebAssembly === 'object' && WebAssembly.validate(built) ? built : null;
    }
    return bytes;
  };
}
