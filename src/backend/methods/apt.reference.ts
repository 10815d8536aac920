// APT in float64, read top to bottom: the multiple-removal method of Zhao et al. (EMNLP 2024 Findings) as
// algorithms.md §1.3–1.6 reconstructs it (the paper's code is unpublished); the place to read the method. The
// production path (apt.ts → sweep.ts, rowKernels.ts, wasm/aptLaneSolve.ts) computes the same thing fast, and
// test/aptReference.test.ts checks that it does, mask for mask and weight for weight.
//
// Same definition as production: SparseGPT's preparation of H (dead inputs get H_jj = 1 and zero weights,
// λ = dampening·mean(diag H)); blocks b = [i1, i2) of B = 128 columns (rounded up to a multiple of M) swept left to
// right; per block, every row's pruned weights P in b are removed at once with the optimal compensation over the
// still-active columns A = [i1, cols) (§1.3):
//     δw_A = −w_P [(H_AA⁻¹)_PP]⁻¹ (H_AA⁻¹)_{P,A},   loss = ½ w_P [(H_AA⁻¹)_PP]⁻¹ w_Pᵀ      (the paper's Eq. 13, 12)
// Unstructured mask, "Solution S": one threshold per block over w_j²/[H_AA⁻¹]_jj (SparseGPT's adaptive rule).
// N:M mask, "Solution M": along each row, group g by group, on weights compensated for the groups before it, the
// N-subset Q with the least joint loss ½ w_Q [(H_gg⁻¹)_QQ]⁻¹ w_Qᵀ over A_g = [g, cols) (or, nmMask 'saliency', the
// N smallest w_j²/[H_{A_g}⁻¹]_jj); the group is removed jointly to carry on, but only the mask is kept.
// Different numerics on purpose: every active-set inverse H_AA⁻¹ is formed explicitly in float64 (production: one
// fp32 Cholesky H = R·Rᵀ and the identity (H_AA⁻¹)_{b,A} = Gᵀ·U[b, A], G = U[b, b]); every small solve is float64
// (production: float32, float64 for ill-conditioned rows); no dampening retry.

import { NotPositiveDefiniteError, spdInverse, spdSolve } from '../linalg/cholesky';
import { combinations } from './masks';
import { blockThreshold, groupMask, prepareHessian, ReferenceOptions, ReferenceResult, TieRecorder } from './sparsegpt.reference';

export interface AptReferenceOptions extends ReferenceOptions {
  nmMask?: 'joint' | 'saliency';
}

export interface AptReferenceResult extends ReferenceResult {
  /** Σ over rows and blocks of the joint removal losses ½ w_P [(H_AA⁻¹)_PP]⁻¹ w_Pᵀ (the paper's Eq. 12, H damped). */
  loss: number;
}

/** APT on one layer: W (rows, cols) and H (cols, cols) as the production receives them; neither is modified. */
export function aptReference(W0: ArrayLike<number>, H: ArrayLike<number>, rows: number, cols: number, o: AptReferenceOptions): AptReferenceResult {
  const nm = o.pattern.kind === 'nm' ? o.pattern : undefined;
  const m = nm?.m ?? 1;
  const B = Math.max(m, Math.ceil((o.blockSize ?? 128) / m) * m); // N:M groups never straddle blocks
  const { Hd, dead } = prepareHessian(H, cols, o.dampening ?? 0.01);
  const W = Float64Array.from(W0 as ArrayLike<number>);
  for (const j of dead) for (let r = 0; r < rows; r++) W[r * cols + j] = 0;
  const mask = new Uint8Array(rows * cols);
  if (o.mask) mask.set(o.mask);
  const ties = new TieRecorder(new Uint8Array(rows * cols));
  let loss = 0;

  for (let i1 = 0; i1 < cols; i1 += B) {
    const i2 = Math.min(i1 + B, cols);
    const a = cols - i1;
    const HinvA = activeInverse(Hd, cols, i1); // (a, a): H_AA⁻¹, A = [i1, cols)
    if (!o.mask && nm) { //                      the mask: Solution M per group, or Solution S per block
      solutionM(W, rows, cols, i1, i2, Hd, nm, o.nmMask ?? 'joint', mask, ties);
    } else if (!o.mask && o.pattern.kind === 'unstructured') {
      blockThreshold(rows, cols, i1, i2, o.pattern.sparsity, (r, j) => W[r * cols + j] ** 2 / HinvA[(j - i1) * (a + 1)], mask, ties);
    }
    for (let r = 0; r < rows; r++) { //             then each row's pruned set P of the block, removed at once
      const P: number[] = [];
      for (let j = i1; j < i2; j++) if (mask[r * cols + j]) P.push(j - i1);
      loss += jointRemoval(W.subarray(r * cols + i1, (r + 1) * cols), HinvA, a, P, `APT reference, row ${r}`);
    }
  }
  return { W, mask, tie: ties.tie, minGap: ties.minGap, dead, loss };
}

/** N:M mask of block [i1, i2): per group g (full groups only: a trailing partial one stays dense) and row, the
 *  subset Q chosen on the row's weights compensated for the block's groups before g (W itself is not changed). */
function solutionM(
  W: Float64Array, rows: number, cols: number, i1: number, i2: number, Hd: Float64Array,
  { n, m }: { n: number; m: number }, rule: 'joint' | 'saliency', mask: Uint8Array, ties: TieRecorder,
): void {
  const B = i2 - i1;
  const cur = Float64Array.from({ length: rows * B }, (_, i) => W[Math.floor(i / B) * cols + i1 + (i % B)]);
  const subsets = combinations(m, n);
  for (let g = i1; g + m <= i2 && g + m <= cols - (cols % m); g += m) {
    const a = cols - g;
    const Hinv = activeInverse(Hd, cols, g); // (a, a): H⁻¹ over A_g = [g, cols)
    const S = principal(Hinv, a, [...Array(m).keys()]); // (m, m): (H_{A_g}⁻¹)_gg
    for (let r = 0; r < rows; r++) {
      const w = cur.subarray(r * B + g - i1, (r + 1) * B); // the row from g to the block's end
      const at = r * cols + g;
      if (rule === 'joint') {
        const { Q, loss, runnerUp } = leastJointLoss(w.subarray(0, m), S, m, subsets);
        for (let j = 0; j < m; j++) mask[at + j] = +Q.includes(j);
        ties.decide(loss, runnerUp, Array.from({ length: m }, (_, j) => at + j));
      } else {
        groupMask(Array.from({ length: m }, (_, j) => w[j] ** 2 / S[j * (m + 1)]), n, mask, at, ties);
      }
      const Q = [...Array(m).keys()].filter((j) => mask[at + j]);
      jointRemoval(w, Hinv, a, Q, `APT reference, row ${r}, group at column ${g}`);
    }
  }
}

/** Solution M (the paper's Eq. 12): of the subsets Q of a group, the one whose joint removal costs least,
 *  w_Q S_QQ⁻¹ w_Qᵀ (S = the group's block of H_A⁻¹, m×m; the first of equal losses), its loss and the runner-up's. */
export function leastJointLoss(w: ArrayLike<number>, S: Float64Array, m: number, subsets: number[][]): { Q: number[]; loss: number; runnerUp: number } {
  let best = { Q: subsets[0], loss: Infinity, runnerUp: Infinity };
  for (const Q of subsets) {
    const wQ = Q.map((j) => w[j]);
    let x: Float64Array;
    try {
      x = spdSolve(principal(S, m, Q), Q.length, wQ);
    } catch (e) {
      if (e instanceof NotPositiveDefiniteError) continue;
      throw e;
    }
    let loss = 0;
    for (let i = 0; i < Q.length; i++) loss += wQ[i] * x[i];
    if (loss < best.loss) best = { Q, loss, runnerUp: best.loss };
    else if (loss < best.runnerUp) best.runnerUp = loss;
  }
  return best;
}

/** The multiple-removal update (§1.3): all of P at once, w −= w_P [(H⁻¹)_PP]⁻¹ (H⁻¹)_{P,:}, then w_P = 0 exactly.
 *  Hinv is n×n, w its first w.length ≤ n coordinates. In place. Returns its loss ½ w_P [(H⁻¹)_PP]⁻¹ w_Pᵀ. */
export function jointRemoval(w: Float64Array, Hinv: Float64Array, n: number, P: number[], where: string): number {
  if (P.length === 0) return 0;
  const wP = P.map((j) => w[j]);
  let lambda: Float64Array;
  try {
    lambda = spdSolve(principal(Hinv, n, P), P.length, wP);
  } catch (e) {
    throw e instanceof NotPositiveDefiniteError ? new Error(`${where}: (H⁻¹)_PP is not positive definite`) : e;
  }
  for (let j = 0; j < w.length; j++) {
    let d = 0;
    for (let p = 0; p < P.length; p++) d += lambda[p] * Hinv[P[p] * n + j];
    w[j] -= d;
  }
  let loss = 0;
  for (let p = 0; p < P.length; p++) loss += 0.5 * wP[p] * lambda[p];
  for (const j of P) w[j] = 0;
  return loss;
}

/** (H_AA)⁻¹ for the trailing active set A = [from, cols) of the cols×cols H, explicitly. */
function activeInverse(H: Float64Array, cols: number, from: number): Float64Array {
  return spdInverse(principal(H, cols, Array.from({ length: cols - from }, (_, k) => from + k)), cols - from);
}

/** The principal submatrix M[P, P] of an n×n matrix. */
export function principal(M: Float64Array, n: number, P: number[]): Float64Array {
  const out = new Float64Array(P.length * P.length);
  P.forEach((p, i) => P.forEach((q, j) => (out[i * P.length + j] = M[p * n + q])));
  return out;
}
