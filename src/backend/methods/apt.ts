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

import { combinations, nmGroupMask, thresholdMask } from './masks';
import { rowPool } from './rowKernels';
import { Block, obsSweep } from './sweep';
import { PruningMethod } from './types';

export const apt: PruningMethod = {
  name: 'apt',
  needs: 'hessian',
  prune(problem, options, engine) {
    const pattern = options.pattern;
    const nmRule = options.nmMask ?? 'joint';
    return obsSweep(problem, options, engine, async (blk: Block) => {
      const { rows, width: B, w, G, mask, E } = blk;
      const S = gram(G, B);
      if (!blk.fixedMask) {
        if (pattern.kind === 'unstructured') {
          const scores = new Float64Array(rows * B);
          for (let r = 0; r < rows; r++) for (let k = 0; k < B; k++) scores[r * B + k] = (w[r * B + k] * w[r * B + k]) / S[k * B + k];
          thresholdMask(scores, pattern.sparsity, mask);
        } else if (nmRule === 'saliency') {
          const score = new Float64Array(B);
          const groupsEnd = Math.min(B, blk.denseFrom);
          for (let r = 0; r < rows; r++) {
            for (let k = 0; k < B; k++) score[k] = (w[r * B + k] * w[r * B + k]) / S[k * B + k];
            for (let g = 0; g + pattern.m <= groupsEnd; g += pattern.m) nmGroupMask(score, g, pattern.m, pattern.n, mask, r * B + g);
          }
        } else {
          const subsets = Int32Array.from(combinations(pattern.m, pattern.n).flat());
          await rowPool.run('aptJointNmRows', rows, { B, w, S, mask, n: pattern.n, m: pattern.m, groupsEnd: Math.min(B, blk.denseFrom), subsets });
        }
      }
      await rowPool.run('aptSolveRows', rows, { B, w, S, G, mask, E });
    });
  },
};

/** S = GᵀG for upper-triangular G (B×B), in shared memory for the row kernels. */
function gram(G: Float64Array, B: number): Float64Array {
  const S = new Float64Array(new SharedArrayBuffer(B * B * 8));
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
