// Magnitude pruning (algorithms.md §4): prune the smallest |W|. The comparison group is the whole layer by
// default (one threshold, as SparseGPT's --gmp and Wanda's prune_magnitude: |W| <= sorted[floor(n·s)]), or
// each row ('row': exactly floor(cols·s) per row). N:M: the N smallest |W| of each M-group. No data needed.

import { nmMask, perRowMask, thresholdMask } from './masks';
import { PruningMethod } from './types';
import { applyMask } from './wanda';

export const magnitude: PruningMethod = {
  name: 'magnitude',
  needs: 'none',
  async prune(problem, options) {
    const { rows, cols, W } = problem;
    const scores = new Float64Array(W.length);
    for (let i = 0; i < W.length; i++) scores[i] = Math.abs(W[i]);
    const mask = new Uint8Array(rows * cols);
    const p = options.pattern;
    if (p.kind === 'nm') nmMask(scores, rows, cols, p.n, p.m, mask);
    else if ((options.magnitudeGroup ?? 'layer') === 'row') perRowMask(scores, rows, cols, p.sparsity, mask);
    else thresholdMask(scores, p.sparsity, mask);
    return { W: applyMask(W, mask), mask, notes: [] };
  },
};
