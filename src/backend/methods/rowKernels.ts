// The per-row float64 work of SparseGPT and APT inside one block, as self-contained row kernels (no
// imports, no free variables) so that the row pool can run them on worker threads (parallel/rowPool.ts).
// Rows of W are independent given the block's G, so they split freely. Shapes: w, mask, E (rows, B);
// G = U[b, b] and S = GᵀG (B, B); all row-major.

import { RowPool } from '../parallel/rowPool';

export interface AptRowArgs {
  B: number;
  w: Float64Array;
  S: Float64Array;
  G: Float64Array;
  mask: Uint8Array;
  E: Float64Array;
}

/** Per row r: P = pruned columns of the block, λ = S_PP⁻¹ w_P (Cholesky), E[r] = G[:, P]·λ. */
export function aptSolveRows(start: number, end: number, a: AptRowArgs): void {
  const { B, w, S, G, mask, E } = a;
  const P = new Int32Array(B);
  const L = new Float64Array(B * B);
  const x = new Float64Array(B);
  for (let r = start; r < end; r++) {
    let n = 0;
    for (let k = 0; k < B; k++) if (mask[r * B + k]) P[n++] = k;
    if (n === 0) continue;
    // Gather the lower triangle of S_PP and factor it in place (row stride n).
    for (let i = 0; i < n; i++) {
      const pi = P[i] * B;
      for (let j = 0; j <= i; j++) L[i * n + j] = S[pi + P[j]];
      x[i] = w[r * B + P[i]];
    }
    for (let j = 0; j < n; j++) {
      const jr = j * n;
      let d = L[jr + j];
      for (let k = 0; k < j; k++) d -= L[jr + k] * L[jr + k];
      if (!(d > 0)) throw new Error(`APT: S_PP not positive definite in row ${r} (pivot ${j})`);
      d = Math.sqrt(d);
      L[jr + j] = d;
      for (let i = j + 1; i < n; i++) {
        const ir = i * n;
        let s = L[ir + j];
        for (let k = 0; k < j; k++) s -= L[ir + k] * L[jr + k];
        L[ir + j] = s / d;
      }
    }
    // Forward and back substitution: x = (L Lᵀ)⁻¹ w_P.
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
    // e = G[:, P]·λ; G is upper triangular, so column p has rows 0..p.
    const e = r * B;
    for (let i = 0; i < n; i++) {
      const p = P[i];
      const li = x[i];
      for (let k = 0; k <= p; k++) E[e + k] += G[k * B + p] * li;
    }
  }
}

export interface JointNmArgs {
  B: number;
  w: Float64Array;
  S: Float64Array;
  mask: Uint8Array;
  n: number;
  m: number;
  /** Groups start at 0, m, 2m, … below this column. */
  groupsEnd: number;
  /** All size-n subsets of 0..m-1, flattened (count × n). */
  subsets: Int32Array;
}

/** "Solution M": per row and M-group, prune the N-subset P with the smallest joint loss ½·w_P S_PP⁻¹ w_Pᵀ. */
export function aptJointNmRows(start: number, end: number, a: JointNmArgs): void {
  const { B, w, S, mask, n, m, groupsEnd, subsets } = a;
  const count = subsets.length / n;
  const L = new Float64Array(n * n);
  const x = new Float64Array(n);
  for (let r = start; r < end; r++) {
    for (let g = 0; g + m <= groupsEnd; g += m) {
      let best = 0;
      let bestLoss = Infinity;
      for (let s = 0; s < count; s++) {
        for (let i = 0; i < n; i++) {
          const pi = g + subsets[s * n + i];
          for (let j = 0; j <= i; j++) L[i * n + j] = S[pi * B + g + subsets[s * n + j]];
          x[i] = w[r * B + pi];
        }
        // Cholesky, then loss ∝ ‖L⁻¹ w_P‖².
        let loss = 0;
        for (let j = 0; j < n; j++) {
          let d = L[j * n + j];
          for (let k = 0; k < j; k++) d -= L[j * n + k] * L[j * n + k];
          d = Math.sqrt(d);
          L[j * n + j] = d;
          for (let i = j + 1; i < n; i++) {
            let t = L[i * n + j];
            for (let k = 0; k < j; k++) t -= L[i * n + k] * L[j * n + k];
            L[i * n + j] = t / d;
          }
          let v = x[j];
          for (let k = 0; k < j; k++) v -= L[j * n + k] * x[k];
          x[j] = v / d;
          loss += x[j] * x[j];
        }
        if (loss < bestLoss) {
          bestLoss = loss;
          best = s;
        }
      }
      for (let j = 0; j < m; j++) mask[r * B + g + j] = 0;
      for (let i = 0; i < n; i++) mask[r * B + g + subsets[best * n + i]] = 1;
    }
  }
}

export interface SparsegptRowArgs {
  B: number;
  w: Float64Array;
  G: Float64Array;
  mask: Uint8Array;
  E: Float64Array;
  /** N:M chosen in the column loop when m > 0 and the mask is not fixed; otherwise `mask` is used as is. */
  n: number;
  m: number;
  /** Groups start at 0, m, 2m, … below this column. */
  groupsEnd: number;
}

/** SparseGPT's column loop for each row: err_i = w_i / G_ii for pruned i, later columns absorb −err·G[i, i:].
 *  For N:M, each group's N smallest w²/G_jj² (on the compensated weights) are chosen when the loop reaches it. */
export function sparsegptSweepRows(start: number, end: number, a: SparsegptRowArgs): void {
  const { B, w, G, mask, E, n, m, groupsEnd } = a;
  const cur = new Float64Array(B);
  const taken = new Uint8Array(Math.max(m, 1));
  for (let r = start; r < end; r++) {
    const o = r * B;
    for (let k = 0; k < B; k++) cur[k] = w[o + k];
    for (let i = 0; i < B; i++) {
      if (m > 0 && i % m === 0 && i + m <= groupsEnd) {
        // The n smallest scores of the group (ties: leftmost first).
        for (let j = 0; j < m; j++) taken[j] = 0;
        for (let t = 0; t < n; t++) {
          let best = -1;
          let bestScore = Infinity;
          for (let j = 0; j < m; j++) {
            if (taken[j]) continue;
            const d = G[(i + j) * B + i + j];
            const sc = (cur[i + j] * cur[i + j]) / (d * d);
            if (sc < bestScore) { bestScore = sc; best = j; }
          }
          taken[best] = 1;
        }
        for (let j = 0; j < m; j++) mask[o + i + j] = taken[j];
      }
      if (!mask[o + i]) continue;
      const err = cur[i] / G[i * B + i];
      E[o + i] = err;
      const gi = i * B;
      for (let j = i + 1; j < B; j++) cur[j] -= err * G[gi + j];
    }
  }
}

/** One pool per process for all row kernels, started on first use. */
export const rowPool = new RowPool({ aptSolveRows, aptJointNmRows, sparsegptSweepRows });
