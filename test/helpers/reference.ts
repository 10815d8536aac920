// Float64 helpers for the tests: random problems, dense linear algebra, the fixed-mask optimum (algorithms.md §1.3)
// and the loss. The float64 readings of the methods themselves live beside them in src (methods/*.reference.ts), and
// so does the one small SPD solve (linalg/cholesky.ts), re-exported here.
// Everything here is plain, unblocked, O(n³) float64 JS: slow but obviously correct at test sizes.
// Conventions: matrices are row-major Float64Array; W is (rows, cols); H is (cols, cols); mask 1 = pruned.

import { choleskyUpper, choleskyWithInverse, dampedCholeskyFactor, spdInverse, spdSolve } from '../../src/backend/linalg/cholesky';
import { Kernels, mat } from '../../src/backend/linalg/kernels';
import { prepareHessian } from '../../src/backend/methods/sparsegpt.reference';
import { SeededRandom } from '../../src/backend/random';

export { choleskyUpper, spdInverse, spdSolve };
export { prepareHessian };
export { sparsegptReference } from '../../src/backend/methods/sparsegpt.reference';

// ---------------------------------------------------------------------------------------------------------
// Random numbers

/** The project's seeded stream (src/backend/random.ts), plus permutations. */
export class Rng extends SeededRandom {
  constructor(seed: number) {
    super(seed ^ 0x9e3779b9);
  }

  /** A uniformly random permutation of 0..n-1. */
  permutation(n: number): number[] {
    const p = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(this.uniform() * (i + 1));
      [p[i], p[j]] = [p[j], p[i]];
    }
    return p;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Dense float64 linear algebra

/** (n, k)·(k, m). */
export function matmul(A: ArrayLike<number>, B: ArrayLike<number>, n: number, k: number, m: number): Float64Array {
  const C = new Float64Array(n * m);
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < k; p++) {
      const a = A[i * k + p];
      if (a === 0) continue;
      for (let j = 0; j < m; j++) C[i * m + j] += a * B[p * m + j];
    }
  }
  return C;
}

export function transpose(A: ArrayLike<number>, r: number, c: number): Float64Array {
  const T = new Float64Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) T[j * r + i] = A[i * c + j];
  return T;
}

/**
 * Extreme eigenvalue estimates of an SPD matrix: power iteration on A for λmax and on A⁻¹ (Cholesky solves)
 * for λmin. Both are inner estimates (λmax from below, λmin from above), so `cond` is a lower bound.
 */
export function extremeEigenvalues(A: ArrayLike<number>, n: number, iterations = 100, seed = 7): { max: number; min: number; cond: number } {
  const Ainv = spdInverse(A, n);
  const applyA = (v: Float64Array): Float64Array => matmul(A, v, n, n, 1);
  const applyInv = (v: Float64Array): Float64Array => matmul(Ainv, v, n, n, 1);
  const power = (apply: (v: Float64Array) => Float64Array): number => {
    const rng = new Rng(seed);
    let v: Float64Array = Float64Array.from({ length: n }, () => rng.normal());
    let lambda = 0;
    for (let it = 0; it < iterations; it++) {
      const nv = frobenius(v);
      for (let i = 0; i < n; i++) v[i] /= nv;
      const w = apply(v);
      lambda = 0;
      for (let i = 0; i < n; i++) lambda += v[i] * w[i];
      v = w;
    }
    return lambda;
  };
  const max = power(applyA);
  const min = 1 / power(applyInv);
  return { max, min, cond: max / min };
}

export function frobenius(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s);
}

/** ‖a − b‖ / ‖b‖ (Frobenius). */
export function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let d = 0;
  for (let i = 0; i < a.length; i++) d += (a[i] - b[i]) ** 2;
  const nb = frobenius(b);
  return nb > 0 ? Math.sqrt(d) / nb : Math.sqrt(d);
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`maxAbsDiff: lengths differ (${a.length} vs ${b.length})`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

// ---------------------------------------------------------------------------------------------------------
// Problems: weights, activations, Hessians

export function randomWeights(rows: number, cols: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const s = 1 / Math.sqrt(cols);
  return Float32Array.from({ length: rows * cols }, () => rng.normal() * s);
}

export interface ActivationOptions {
  /** AR(1) correlation between neighbouring input features (default 0.8). */
  rho?: number;
  /** Every k-th feature is an outlier with 8× the scale (default 17; 0 = none). */
  outlierEvery?: number;
  /** Per-feature scales spread log-uniformly over this many decades (random order): ill-conditioning. */
  scaleDecades?: number;
  /** Features that are exactly zero in every token (dead columns). */
  dead?: number[];
}

/** A stream of correlated activations: (tokens, cols) row-major per call. Scales are fixed at creation. */
export function activationSource(cols: number, seed: number, opts: ActivationOptions = {}): (tokens: number) => Float64Array {
  const rng = new Rng(seed);
  const rho = opts.rho ?? 0.8;
  const every = opts.outlierEvery ?? 17;
  const perm = rng.permutation(cols);
  const scale = new Float64Array(cols);
  for (let j = 0; j < cols; j++) {
    scale[j] = (every > 0 && j % every === 0 ? 8 : 1) * 10 ** (-(opts.scaleDecades ?? 0) * (cols > 1 ? perm[j] / (cols - 1) : 0));
  }
  for (const j of opts.dead ?? []) scale[j] = 0;
  const innov = Math.sqrt(1 - rho * rho);
  return (tokens: number) => {
    const X = new Float64Array(tokens * cols);
    for (let t = 0; t < tokens; t++) {
      let prev = rng.normal();
      for (let j = 0; j < cols; j++) {
        prev = rho * prev + innov * rng.normal();
        X[t * cols + j] = scale[j] * prev;
      }
    }
    return X;
  };
}

/** Adds Σ_t x_tᵀ x_t of X (tokens, cols) into the symmetric accumulator S (cols, cols). */
export function addGram(S: Float64Array, X: Float64Array, cols: number): void {
  const tokens = X.length / cols;
  for (let t = 0; t < tokens; t++) {
    const off = t * cols;
    for (let j = 0; j < cols; j++) {
      const xj = X[off + j];
      if (xj === 0) continue;
      const row = j * cols;
      for (let k = j; k < cols; k++) S[row + k] += xj * X[off + k];
    }
  }
}

export function symmetrizeUpper(S: Float64Array, n: number): void {
  for (let j = 0; j < n; j++) for (let k = j + 1; k < n; k++) S[k * n + j] = S[j * n + k];
}

export interface RandomHessian {
  cols: number;
  /** (cols, cols) H = (2/N)·Σ_tokens xᵀx, rounded to fp32 (what the code receives). */
  H: Float32Array;
  /** (cols) Σ_tokens x_j² / N. */
  colNorm2: Float32Array;
  /** N, the number of sequences. */
  sequences: number;
}

/** H = (2/N)·Σ xᵀx from `sequences` sequences of `seqLen` correlated random activation tokens, in float64. */
export function randomHessian(cols: number, seed: number, opts: ActivationOptions & { sequences?: number; seqLen?: number } = {}): RandomHessian {
  const seqLen = opts.seqLen ?? 16;
  const sequences = opts.sequences ?? Math.max(4, Math.ceil((3 * cols) / seqLen));
  const source = activationSource(cols, seed, opts);
  const S = new Float64Array(cols * cols);
  const norms = new Float64Array(cols);
  for (let s = 0; s < sequences; s++) {
    const X = source(seqLen);
    addGram(S, X, cols);
    for (let t = 0; t < seqLen; t++) for (let j = 0; j < cols; j++) norms[j] += X[t * cols + j] ** 2;
  }
  symmetrizeUpper(S, cols);
  return {
    cols,
    H: Float32Array.from(S, (v) => (2 / sequences) * v),
    colNorm2: Float32Array.from(norms, (v) => v / sequences),
    sequences,
  };
}

/** Q·diag(eigs)·Qᵀ with Q a product of random Householder reflections: an exactly known spectrum. */
export function matrixWithSpectrum(eigs: number[], seed: number, reflections = 6): Float64Array {
  const n = eigs.length;
  const rng = new Rng(seed);
  const A = new Float64Array(n * n);
  for (let i = 0; i < n; i++) A[i * n + i] = eigs[i];
  for (let r = 0; r < reflections; r++) {
    const v = Float64Array.from({ length: n }, () => rng.normal());
    const nv = frobenius(v);
    for (let i = 0; i < n; i++) v[i] /= nv;
    // A ← (I − 2vvᵀ) A (I − 2vvᵀ)
    const Av = matmul(A, v, n, n, 1);
    let vAv = 0;
    for (let i = 0; i < n; i++) vAv += v[i] * Av[i];
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) A[i * n + j] += -2 * v[i] * Av[j] - 2 * Av[i] * v[j] + 4 * vAv * v[i] * v[j];
    }
  }
  symmetrizeUpper(A, n);
  return A;
}

/** A pattern as the tests list them. */
export type RefPattern = { sparsity: number } | { n: number; m: number };

// ---------------------------------------------------------------------------------------------------------
// The fixed-mask optimum (algorithms.md §1.3) and the loss

/**
 * Per row, the exact least-squares optimum for a fixed mask under the (damped) Hd, keep-set form:
 * w_K ← w_K + w_P·H_PK·H_KK⁻¹ (i.e. solve H_KK·y = H_KP·w_Pᵀ), w_P ← 0.
 */
export function fixedMaskOptimum(W: ArrayLike<number>, Hd: ArrayLike<number>, rows: number, cols: number, mask: Uint8Array): Float64Array {
  const out = Float64Array.from(W);
  for (let r = 0; r < rows; r++) {
    const K: number[] = [];
    const P: number[] = [];
    for (let j = 0; j < cols; j++) (mask[r * cols + j] ? P : K).push(j);
    if (P.length === 0) continue;
    const nk = K.length;
    if (nk > 0) {
      const HKK = new Float64Array(nk * nk);
      const rhs = new Float64Array(nk);
      for (let a = 0; a < nk; a++) {
        for (let b = 0; b < nk; b++) HKK[a * nk + b] = Hd[K[a] * cols + K[b]];
        let s = 0;
        for (const p of P) s += Hd[K[a] * cols + p] * W[r * cols + p];
        rhs[a] = s;
      }
      const y = spdSolve(HKK, nk, rhs, 1);
      for (let a = 0; a < nk; a++) out[r * cols + K[a]] += y[a];
    }
    for (const p of P) out[r * cols + p] = 0;
  }
  return out;
}

/** The same optimum in the pruned-set form δw = −w_P [(H⁻¹)_PP]⁻¹ (H⁻¹)_{P,:} (a check on the reference). */
export function fixedMaskOptimumDual(W: ArrayLike<number>, Hd: ArrayLike<number>, rows: number, cols: number, mask: Uint8Array): Float64Array {
  const Hinv = spdInverse(Hd, cols);
  const out = Float64Array.from(W);
  for (let r = 0; r < rows; r++) {
    const P: number[] = [];
    for (let j = 0; j < cols; j++) if (mask[r * cols + j]) P.push(j);
    const np = P.length;
    if (np === 0) continue;
    const SPP = new Float64Array(np * np);
    const wP = new Float64Array(np);
    for (let a = 0; a < np; a++) {
      for (let b = 0; b < np; b++) SPP[a * np + b] = Hinv[P[a] * cols + P[b]];
      wP[a] = W[r * cols + P[a]];
    }
    const lambda = spdSolve(SPP, np, wP, 1); // [(H⁻¹)_PP]⁻¹ w_Pᵀ
    for (let j = 0; j < cols; j++) {
      let s = 0;
      for (let a = 0; a < np; a++) s += lambda[a] * Hinv[P[a] * cols + j];
      out[r * cols + j] -= s;
    }
    for (const p of P) out[r * cols + p] = 0; // exact zeros (equal up to round-off already)
  }
  return out;
}

/** 0.5·tr(ΔW·H·ΔWᵀ), ΔW = W0 − W, in float64. */
export function quadLoss(W0: ArrayLike<number>, W: ArrayLike<number>, H: ArrayLike<number>, rows: number, cols: number): number {
  let total = 0;
  const d = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) d[j] = W0[r * cols + j] - W[r * cols + j];
    for (let j = 0; j < cols; j++) {
      if (d[j] === 0) continue;
      let s = 0;
      for (let k = 0; k < cols; k++) s += H[j * cols + k] * d[k];
      total += d[j] * s;
    }
  }
  return 0.5 * total;
}

// ---------------------------------------------------------------------------------------------------------
// The inverse-Hessian factor U (H_damped⁻¹ = UᵀU), SparseGPT's Hinv, in fp32 as the fast path computes its blocks

/** U = J·L⁻¹·J with L·Lᵀ = J·H_damped·J (J the reversal), by the blocked choleskyWithInverse, at the dampening that
 *  dampedCholeskyFactor settles on (its dead columns, retries and notes are returned too). */
export async function dampedInverseFactor(H: Float32Array, n: number, dampening: number, k: Kernels) {
  const { dead, dampening: used, notes } = await dampedCholeskyFactor(H, n, dampening, k);
  const { Hd } = prepareHessian(H, n, used);
  const reversed = (a: ArrayLike<number>) => Float32Array.from({ length: n * n }, (_, i) => a[n * n - 1 - i]);
  const { X } = await choleskyWithInverse(mat(n, n, reversed(Hd)), k);
  const U = mat(n, n, reversed(X.data));
  const row = (r: number, c0: number, c1: number, dst: Float32Array | Float64Array, offset = 0): void => {
    for (let c = c0; c < c1; c++) dst[offset + c - c0] = U.data[r * n + c];
  };
  return { U: { rows: n, cols: n, toMat: () => U, row }, dead, dampening: used, notes };
}
