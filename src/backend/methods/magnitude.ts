// Magnitude pruning (algorithms.md §4): prune the smallest |W|. The comparison group is the whole layer by
// default (one threshold, as SparseGPT's --gmp and Wanda's prune_magnitude: |W| <= sorted[floor(n·s)]), or
// each row ('row': exactly floor(cols·s) per row). N:M: the N smallest |W| of each M-group. No data needed.

import { kthSmallestAbs, nmMask, perRowMask } from './masks';
import { PruningMethod } from './types';
import { applyMask } from './wanda';

export const magnitude: PruningMethod = {
  name: 'magnitude',
  needs: 'none',
  async prune(problem, options) {
    const { rows, cols, W } = problem;
    const mask = new Uint8Array(rows * cols);
    const p = options.pattern;
    if (p.kind === 'unstructured' && (options.magnitudeGroup ?? 'layer') === 'layer') {
      // One threshold for the layer (as thresholdMask: prune |W| <= the floor(n·s)-th smallest), found
      // without a float64 copy of |W|.
      const thresh = kthSmallestAbs(W, Math.floor(W.length * p.sparsity));
      for (let i = 0; i < W.length; i++) mask[i] = +(Math.abs(W[i]) <= thresh); // branch-free, as thresholdMask
    } else {
      const scores = new Float64Array(cols); // per row: rows are compared on their own
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < cols; j++) scores[j] = Math.abs(W[r * cols + j]);
        const rowMask = mask.subarray(r * cols, (r + 1) * cols);
        if (p.kind === 'nm') nmMask(scores, 1, cols, p.n, p.m, rowMask);
        else perRowMask(scores, 1, cols, p.sparsity, rowMask);
      }
    }
    return { W: applyMask(W, mask), mask, notes: [] };
  },
};
