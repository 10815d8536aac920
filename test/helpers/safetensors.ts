// Every tensor of a safetensors file as float32 values, for the tests that build graphs from the fixtures'
// Hugging Face checkpoints. It goes through the product's reader (src/backend/formats/safetensors.ts: validated
// header, range reads), so the tests exercise the same code the checkpoint front end uses.

import { readSafetensorsHeader, readTensorFloat32 } from '../../src/backend/formats/safetensors';
import type { LlamaTensor } from '../../src/backend/models/llama';

/** Every tensor of a safetensors file (F32, F16, BF16 or F64), by name, as fresh Float32Arrays with their dims. */
export function readSafetensorsF32(file: string): Map<string, LlamaTensor> {
  const out = new Map<string, LlamaTensor>();
  for (const [name, e] of readSafetensorsHeader(file).tensors) out.set(name, { data: readTensorFloat32(e), dims: e.shape.slice() });
  return out;
}
