// The heavy linear algebra, as small onnxruntime graphs. Every op here is a plain ai.onnx Gemm, MatMul,
// Mul, Add, Sub, Neg, ReduceSum or Transpose, which the CPU, CUDA and WebGPU providers all implement.
// Shapes are symbolic, so one cached session serves every size.

import * as ort from 'onnxruntime-node';
import { GraphBuilder, Value } from '../onnx/graph';
import { DataType } from '../onnx/proto';
import { Engine, f32 } from '../onnx/session';

const F = DataType.FLOAT;

/** A row-major fp32 matrix. */
export interface Mat {
  rows: number;
  cols: number;
  data: Float32Array;
}

export function mat(rows: number, cols: number, data: Float32Array = new Float32Array(rows * cols)): Mat {
  if (data.length !== rows * cols) throw new Error(`matrix data has ${data.length} values, expected ${rows}x${cols}`);
  return { rows, cols, data };
}

const t = (m: Mat): ort.Tensor => f32(m.data, [m.rows, m.cols]);
const out = (r: Record<string, ort.Tensor>, name: string): Mat => {
  const v = r[name];
  return mat(v.dims[0], v.dims[1], v.data as Float32Array);
};

type GemmGraph = (g: GraphBuilder, ins: Value[]) => Value;

/** Builds a graph of n matrix inputs named a, b, c, ... and one output `y`. */
function matrixGraph(name: string, nInputs: number, body: GemmGraph) {
  const g = new GraphBuilder(name);
  const ins = Array.from({ length: nInputs }, (_, k) => g.input(String.fromCharCode(97 + k), F, [`${name}_r${k}`, `${name}_c${k}`]));
  g.output(body(g, ins), 'y', F, ['y_r', 'y_c']);
  return g.build();
}

const GRAPHS = {
  /** y = a·bᵀ  (a panel solve of the blocked Cholesky: A·L_qq⁻ᵀ) */
  abT: matrixGraph('abT', 2, (g, [a, b]) => g.op('Gemm', [a, b], { transB: 1 })),
  /** y = a·b */
  ab: matrixGraph('ab', 2, (g, [a, b]) => g.op('MatMul', [a, b])),
  /** y = c − a·bᵀ  (trailing update of one panel in the blocked Cholesky) */
  cMinusABT: matrixGraph('cMinusABT', 3, (g, [a, b, c]) => g.op('Gemm', [a, b, c], { transB: 1, alpha: { f: -1 }, beta: { f: 1 } })),
  /** y = c + a·b  (accumulation of one panel's product in the triangular inverse) */
  cPlusAB: matrixGraph('cPlusAB', 3, (g, [a, b, c]) => g.op('Gemm', [a, b, c], { beta: { f: 1 } })),
  /** y = −a·b */
  negAB: matrixGraph('negAB', 2, (g, [a, b]) => g.op('Gemm', [a, b], { alpha: { f: -1 } })),
  /** y = aᵀ·b·c  (the sweep's left-looking product: earlier blocks' compensation of the current block) */
  aTbc: matrixGraph('aTbc', 3, (g, [a, b, c]) => g.op('MatMul', [g.op('Gemm', [a, b], { transA: 1 }), c])),
  /** y = (a·b − c)ᵀ  (the sweep's compensation of one block, stored transposed) */
  abMinusCT: matrixGraph('abMinusCT', 3, (g, [a, b, c]) => g.op('Transpose', [g.op('Gemm', [a, b, c], { beta: { f: -1 } })], { perm: [1, 0] })),
};

/** Quadratic forms 0.5·Σ_i (a_i H a_iᵀ) for two stacks of rows at once: out = [qa, qb]. */
function quadFormGraph() {
  const g = new GraphBuilder('quadForms');
  const a = g.input('a', F, ['ra', 'c']);
  const b = g.input('b', F, ['rb', 'c']);
  const h = g.input('h', F, ['c', 'c']);
  const half = g.constant([0.5], []);
  const q = (x: Value) => g.op('Mul', [g.op('ReduceSum', [g.op('Mul', [g.op('MatMul', [x, h]), x])], { keepdims: 0 }), half]);
  g.output(g.op('Concat', [g.op('Unsqueeze', [q(a), g.constant([0n], [1], DataType.INT64)]), g.op('Unsqueeze', [q(b), g.constant([0n], [1], DataType.INT64)])], { axis: 0 }), 'y', F, [2]);
  return g.build();
}
const QUAD_FORMS = quadFormGraph();

/** Every graph here is small, run many times, with intermediates of at most a few row blocks (outputs are mostly
 *  written into the caller's arrays): an arena recycles them (see Engine.createOn). */
const ARENA = { arena: true };

export class Kernels {
  constructor(readonly engine: Engine) {}

  private async run(model: ReturnType<typeof matrixGraph>, ms: Mat[], into?: Mat): Promise<Mat> {
    const k = await this.engine.kernel(model, ARENA);
    const feeds: Record<string, ort.Tensor> = {};
    ms.forEach((m, i) => (feeds[String.fromCharCode(97 + i)] = t(m)));
    if (!into) return out(await k.run(feeds), 'y');
    await k.run(feeds, { y: t(into) });
    return into;
  }

  abT(a: Mat, b: Mat, into?: Mat): Promise<Mat> { return this.run(GRAPHS.abT, [a, b], into); }
  ab(a: Mat, b: Mat, into?: Mat): Promise<Mat> { return this.run(GRAPHS.ab, [a, b], into); }
  negAB(a: Mat, b: Mat, into?: Mat): Promise<Mat> { return this.run(GRAPHS.negAB, [a, b], into); }
  /** c ← c − a·bᵀ, written in place into c's memory (onnxruntime's Gemm copies C into Y before the product, so
   *  aliasing them is safe). */
  cMinusABTInPlace(a: Mat, b: Mat, c: Mat): Promise<Mat> { return this.run(GRAPHS.cMinusABT, [a, b, c], c); }
  /** c ← c + a·b in place. */
  cPlusABInPlace(a: Mat, b: Mat, c: Mat): Promise<Mat> { return this.run(GRAPHS.cPlusAB, [a, b, c], c); }

  aTbc(a: Mat, b: Mat, c: Mat, into?: Mat): Promise<Mat> { return this.run(GRAPHS.aTbc, [a, b, c], into); }
  abMinusCT(a: Mat, b: Mat, c: Mat, into?: Mat): Promise<Mat> { return this.run(GRAPHS.abMinusCT, [a, b, c], into); }

  /** [0.5·tr(A H Aᵀ), 0.5·tr(B H Bᵀ)] in one pass. */
  async quadForms(a: Mat, b: Mat, h: Mat): Promise<[number, number]> {
    const k = await this.engine.kernel(QUAD_FORMS, ARENA);
    const r = await k.run({ a: t(a), b: t(b), h: t(h) });
    const y = r.y.data as Float32Array;
    return [y[0], y[1]];
  }
}
