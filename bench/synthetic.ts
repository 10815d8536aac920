// Synthetic layers for the solver benchmark: W ~ N(0, 1/cols) and a Hessian from correlated
// random activations (an AR(1) mix across input features plus a few heavy "outlier" features, as LLM
// activations have), accumulated as the pipeline accumulates its Hessians.

import type { LayerProblem } from '../src/backend/methods/types';
import type { Engine } from '../src/backend/onnx/session';
import { normalRng } from '../src/backend/random';
import { HessianAccumulator } from '../test/helpers/hessian';

/** A layer problem with all its calibration statistics. */
export type SyntheticLayer = Required<Omit<LayerProblem, 'reference' | 'finiteH' | 'finiteW' | 'Wt'>>;

export async function syntheticLayer(name: string, rows: number, cols: number, engine: Engine, opts: { tokens?: number; seed?: number } = {}): Promise<SyntheticLayer> {
  const rand = normalRng(opts.seed ?? rows * 31 + cols);
  const W = new Float32Array(rows * cols);
  const scale = 1 / Math.sqrt(cols);
  for (let i = 0; i < W.length; i++) W[i] = rand() * scale;
  const tokens = opts.tokens ?? Math.max(2 * cols, 512);
  const outlierEvery = 97;
  const acc = new HessianAccumulator(cols, engine);
  const seqLen = 128;
  const batch = 8 * seqLen;
  for (let t0 = 0; t0 < tokens; t0 += batch) {
    const n = Math.min(batch, tokens - t0);
    const X = new Float32Array(n * cols);
    for (let t = 0; t < n; t++) {
      let prev = 0;
      for (let j = 0; j < cols; j++) {
        prev = 0.8 * prev + 0.6 * rand();
        X[t * cols + j] = j % outlierEvery === 0 ? 8 * prev : prev;
      }
    }
    await acc.addBatch(X, Math.ceil(n / seqLen));
  }
  return { name, rows, cols, W, H: acc.H, colNorm2: acc.colNorm2 };
}
