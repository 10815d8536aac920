// APT: the multiple-removal problem (Zhao et al., EMNLP 2024 Findings; algorithms.md §1.3–1.6,
// reconstructed: the paper's code is unpublished).
//
// Where SparseGPT removes a row's pruned weights one at a time and freezes each column once passed, APT
// removes all of a row's pruned weights in a block at once with the jointly optimal update over the
// active set A = [i1, cols):
//     δw_A = −w_P [(H_AA⁻¹)_PP]⁻¹ (H_AA⁻¹)_{P,A},   loss = ½ w_P [(H_AA⁻¹)_PP]⁻¹ w_Pᵀ.
// With G = U[b, b], (H_AA⁻¹)_{b,b} = GᵀG =: S and (H_AA⁻¹)_{b,A} = Gᵀ·U[b, A], so per row
//     λ = S_PP⁻¹ w_Pᵀ  (a small SPD solve),   e = G[:, P]·λ,   and the sweep applies e·U[b, i1:].
// Masks ("Solution S"): the smallest w²/S_jj, S_jj = [(H_AA)⁻¹]_jj the active-set inverse diagonal; for N:M
// optionally "Solution M": per group, the subset with the smallest joint loss among all C(M, N).
// With block size 1 this is SparseGPT's update; with block size = cols, the row-wise optimum.

import { choleskyLowerInPlace } from '../linalg/cholesky';
import { combinations, nmGroupMask, thresholdMask } from './masks';
import { Block, obsSweep } from './sweep';
import { PruningMethod } from './types';

export const apt: PruningMethod = {
  name: 'apt',
  needs: 'hessian',
  prune(problem, options, engine) {
    const pattern = options.pattern;
    const nmRule = options.nmMask ?? 'joint';
    return obsSweep(problem, options, engine, (blk: Block) => {
      const { rows, width: B, w, G, mask, E } = blk;
      const S = gram(G, B);
      if (!blk.fixedMask) {
        if (pattern.kind === 'unstructured') {
          const scores = new Float64Array(rows * B);
          for (let r = 0; r < rows; r++) for (let k = 0; k < B; k++) scores[r * B + k] = (w[r * B + k] * w[r * B + k]) / S[k * B + k];
          thresholdMask(scores, pattern.sparsity, mask);
        } else if (nmRule === 'saliency') {
          const score = new Float64Array(B);
          for (let r = 0; r < rows; r++) {
            for (let k = 0; k < B; k++) score[k] = (w[r * B + k] * w[r * B + k]) / S[k * B + k];
            for (let g = 0; g + pattern.m <= blk.denseFrom && g < B; g += pattern.m) nmGroupMask(score, g, pattern.m, pattern.n, mask, r * B + g);
          }
        } else {
          jointNmMask(blk, S, pattern.n, pattern.m);
        }
      }
      // Per row: λ = S_PP⁻¹ w_P, e = G[:, P] λ.
      const P = new Int32Array(B);
      const A = new Float64Array(B * B);
      const lambda = new Float64Array(B);
      for (let r = 0; r < rows; r++) {
        let n = 0;
        for (let k = 0; k < B; k++) if (mask[r * B + k]) P[n++] = k;
        if (n === 0) continue;
        for (let a = 0; a < n; a++) {
          const pa = P[a] * B;
          for (let b = 0; b <= a; b++) A[a * n + b] = S[pa + P[b]];
          lambda[a] = w[r * B + P[a]];
        }
        choleskyLowerInPlace(A, n);
        solveCholesky(A, n, lambda);
        const e = E.subarray(r * B, (r + 1) * B);
        for (let a = 0; a < n; a++) {
          const p = P[a];
          const la = lambda[a];
          for (let k = 0; k <= p; k++) e[k] += G[k * B + p] * la;
        }
      }
    });
  },
};

/** S = GᵀG for upper-triangular G (B×B). */
function gram(G: Float64Array, B: number): Float64Array {
  const S = new Float64Array(B * B);
  for (let i = 0; i < B; i++) {
    for (let j = i; j < B; j++) {
      let s = 0;
      for (let k = 0; k <= i; k++) s += G[k * B + i] * G[k * B + j];
      S[i * B + j] = s;
      S[j * B + i] = s;
    }
  }
  return S;
}

/** Solves (L Lᵀ) x = b in place, L the lower factor in the leading n×n of `L` (row stride n). */
function solveCholesky(L: Float64Array, n: number, x: Float64Array): void {
  for (let i = 0; i < n; i++) {
    let s = x[i];
    for (let k = 0; k < i; k++) s -= L[i * n + k] * x[k];
    x[i] = s / L[i * n + i];
  }
  for (let i = n - 1; i >= 0; i--) {
    let s = x[i];
    for (let k = i + 1; k < n; k++) s -= L[k * n + i] * x[k];
    x[i] = s / L[i * n + i];
  }
}

/** Solution M for N:M: per row and group, the N-subset P minimising ½ w_P (S_PP)⁻¹ w_Pᵀ. */
function jointNmMask(blk: Block, S: Float64Array, n: number, m: number): void {
  const { rows, width: B, w, mask } = blk;
  const subsets = combinations(m, n);
  const A = new Float64Array(n * n);
  const x = new Float64Array(n);
  for (let g = 0; g + m <= blk.denseFrom && g < B; g += m) {
    for (let r = 0; r < rows; r++) {
      let best = -1;
      let bestLoss = Infinity;
      for (let s = 0; s < subsets.length; s++) {
        const P = subsets[s];
        for (let a = 0; a < n; a++) {
          for (let b = 0; b <= a; b++) A[a * n + b] = S[(g + P[a]) * B + g + P[b]];
          x[a] = w[r * B + g + P[a]];
        }
        choleskyLowerInPlace(A, n);
        // loss ∝ ‖L⁻¹ w_P‖²
        let loss = 0;
        for (let a = 0; a < n; a++) {
          let v = x[a];
          for (let b = 0; b < a; b++) v -= A[a * n + b] * x[b];
          x[a] = v / A[a * n + a];
          loss += x[a] * x[a];
        }
        if (loss < bestLoss) {
          bestLoss = loss;
          best = s;
        }
      }
      for (let j = 0; j < m; j++) mask[r * B + g + j] = 0;
      for (const j of subsets[best]) mask[r * B + g + j] = 1;
    }
  }
}
