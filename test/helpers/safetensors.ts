// A minimal safetensors reader for the tests: enough to load the fixtures' F32 Hugging Face checkpoints.
// It is NOT the product's reader: src/backend/formats/safetensors.ts (issue 5) owns header validation,
// range reads of files over 2 GB, F16/BF16 and sharded checkpoints. This one reads the whole file, accepts
// only F32 and checks just enough to fail clearly on a malformed fixture.
//
// Format: 8-byte little-endian header length N, then N bytes of JSON
// `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: {...} }`, then the data; offsets are
// relative to the first byte after the header.

import { readFileSync } from 'node:fs';
import type { LlamaTensor } from '../../src/backend/models/llama';

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** Every tensor of an F32 safetensors file, by name, as fresh Float32Arrays with their dims. */
export function readSafetensorsF32(file: string): Map<string, LlamaTensor> {
  const buf = readFileSync(file);
  if (buf.length < 8) throw new Error(`${file}: too short for a safetensors file`);
  const n = Number(buf.readBigUInt64LE(0));
  if (n <= 0 || 8 + n > buf.length) throw new Error(`${file}: header length ${n} does not fit in ${buf.length} bytes`);
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, HeaderEntry | Record<string, string>>;
  const dataStart = 8 + n;
  const out = new Map<string, LlamaTensor>();
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const { dtype, shape, data_offsets: [begin, end] } = entry as HeaderEntry;
    if (dtype !== 'F32') throw new Error(`${file}: tensor ${name} is ${dtype}; this test reader handles F32 only`);
    const count = shape.reduce((a, b) => a * b, 1);
    if (end - begin !== 4 * count || dataStart + end > buf.length) {
      throw new Error(`${file}: tensor ${name} [${shape.join(', ')}] has bad offsets [${begin}, ${end}]`);
    }
    // Copy: the data may not be 4-byte aligned inside the Buffer's pool.
    const bytes = Uint8Array.prototype.slice.call(buf, dataStart + begin, dataStart + end);
    out.set(name, { data: new Float32Array(bytes.buffer, 0, count), dims: shape.slice() });
  }
  return out;
}
