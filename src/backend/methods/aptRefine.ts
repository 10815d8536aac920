// APT refinement (refine.iterations = k > 0): after APT's one-shot mask, k iterations of ADMM that re-select the
// mask and update the weights jointly, then the exact least-squares refit of the final mask. The layer keeps the
// refined result only when its loss 0.5·tr(ΔW H ΔWᵀ) is below the one-shot one: never worse.
//
// Problem (per layer, H_d = H + λI the damped Hessian APT used): min_W ½ tr((W − W₀) H_d (W − W₀)ᵀ), W ∈ S, where S
// keeps the one-shot pattern's shape: each row keeps its number of zeros (unstructured: the layer's sparsity and
// each row's share stay), or N zeros in every group of M (N:M, exact). Scaled by d = √diag(H_d) (Ŵ = W·D, Ĥ =
// D⁻¹H_d D⁻¹, unit diagonal), so that the Euclidean projection onto S ranks |ŵ_ij| = |w_ij|·√H_jj, the Wanda/OBS-like
// saliency, and one penalty scale fits every layer.
//
// ADMM (Boža, "Fast and Optimal Weight Update for Pruned Large Language Models", 2024, Alg. 1; Meng et al., "ALPS:
// Improved Optimization for Highly Sparse One-Shot Pruning", NeurIPS 2024, §3), dual U scaled, from Z₀ = APT's Ŵ, U₀ = 0:
//     W ← (Ŵ₀Ĥ + ρ(Z − U)) (Ĥ + ρI)⁻¹        (one Cholesky of Ĥ + ρI, two GEMMs with its inverse factor)
//     Z ← Π_S(W + U)                         (the mask re-selected: the largest |·| per row / per N:M group)
//     U ← U + W − Z,     ρ ← ρ·γ              (ρ₀ = RHO0, γ so that ρ ends at RHO_END: a rising penalty, as ALPS)
// Starting from APT's mask with a penalty that is not small keeps the iterates near it, so the mask moves only where
// the joint update shows a better one. Each iteration's loss (of Z, the feasible iterate) is reported.
// Refit for the final mask (w_P = 0): w_K = w₀_K + (H_d)_KK⁻¹ (H_d)_KP w₀_P per row, computed for all rows at once by
// Jacobi-preconditioned conjugate gradients (ALPS's refit), each step one float64 GEMM (rows × cols × cols) on the
// engine, warm-started from Z, until every row's residual is below REFIT_TOL of its right-hand side.

import { choleskyWithInverse } from '../linalg/cholesky';
import { Kernels, mat, Mat } from '../linalg/kernels';
import { GraphBuilder } from '../onnx/graph';
import { DataType } from '../onnx/proto';
import type { Engine } from '../onnx/session';
import * as ort from 'onnxruntime-node';
import type { LayerRefinement } from '../../protocol/events';
import { kthSmallest } from './masks';
import { prepareHessian } from './sparsegpt.reference';
import type { LayerProblem, MethodOutput, Pattern } from './types';

/** Penalty schedule in the unit-diagonal scale: ρ from RHO0 up to RHO_END over the iterations. */
const RHO0 = 0.3;
const RHO_END = 30;
/** CG stops when ‖r_row‖ ≤ REFIT_TOL·‖b_row‖ for every row, or after REFIT_MAX_STEPS(cols) steps. */
const REFIT_TOL = 1e-10;
const refitMaxSteps = (cols: number) => Math.min(4 * cols, 2000);

export type LossOf = (W: Float32Array) => Promise<number>;

/** The refined layer, or the one-shot result where refinement did not lower the loss; `refine` says which. */
export async function refineApt(problem: LayerProblem & { H: Float32Array }, pattern: Pattern, iterations: number, oneShot: MethodOutput, engine: Engine, lossOf: LossOf): Promise<MethodOutput & { refine?: LayerRefinement }> {
  const { rows, cols, W: W0, H } = problem;
  if (hasDeadInput(H, cols)) return { ...oneShot, notes: [...oneShot.notes, 'refinement skipped: an input column was never active in calibration'] };
  const { Hd } = prepareHessian(H, cols, oneShot.dampening ?? 0.01);
  const oneShotLoss = await lossOf(oneShot.W);
  const { mask, W: admmW, losses } = await admm(problem, Hd, pattern, iterations, oneShot, engine, lossOf);
  const refit = Float32Array.from(await fixedMaskRefit(W0, Hd, rows, cols, mask, admmW, engine));
  const refitLoss = await lossOf(refit);
  let maskChanges = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i] !== oneShot.mask[i]) maskChanges++;
  const better = refitLoss < oneShotLoss;
  const refine: LayerRefinement = { oneShotLoss, iterationLosses: losses, refitLoss, kept: better ? 'refined' : 'one-shot', maskChanges };
  // The one-shot solve's loss and zero count belong to its own weights: the refit's loss is the one measured above.
  return better ? { ...oneShot, W: refit, mask, loss: refitLoss, zeros: undefined, refine } : { ...oneShot, refine };
}

function hasDeadInput(H: Float32Array, cols: number): boolean {
  for (let j = 0; j < cols; j++) if (H[j * cols + j] === 0) return true;
  return false;
}

// ---------------------------------------------------------------------------------------------------------
// ADMM with mask re-selection

async function admm(problem: LayerProblem, Hd: Float64Array, pattern: Pattern, iterations: number, oneShot: MethodOutput, engine: Engine, lossOf: LossOf): Promise<{ mask: Uint8Array; W: Float32Array; losses: number[] }> {
  const { rows, cols, W: W0 } = problem;
  const k = new Kernels(engine);
  const d = Float64Array.from({ length: cols }, (_, j) => Math.sqrt(Hd[j * cols + j]));
  const Hs = mat(cols, cols, Float32Array.from(Hd, (v, i) => v / (d[Math.floor(i / cols)] * d[i % cols])));
  const scale = (W: ArrayLike<number>) => mat(rows, cols, Float32Array.from({ length: rows * cols }, (_, i) => W[i] * d[i % cols]));
  const C = await k.ab(scale(W0), Hs); // Ŵ₀Ĥ
  const Z = scale(oneShot.W);
  const U = new Float32Array(rows * cols);
  const B = mat(rows, cols);
  const project = projector(pattern, oneShot.mask, rows, cols);
  const mask = Uint8Array.from(oneShot.mask);
  const losses: number[] = [];
  const gamma = iterations > 1 ? Math.pow(RHO_END / RHO0, 1 / (iterations - 1)) : 1;
  let rho = RHO0;
  for (let t = 0; t < iterations; t++, rho *= gamma) {
    const A = mat(cols, cols, Float32Array.from(Hs.data));
    for (let j = 0; j < cols; j++) A.data[j * cols + j] += rho;
    const { X } = await choleskyWithInverse(A, k); // (Ĥ + ρI)⁻¹ = XᵀX
    for (let i = 0; i < B.data.length; i++) B.data[i] = C.data[i] + rho * (Z.data[i] - U[i]);
    const W = await k.ab(await k.abT(B, X), X);
    for (let i = 0; i < U.length; i++) Z.data[i] = W.data[i] + U[i];
    project(Z.data, mask);
    for (let i = 0; i < U.length; i++) U[i] += W.data[i] - Z.data[i];
    losses.push(await lossOf(unscale(Z, d)));
  }
  return { mask, W: unscale(Z, d), losses };
}

function unscale(Z: Mat, d: Float64Array): Float32Array {
  const cols = Z.cols;
  return Float32Array.from(Z.data, (v, i) => v / d[i % cols]);
}

/** Π_S in place: zeroes the smallest |v| of each row (as many as the one-shot mask has there), or the N smallest
 *  of each full group of M (N:M); writes the new mask (1 = pruned). Columns the one-shot pattern left dense (a
 *  trailing partial N:M group) stay dense. */
function projector(pattern: Pattern, oneShotMask: Uint8Array, rows: number, cols: number): (v: Float32Array, mask: Uint8Array) => void {
  if (pattern.kind === 'nm') {
    const { n, m } = pattern;
    const groups = Math.floor(cols / m);
    return (v, mask) => {
      for (let r = 0; r < rows; r++) for (let g = 0; g < groups; g++) pruneSmallest(v, mask, r * cols + g * m, m, n);
    };
  }
  const counts = Int32Array.from({ length: rows }, (_, r) => oneShotMask.subarray(r * cols, (r + 1) * cols).reduce((s, x) => s + x, 0));
  return (v, mask) => {
    for (let r = 0; r < rows; r++) pruneSmallest(v, mask, r * cols, cols, counts[r]);
  };
}

/** Zeroes exactly `count` of v[at, at + len) with the smallest |v| (ties: the leftmost), marking them in mask. */
function pruneSmallest(v: Float32Array, mask: Uint8Array, at: number, len: number, count: number): void {
  mask.fill(0, at, at + len);
  if (count <= 0) return;
  const mag = Float64Array.from(v.subarray(at, at + len), Math.abs);
  const cut = kthSmallest(mag, count - 1);
  let left = count;
  for (let j = 0; j < len && left > 0; j++) if (mag[j] < cut) { mask[at + j] = 1; left--; }
  for (let j = 0; j < len && left > 0; j++) if (mag[j] === cut) { mask[at + j] = 1; left--; }
  for (let j = 0; j < len; j++) if (mask[at + j]) v[at + j] = 0;
}

// ---------------------------------------------------------------------------------------------------------
// Exact refit of a fixed mask: batched preconditioned CG in float64

/** y = a·b in float64 on the engine. */
function doubleMatMulGraph() {
  const g = new GraphBuilder('abF64');
  const a = g.input('a', DataType.DOUBLE, ['r', 'k']);
  const b = g.input('b', DataType.DOUBLE, ['k', 'c']);
  g.output(g.op('MatMul', [a, b]), 'y', DataType.DOUBLE, ['r', 'c']);
  return g.build();
}
const AB_F64 = doubleMatMulGraph();

async function abF64(engine: Engine, a: Float64Array, rows: number, H: Float64Array, cols: number): Promise<Float64Array> {
  const kernel = await engine.kernel(AB_F64, { arena: true });
  const out = await kernel.run({ a: new ort.Tensor('float64', a as Float64Array<ArrayBuffer>, [rows, cols]), b: new ort.Tensor('float64', H as Float64Array<ArrayBuffer>, [cols, cols]) });
  return out.y.data as Float64Array;
}

/**
 * The per-row least-squares optimum for a fixed mask (1 = pruned): w_P = 0, w_K = w₀_K + (H_d)_KK⁻¹ (H_d)_KP w₀_P,
 * i.e. the solution of (w H_d)_K = (w₀ H_d)_K with w_P = 0. All rows at once by Jacobi-preconditioned CG (per-row
 * step sizes), from `start` (masked).
 */
export async function fixedMaskRefit(W0: Float32Array, Hd: Float64Array, rows: number, cols: number, mask: Uint8Array, start: Float32Array, engine: Engine): Promise<Float64Array> {
  const n = rows * cols;
  const keep = (i: number) => (mask[i] ? 0 : 1);
  const dinv = Float64Array.from({ length: cols }, (_, j) => 1 / Hd[j * cols + j]);
  const x = Float64Array.from(start, (v, i) => v * keep(i));
  const b = await abF64(engine, Float64Array.from(W0), rows, Hd, cols);
  const Ax = await abF64(engine, x, rows, Hd, cols);
  const r = Float64Array.from(b, (v, i) => (v - Ax[i]) * keep(i));
  const bNorm = rowNorms(Float64Array.from(b, (v, i) => v * keep(i)), rows, cols);
  const z = Float64Array.from(r, (v, i) => v * dinv[i % cols]);
  const p = Float64Array.from(z);
  let rz = rowDots(r, z, rows, cols);
  for (let step = 0; step < refitMaxSteps(cols); step++) {
    const rn = rowNorms(r, rows, cols);
    if (rn.every((v, i) => v <= REFIT_TOL * bNorm[i])) break;
    const Ap = await abF64(engine, p, rows, Hd, cols);
    for (let i = 0; i < n; i++) Ap[i] *= keep(i);
    const pAp = rowDots(p, Ap, rows, cols);
    for (let row = 0; row < rows; row++) {
      const alpha = pAp[row] > 0 ? rz[row] / pAp[row] : 0;
      for (let i = row * cols; i < (row + 1) * cols; i++) {
        x[i] += alpha * p[i];
        r[i] -= alpha * Ap[i];
        z[i] = r[i] * dinv[i % cols];
      }
    }
    const rzNext = rowDots(r, z, rows, cols);
    for (let row = 0; row < rows; row++) {
      const beta = rz[row] > 0 ? rzNext[row] / rz[row] : 0;
      for (let i = row * cols; i < (row + 1) * cols; i++) p[i] = z[i] + beta * p[i];
    }
    rz = rzNext;
  }
  return x;
}

function rowDots(a: Float64Array, b: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let i = r * cols; i < (r + 1) * cols; i++) s += a[i] * b[i];
    out[r] = s;
  }
  return out;
}

function rowNorms(a: Float64Array, rows: number, cols: number): Float64Array {
  return rowDots(a, a, rows, cols).map(Math.sqrt);
}
