// Wanda (Sun et al., ICLR 2024; algorithms.md §3): score |W_ij|·‖X_j‖₂, compared within each output row
// (exactly floor(cols·s) pruned per row), or the N smallest per M-group for N:M. No weight update.

import { nmMask, perRowMask } from './masks';
import { PruningMethod, PruneError } from './types';

export const wanda: PruningMethod = {
  name: 'wanda',
  needs: 'norms',
  async prune(problem, options) {
    const { rows, cols, W } = problem;
    const norm2 = problem.colNorm2 ?? diagonal(problem);
    const norm = Float64Array.from(norm2, Math.sqrt);
    // Rows are compared on their own: one row of scores at a time (a float64 rows×cols score matrix would
    // be twice the size of W).
    const scores = new Float64Array(cols);
    const mask = new Uint8Array(rows * cols);
    const p = options.pattern;
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < cols; j++) scores[j] = Math.abs(W[r * cols + j]) * norm[j];
      const rowMask = mask.subarray(r * cols, (r + 1) * cols);
      if (p.kind === 'unstructured') perRowMask(scores, 1, cols, p.sparsity, rowMask);
      else nmMask(scores, 1, cols, p.n, p.m, rowMask);
    }
    return { W: applyMask(W, mask), mask, notes: [] };
  },
};

/** diag(H) is ‖X_j‖² up to one constant factor, which no per-row comparison can see. */
function diagonal(problem: { name: string; cols: number; H?: Float32Array }): Float64Array {
  if (!problem.H) throw new PruneError(problem.name, 'colNorm2', 'Wanda needs input norms or a Hessian');
  const d = new Float64Array(problem.cols);
  for (let j = 0; j < problem.cols; j++) d[j] = problem.H[j * problem.cols + j];
  return d;
}

export function applyMask(W: Float32Array, mask: Uint8Array): Float32Array {
  const out = Float32Array.from(W);
  // Branch-free (a 50% mask mispredicts half the time): kept values × 1, pruned × 0, and + 0 turns −0 into +0.
  for (let i = 0; i < out.length; i++) out[i] = out[i] * (1 - mask[i]) + 0;
  return out;
}
