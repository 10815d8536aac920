// SparseGPT (Frantar & Alistarh, 2023), exactly as the reference `fasterprune` (algorithms.md §2.2):
// per block, an adaptive unstructured mask from w²/U_jj² over all rows × B scores (sweep.ts adaptiveBlockMask;
// for N:M, the N smallest of each M-group, chosen inside the column loop on the already-compensated weights), then
// column-by-column OBS removal: err = w_i / U_ii, and the row's later columns absorb −err·U[i, i:].
// The errors form E; the shared sweep applies the compensation E·U[b, i1:] to the block and the rest of the row.

import { simdModule } from '../wasm/simd';
import { sparsegptSweepModule } from '../wasm/sparsegptSweep';
import { rowPool, SparsegptRowArgs } from './rowKernels';
import { adaptiveBlockMask, Block, sweepMethod } from './sweep';

export const sparsegpt = sweepMethod('sparsegpt', async (blk: Block, options) => {
  const { rows, width: B, w, G, mask, E } = blk;
  const pattern = options.pattern;
  if (!blk.fixedMask && pattern.kind === 'unstructured') {
    await adaptiveBlockMask(blk, Float64Array.from({ length: B }, (_, k) => G[k * B + k] * G[k * B + k]), pattern.sparsity);
  }
  const nm = !blk.fixedMask && pattern.kind === 'nm';
  await sweepRows(rows, {
    B, w, G, mask, E,
    n: nm ? pattern.n : 0,
    m: nm ? pattern.m : 0,
    groupsEnd: Math.min(B, blk.denseFrom),
  });
});

const sweepModule = simdModule(sparsegptSweepModule);

/** The column loop on the WebAssembly SIMD kernel (≈ 6× faster unstructured, ≈ 3.6× at 2:4), or on the
 *  JavaScript one where the runtime lacks WebAssembly SIMD: the results are bit-identical. */
function sweepRows(rows: number, args: SparsegptRowArgs): Promise<void> {
  const wasm = sweepModule();
  return wasm ? rowPool.run('sparsegptSweepRowsWasm', rows, { ...args, wasm }) : rowPool.run('sparsegptSweepRows', rows, args);
}
