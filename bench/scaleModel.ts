// What the scale benchmarks share (bench/quality.ts's scale run, bench/scale.ts): a generated Llama-shaped model
// with random weights stored as external data, random calibration token ids, and the fp32 GEMM rate of the machine.

import { closeSync, openSync, writeFileSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { Kernels, mat } from '../src/backend/linalg/kernels';
import { buildLlamaModel, LlamaConfig, randomLlamaWeights } from '../src/backend/models/llama';
import { encodeModel, TensorProto } from '../src/backend/onnx/proto';
import type { Engine } from '../src/backend/onnx/session';

/** Llama(-2-7B, by default in the callers) shape: heads of 128, vocab 512 (the LM head is not what is measured). */
export const scaleConfig = (hidden: number, intermediate: number, blocks: number, maxPositions = 2048): LlamaConfig => ({
  model_type: 'llama',
  hidden_size: hidden,
  intermediate_size: intermediate,
  num_hidden_layers: blocks,
  num_attention_heads: hidden / 128,
  vocab_size: 512,
  max_position_embeddings: maxPositions,
  tie_word_embeddings: false,
});
export const DATA_FILE = 'model.onnx_data';
const ALIGN = 4096;

/** Writes the model with every initializer of ≥ 1 KiB in model.onnx_data (external data, 4 KiB aligned). */
export function writeScaleModel(dir: string, config: LlamaConfig): { modelBytes: number; dataBytes: number; parameters: number } {
  const weights = randomLlamaWeights(config, 0);
  const model = buildLlamaModel(config, weights);
  weights.clear();
  const fd = openSync(path.join(dir, DATA_FILE), 'w');
  let offset = 0;
  let parameters = 0;
  try {
    for (const t of model.graph.initializer as TensorProto[]) {
      parameters += t.dims.reduce<number>((a, d) => a * Number(d), 1);
      const raw = t.rawData;
      if (!raw || raw.byteLength < 1024) continue;
      const start = Math.ceil(offset / ALIGN) * ALIGN;
      if (start > offset) writeSync(fd, new Uint8Array(start - offset));
      let done = 0;
      while (done < raw.byteLength) done += writeSync(fd, raw, done, Math.min(raw.byteLength - done, 1 << 28));
      offset = start + raw.byteLength;
      delete t.rawData;
      t.dataLocation = 1;
      t.externalData = [
        { key: 'location', value: DATA_FILE },
        { key: 'offset', value: String(start) },
        { key: 'length', value: String(raw.byteLength) },
      ];
    }
  } finally {
    closeSync(fd);
  }
  const bytes = encodeModel(model);
  writeFileSync(path.join(dir, 'model.onnx'), bytes);
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  return { modelBytes: bytes.byteLength, dataBytes: offset, parameters };
}

/** `n` random token ids below `vocab` (a seeded LCG) as a .json id file in `dir`, which the CLI reads as tokens. */
export function randomIds(dir: string, n: number, vocab: number): string {
  const ids: number[] = [];
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    ids.push(s % vocab);
  }
  const file = path.join(dir, 'calibration-ids.json');
  writeFileSync(file, JSON.stringify(ids));
  return file;
}

/** fp32 GEMM rate (GFLOP/s) of an n×n MatMul through the engine, best of 3 after a warm-up. */
export async function gemmRate(engine: Engine, n: number): Promise<number> {
  const k = new Kernels(engine);
  const a = mat(n, n);
  const b = mat(n, n);
  for (let i = 0; i < a.data.length; i++) {
    a.data[i] = Math.sin(i) * 0.5;
    b.data[i] = Math.cos(i) * 0.5;
  }
  await k.ab(mat(64, 64), mat(64, 64)); // session creation
  await k.ab(a, b); // first full-size run
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    await k.ab(a, b);
    best = Math.min(best, (performance.now() - t0) / 1000);
  }
  return (2 * n ** 3) / best / 1e9;
}
