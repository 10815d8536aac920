// Calibration statistics of one linear layer's input, for tests and benchmarks that feed activations directly:
// each batch's XᵀX and Σ_tokens x² come from one small graph, and the pipeline's own CalibrationSums adds and scales
// them (H = (2/N)·Σ_tokens xᵀx, colNorm2 = (1/N)·Σ_tokens x², N = sequences), so there is one accumulator.

import { GraphBuilder } from '../../src/backend/onnx/graph';
import { DataType } from '../../src/backend/onnx/proto';
import { Engine, f32 } from '../../src/backend/onnx/session';
import { CalibrationSums } from '../../src/backend/pipeline/segments';

const F = DataType.FLOAT;

/** X (t, c) → XᵀX (c, c) and Σ_rows X² (c), as the pipeline's calibration variant computes them for a linear layer. */
function gramGraph() {
  const g = new GraphBuilder('gram');
  const X = g.input('X', F, ['t', 'c']);
  g.output(g.op('Gemm', [X, X], { transA: 1 }), 'xtx', F, ['c', 'c']);
  g.output(g.op('ReduceSum', [g.op('Mul', [X, X]), g.constant([0n], [1], DataType.INT64)], { keepdims: 0 }), 'colSq', F, ['c']);
  return g.build();
}
const GRAM = gramGraph();

export class HessianAccumulator {
  private readonly sums: CalibrationSums;
  /** H as last read, until the next batch: layers that share an input share one H, as in the pipeline. */
  private scaled: Float32Array | undefined;

  constructor(readonly cols: number, private readonly engine: Engine) {
    this.sums = new CalibrationSums(cols);
  }

  /** Sequences seen so far. */
  get nsamples(): number {
    return this.sums.sequences;
  }

  /** (cols, cols) H so far, as CalibrationSums.hessian() scales it, in a copy (the sums may grow on). */
  get H(): Float32Array {
    if (this.scaled) return this.scaled;
    // A loop, not Float32Array.from(xtx, fn): `from` with a map function first lists every element as a JS value,
    // which exhausts the heap at 11008² entries.
    const a = 2 / this.sums.sequences;
    const H = new Float32Array(this.sums.xtx.length);
    for (let i = 0; i < H.length; i++) H[i] = this.sums.xtx[i] * a;
    return (this.scaled = H);
  }

  /** (cols) running mean over sequences of Σ_tokens x_j² (Wanda's scaler_row). */
  get colNorm2(): Float32Array {
    return this.sums.colNorm2();
  }

  /** X: (tokens, cols) row-major, the inputs of `sequences` calibration sequences. */
  async addBatch(X: Float32Array, sequences: number): Promise<void> {
    const tokens = X.length / this.cols;
    if (!Number.isInteger(tokens)) throw new Error(`activation batch of ${X.length} values is not a multiple of ${this.cols} columns`);
    const r = await (await this.engine.kernel(GRAM)).run({ X: f32(X, [tokens, this.cols]) });
    this.sums.add(r.xtx.data as Float32Array, r.colSq.data as Float32Array, sequences);
    this.scaled = undefined;
  }
}
