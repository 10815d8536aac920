// Runs any method on one layer: validates the input, times the pruning, and scores the result with the
// same loss for every method, 0.5·tr(ΔW H ΔWᵀ) against the undamped H, plus its relative form.

import { NotPositiveDefiniteError } from '../linalg/cholesky';
import { Kernels, mat } from '../linalg/kernels';
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
  if (problem.H && problem.H.length !== cols * cols) fail('H', `has ${problem.H.length} values, expected ${cols}x${cols}`);
  if (problem.colNorm2 && problem.colNorm2.length !== cols) fail('colNorm2', `has ${problem.colNorm2.length} values, expected ${cols}`);
  if (method.needs === 'hessian' && !problem.H) fail('H', `${method.name} needs the layer's Hessian`);
  checkFinite(problem.W, name, 'W');
  if (problem.H) checkFinite(problem.H, name, 'H');
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
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) throw new PruneError(layer, field, `non-finite value ${a[i]} at index ${i}`);
  }
}

/** 0.5·tr(ΔW H ΔWᵀ) and 0.5·tr(W H Wᵀ) as fp32 GEMMs on the engine, in row chunks to bound memory;
 *  chunk results are summed in float64. */
export async function reconstructionLoss(W0: Float32Array, W: Float32Array, rows: number, cols: number, H: Float32Array, engine: Engine): Promise<{ loss: number; relLoss: number }> {
  const kernels = new Kernels(engine);
  const h = mat(cols, cols, H);
  const chunk = Math.max(1, Math.floor((1 << 20) / cols));
  let loss = 0;
  let ref = 0;
  const dWBuf = new Float32Array(Math.min(rows, chunk) * cols); // one buffer for every chunk
  for (let r0 = 0; r0 < rows; r0 += chunk) {
    const r1 = Math.min(rows, r0 + chunk);
    const w0 = W0.subarray(r0 * cols, r1 * cols);
    const w = W.subarray(r0 * cols, r1 * cols);
    const dW = dWBuf.subarray(0, w0.length);
    for (let i = 0; i < dW.length; i++) dW[i] = w0[i] - w[i];
    const [l, q] = await kernels.quadForms(mat(r1 - r0, cols, dW), mat(r1 - r0, cols, w0), h);
    loss += l;
    ref += q;
  }
  return { loss, relLoss: ref > 0 ? loss / ref : 0 };
}

export async function pruneLayer(methodName: MethodName, problem: LayerProblem, options: PruneOptions, engine: Engine): Promise<PruneResult> {
  const method = METHODS[methodName];
  if (!method) throw new PruneError(problem.name, 'method', `unknown method '${methodName}' (known: ${Object.keys(METHODS).join(', ')})`);
  validate(problem, options, method);
  const t0 = performance.now();
  let out;
  try {
    out = await method.prune(problem, options, engine);
    const H = problem.H;
    if (methodName === 'apt' && options.refine && H) {
      const lossOf = async (W: Float32Array) => (await reconstructionLoss(problem.W, W, problem.rows, problem.cols, H, engine)).loss;
      out = await refineApt({ ...problem, H }, options.pattern, options.refine, out, engine, lossOf);
    }
  } catch (e) {
    if (e instanceof PruneError) throw e;
    throw new PruneError(problem.name, e instanceof NotPositiveDefiniteError ? 'H' : methodName, (e as Error).message);
  }
  const seconds = (performance.now() - t0) / 1000;
  let zeros = 0;
  for (let i = 0; i < out.W.length; i++) if (out.W[i] === 0) zeros++;
  const { loss, relLoss } = problem.H
    ? await reconstructionLoss(problem.W, out.W, problem.rows, problem.cols, problem.H, engine)
    : { loss: NaN, relLoss: NaN };
  return { ...out, method: methodName, loss, relLoss, sparsity: zeros / out.W.length, seconds, device: engine.device ?? 'cpu' };
}

export type { LayerProblem, MethodName, Pattern, PruneOptions, PruneResult } from './types';
