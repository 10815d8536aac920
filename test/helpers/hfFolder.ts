// Generated Hugging Face folders for the tests: config.json, safetensors (one file or shards with an index, in
// any float dtype) and optionally a tokenizer copied from a fixture. Written with the product's encoder
// (src/backend/formats/safetensors.ts), whose output the reader tests check against the format's rules.

import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { bytesToFloat32, float32ToBytes } from '../../src/backend/formats/dtype';
import { encodeSafetensors, onnxTypeOf } from '../../src/backend/formats/safetensors';
import type { Checkpoint } from '../../src/backend/formats/checkpoint';
import type { Engine } from '../../src/backend/onnx/session';
import * as ort from 'onnxruntime-node';

export interface FolderTensor {
  name: string;
  dims: number[];
  data: Float32Array;
}

export interface FolderOptions {
  /** F32 (default), F16, BF16. */
  dtype?: string;
  /** Number of shards (default 1: model.safetensors, no index). */
  shards?: number;
  /** Files copied in (tokenizer.json, …). */
  copy?: string[];
}

/** Writes the folder; returns the tensors as stored (rounded to the dtype) by name. */
export function writeHfFolder(dir: string, config: Record<string, unknown>, tensors: FolderTensor[], opts: FolderOptions = {}): Map<string, Float32Array> {
  const dtype = opts.dtype ?? 'F32';
  const shards = opts.shards ?? 1;
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  for (const f of opts.copy ?? []) copyFileSync(f, path.join(dir, path.basename(f)));
  const stored = new Map<string, Float32Array>();
  const encoded = tensors.map((t) => {
    const bytes = float32ToBytes(onnxTypeOf(dtype), t.data);
    stored.set(t.name, bytesToFloat32(onnxTypeOf(dtype), bytes));
    return { name: t.name, dtype, shape: t.dims, data: bytes };
  });
  if (shards === 1) {
    writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors(encoded, { format: 'pt' }));
    return stored;
  }
  const per = Math.ceil(encoded.length / shards);
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let s = 0; s < shards; s++) {
    const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = encoded.slice(s * per, (s + 1) * per);
    for (const t of part) {
      weightMap[t.name] = file;
      total += t.data.length;
    }
    writeFileSync(path.join(dir, file), encodeSafetensors(part, { format: 'pt' }));
  }
  writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  return stored;
}


/** [batch, seq] int64 ids or mask, as onnxruntime takes them. */
export function int64(rows: number[][]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(rows.flat(), BigInt), [rows.length, rows[0].length]);
}

/** Logits of a whole checkpoint through the session the pipeline uses for perplexity. */
export async function checkpointLogits(engine: Engine, ckpt: Checkpoint, ids: number[][], mask: number[][]): Promise<Float32Array> {
  const s = await engine.modelSession(ckpt.sessionSource());
  try {
    return (await s.run({ input_ids: int64(ids), attention_mask: int64(mask) })).logits.data as Float32Array;
  } finally {
    await s.release();
  }
}

/** Max |graph − float64| over the real positions (the reference leaves padded ones NaN), and the logits' scale. */
export function compareLogits(got: Float32Array, ref: Float64Array): { worst: number; scale: number } {
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    if (Number.isNaN(ref[i])) continue;
    worst = Math.max(worst, Math.abs(got[i] - ref[i]));
    scale = Math.max(scale, Math.abs(ref[i]));
  }
  return { worst, scale };
}
