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
const int64 = (v: number): ort.Tensor => new ort.Tensor('int64', BigInt64Array.of(BigInt(v)), [1]);
function sum64(y: Float32Array): number {
  let sum = 0;
  for (let j = 0; j < y.length; j++) sum += y[j];
  return sum;
}
const out = (r: Record<string, ort.Tensor>, name: string): Mat => {
  const v = r[name];
  return mat(v.dims[0], v.dims[1], v.data as Float32Array);
};

/** One block's operands of the sweep's reference (blockReference): R[b, b] with dead inputs' rows zeroed, W0ᵀ[b],
 *  and W0ᵀ[:i1] (none for the first block). */
export interface BlockReferenceOperands {
  rbb: Mat;
  wtBlock: Mat;
  wtHead?: Mat;
}

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
  /** y = aᵀ·bᵀ  (the first block's compensation, stored transposed: Gᵀ·Eᵀ) */
  aTbT: matrixGraph('aTbT', 2, (g, [a, b]) => g.op('Gemm', [a, b], { transA: 1, transB: 1 })),
  /** y = aᵀ·bᵀ − c  (the sweep's compensation of one block, stored transposed: Gᵀ·Eᵀ − Dᵀ) */
  aTbTMinusC: matrixGraph('aTbTMinusC', 3, (g, [a, b, c]) => g.op('Gemm', [a, b, c], { transA: 1, transB: 1, beta: { f: -1 } })),
};

/** The sweep's left-looking product for one block b (methods/sweep.ts), with F kept transposed (ft = Fᵀ[:i1], i1 × rows):
 *    dt = (Gᵀ·R[:i1, b]ᵀ)·ft, i.e. Dᵀ for D = F[:, :i1]·R[:i1, b]·G, the earlier blocks' compensation of the block;
 *    wb = W[:, start:end]·live + dtᵀ, the block's current weights (live: 1, or 0 for a dead input).
 *  Computing Dᵀ rather than D puts the small factor (width × width × i1) first: no rows × width × width product. */
function sweepBlockGraph(withReference: boolean) {
  const g = new GraphBuilder(withReference ? 'sweepBlockReference' : 'sweepBlock');
  const G = g.input('g', F, ['b', 'b']);
  const r = g.input('r', F, ['i', 'b']);
  const ft = g.input('ft', F, ['i', 'rows']);
  const W = g.input('w', F, ['rows', 'cols']);
  const start = g.input('start', DataType.INT64, [1]);
  const end = g.input('end', DataType.INT64, [1]);
  const live = g.input('live', F, [1, 'b']);
  const dt = g.op('MatMul', [g.op('Gemm', [G, r], { transA: 1, transB: 1 }), ft]);
  const slice = g.op('Slice', [W, start, end, g.constant([1n], [1], DataType.INT64)]);
  g.output(dt, 'dt', F, ['b', 'rows']);
  g.output(g.op('Add', [g.op('Mul', [slice, live]), g.op('Transpose', [dt], { perm: [1, 0] })]), 'wb', F, ['rows', 'b']);
  if (withReference) {
    const head = g.op('Gemm', [r, g.input('wtHead', F, ['i', 'rows'])], { transA: 1 });
    g.output(blockReference(g, head), 'refSq', F, ['rows']);
  }
  return g.build();
}
const SWEEP_BLOCK = sweepBlockGraph(false);
const SWEEP_BLOCK_REFERENCE = sweepBlockGraph(true);

/** Block b's share of the sweep's reference ‖W0·R‖² (methods/sweep.ts), per row of W0: with Y = (W0·R)[:, b]ᵀ =
 *  R[b, b]ᵀ·W0ᵀ[b] + R[:i1, b]ᵀ·W0ᵀ[:i1] (`head`, the second term; none for the first block), Σ over the block's
 *  columns of Y², float32 sums of at most b terms (the caller sums the rows in float64). Inputs `rbb` (R[b, b], the
 *  rows of dead inputs zeroed) and `wtBlock` (W0ᵀ[b]). */
function blockReference(g: GraphBuilder, head?: Value): Value {
  const y = g.op('Gemm', [g.input('rbb', F, ['b', 'b']), g.input('wtBlock', F, ['b', 'rows']), ...(head ? [head] : [])], { transA: 1 });
  return g.op('ReduceSum', [g.op('Mul', [y, y]), g.constant([0n], [1], DataType.INT64)], { keepdims: 0 });
}

function firstBlockReferenceGraph() {
  const g = new GraphBuilder('firstBlockReference');
  g.output(blockReference(g), 'refSq', F, ['rows']);
  return g.build();
}
const FIRST_BLOCK_REFERENCE = firstBlockReferenceGraph();

/** The sweep's Dᵀ = (Gᵀ·R[:i1, b]ᵀ)·Fᵀ[:i1] alone, twice: `dt` for a device output and `dtHost` for the host. */
function blockCompensationGraph() {
  const g = new GraphBuilder('blockCompensation');
  const G = g.input('g', F, ['b', 'b']);
  const r = g.input('r', F, ['i', 'b']);
  const ft = g.input('ft', F, ['i', 'rows']);
  const dt = g.op('MatMul', [g.op('Gemm', [G, r], { transA: 1, transB: 1 }), ft]);
  g.output(dt, 'dt', F, ['b', 'rows']);
  g.output(dt, 'dtHost', F, ['b', 'rows']);
  return g.build();
}
const BLOCK_COMPENSATION = blockCompensationGraph();

const BIG = 2n ** 62n; // a Slice end past any dimension

/** x[start:end] along `axis` (start and end: int64 graph inputs of one element, or constants). */
function sliceAxis(g: GraphBuilder, x: Value, start: Value, end: Value, axis: number): Value {
  return g.op('Slice', [x, start, end, g.constant([BigInt(axis)], [1], DataType.INT64)]);
}

/** One step of the device factor (deviceFactor.ts) for the block b = [i1, m) of the trailing matrix a (m × m),
 *  with g = R[b, b]⁻¹:
 *    column = a[:i1, b]·gᵀ = R[:i1, b];   trailing = a[:i1, :i1] − column·columnᵀ;   diagonal = trailing[i0:, i0:]
 *  (the next block's, i0 = its first column). column and trailing stay on the device; diagonal comes back. */
function factorStepGraph() {
  const g = new GraphBuilder('factorStep');
  const a = g.input('a', F, ['m', 'm']);
  const G = g.input('g', F, ['w', 'w']);
  const i1 = g.input('i1', DataType.INT64, [1]);
  const i0 = g.input('i0', DataType.INT64, [1]);
  const zero = g.constant([0n], [1], DataType.INT64);
  const big = g.constant([BIG], [1], DataType.INT64);
  const top = sliceAxis(g, a, zero, i1, 0);
  const column = g.op('Gemm', [sliceAxis(g, top, i1, big, 1), G], { transB: 1 });
  const trailing = g.op('Gemm', [column, column, sliceAxis(g, top, zero, i1, 1)], { transB: 1, alpha: { f: -1 }, beta: { f: 1 } });
  g.output(column, 'column', F, ['i1', 'w']);
  g.output(trailing, 'trailing', F, ['i1', 'i1']);
  g.output(sliceAxis(g, sliceAxis(g, trailing, i0, big, 0), i0, big, 1), 'diagonal', F, ['d', 'd']);
  return g.build();
}
const FACTOR_STEP = factorStepGraph();

/** The sweep's compensation of block b appended to the finished blocks' on the device: ft' = [ft; gᵀ·eᵀ − dt]
 *  (Fᵀ[:i2] from Fᵀ[:i1], as aTbTMinusC computes the block's rows). */
function appendBlockGraph() {
  const g = new GraphBuilder('appendBlock');
  const G = g.input('g', F, ['b', 'b']);
  const e = g.input('e', F, ['rows', 'b']);
  const dt = g.input('dt', F, ['b', 'rows']);
  const ft = g.input('ft', F, ['i', 'rows']);
  const fb = g.op('Gemm', [G, e, dt], { transA: 1, transB: 1, beta: { f: -1 } });
  g.output(g.op('Concat', [ft, fb], { axis: 0 }), 'y', F, ['i2', 'rows']);
  return g.build();
}
const APPEND_BLOCK = appendBlockGraph();

/** y = x for a tensor of any rank: a device tensor's values back to the host, or a host tensor's onto the device. */
function anyRankIdentity(type: DataType) {
  const g = new GraphBuilder(`anyRankIdentity${type}`);
  g.output(g.input('a', type, null), 'y', type, null);
  return g.build();
}
const TO_HOST = anyRankIdentity(F);
const TO_DEVICE: Partial<Record<ort.Tensor.Type, ReturnType<typeof anyRankIdentity>>> = { float32: TO_HOST, float16: anyRankIdentity(DataType.FLOAT16) };

/** The quadratic form 0.5·Σ_i (x_i H x_iᵀ) = 0.5·tr(X H Xᵀ) of a stack of rows X. */
function halfTraceGraph() {
  const g = new GraphBuilder('halfTrace');
  const x = g.input('x', F, ['r', 'c']);
  const h = g.input('h', F, ['c', 'c']);
  g.output(g.op('Mul', [g.op('ReduceSum', [g.op('Mul', [g.op('MatMul', [x, h]), x])], { keepdims: 0 }), g.constant([0.5], [])]), 'y', F, []);
  return g.build();
}
const HALF_TRACE = halfTraceGraph();

/** Σ_i (P·A)_ij · C_ij per column j: one column block's term of the symmetric quadratic form (methods/index.ts
 *  halfTrace), summed over b ≤ 512 values in float32; the caller sums the columns in float64. */
function blockFormGraph() {
  const g = new GraphBuilder('blockForm');
  const p = g.input('p', F, ['b', 'k']);
  const a = g.input('a', F, ['k', 'r']);
  const c = g.input('c', F, ['b', 'r']);
  g.output(g.op('ReduceSum', [g.op('Mul', [g.op('MatMul', [p, a]), c]), g.constant([0n], [1], DataType.INT64)], { keepdims: 0 }), 'y', F, ['r']);
  return g.build();
}
const BLOCK_FORM = blockFormGraph();

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

  aTbTMinusC(a: Mat, b: Mat, c: Mat, into?: Mat): Promise<Mat> { return this.run(GRAPHS.aTbTMinusC, [a, b, c], into); }

  /** sweepBlockGraph into `dt` (width × rows) and `wb` (rows × width), for the block of columns [start, start + width)
   *  of W (rows × cols); `r` = R[:i1, b] (i1 × width) and `ft` = Fᵀ[:i1] (i1 × rows), i1 ≥ 1. With `ref`, also the
   *  block's share of the sweep's reference (blockReference): returns its Σ Y² in float64 (0 without). */
  async sweepBlock(G: Mat, r: Mat, ft: Mat, W: Mat, start: number, live: Float32Array, dt: Mat, wb: Mat, ref?: Required<BlockReferenceOperands>): Promise<number> {
    const k = await this.engine.kernel(ref ? SWEEP_BLOCK_REFERENCE : SWEEP_BLOCK, ARENA);
    const width = G.rows;
    const feeds: Record<string, ort.Tensor> = {
      g: t(G), r: t(r), ft: t(ft), w: t(W),
      start: new ort.Tensor('int64', BigInt64Array.of(BigInt(start)), [1]),
      end: new ort.Tensor('int64', BigInt64Array.of(BigInt(start + width)), [1]),
      live: f32(live, [1, width]),
    };
    if (!ref) {
      await k.run(feeds, { dt: t(dt), wb: t(wb) });
      return 0;
    }
    const res = await k.run({ ...feeds, rbb: t(ref.rbb), wtBlock: t(ref.wtBlock), wtHead: t(ref.wtHead) }, { dt: t(dt), wb: t(wb), refSq: null });
    return sum64(res.refSq.data as Float32Array);
  }

  /** The first block's share of the sweep's reference (blockReference, no head): Σ Y² in float64. */
  async firstBlockReference(ref: BlockReferenceOperands): Promise<number> {
    const k = await this.engine.kernel(FIRST_BLOCK_REFERENCE, ARENA);
    return sum64((await k.run({ rbb: t(ref.rbb), wtBlock: t(ref.wtBlock) })).refSq.data as Float32Array);
  }

  /** 0.5·tr(X H Xᵀ); h may be a tensor left on the device (upload). */
  async halfTrace(x: Mat, h: Mat | ort.Tensor): Promise<number> {
    const k = await this.engine.kernel(HALF_TRACE, ARENA);
    const r = await k.run({ x: t(x), h: 'rows' in h ? t(h) : h });
    return (r.y.data as Float32Array)[0];
  }

  /** Σ_ij (P·A)_ij · C_ij for P (b × k), A (k × r) and C (b × r): float32 sums down each column, then float64. */
  async blockForm(p: Mat, a: Mat, c: Mat): Promise<number> {
    const k = await this.engine.kernel(BLOCK_FORM, ARENA);
    return sum64((await k.run({ p: t(p), a: t(a), c: t(c) })).y.data as Float32Array);
  }

  /** Whether this engine's kernels keep device outputs in the device's memory (the device resolved first). */
  async keepsOnDevice(): Promise<boolean> {
    if (this.engine.device === undefined) await this.engine.kernel(TO_HOST, ARENA);
    return this.engine.keepsOnDevice;
  }

  // The factor and the sweep with their operands on the device (Engine.keepsOnDevice: deviceFactor.ts, sweep.ts's
  // DeviceOperands): H, R's columns and Fᵀ stay in the device's memory between calls. On other devices the tensors
  // these return are host tensors and the same calls work (each then crosses, as the host path's do).

  /** `m` as a tensor in the device's memory. */
  upload(m: Mat): Promise<ort.Tensor> {
    return this.uploadTensor(t(m));
  }

  /** A float32 or float16 host tensor of any shape, copied into the device's memory. */
  async uploadTensor(x: ort.Tensor): Promise<ort.Tensor> {
    const graph = TO_DEVICE[x.type];
    if (!graph) throw new Error(`upload: no graph for ${x.type} tensors`);
    const k = await this.engine.kernel(graph, { ...ARENA, deviceOutputs: ['y'] });
    return (await k.run({ a: x })).y;
  }

  /** A device tensor's values (any shape) into `into` (its size). */
  async download(x: ort.Tensor, into: Mat): Promise<void> {
    const k = await this.engine.kernel(TO_HOST, ARENA);
    into.data.set((await k.run({ a: x })).y.data as Float32Array);
  }

  /** One step of the device factor: R[:i1, b] and the trailing matrix left on the device, the next diagonal block
   *  (from column i0) returned. */
  async factorStep(a: ort.Tensor, g: Mat, i1: number, i0: number): Promise<{ column: ort.Tensor; trailing: ort.Tensor; diagonal: Float32Array }> {
    const k = await this.engine.kernel(FACTOR_STEP, { ...ARENA, deviceOutputs: ['column', 'trailing'] });
    const r = await k.run({ a, g: t(g), i1: int64(i1), i0: int64(i0) });
    return { column: r.column, trailing: r.trailing, diagonal: r.diagonal.data as Float32Array };
  }

  /** The sweep's Dᵀ with R[:i1, b] (`r`) and the finished blocks' Fᵀ[:i1] on the device: Dᵀ left there, and its
   *  values into `dt` (the host adds them to the block's weights: W itself never goes up). */
  async blockCompensationOnDevice(G: Mat, r: ort.Tensor, ft: ort.Tensor, dt: Mat): Promise<ort.Tensor> {
    const k = await this.engine.kernel(BLOCK_COMPENSATION, { ...ARENA, deviceOutputs: ['dt'] });
    const out = await k.run({ g: t(G), r, ft });
    dt.data.set(out.dtHost.data as Float32Array);
    return out.dt;
  }

  /** Fᵀ[:i2] = [Fᵀ[:i1]; Gᵀ·Eᵀ − Dᵀ] on the device (ft and dt null for the first block: Fᵀ[:i2] = Gᵀ·Eᵀ). */
  async appendBlock(G: Mat, E: Mat, dt: ort.Tensor | null, ft: ort.Tensor | null): Promise<ort.Tensor> {
    if (ft === null || dt === null) {
      const k = await this.engine.kernel(GRAPHS.aTbT, { ...ARENA, deviceOutputs: ['y'] });
      return (await k.run({ a: t(G), b: t(E) })).y;
    }
    const k = await this.engine.kernel(APPEND_BLOCK, { ...ARENA, deviceOutputs: ['y'] });
    return (await k.run({ g: t(G), e: t(E), dt, ft })).y;
  }
}
