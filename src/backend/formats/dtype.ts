// Why hand-written: Node 20 has no Float16Array, and its ponyfill @petamoriken/float16 converts through JS numbers
// (NaN payloads lost) and has no bfloat16; these conversions are a few lines of bit arithmetic each.
// Element types of ONNX tensors: sizes, and exact conversions between float32 and the 16-bit float formats.
// Conversions work on bit patterns (Uint16/Uint32), never through JS numbers, so NaN payloads and signed zeros
// survive and a float16 → float32 → float16 round trip returns the original bits for all 65,536 patterns.

import { DataType } from '../onnx/proto';

/** Bits per element of fixed-size types (STRING has none). ONNX 4-bit types pack two elements per byte. */
const ELEMENT_BITS: Partial<Record<number, number>> = {
  [DataType.FLOAT]: 32, [DataType.UINT8]: 8, [DataType.INT8]: 8, [DataType.UINT16]: 16, [DataType.INT16]: 16,
  [DataType.INT32]: 32, [DataType.INT64]: 64, [DataType.BOOL]: 8, [DataType.FLOAT16]: 16, [DataType.DOUBLE]: 64,
  [DataType.UINT32]: 32, [DataType.UINT64]: 64, 14: 64 /* COMPLEX64 */, 15: 128 /* COMPLEX128 */, [DataType.BFLOAT16]: 16,
  17: 8, 18: 8, 19: 8, 20: 8 /* FLOAT8 variants */, 21: 4, 22: 4 /* UINT4, INT4 */, 23: 4 /* FLOAT4E2M1 */,
};

const TYPE_NAMES: Record<number, string> = {
  14: 'COMPLEX64', 15: 'COMPLEX128', 17: 'FLOAT8E4M3FN', 18: 'FLOAT8E4M3FNUZ', 19: 'FLOAT8E5M2', 20: 'FLOAT8E5M2FNUZ',
  21: 'UINT4', 22: 'INT4', 23: 'FLOAT4E2M1',
};

export function dataTypeName(t: number): string {
  return DataType[t] ?? TYPE_NAMES[t] ?? `type ${t}`;
}

/** Bits per element, or undefined for variable-size (STRING) and unknown types. */
export function elementBits(t: number): number | undefined {
  return ELEMENT_BITS[t];
}

/** Bytes of `elements` values of type `t` in raw_data form, or undefined when the size is not fixed. */
export function byteLengthOf(t: number, elements: number): number | undefined {
  const bits = ELEMENT_BITS[t];
  return bits === undefined ? undefined : Math.ceil((elements * bits) / 8);
}

/** Types that weightAsFloat32 reads and that replacements can be written back into. */
export function isFloatType(t: number): boolean {
  return t === DataType.FLOAT || t === DataType.FLOAT16 || t === DataType.BFLOAT16 || t === DataType.DOUBLE;
}

// ---------------------------------------------------------------------------------------------------------
// float16

let halfToFloatTable: Uint32Array | undefined;

/** float32 bit pattern of a float16 bit pattern (exact: every float16 value is a float32 value). */
export function halfBitsToFloatBits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0) {
    if (mant === 0) return sign >>> 0;
    // Subnormal: mant × 2^-24; normalize into 1.m × 2^e.
    let e = 113; // 127 - 15 + 1
    while ((mant & 0x400) === 0) {
      mant <<= 1;
      e--;
    }
    return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
  }
  if (exp === 31) return (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf, NaN (payload kept)
  return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
}

/** float16 bit pattern nearest to a float32 bit pattern (round to nearest, ties to even; overflow → ±inf). */
export function floatBitsToHalfBits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 255) {
    if (mant === 0) return sign | 0x7c00;
    const payload = mant >>> 13;
    return sign | 0x7c00 | (payload === 0 ? 0x200 : payload); // NaN stays NaN
  }
  const e = exp - 127;
  if (e > 15) return sign | 0x7c00;
  if (e >= -14) {
    // Normal half. A carry out of the mantissa correctly bumps the exponent (and 65520+ becomes inf).
    let h = ((e + 15) << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++;
    return sign | h;
  }
  if (e < -25) return sign; // below half the smallest subnormal: ±0
  // Subnormal half: units of 2^-24. The value is (mant | 2^23) × 2^(e-23) = significand × 2^(e+1) units.
  const sig = mant | 0x800000;
  const shift = -e - 1; // 14..24
  let h = sig >>> shift;
  const rest = sig & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rest > half || (rest === half && (h & 1) === 1)) h++;
  return sign | h;
}

function halfTable(): Uint32Array {
  if (!halfToFloatTable) {
    halfToFloatTable = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) halfToFloatTable[h] = halfBitsToFloatBits(h);
  }
  return halfToFloatTable;
}

/** Little-endian float16 bytes → float32 values (exact). */
export function halfBytesToFloat32(bytes: Uint8Array, out = new Float32Array(bytes.length >>> 1)): Float32Array {
  const table = halfTable();
  const o = new Uint32Array(out.buffer, out.byteOffset, out.length);
  const n = bytes.length >>> 1;
  for (let i = 0; i < n; i++) o[i] = table[bytes[2 * i] | (bytes[2 * i + 1] << 8)];
  return out;
}

/** float32 values → little-endian float16 bytes (round to nearest even). */
export function float32ToHalfBytes(values: Float32Array): Uint8Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint8Array(values.length * 2);
  for (let i = 0; i < values.length; i++) {
    const h = floatBitsToHalfBits(bits[i]);
    out[2 * i] = h & 0xff;
    out[2 * i + 1] = h >>> 8;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// bfloat16: the top half of a float32

/** Little-endian bfloat16 bytes → float32 values (exact). */
export function bf16BytesToFloat32(bytes: Uint8Array, out = new Float32Array(bytes.length >>> 1)): Float32Array {
  const o = new Uint32Array(out.buffer, out.byteOffset, out.length);
  const n = bytes.length >>> 1;
  for (let i = 0; i < n; i++) o[i] = ((bytes[2 * i] | (bytes[2 * i + 1] << 8)) << 16) >>> 0;
  return out;
}

/** float32 bits → bfloat16 bits, round to nearest even; NaN stays NaN. */
export function floatBitsToBf16Bits(x: number): number {
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) {
    const top = x >>> 16;
    return (top & 0x7f) === 0 ? top | 0x40 : top;
  }
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** float32 values → little-endian bfloat16 bytes (round to nearest even). */
export function float32ToBf16Bytes(values: Float32Array): Uint8Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint8Array(values.length * 2);
  for (let i = 0; i < values.length; i++) {
    const h = floatBitsToBf16Bits(bits[i]);
    out[2 * i] = h & 0xff;
    out[2 * i + 1] = h >>> 8;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Whole tensors

/** Little-endian raw bytes of a float tensor → float32 values. FLOAT and the 16-bit types are exact; DOUBLE rounds. */
export function bytesToFloat32(t: DataType, bytes: Uint8Array): Float32Array {
  switch (t) {
    case DataType.FLOAT: {
      const out = new Float32Array(bytes.length >>> 2);
      new Uint8Array(out.buffer).set(bytes.subarray(0, out.length * 4));
      return out;
    }
    case DataType.FLOAT16: return halfBytesToFloat32(bytes);
    case DataType.BFLOAT16: return bf16BytesToFloat32(bytes);
    case DataType.DOUBLE: {
      const d = new Float64Array(bytes.length >>> 3);
      new Uint8Array(d.buffer).set(bytes.subarray(0, d.length * 8));
      return Float32Array.from(d);
    }
    default: throw new RangeError(`${dataTypeName(t)} is not a floating-point type`);
  }
}

/** float32 values → little-endian raw bytes in type `t` (FLOAT exact; 16-bit types round to nearest even). */
export function float32ToBytes(t: DataType, values: Float32Array): Uint8Array {
  switch (t) {
    case DataType.FLOAT: return new Uint8Array(values.buffer, values.byteOffset, values.byteLength).slice();
    case DataType.FLOAT16: return float32ToHalfBytes(values);
    case DataType.BFLOAT16: return float32ToBf16Bytes(values);
    case DataType.DOUBLE: return new Uint8Array(Float64Array.from(values).buffer);
    default: throw new RangeError(`${dataTypeName(t)} is not a floating-point type`);
  }
}

/**
 * The values a tensor of type `t` stores for `values`, as float32 (so `float32ToBytes(t, ·)` of the result is
 * exact and the bytes read back give the result again). A pruned weight is rounded with this once, where it is
 * made, so the pipeline computes with, counts and writes the same numbers. With `keepNonZero`, a nonzero value
 * that would round to ±0 becomes the smallest subnormal of its sign instead: a kept weight stays kept, and the
 * sparsity pattern survives the narrower type exactly. FLOAT and DOUBLE return `values` itself.
 */
export function roundToType(t: DataType, values: Float32Array, opts: { keepNonZero?: boolean } = {}): Float32Array {
  if (t === DataType.FLOAT || t === DataType.DOUBLE) return values; // float32 values are exact in both: no copy
  if (t !== DataType.FLOAT16 && t !== DataType.BFLOAT16) throw new RangeError(`${dataTypeName(t)} is not a floating-point type`);
  const half = t === DataType.FLOAT16;
  const table = half ? halfTable() : undefined;
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Float32Array(values.length);
  const o = new Uint32Array(out.buffer);
  const keep = opts.keepNonZero === true;
  for (let i = 0; i < values.length; i++) o[i] = widened(narrowBits(bits[i], half, keep), table);
  return out;
}

/** float32 bits → float16 (`half`) or bfloat16 bits, nearest even; with `keepNonZero` a nonzero never becomes ±0. */
function narrowBits(x: number, half: boolean, keepNonZero: boolean): number {
  const h = half ? floatBitsToHalfBits(x) : floatBitsToBf16Bits(x);
  return keepNonZero && (h & 0x7fff) === 0 && (x & 0x7fffffff) !== 0 ? h | 1 : h;
}

/** 16-bit bits → float32 bits: through the float16 table, or bfloat16's shift. */
function widened(h: number, table: Uint32Array | undefined): number {
  return table ? table[h] : (h << 16) >>> 0;
}

/**
 * roundToType(valueType, values, { keepNonZero }) and float32ToBytes(bytesType, ·) of the result, bit for bit, in
 * one pass where the types allow (the rest composes the two): a pruned weight's stored values and the bytes its
 * checkpoint holds. `out` (values.length), when given, receives the rounded values (it may be `values` itself);
 * without it a 16-bit valueType rounds into a new array, and FLOAT or DOUBLE returns `values` as roundToType does.
 * The FLOAT bytes are a view of the returned values, not a copy: write them before the values change.
 */
export function roundedBytes(valueType: DataType, bytesType: DataType, values: Float32Array, out?: Float32Array): { values: Float32Array; bytes: Uint8Array } {
  if (out && out.length !== values.length) throw new RangeError(`roundedBytes: ${out.length} outputs for ${values.length} values`);
  const narrow = valueType === DataType.FLOAT16 || valueType === DataType.BFLOAT16;
  if (!narrow || (bytesType !== valueType && bytesType !== DataType.FLOAT)) {
    // FLOAT and DOUBLE values stay as they are (roundToType returns them); mixed 16-bit types compose the two steps.
    let v = roundToType(valueType, values, { keepNonZero: true });
    if (out && out !== v) v = (out.set(v), out);
    return { values: v, bytes: bytesType === DataType.FLOAT ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : float32ToBytes(bytesType, v) };
  }
  const target = out ?? new Float32Array(values.length);
  // A 16-bit valueType, its bytes in that type or FLOAT: each value rounds once, to its stored bits and its bytes.
  const half = valueType === DataType.FLOAT16;
  const table = half ? halfTable() : undefined;
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const o = new Uint32Array(target.buffer, target.byteOffset, target.length);
  const bytes = bytesType === DataType.FLOAT ? undefined : new Uint8Array(values.length * 2);
  for (let i = 0; i < bits.length; i++) {
    const h = narrowBits(bits[i], half, true);
    o[i] = widened(h, table);
    if (bytes) {
      bytes[2 * i] = h & 0xff;
      bytes[2 * i + 1] = h >>> 8;
    }
  }
  return { values: target, bytes: bytes ?? new Uint8Array(target.buffer, target.byteOffset, target.byteLength) };
}
