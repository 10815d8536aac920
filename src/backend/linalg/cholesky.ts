// Cholesky factorisation and the upper-triangular factors that SparseGPT and APT sweep over.
//
// With J the reversal permutation (J·X·J reverses the order of rows and of columns) and L the lower Cholesky
// factor of J·H·J:
//   R = J·L·J is upper triangular with H = R·Rᵀ (one Cholesky: what the sweep needs);
//   U = J·L⁻¹·J = R⁻¹ is upper triangular with H⁻¹ = UᵀU (the reference's chol → cholesky_inverse → chol); the
//   sweep forms only its diagonal blocks G = R[b, b]⁻¹, the tests all of it (test/helpers/reference.ts).
//
// R is blocked over column panels (see Panels): diagonal blocks of up to LEAF columns are factored and
// inverted in float64 in JS; every other product is an onnxruntime GEMM (see kernels.ts) on the lower half only.

import { Kernels, Mat, mat } from './kernels';

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

/** Upper factor U with A = UᵀU (torch.linalg.cholesky(A, upper=True)) of an SPD n×n float64 matrix: U = Lᵀ. */
export function choleskyUpper(A: ArrayLike<number>, n: number): Float64Array {
  const L = Float64Array.from(A as ArrayLike<number>);
  choleskyLowerInPlace(L, n);
  const U = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) U[i * n + j] = L[j * n + i];
  return U;
}

/** X = A⁻¹·B for a symmetric positive definite n×n A and an n×m B (row-major float64), by Cholesky and two
 *  triangular substitutions: the one small SPD solve (the row kernels' and wasm's fast ones are tested against it).
 *  Throws NotPositiveDefiniteError. A and B are not modified. */
export function spdSolve(A: ArrayLike<number>, n: number, B: ArrayLike<number>, m = 1): Float64Array {
  const L = Float64Array.from(A as ArrayLike<number>);
  choleskyLowerInPlace(L, n);
  const X = Float64Array.from(B as ArrayLike<number>);
  for (let c = 0; c < m; c++) {
    for (let i = 0; i < n; i++) { //      L·y = b
      let s = X[i * m + c];
      for (let k = 0; k < i; k++) s -= L[i * n + k] * X[k * m + c];
      X[i * m + c] = s / L[i * n + i];
    }
    for (let i = n - 1; i >= 0; i--) { // Lᵀ·x = y
      let s = X[i * m + c];
      for (let k = i + 1; k < n; k++) s -= L[k * n + i] * X[k * m + c];
      X[i * m + c] = s / L[i * n + i];
    }
  }
  return X;
}

/** A⁻¹ of a symmetric positive definite n×n float64 matrix (symmetrised), by spdSolve. */
export function spdInverse(A: ArrayLike<number>, n: number): Float64Array {
  const I = new Float64Array(n * n);
  for (let i = 0; i < n; i++) I[i * n + i] = 1;
  const X = spdSolve(A, n, I, n);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const v = 0.5 * (X[i * n + j] + X[j * n + i]);
      X[i * n + j] = v;
      X[j * n + i] = v;
    }
  }
  return X;
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

/** Diagonal blocks up to this size are factored and inverted in float64 JS; larger ones recursively. */
const LEAF = 128;
/** Panel width: wider panels mean fewer, larger GEMMs (onnxruntime's per-call cost and thread hand-offs
 *  weigh on 128-wide ones), at the price of a recursive factorisation of each diagonal block. */
const panelWidth = (n: number): number => (n >= 2048 ? 256 : LEAF);

/**
 * The lower triangle of an n×n matrix as column panels of width nb: panel j holds rows j·nb … n−1 of
 * columns j·nb … j·nb + w_j − 1, row-major ((n − j·nb) × w_j). Every product of the blocked algorithms below is then
 * one GEMM on contiguous operands (a panel's tail, or one of its nb×nb blocks), and only the lower half is
 * stored or computed: the old recursive form ran its triangular operands as dense GEMMs, twice the flops.
 */
class Panels {
  readonly count: number;
  readonly data: Float32Array[];
  constructor(readonly n: number, readonly nb = panelWidth(n)) {
    this.count = Math.ceil(n / nb);
    this.data = Array.from({ length: this.count }, (_, j) => new Float32Array((n - j * this.nb) * this.width(j)));
  }

  width(j: number): number {
    return Math.min(this.nb, this.n - j * this.nb);
  }

  /** Panel j from global row r (≥ j·nb) down. */
  rowsFrom(j: number, r: number): Mat {
    const w = this.width(j);
    return mat(this.n - r, w, this.data[j].subarray((r - j * this.nb) * w));
  }

  /** Block (i, j), i ≥ j: w_i × w_j. */
  block(i: number, j: number): Mat {
    const w = this.width(j);
    const r = (i - j) * this.nb;
    return mat(this.width(i), w, this.data[j].subarray(r * w, (r + this.width(i)) * w));
  }

  /** Visits every stored row run: panel entries index … index + count − 1 are row r's columns c0 … c0 + count − 1
   *  (the lower triangle: c ≤ r). A run, not an entry, per call: a call per entry cost 0.1 s at n = 4096. */
  forEachRun(f: (panel: Float32Array, index: number, r: number, c0: number, count: number) => void): void {
    for (let j = 0; j < this.count; j++) {
      const w = this.width(j);
      const c0 = j * this.nb;
      for (let t = 0; t < this.n - c0; t++) f(this.data[j], t * w, c0 + t, c0, Math.min(w, t + 1));
    }
  }

  /** Fills the panels with J·H·J (entry (r, c) = H[n−1−r, n−1−c], lower triangle), damped: a zero diagonal
   *  (a dead input) becomes 1, then every diagonal entry gets + lambda. No whole-matrix copy of H. */
  fillReversed(H: Float32Array, lambda: number): void {
    const n = this.n;
    this.forEachRun((p, i, r, c0, count) => {
      const o = (n - 1 - r) * n + n - 1 - c0; // H's reversed row: columns run down from o
      for (let c = 0; c < count; c++) p[i + c] = H[o - c];
    });
    for (let r = 0; r < n; r++) {
      const j = Math.floor(r / this.nb);
      const t = r - j * this.nb;
      const p = this.data[j];
      const i = t * this.width(j) + t;
      p[i] = (p[i] === 0 ? 1 : p[i]) + lambda;
    }
  }

  /** Writes J·A·J of the stored lower triangle into the row-major n×n `out` (its upper triangle). */
  writeReversed(out: Float32Array): void {
    const n = this.n;
    this.forEachRun((p, i, r, c0, count) => {
      const o = (n - 1 - r) * n + n - 1 - c0;
      for (let c = 0; c < count; c++) out[o - c] = p[i + c];
    });
  }

  /** dst[offset + c − c0] = (J·A·J)[r, c] for c in [c0, c1), A the stored lower triangle: the upper triangle's row r,
   *  zero left of the diagonal. Each panel's share of the row is one contiguous run of A's row n−1−r, read backwards. */
  reversedRow(r: number, c0: number, c1: number, dst: Float32Array | Float64Array, offset = 0): void {
    const { n, nb } = this;
    const R = n - 1 - r;
    let c = c0;
    for (; c < Math.min(c1, r); c++) dst[offset + c - c0] = 0;
    while (c < c1) {
      const j = Math.floor((n - 1 - c) / nb);
      const w = this.width(j);
      const p = this.data[j];
      const base = (R - j * nb) * w - j * nb; // p[base + C] = A[R, C]
      const cEnd = Math.min(c1, n - j * nb); // this panel holds columns C ≥ j·nb, i.e. c < n − j·nb
      for (; c < cEnd; c++) dst[offset + c - c0] = p[base + n - 1 - c];
    }
  }

  static fromLower(a: Mat, nb?: number): Panels {
    const P = new Panels(a.rows, nb);
    P.forEachRun((p, i, r, c0, count) => p.set(a.data.subarray(r * a.cols + c0, r * a.cols + c0 + count), i));
    return P;
  }

  toLower(): Mat {
    const out = mat(this.n, this.n);
    this.forEachRun((p, i, r, c0, count) => out.data.set(p.subarray(i, i + count), r * this.n + c0));
    return out;
  }
}

/** Right-looking blocked Cholesky in place (panels then hold L). Diagonal blocks are factored and inverted
 *  in float64 in JS; returns their inverses X_jj = L_jj⁻¹ (fp32), which the triangular inverse reuses. */
async function choleskyPanels(P: Panels, k: Kernels, pivotOffset = 0): Promise<Mat[]> {
  const { n, count, nb: NB } = P;
  const diagInv: Mat[] = [];
  const scratch = new Float32Array(n * NB);
  for (let q = 0; q < count; q++) {
    const w = P.width(q);
    const D = P.block(q, q);
    const xd = await factorDiagonal(D, k, pivotOffset + q * NB);
    diagInv.push(xd);
    if (q + 1 === count) break;
    const tail = P.rowsFrom(q, (q + 1) * NB); //   L[below, q] = A[below, q]·L_qq⁻ᵀ
    const solved = await k.abT(tail, xd, mat(tail.rows, w, scratch.subarray(0, tail.rows * w)));
    tail.data.set(solved.data);
    for (let j = q + 1; j < count; j++) { //      panel j −= L[rows ≥ j, q]·L[j, q]ᵀ
      await k.cMinusABTInPlace(P.rowsFrom(q, j * NB), P.block(j, q), P.rowsFrom(j, j * NB));
    }
  }
  return diagInv;
}

/** In place, L → X = L⁻¹, from the last panel to the first: X[below, j] = −(Σ_{l>j} X[:, l]·L[l, j])·X_jj. */
async function invertPanels(P: Panels, diagInv: Mat[], k: Kernels): Promise<void> {
  const { n, count, nb: NB } = P;
  const scratch = new Float32Array(n * NB);
  for (let j = count - 1; j >= 0; j--) {
    const w = P.width(j);
    if (j + 1 < count) {
      const rows = n - (j + 1) * NB;
      const T = await k.ab(P.rowsFrom(j + 1, (j + 1) * NB), P.block(j + 1, j), mat(rows, w, scratch.subarray(0, rows * w)));
      for (let l = j + 2; l < count; l++) {
        await k.cPlusABInPlace(P.rowsFrom(l, l * NB), P.block(l, j), mat(n - l * NB, w, T.data.subarray((l - j - 1) * NB * w)));
      }
      await k.negAB(T, diagInv[j], P.rowsFrom(j, (j + 1) * NB));
    }
    P.block(j, j).data.set(diagInv[j].data);
  }
}

/** L_qq (in place of the block) and X_qq = L_qq⁻¹ of one diagonal block. */
async function factorDiagonal(D: Mat, k: Kernels, pivotOffset: number): Promise<Mat> {
  const w = D.rows;
  if (w <= LEAF) {
    const l = Float64Array.from(D.data);
    choleskyLowerInPlace(l, w, pivotOffset);
    D.data.set(l);
    return mat(w, w, Float32Array.from(invertLower(l, w)));
  }
  const { L, X } = await choleskyWithInverse(D, k, LEAF, pivotOffset);
  D.data.set(L.data);
  return X;
}

/** Lower Cholesky factor L of SPD `a` and its inverse X = L⁻¹, both n×n fp32 (a wide diagonal block's factors).
 *  `panelWidth` overrides the size-based choice; pivots are reported from `pivotOffset` on. */
export async function choleskyWithInverse(a: Mat, k: Kernels, panelWidth?: number, pivotOffset = 0): Promise<{ L: Mat; X: Mat }> {
  const P = Panels.fromLower(a, panelWidth);
  const diagInv = await choleskyPanels(P, k, pivotOffset);
  const L = P.toLower();
  await invertPanels(P, diagInv, k);
  return { L, X: P.toLower() };
}

/** An upper-triangular matrix kept as the panels of the lower-triangular one it is the reversal of (J·A·J): half
 *  the memory of a full n×n matrix, and no second copy. The sweep reads the rows it needs. */
export class UpperFactor {
  constructor(private readonly X: Panels) {}
  get rows(): number { return this.X.n; }
  get cols(): number { return this.X.n; }
  /** dst[offset + c − c0] = this[r, c] for c in [c0, c1) (zeros left of the diagonal). */
  row(r: number, c0: number, c1: number, dst: Float32Array | Float64Array, offset = 0): void {
    this.X.reversedRow(r, c0, c1, dst, offset);
  }
  /** As a full row-major n×n matrix (a new allocation). */
  toMat(): Mat {
    const U = mat(this.X.n, this.X.n);
    this.X.writeReversed(U.data);
    return U;
  }
}

/** The dead inputs of H (zero diagonal) and the mean of its diagonal with those counted as 1: λ is a multiple of it. */
export function dampingOf(H: Float32Array, n: number): { dead: number[]; mean: number } {
  const dead: number[] = [];
  let mean = 0;
  for (let j = 0; j < n; j++) {
    const d = H[j * n + j];
    if (d === 0) dead.push(j);
    mean += d === 0 ? 1 : d;
  }
  return { dead, mean: mean / n };
}

/** R, upper triangular, with H_damped = R·Rᵀ (R⁻¹ = U, H_damped⁻¹ = UᵀU). */
export interface DampedCholesky {
  R: UpperFactor;
  /** The relative dampening that succeeded. */
  dampening: number;
  /** λ = dampening · mean(diag H) (dead diagonals counted as 1): what was added to every diagonal entry. */
  lambda: number;
  /** Input columns with zero diagonal (no calibration signal). */
  dead: number[];
  /** Human-readable notes, e.g. dampening retries. */
  notes: string[];
}

/**
 * SparseGPT's preparation of H: dead columns (zero diagonal) get H_jj = 1, then λ = dampening·mean(diag H)
 * is added to the diagonal and R (H_damped = R·Rᵀ: one Cholesky, no inverse) is computed. If H is still not positive definite (round-off on a
 * nearly singular H), dampening is multiplied by 10 and retried, up to 4 times.
 */
export async function dampedCholeskyFactor(H: Float32Array, n: number, dampening: number, k: Kernels): Promise<DampedCholesky> {
  const { dead, mean } = dampingOf(H, n);
  const notes: string[] = [];
  let damp = dampening;
  for (let attempt = 0; ; attempt++) {
    const lambda = damp * mean;
    try {
      // Factor J·H·J (J the reversal: entry (r, c) is H[n−1−r, n−1−c]), damped, straight into panels:
      // no whole-matrix copy of H. The reversal of L is R.
      const P = new Panels(n);
      P.fillReversed(H, lambda);
      await choleskyPanels(P, k);
      if (attempt > 0) notes.push(`H was not positive definite with dampening ${dampening}; used ${damp}`);
      return { R: new UpperFactor(P), dampening: damp, lambda, dead, notes };
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

/** Inverse of an n×n upper-triangular float64 matrix (row-major) into `x` (n×n, overwritten). Rows from the
 *  last up, X[i, :] = −(Σ_{k>i} u_ik·X[k, :]) / u_ii, so every inner loop runs along contiguous rows. */
export function invertUpper(u: Float64Array, n: number, x: Float64Array): void {
  x.fill(0, 0, n * n);
  for (let i = n - 1; i >= 0; i--) {
    const ir = i * n;
    for (let k = i + 1; k < n; k++) {
      const a = u[ir + k];
      if (a === 0) continue;
      const kr = k * n;
      for (let j = k; j < n; j++) x[ir + j] -= a * x[kr + j];
    }
    const inv = 1 / u[ir + i];
    for (let j = i + 1; j < n; j++) x[ir + j] *= inv;
    x[ir + i] = inv;
  }
}
