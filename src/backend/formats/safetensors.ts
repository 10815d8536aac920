// Why hand-written: the npm `safetensors` package is a 0.0.1 placeholder (checked 2026-12), and what is needed here,
// one tensor at a time by byte range from multi-GiB shards, is a JSON header and raw bytes: a small module.
// safetensors files (Hugging Face): the header read by ranges and validated before any tensor byte is read,
// tensors read one at a time (never the whole file: shards are often over 2 GiB), and the encoder tests and the
// writer use.
//
// Format: 8-byte little-endian header length N, N bytes of JSON `{ name: { dtype, shape, data_offsets: [b, e] },
// "__metadata__"?: { string: string } }` (padded with spaces), then the data buffer; offsets are relative to its
// first byte. The validation follows the reference implementation: N ≤ 100 MB and inside the file, known dtypes,
// byte ranges matching shape × dtype, inside the buffer, not overlapping, and covering it without holes.

import { DataType } from '../onnx/proto';
import { bytesToFloat32 } from './dtype';
import { CheckpointError } from './errors';
import { RangeReader, withRangeReader } from './rangeReader';

/** safetensors' own limit on the header (a larger one is refused as corrupt). */
export const MAX_HEADER_BYTES = 100_000_000;

/** Every dtype the format defines: bytes per element and the ONNX type it maps to. */
const DTYPES: Record<string, { bytes: number; onnx: DataType | number }> = {
  F64: { bytes: 8, onnx: DataType.DOUBLE }, F32: { bytes: 4, onnx: DataType.FLOAT }, F16: { bytes: 2, onnx: DataType.FLOAT16 },
  BF16: { bytes: 2, onnx: DataType.BFLOAT16 }, I64: { bytes: 8, onnx: DataType.INT64 }, I32: { bytes: 4, onnx: DataType.INT32 },
  I16: { bytes: 2, onnx: DataType.INT16 }, I8: { bytes: 1, onnx: DataType.INT8 }, U64: { bytes: 8, onnx: DataType.UINT64 },
  U32: { bytes: 4, onnx: DataType.UINT32 }, U16: { bytes: 2, onnx: DataType.UINT16 }, U8: { bytes: 1, onnx: DataType.UINT8 },
  BOOL: { bytes: 1, onnx: DataType.BOOL }, F8_E4M3: { bytes: 1, onnx: 17 }, F8_E5M2: { bytes: 1, onnx: 19 },
};

/** The floating-point dtypes whose tensors can be read as float32 and written back (rounding to nearest even). */
export const FLOAT_DTYPES = ['F32', 'F16', 'BF16', 'F64'] as const;
export type FloatDtype = (typeof FLOAT_DTYPES)[number];

export function isFloatDtype(dtype: string): dtype is FloatDtype {
  return (FLOAT_DTYPES as readonly string[]).includes(dtype);
}

/** The ONNX element type of a safetensors dtype. */
export function onnxTypeOf(dtype: string): DataType {
  const d = dtypeOf(dtype);
  if (!d) throw new RangeError(`unknown safetensors dtype '${dtype}'`);
  return d.onnx as DataType;
}

/** The dtype's entry; own keys only, so a header's "constructor" or "__proto__" finds nothing. */
function dtypeOf(dtype: string): (typeof DTYPES)[string] | undefined {
  return Object.hasOwn(DTYPES, dtype) ? DTYPES[dtype] : undefined;
}

export function dtypeBytes(dtype: string): number {
  const d = dtypeOf(dtype);
  if (!d) throw new RangeError(`unknown safetensors dtype '${dtype}'`);
  return d.bytes;
}

export interface SafetensorsEntry {
  name: string;
  /** The file holding it (absolute). */
  file: string;
  dtype: string;
  shape: number[];
  /** Absolute byte offset of its first byte in the file. */
  offset: number;
  length: number;
}

export interface SafetensorsHeader {
  file: string;
  /** File size in bytes. */
  size: number;
  /** The header's bytes exactly as stored (JSON and padding), without the 8-byte length. */
  headerBytes: Uint8Array;
  /** First byte of the data buffer (8 + header length). */
  dataStart: number;
  /** Tensors in header order. */
  tensors: Map<string, SafetensorsEntry>;
  metadata: Record<string, string> | null;
}

function corrupt(file: string, what: string): CheckpointError {
  return new CheckpointError('corrupt-model', `${file} is not a valid safetensors file: ${what}`, file);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Reads and validates the header of `file` (16 bytes plus the header are read, nothing else). */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  let r: RangeReader;
  try {
    r = RangeReader.open(file);
  } catch (e) {
    throw new CheckpointError('missing-model', `cannot open safetensors file ${file}: ${(e as Error).message}`, file, { cause: e });
  }
  try {
    if (r.size < 8) throw corrupt(file, `${r.size} bytes, too short for the 8-byte header length`);
    const n = new DataView(r.read(0, 8).buffer).getBigUint64(0, true);
    if (n > BigInt(MAX_HEADER_BYTES)) throw corrupt(file, `header length ${n} exceeds the format's limit of ${MAX_HEADER_BYTES} bytes`);
    const headerLength = Number(n);
    if (8 + headerLength > r.size) throw corrupt(file, `header length ${headerLength} runs past the end of the file (${r.size} bytes; truncated?)`);
    const headerBytes = r.read(8, headerLength);
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
    } catch (e) {
      throw corrupt(file, `the header is not valid UTF-8 JSON (${(e as Error).message})`);
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw corrupt(file, 'the header is not a JSON object');
    const dataStart = 8 + headerLength;
    const dataSize = r.size - dataStart;
    const tensors = new Map<string, SafetensorsEntry>();
    let metadata: Record<string, string> | null = null;
    const spans: [number, number, string][] = [];
    for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
      if (name === '__metadata__') {
        if (typeof value !== 'object' || value === null || Array.isArray(value) || Object.values(value).some((v) => typeof v !== 'string')) {
          throw corrupt(file, '__metadata__ must map strings to strings');
        }
        metadata = value as Record<string, string>;
        continue;
      }
      const bad = (what: string) => corrupt(file, `tensor '${name}': ${what}`);
      if (typeof value !== 'object' || value === null) throw bad('its entry is not an object');
      const { dtype, shape, data_offsets: offsets } = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof dtype !== 'string' || !dtypeOf(dtype)) throw bad(`unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(DTYPES).join(', ')})`);
      if (!Array.isArray(shape) || !shape.every(isCount)) throw bad(`shape ${JSON.stringify(shape)} is not a list of sizes`);
      if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
        throw bad(`data_offsets ${JSON.stringify(offsets)} is not a [begin, end] byte range`);
      }
      const [begin, end] = offsets as [number, number];
      const elements = (shape as number[]).reduce((a, b) => a * b, 1);
      const expected = elements * DTYPES[dtype].bytes;
      if (end - begin !== expected) throw bad(`data_offsets [${begin}, ${end}] hold ${end - begin} bytes; shape [${shape.join(', ')}] of ${dtype} needs ${expected}`);
      if (end > dataSize) throw bad(`data_offsets [${begin}, ${end}] run past the end of the data (${dataSize} bytes; truncated?)`);
      spans.push([begin, end, name]);
      tensors.set(name, { name, file, dtype, shape: (shape as number[]).slice(), offset: dataStart + begin, length: end - begin });
    }
    spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let at = 0;
    for (const [begin, end, name] of spans) {
      if (begin < at) throw corrupt(file, `tensor '${name}': data_offsets [${begin}, ${end}] overlap the previous tensor's bytes (up to ${at})`);
      if (begin > at) throw corrupt(file, `tensor '${name}': a hole of ${begin - at} unindexed bytes before its data_offsets [${begin}, ${end}]`);
      at = end;
    }
    if (at !== dataSize) throw corrupt(file, `${dataSize - at} bytes after the last tensor are not indexed by the header`);
    return { file, size: r.size, headerBytes, dataStart, tensors, metadata };
  } finally {
    r.close();
  }
}

/** A tensor's bytes as stored (little-endian). */
export function readTensorBytes(entry: SafetensorsEntry, reader?: RangeReader): Uint8Array {
  return reader ? reader.read(entry.offset, entry.length) : withRangeReader(entry.file, undefined, (r) => r.read(entry.offset, entry.length));
}

/** A floating-point tensor as float32 values (F32, F16, BF16 exact; F64 rounded). */
export function readTensorFloat32(entry: SafetensorsEntry, reader?: RangeReader): Float32Array {
  if (!isFloatDtype(entry.dtype)) {
    throw new CheckpointError('unsupported-dtype', `tensor '${entry.name}' in ${entry.file} is ${entry.dtype}; weights must be F32, F16, BF16 or F64`, entry.file);
  }
  return bytesToFloat32(onnxTypeOf(entry.dtype), readTensorBytes(entry, reader));
}

// ---------------------------------------------------------------------------------------------------------
// Encoding

export interface SafetensorsTensor {
  name: string;
  dtype: string;
  shape: number[];
  /** Little-endian bytes (shape × dtype of them). */
  data: Uint8Array;
}

/**
 * A safetensors file's bytes: tensors in the given order, the header padded with spaces to a multiple of 8 (as
 * the reference implementation writes it, so the data buffer stays aligned).
 */
export function encodeSafetensors(tensors: SafetensorsTensor[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let at = 0;
  for (const t of tensors) {
    const need = t.shape.reduce((a, b) => a * b, 1) * dtypeBytes(t.dtype);
    if (t.data.length !== need) throw new RangeError(`tensor '${t.name}': ${t.data.length} bytes for shape [${t.shape.join(', ')}] of ${t.dtype} (${need} needed)`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + need] };
    at += need;
  }
  let json = JSON.stringify(header);
  const jsonBytes = () => new TextEncoder().encode(json);
  while (jsonBytes().length % 8 !== 0) json += ' ';
  const h = jsonBytes();
  const out = new Uint8Array(8 + h.length + at);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  let p = 8 + h.length;
  for (const t of tensors) {
    out.set(t.data, p);
    p += t.data.length;
  }
  return out;
}

