// SparseGPT in float64, read top to bottom: `fasterprune` of IST-DASLab/sparsegpt as algorithms.md §2.2 gives it,
// the place to read the method. The production path (sparsegpt.ts → sweep.ts, rowKernels.ts, wasm/sparsegptSweep.ts)
// computes the same thing fast; the tests check that it does, mask for mask and weight for weight.
//
// Same definition as production: dead inputs (H_jj = 0) get H_jj = 1 and zero weights, λ = dampening·mean(diag H),
// blocks of 128 columns, one adaptive threshold per block, N:M chosen inside the column loop (ties: leftmost first).
// Deliberate differences from the Python: a trailing partial N:M group (cols % M ≠ 0) stays dense, as PruneKit
// specifies, and there is no dampening retry. Different numerics on purpose: Hinv = chol_upper(inv(H)) formed
// explicitly in float64 (production: one fp32 Cholesky of H, float64 leaves, fp32 GEMMs).
// Symbols as in sparsegpt.py: W (rows, cols), H (cols, cols), Hinv (upper, H⁻¹ = HinvᵀHinv), W1/Err1/mask1 per block.

import { choleskyUpper, spdInverse } from '../linalg/cholesky';
import { nmGroupMask } from './masks';
import type { Pattern } from './types';

/** Relative distance of a score from the decision it took part in below which that decision counts as a tie: fp32
 *  round-off in the fast path (κ(H)·2⁻²⁴ ≤ 3e-5 on the fixtures) may take it the other way. */
export const MASK_TIE = 1e-4;

export interface ReferenceOptions {
  pattern: Pattern;
  blockSize?: number;
  dampening?: number;
  /** A fixed mask (rows·cols, 1 = pruned): no mask selection. */
  mask?: Uint8Array;
}

export interface ReferenceResult {
  /** (rows, cols) pruned weights. */
  W: Float64Array;
  /** (rows, cols) 1 = pruned. */
  mask: Uint8Array;
  /** (rows, cols) 1 where a mask decision was closer than MASK_TIE (relative) to going the other way. */
  tie: Uint8Array;
  /** The closest mask decision: the relative gap between the largest pruned and the smallest kept score it compared. */
  minGap: number;
  dead: number[];
}

export interface SparseGptResult extends ReferenceResult {
  /** Σ (w−q)²/d² / 2: SparseGPT's own error estimate. */
  loss: number;
  /** Unstructured: per block, k = floor(numel·s) and the number of scores <= sorted[k]. */
  blocks: { start: number; width: number; k: number; pruned: number }[];
}

/** SparseGPT's preparation of H (§2.2 steps 2–3), which APT shares: dead diagonals set to 1, then λ added. */
export function prepareHessian(H: ArrayLike<number>, cols: number, dampening: number): { Hd: Float64Array; dead: number[]; lambda: number } {
  const Hd = Float64Array.from(H as ArrayLike<number>);
  const dead: number[] = [];
  for (let j = 0; j < cols; j++) {
    if (Hd[j * cols + j] === 0) {
      dead.push(j);
      Hd[j * cols + j] = 1;
    }
  }
  let mean = 0;
  for (let j = 0; j < cols; j++) mean += Hd[j * cols + j];
  const lambda = (dampening * mean) / cols;
  for (let j = 0; j < cols; j++) Hd[j * cols + j] += lambda;
  return { Hd, dead, lambda };
}

/** Tracks how close the mask decisions came to ties (see ReferenceResult). */
export class TieRecorder {
  minGap = Infinity;
  constructor(readonly tie: Uint8Array) {}
  /** One decision between the largest pruned score and the smallest kept one; flags `at` when they nearly tie. */
  decide(pruned: number, kept: number, at: number[]): void {
    const gap = kept > 0 ? (kept - pruned) / kept : 0;
    this.minGap = Math.min(this.minGap, gap);
    if (gap <= MASK_TIE) for (const i of at) this.tie[i] = 1;
  }
}

/** `fasterprune(sparsity | prunen:prunem, blocksize, percdamp)` in float64. */
export function sparsegptReference(W0: ArrayLike<number>, H: ArrayLike<number>, rows: number, cols: number, o: ReferenceOptions): SparseGptResult {
  const nm = o.pattern.kind === 'nm' ? o.pattern : undefined;
  const blockSize = o.blockSize ?? 128;
  if (nm && blockSize % nm.m !== 0) throw new Error(`reference: blockSize ${blockSize} is not a multiple of M=${nm.m}`);
  const W = Float64Array.from(W0 as ArrayLike<number>);
  const { Hd, dead } = prepareHessian(H, cols, o.dampening ?? 0.01);
  for (const j of dead) for (let r = 0; r < rows; r++) W[r * cols + j] = 0;
  const Hinv = choleskyUpper(spdInverse(Hd, cols), cols); // H⁻¹ = HinvᵀHinv
  const mask = new Uint8Array(rows * cols);
  if (o.mask) mask.set(o.mask);
  const ties = new TieRecorder(new Uint8Array(rows * cols));
  const denseFrom = nm ? cols - (cols % nm.m) : cols;
  const d = (j: number): number => Hinv[j * cols + j];
  const score = (r: number, j: number): number => W[r * cols + j] ** 2 / d(j) ** 2;
  let loss = 0;
  const blocks: SparseGptResult['blocks'] = [];

  for (let i1 = 0; i1 < cols; i1 += blockSize) {
    const i2 = Math.min(i1 + blockSize, cols);
    if (!o.mask && o.pattern.kind === 'unstructured') blocks.push(blockThreshold(rows, cols, i1, i2, o.pattern.sparsity, score, mask, ties));
    const Err1 = new Float64Array(rows * (i2 - i1));
    for (let i = i1; i < i2; i++) {
      if (nm && !o.mask && (i - i1) % nm.m === 0 && i + nm.m <= denseFrom) {
        for (let r = 0; r < rows; r++) groupMask(Array.from({ length: nm.m }, (_, j) => score(r, i + j)), nm.n, mask, r * cols + i, ties);
      }
      for (let r = 0; r < rows; r++) {
        if (!mask[r * cols + i]) continue;
        const err1 = W[r * cols + i] / d(i);
        loss += err1 ** 2 / 2;
        Err1[r * (i2 - i1) + i - i1] = err1;
        for (let j = i; j < i2; j++) W[r * cols + j] -= err1 * Hinv[i * cols + j];
        W[r * cols + i] = 0; // exact (the update gives 0 up to round-off)
      }
    }
    // Lazy update of the later blocks: W[:, i2:] −= Err1 · Hinv[i1:i2, i2:].
    for (let r = 0; r < rows; r++) {
      for (let k = i1; k < i2; k++) {
        const e = Err1[r * (i2 - i1) + k - i1];
        if (e !== 0) for (let j = i2; j < cols; j++) W[r * cols + j] -= e * Hinv[k * cols + j];
      }
    }
  }
  return { W, mask, tie: ties.tie, minGap: ties.minGap, dead, loss, blocks };
}

/** SparseGPT's adaptive block mask: thresh = sorted(scores)[floor(numel·s)], prune every score <= thresh. */
export function blockThreshold(
  rows: number, cols: number, i1: number, i2: number, sparsity: number,
  score: (r: number, j: number) => number, mask: Uint8Array, ties: TieRecorder,
): SparseGptResult['blocks'][number] {
  const width = i2 - i1;
  const tmp = Float64Array.from({ length: rows * width }, (_, i) => score(Math.floor(i / width), i1 + (i % width)));
  const sorted = Float64Array.from(tmp).sort();
  const k = Math.floor(tmp.length * sparsity);
  const thresh = sorted[k];
  const near: number[] = [];
  let pruned = 0;
  tmp.forEach((s, i) => {
    const at = Math.floor(i / width) * cols + i1 + (i % width);
    mask[at] = +(s <= thresh);
    pruned += mask[at];
    if (Math.abs(s - thresh) <= MASK_TIE * thresh) near.push(at);
  });
  if (k + 1 < sorted.length) ties.decide(thresh, sorted[k + 1], near);
  return { start: i1, width, k, pruned };
}

/** The n smallest of one group's scores pruned (masks.ts nmGroupMask: ties leftmost first), in mask[at …]. */
export function groupMask(scores: number[], n: number, mask: Uint8Array, at: number, ties: TieRecorder): void {
  nmGroupMask(scores, 0, scores.length, n, mask, at);
  const pruned = scores.reduce((hi, s, j) => (mask[at + j] ? Math.max(hi, s) : hi), -Infinity);
  const kept = scores.reduce((lo, s, j) => (mask[at + j] ? lo : Math.min(lo, s)), Infinity);
  ties.decide(pruned, kept, scores.map((_, j) => at + j));
}
