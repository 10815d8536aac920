// Runs any method on one layer: validates the input, times the pruning, and scores the result with the
// same loss for every method, 0.5·tr(ΔW H ΔWᵀ) against the undamped H (from the solve itself for SparseGPT and
// APT, sweep.ts; measured here for the others), plus its relative form.

import { NotPositiveDefiniteError } from '../linalg/cholesky';
import { Kernels, Mat, mat } from '../linalg/kernels';
import { transpose } from '../models/emitter';
import type * as ort from 'onnxruntime-node';
import type { Engine } from '../onnx/session';
import { apt } from './apt';
import { refineApt } from './aptRefine';
import { magnitude } from './magnitude';
import { sparsegpt } from './sparsegpt';
import { LayerProblem, MethodName, PruneError, PruneOptions, PruneResult, PruningMethod } from './types';
import { wanda } from './wanda';

export const METHODS: Record<MethodName, PruningMethod> = { apt, sparsegpt, wanda, magnitude };

export function validate(problem: LayerProblem, options: PruneOptions, method: PruningMethod): void {
  const { name, rows, cols } = problem;
  const fail = (field: string, msg: string): never => {
    throw new PruneError(name, field, msg);
  };
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows <= 0 || cols <= 0) fail('shape', `invalid shape ${rows}x${cols}`);
  if (problem.W.length !== rows * cols) fail('W', `has ${problem.W.length} values, expected ${rows}x${cols}=${rows * cols}`);
  if (problem.Wt && problem.Wt.length !== rows * cols) fail('Wt', `has ${problem.Wt.length} values, expected ${cols}x${rows}=${rows * cols}`);
  if (problem.H && problem.H.length !== cols * cols) fail('H', `has ${problem.H.length} values, expected ${cols}x${cols}`);
  if (problem.colNorm2 && problem.colNorm2.length !== cols) fail('colNorm2', `has ${problem.colNorm2.length} values, expected ${cols}`);
  if (method.needs === 'hessian' && !problem.H) fail('H', `${method.name} needs the layer's Hessian`);
  if (!problem.finiteW) checkFinite(problem.W, name, 'W');
  if (problem.H && !problem.finiteH) checkFinite(problem.H, name, 'H');
  if (problem.colNorm2) checkFinite(problem.colNorm2, name, 'colNorm2');
  const p = options.pattern;
  if (p.kind === 'unstructured') {
    if (!(p.sparsity > 0 && p.sparsity < 1)) fail('sparsity', `${p.sparsity} is outside (0, 1)`);
  } else {
    if (!Number.isInteger(p.n) || !Number.isInteger(p.m) || p.n < 1 || p.m < 2) fail('pattern', `${p.n}:${p.m} is not a valid N:M pattern`);
    if (p.n >= p.m) fail('pattern', `N:M needs N < M, got ${p.n}:${p.m}`);
  }
  const bs = options.blockSize;
  if (bs !== undefined && (!Number.isInteger(bs) || bs < 1)) fail('blockSize', `${bs} is not a positive integer`);
  const d = options.dampening;
  if (d !== undefined && !(d >= 0 && Number.isFinite(d))) fail('dampening', `${d} must be a finite number >= 0`);
  if (options.mask && options.mask.length !== rows * cols) fail('mask', `has ${options.mask.length} values, expected ${rows * cols}`);
  const k = options.refine;
  if (k !== undefined && !(Number.isInteger(k) && k >= 0)) fail('refine', `${k} is not an integer >= 0`);
}

function checkFinite(a: Float32Array, layer: string, field: string): void {
  if (allFinite(a)) return;
  const i = a.findIndex((v) => !Number.isFinite(v));
  throw new PruneError(layer, field, `non-finite value ${a[i]} at index ${i}`);
}

/** No NaN or ±inf in `a`, from the bits without a branch per value (3× a Number.isFinite loop: layers are 10⁷–10⁸
 *  values): an all-ones exponent plus one exponent unit carries into the sign bit, which the OR keeps. */
export function allFinite(a: Float32Array): boolean {
  const bits = new Int32Array(a.buffer, a.byteOffset, a.length);
  let m = 0;
  for (let i = 0; i < bits.length; i++) m |= (bits[i] & 0x7f800000) + 0x00800000;
  return m >= 0;
}

/** How many of `a` are ±0, without a branch per value (pruned weights are zero in no predictable order: a
 *  mispredicted branch per value is twice the time of this). */
export function countZeros(a: Float32Array): number {
  const bits = new Int32Array(a.buffer, a.byteOffset, a.length);
  let nonzero = 0;
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i] << 1; // the sign dropped: -0 is a zero
    nonzero += (x | -x) >>> 31;
  }
  return a.length - nonzero;
}

/** Rows per GEMM of halfTrace on a device: up to 32 MiB of X. onnxruntime packs H again for every call, so a call of
 *  few rows reads H (cols² floats) for little arithmetic: 2·rows·cols² flops per cols² floats packed. But a call
 *  holds about three chunks (X, X·H, their product), so a chunk is also at most 1/16 of the layer's W and H: the
 *  pass adds under 0.2× (W + H) to the peak (the solvers' memory target is 4×). */
const HALF_TRACE_CHUNK = 1 << 23;

/** How halfTrace cuts its work on the host: column blocks of H, and Xᵀ of a row chunk at most 1/divisor of the
 *  layer's W and H (it and one block of H's rows are what the pass adds to the peak). */
export interface HalfTraceCuts {
  block: number;
  divisor: number;
}
export const HALF_TRACE_CUTS: HalfTraceCuts = { block: 512, divisor: 8 };

/** 0.5·tr(X H Xᵀ) as fp32 GEMMs on the engine, X (rows, cols) given row chunk by row chunk (to bound memory) by
 *  `rowsOf`; chunk results are summed in float64. H on the host is read by halfTraceSymmetric (half the flops);
 *  H left on a device (a tensor) by the full form ⟨X·H, X⟩, whose H needs no copies of its blocks. */
export async function halfTrace(rows: number, cols: number, h: Mat | ort.Tensor, kernels: Kernels, rowsOf: (r0: number, r1: number) => Float32Array, cuts = HALF_TRACE_CUTS): Promise<number> {
  if ('rows' in h) return halfTraceSymmetric(rows, cols, h.data, kernels, rowsOf, cuts);
  const chunk = Math.max(1, Math.floor(Math.min(HALF_TRACE_CHUNK, (rows * cols + cols * cols) / 16) / cols));
  let sum = 0;
  for (let r0 = 0; r0 < rows; r0 += chunk) {
    const r1 = Math.min(rows, r0 + chunk);
    sum += await kernels.halfTrace(mat(r1 - r0, cols, rowsOf(r0, r1)), h);
  }
  return sum;
}

/**
 * 0.5·tr(X H Xᵀ) for a symmetric H, from its lower block triangle: with Y = Xᵀ and column blocks J = [j0, j1),
 *   0.5·Σ_ij x_i H_ij x_j = Σ_J ⟨H'[J, :j1]·Y[:j1], Y[J]⟩,   H' = H with its diagonal blocks H[J, J] halved,
 * since each pair i < j then counts once and each i = j half. rows·cols²·(1 + block/cols) flops, against 2·rows·cols²
 * for ⟨X·H, X⟩; Y's rows are X's columns, so Y[:j1] and Y[J] are contiguous and go to onnxruntime as they are.
 */
async function halfTraceSymmetric(rows: number, cols: number, H: Float32Array, kernels: Kernels, rowsOf: (r0: number, r1: number) => Float32Array, cuts: HalfTraceCuts): Promise<number> {
  const most = Math.max(1, Math.floor((rows * cols + cols * cols) / cuts.divisor / cols));
  const chunk = Math.ceil(rows / Math.ceil(rows / most)); // chunks of equal size
  const Y = new Float32Array(chunk * cols);
  const B = Math.min(cuts.block, cols);
  const panel = new Float32Array(B * cols); // H'[J, :j1]
  let sum = 0;
  for (let r0 = 0; r0 < rows; r0 += chunk) {
    const r = Math.min(rows, r0 + chunk) - r0;
    transpose(rowsOf(r0, r0 + r), r, cols, Y.subarray(0, r * cols));
    for (let j0 = 0; j0 < cols; j0 += B) {
      const j1 = Math.min(cols, j0 + B);
      const b = j1 - j0;
      for (let i = 0; i < b; i++) {
        const row = panel.subarray(i * j1, (i + 1) * j1);
        row.set(H.subarray((j0 + i) * cols, (j0 + i) * cols + j1));
        for (let j = j0; j < j1; j++) row[j] *= 0.5;
      }
      sum += await kernels.blockForm(mat(b, j1, panel.subarray(0, b * j1)), mat(j1, r, Y.subarray(0, j1 * r)), mat(b, r, Y.subarray(j0 * r, j1 * r)));
    }
  }
  return sum;
}

/** The loss 0.5·tr(ΔW H ΔWᵀ) (ΔW = W0 − W) and its relative form, over ref = 0.5·tr(W0 H W0ᵀ); each measured
 *  here unless given (by the method's solve, by the caller's calibration forward). On a device that keeps outputs
 *  (WebGPU) H crosses once, not once per row chunk, and not at all when the method left it there (`hessian`). */
export async function reconstructionLoss(W0: Float32Array, W: Float32Array, rows: number, cols: number, H: Float32Array, engine: Engine, given: { loss?: number; reference?: number; hessian?: ort.Tensor } = {}): Promise<{ loss: number; relLoss: number }> {
  const kernels = new Kernels(engine);
  const measured = given.loss === undefined || given.reference === undefined;
  const h = given.hessian ?? (measured && await kernels.keepsOnDevice() ? await kernels.upload(mat(cols, cols, H)) : mat(cols, cols, H));
  try {
    const ref = given.reference ?? await halfTrace(rows, cols, h, kernels, (r0, r1) => W0.subarray(r0 * cols, r1 * cols));
    let dW: Float32Array | undefined; // one buffer for every chunk, sized by the first (the largest)
    const l = given.loss ?? await halfTrace(rows, cols, h, kernels, (r0, r1) => {
      dW ??= new Float32Array((r1 - r0) * cols);
      const x = dW.subarray(0, (r1 - r0) * cols);
      for (let i = 0, k = r0 * cols; i < x.length; i++, k++) x[i] = W0[k] - W[k];
      return x;
    });
    return { loss: l, relLoss: ref > 0 ? l / ref : 0 };
  } finally {
    if (h !== given.hessian && !('rows' in h)) h.dispose();
  }
}

export async function pruneLayer(methodName: MethodName, problem: LayerProblem, options: PruneOptions, engine: Engine): Promise<PruneResult> {
  const method = METHODS[methodName];
  if (!method) throw new PruneError(problem.name, 'method', `unknown method '${methodName}' (known: ${Object.keys(METHODS).join(', ')})`);
  validate(problem, options, method);
  const t0 = performance.now();
  let out;
  try {
    const H = problem.H;
    const refine = methodName === 'apt' && options.refine && H ? options.refine : 0;
    out = await method.prune(problem, refine ? { ...options, transposedOutput: false } : options, engine); // the refinement reads W by rows
    if (refine && H) {
      // The refinement compares losses only: no reference measured with each of them (reference: 0 skips it).
      const lossOf = async (W: Float32Array) => (await reconstructionLoss(problem.W, W, problem.rows, problem.cols, H, engine, { reference: 0 })).loss;
      out = await refineApt({ ...problem, H }, options.pattern, refine, out, engine, lossOf);
    }
  } catch (e) {
    if (e instanceof PruneError) throw e;
    throw new PruneError(problem.name, e instanceof NotPositiveDefiniteError ? 'H' : methodName, (e as Error).message);
  }
  const seconds = (performance.now() - t0) / 1000;
  const zeros = out.zeros ?? countZeros(out.W);
  const { deviceH, ...result } = out;
  if (out.transposed && out.loss === undefined) throw new PruneError(problem.name, methodName, 'a transposed result comes with its loss'); // reconstructionLoss reads W by rows
  try {
    const { loss, relLoss } = problem.H
      ? await reconstructionLoss(problem.W, out.W, problem.rows, problem.cols, problem.H, engine, { loss: out.loss, reference: problem.reference ?? out.reference, hessian: deviceH })
      : { loss: NaN, relLoss: NaN };
    return { ...result, method: methodName, loss, relLoss, sparsity: zeros / out.W.length, seconds, device: engine.device ?? 'cpu' };
  } finally {
    deviceH?.dispose();
  }
}

export type { LayerProblem, MethodName, Pattern, PruneOptions, PruneResult } from './types';
