// APT: the multiple-removal problem (Zhao et al., EMNLP 2024 Findings; algorithms.md §1.3–1.6,
// reconstructed: the paper's code is unpublished).
//
// Where SparseGPT removes a row's pruned weights one at a time and freezes each column once passed, APT
// removes all of a row's pruned weights in a block at once with the jointly optimal update over the
// active set A = [i1, cols):
//     δw_A = −w_P [(H_AA⁻¹)_PP]⁻¹ (H_AA⁻¹)_{P,A},   loss = ½ w_P [(H_AA⁻¹)_PP]⁻¹ w_Pᵀ.
// With G = U[b, b], (H_AA⁻¹)_{b,b} = GᵀG =: S and (H_AA⁻¹)_{b,A} = Gᵀ·U[b, A], so per row
//     λ = S_PP⁻¹ w_Pᵀ  (a small SPD solve),   e = G[:, P]·λ,   and the sweep applies e·U[b, i1:].
// Unstructured: the joint set is a row's pruned weights in a block of B columns; the mask ("Solution S")
// keeps SparseGPT's adaptive per-block threshold on w²/S_jj, S_jj = [(H_AA)⁻¹]_jj the active-set inverse
// diagonal. With block size 1 this is SparseGPT's update; with block size = cols, the row-wise optimum.
// N:M: the mask is chosen group by group along each row on weights compensated for the groups before it
// (group-wise joint removal, as SparseGPT picks N:M inside its column loop): the subset with the smallest
// joint loss among all C(M, N) ("Solution M", default) or the N smallest w²/S_jj ("Solution S"). Then the
// block's pruned weights are removed jointly, exactly as for unstructured sparsity.
// Measured on the 35 stories260K layers at 2:4 (summed loss, SparseGPT 9.06e4): masks chosen up front from
// the block's start weights 8.51e4 (worse than SparseGPT on 2 layers); group-wise removal only 8.88e4;
// this design 7.86e4, below SparseGPT on every layer.

import { combinations } from './masks';
import { aptLaneSolveModule } from '../wasm/aptLaneSolve';
import { simdModule } from '../wasm/simd';
import { AptRowArgs, rowPool } from './rowKernels';
import { adaptiveBlockMask, Block, sweepMethod } from './sweep';

export const apt = sweepMethod('apt', async (blk: Block, options) => {
  const { rows, width: B, w, G, mask, E } = blk;
  const pattern = options.pattern;
  if (pattern.kind === 'nm') {
    // N:M mask: groups left to right, each chosen on the weights compensated for the groups before it
    // (group-wise joint removal, as SparseGPT picks N:M inside its column loop).
    const { n, m } = pattern;
    if (!blk.fixedMask) {
      await rowPool.run('aptNmMaskRows', rows, {
        B, w, G, Sg: groupGrams(G, B, m), mask, n, m,
        groupsEnd: Math.min(B, blk.denseFrom),
        joint: (options.nmMask ?? 'joint') === 'joint' ? 1 : 0,
        subsets: Int32Array.from(combinations(m, n).flat()),
      });
    }
    // Then, as for unstructured, every row's pruned weights in the block are removed jointly.
    await solveRows(rows, { B, w, S: gram(G, B), G, mask, E });
    return;
  }
  // Unstructured: the joint set is each row's pruned weights in the whole block.
  const S = gram(G, B);
  if (!blk.fixedMask) await adaptiveBlockMask(blk, Float64Array.from({ length: B }, (_, k) => S[k * B + k]), pattern.sparsity);
  await solveRows(rows, { B, w, S, G, mask, E });
});

const laneSolve64 = simdModule(() => aptLaneSolveModule('f64x2'));
const laneSolve32 = simdModule(() => aptLaneSolveModule('f32x4'));

/** The per-row solves on the WebAssembly SIMD kernel (float32, four rows at a time, with float64 for the rare
 *  ill-conditioned group), or on the float64 JavaScript one where the runtime lacks WebAssembly SIMD. */
function solveRows(rows: number, args: AptRowArgs): Promise<void> {
  const wasm64 = laneSolve64();
  return wasm64 ? rowPool.run('aptSolveRowsWasm', rows, { ...args, wasm64, wasm32: laneSolve32() }) : rowPool.run('aptSolveRows', rows, args);
}

/** Per M-group g of the block: U[g,g]ᵀU[g,g] (m×m), flattened (groups, m, m), in shared memory. */
function groupGrams(G: Float64Array, B: number, m: number): Float64Array {
  const groups = Math.floor(B / m);
  const Sg = new Float64Array(new SharedArrayBuffer(Math.max(1, groups * m * m) * 8));
  for (let q = 0; q < groups; q++) {
    const g = q * m;
    for (let i = 0; i < m; i++) {
      for (let j = i; j < m; j++) {
        let s = 0;
        for (let k = 0; k <= i; k++) s += G[(g + k) * B + g + i] * G[(g + k) * B + g + j];
        Sg[q * m * m + i * m + j] = s;
        Sg[q * m * m + j * m + i] = s;
      }
    }
  }
  return Sg;
}

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
