// Calibration statistics of one linear layer's input, accumulated as in SparseGPT's add_batch:
//   H ← H·n/(n+b) + (2/(n+b))·XᵀX,   n ← n + b        (b = sequences in the batch)
// so that H = (2/N)·Σ_tokens xᵀx with N the number of sequences, in fp32. Wanda's per-column
// Σ x_j² (its running mean over sequences) comes from the same pass.

import { GraphBuilder } from '../onnx/graph';
import { DataType } from '../onnx/proto';
import { Engine, f32 } from '../onnx/session';

const F = DataType.FLOAT;

/** H' = a·H + b·XᵀX and s' = a·s + b/2·Σ_rows X², with a and b fed as scalars. */
function accumulateGraph() {
  const g = new GraphBuilder('hessianAccumulate');
  const H = g.input('H', F, ['c', 'c']);
  const s = g.input('s', F, ['c']);
  const X = g.input('X', F, ['t', 'c']);
  const a = g.input('a', F, []);
  const b = g.input('b', F, []);
  const xtx = g.op('Gemm', [X, X], { transA: 1 });
  g.output(g.op('Add', [g.op('Mul', [H, a]), g.op('Mul', [xtx, b])]), 'H_out', F, ['c', 'c']);
  const sq = g.op('ReduceSum', [g.op('Mul', [X, X]), g.constant([0n], [1], DataType.INT64)], { keepdims: 0 });
  const halfB = g.op('Mul', [b, g.constant([0.5], [])]);
  g.output(g.op('Add', [g.op('Mul', [s, a]), g.op('Mul', [sq, halfB])]), 's_out', F, ['c']);
  return g.build();
}
const ACCUMULATE = accumulateGraph();

export class HessianAccumulator {
  /** (cols, cols) */
  H: Float32Array;
  /** (cols) running mean over sequences of Σ_tokens x_j² (Wanda's scaler_row). */
  colNorm2: Float32Array;
  /** Sequences seen so far. */
  nsamples = 0;

  constructor(readonly cols: number, private readonly engine: Engine) {
    this.H = new Float32Array(cols * cols);
    this.colNorm2 = new Float32Array(cols);
  }

  /** X: (tokens, cols) row-major, the inputs of `sequences` calibration sequences. */
  async addBatch(X: Float32Array, sequences: number): Promise<void> {
    const tokens = X.length / this.cols;
    if (!Number.isInteger(tokens)) throw new Error(`activation batch of ${X.length} values is not a multiple of ${this.cols} columns`);
    const n = this.nsamples;
    this.nsamples += sequences;
    const a = n / this.nsamples;
    const b = 2 / this.nsamples;
    const k = await this.engine.kernel(ACCUMULATE);
    const r = await k.run({
      H: f32(this.H, [this.cols, this.cols]),
      s: f32(this.colNorm2, [this.cols]),
      X: f32(X, [tokens, this.cols]),
      a: f32(new Float32Array([a]), []),
      b: f32(new Float32Array([b]), []),
    });
    this.H = r.H_out.data as Float32Array;
    this.colNorm2 = r.s_out.data as Float32Array;
  }
}
