// SparseGPT (Frantar & Alistarh, 2023), exactly as the reference `fasterprune` (algorithms.md §2.2):
// per block, an adaptive unstructured mask from w²/U_jj² over all rows × B scores (or, for N:M, the N
// smallest of each M-group chosen inside the column loop on the already-compensated weights), then
// column-by-column OBS removal: err = w_i / U_ii, and the row's later columns absorb −err·U[i, i:].
// The errors form E; the shared sweep applies E·U[b, i1:] to the block and the rest of the row.

import { nmGroupMask, thresholdMask } from './masks';
import { Block, obsSweep } from './sweep';
import { PruningMethod } from './types';

export const sparsegpt: PruningMethod = {
  name: 'sparsegpt',
  needs: 'hessian',
  prune(problem, options, engine) {
    const pattern = options.pattern;
    return obsSweep(problem, options, engine, (blk: Block) => {
      const { rows, width: B, w, G, mask, E } = blk;
      if (!blk.fixedMask && pattern.kind === 'unstructured') {
        const scores = new Float64Array(rows * B);
        for (let r = 0; r < rows; r++) {
          for (let k = 0; k < B; k++) scores[r * B + k] = (w[r * B + k] * w[r * B + k]) / (G[k * B + k] * G[k * B + k]);
        }
        thresholdMask(scores, pattern.sparsity, mask);
      }
      const cur = new Float64Array(B);
      const score = new Float64Array(B);
      for (let r = 0; r < rows; r++) {
        cur.set(w.subarray(r * B, (r + 1) * B));
        for (let i = 0; i < B; i++) {
          if (!blk.fixedMask && pattern.kind === 'nm' && i % pattern.m === 0) {
            if (i < blk.denseFrom) {
              for (let j = i; j < i + pattern.m; j++) score[j] = (cur[j] * cur[j]) / (G[j * B + j] * G[j * B + j]);
              nmGroupMask(score, i, pattern.m, pattern.n, mask, r * B + i);
            }
          }
          if (!mask[r * B + i]) continue;
          const err = cur[i] / G[i * B + i];
          E[r * B + i] = err;
          for (let j = i + 1; j < B; j++) cur[j] -= err * G[i * B + j];
        }
      }
    });
  },
};
