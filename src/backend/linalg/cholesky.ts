// Cholesky factorisation and the inverse-Hessian factor U that SparseGPT and APT sweep over.
//
// U is the upper-triangular factor with H⁻¹ = UᵀU. Rather than chol → cholesky_inverse → chol (three
// factorisations), we use the identity U = J·inv(chol(J H J))·J, J the reversal permutation: one Cholesky
// and one triangular inverse. Reversing rows and columns of a row-major square matrix is reversing its
// data array, so J·X·J costs one pass.
//
// The factorisation is recursive: diagonal blocks of at most BASE columns are factored and inverted in
// float64 in JS; every off-diagonal product is an onnxruntime GEMM (see kernels.ts).

import { Kernels, Mat, mat } from './kernels';

const BASE = 128;

export class NotPositiveDefiniteError extends Error {
  constructor(readonly pivot: number, what = 'matrix is not positive definite') {
    super(`${what} (pivot ${pivot})`);
  }
}

/** In-place lower Cholesky of an n×n float64 row-major matrix; the strict upper triangle is zeroed. */
export function choleskyLowerInPlace(a: Float64Array, n: number, pivotOffset = 0): void {
  for (let j = 0; j < n; j++) {
    const jr = j * n;
    let d = a[jr + j];
    for (let k = 0; k < j; k++) d -= a[jr + k] * a[jr + k];
    if (!(d > 0)) throw new NotPositiveDefiniteError(pivotOffset + j);
    d = Math.sqrt(d);
    a[jr + j] = d;
    const inv = 1 / d;
    for (let i = j + 1; i < n; i++) {
      const ir = i * n;
      let s = a[ir + j];
      for (let k = 0; k < j; k++) s -= a[ir + k] * a[jr + k];
      a[ir + j] = s * inv;
    }
    for (let k = j + 1; k < n; k++) a[jr + k] = 0;
  }
}

/** Inverse of an n×n lower-triangular float64 matrix (row-major), returned as a new array. */
export function invertLower(l: Float64Array, n: number): Float64Array {
  const x = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    x[j * n + j] = 1 / l[j * n + j];
    for (let i = j + 1; i < n; i++) {
      let s = 0;
      const ir = i * n;
      for (let k = j; k < i; k++) s += l[ir + k] * x[k * n + j];
      x[ir + j] = -s / l[ir + i];
    }
  }
  return x;
}

function block(a: Mat, r0: number, r1: number, c0: number, c1: number): Mat {
  const out = mat(r1 - r0, c1 - c0);
  for (let i = r0; i < r1; i++) out.data.set(a.data.subarray(i * a.cols + c0, i * a.cols + c1), (i - r0) * (c1 - c0));
  return out;
}

function place(dst: Mat, src: Mat, r0: number, c0: number): void {
  for (let i = 0; i < src.rows; i++) dst.data.set(src.data.subarray(i * src.cols, (i + 1) * src.cols), (r0 + i) * dst.cols + c0);
}

/** Lower Cholesky factor L of SPD `a` and its inverse X = L⁻¹, both n×n fp32. */
export async function choleskyWithInverse(a: Mat, k: Kernels): Promise<{ L: Mat; X: Mat }> {
  const r = await factor(a, k, 0, true);
  return { L: r.L as Mat, X: r.X };
}

/** X = L⁻¹ for the lower Cholesky factor L of SPD `a` (L itself is never needed: L21 = B·X11ᵀ). */
export async function inverseCholeskyFactor(a: Mat, k: Kernels): Promise<Mat> {
  return (await factor(a, k, 0, false)).X;
}

async function factor(a: Mat, k: Kernels, pivotOffset: number, withL: boolean): Promise<{ L?: Mat; X: Mat }> {
  const n = a.rows;
  if (n <= BASE) {
    const l = Float64Array.from(a.data);
    choleskyLowerInPlace(l, n, pivotOffset);
    const x = invertLower(l, n);
    return { L: withL ? mat(n, n, Float32Array.from(l)) : undefined, X: mat(n, n, Float32Array.from(x)) };
  }
  // Split at a multiple of BASE so every leaf is a full BASE block except possibly the last.
  const n1 = Math.ceil(n / 2 / BASE) * BASE;
  const top = await factor(block(a, 0, n1, 0, n1), k, pivotOffset, withL);
  const l21 = await k.abT(block(a, n1, n, 0, n1), top.X); //      L21 = B·L11⁻ᵀ
  const schur = await k.cMinusAAT(l21, block(a, n1, n, n1, n)); // C − L21·L21ᵀ
  const bottom = await factor(schur, k, pivotOffset + n1, withL);
  const x21 = await k.negABC(bottom.X, l21, top.X); //            X21 = −L22⁻¹·L21·L11⁻¹
  const X = mat(n, n);
  place(X, top.X, 0, 0);
  place(X, x21, n1, 0);
  place(X, bottom.X, n1, n1);
  if (!withL) return { X };
  const L = mat(n, n);
  place(L, top.L as Mat, 0, 0);
  place(L, l21, n1, 0);
  place(L, bottom.L as Mat, n1, n1);
  return { L, X };
}

export interface DampedFactor {
  /** (cols, cols) upper triangular, H_damped⁻¹ = UᵀU. */
  U: Mat;
  /** The relative dampening that succeeded. */
  dampening: number;
  /** Input columns with zero diagonal (no calibration signal). */
  dead: number[];
  /** Human-readable notes, e.g. dampening retries. */
  notes: string[];
}

/**
 * SparseGPT's preparation of H: dead columns (zero diagonal) get H_jj = 1, then λ = dampening·mean(diag H)
 * is added to the diagonal and U is computed. If H is still not positive definite (round-off on a nearly
 * singular H), dampening is multiplied by 10 and retried, up to 4 times.
 */
export async function dampedInverseFactor(H: Float32Array, n: number, dampening: number, k: Kernels): Promise<DampedFactor> {
  const dead: number[] = [];
  let mean = 0;
  for (let j = 0; j < n; j++) {
    const d = H[j * n + j];
    if (d === 0) dead.push(j);
    mean += d === 0 ? 1 : d;
  }
  mean /= n;
  const notes: string[] = [];
  let damp = dampening;
  for (let attempt = 0; ; attempt++) {
    const h = Float32Array.from(H);
    const lambda = damp * mean;
    for (const j of dead) h[j * n + j] = 1;
    for (let j = 0; j < n; j++) h[j * n + j] += lambda;
    try {
      // J·H·J is the reversed array; U = J·X·J is the reversed inverse factor.
      const X = await inverseCholeskyFactor(mat(n, n, h.reverse()), k);
      if (attempt > 0) notes.push(`H was not positive definite with dampening ${dampening}; used ${damp}`);
      return { U: mat(n, n, X.data.reverse()), dampening: damp, dead, notes };
    } catch (e) {
      if (!(e instanceof NotPositiveDefiniteError)) throw e;
      if (attempt >= 4) {
        // Pivots count in the reversed matrix: report the original column.
        throw new NotPositiveDefiniteError(n - 1 - e.pivot, `H is not positive definite even with dampening ${damp}`);
      }
      damp *= 10;
    }
  }
}
