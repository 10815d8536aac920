// Independent float64 reference implementations for the tests, written from the math in
// shared/docs/algorithms.md (§1.3 closed form, §2.2 SparseGPT's fasterprune), not from src/.
// Everything here is plain, unblocked, O(n³) float64 JS: slow but obviously correct at test sizes.
// Conventions: matrices are row-major Float64Array; W is (rows, cols); H is (cols, cols); mask 1 = pruned.

// ---------------------------------------------------------------------------------------------------------
// Random numbers

/** Seeded generator: mulberry32 uniforms and Box–Muller normals. */
export class Rng {
  private s: number;
  private spare: number | undefined;

  constructor(seed: number) {
    this.s = (seed ^ 0x9e3779b9) >>> 0;
  }

  uniform(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  }

  normal(): number {
    if (this.spare !== undefined) {
      const v = this.spare;
      this.spare = undefined;
      return v;
    }
    const r = Math.sqrt(-2 * Math.log(this.uniform()));
    const a = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(a);
    return r * Math.cos(a);
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

export class NotSpdError extends Error {}

/** Lower Cholesky factor L (A = L·Lᵀ) of a symmetric positive definite n×n matrix, as a new array. */
export function choleskyLower(A: ArrayLike<number>, n: number): Float64Array {
  const L = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = A[j * n + j];
    for (let k = 0; k < j; k++) d -= L[j * n + k] * L[j * n + k];
    if (!(d > 0)) throw new NotSpdError(`not positive definite at pivot ${j} (${d})`);
    const ljj = Math.sqrt(d);
    L[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = A[i * n + j];
      for (let k = 0; k < j; k++) s -= L[i * n + k] * L[j * n + k];
      L[i * n + j] = s / ljj;
    }
  }
  return L;
}

/** Upper factor U with A = Uᵀ·U (torch.linalg.cholesky(A, upper=True)): U = Lᵀ. */
export function choleskyUpper(A: ArrayLike<number>, n: number): Float64Array {
  return transpose(choleskyLower(A, n), n, n);
}

/** Solves A·X = B for SPD A (n×n) and B (n×m), via Cholesky. */
export function spdSolve(A: ArrayLike<number>, n: number, B: ArrayLike<number>, m: number): Float64Array {
  const L = choleskyLower(A, n);
  const X = Float64Array.from(B);
  for (let c = 0; c < m; c++) {
    for (let i = 0; i < n; i++) {
      let s = X[i * m + c];
      for (let k = 0; k < i; k++) s -= L[i * n + k] * X[k * m + c];
      X[i * m + c] = s / L[i * n + i];
    }
    for (let i = n - 1; i >= 0; i--) {
      let s = X[i * m + c];
      for (let k = i + 1; k < n; k++) s -= L[k * n + i] * X[k * m + c];
      X[i * m + c] = s / L[i * n + i];
    }
  }
  return X;
}

/** Explicit inverse of an SPD matrix (symmetrised). */
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

/**
 * Extreme eigenvalue estimates of an SPD matrix: power iteration on A for λmax and on A⁻¹ (Cholesky solves)
 * for λmin. Both are inner estimates (λmax from below, λmin from above), so `cond` is a lower bound.
 */
export function extremeEigenvalues(A: ArrayLike<number>, n: number, iterations = 100, seed = 7): { max: number; min: number; cond: number } {
  const L = choleskyLower(A, n);
  const applyA = (v: Float64Array): Float64Array => matmul(A, v, n, n, 1);
  const applyInv = (v: Float64Array): Float64Array => {
    const x = Float64Array.from(v);
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
    return x;
  };
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

// ---------------------------------------------------------------------------------------------------------
// SparseGPT's preparation of H (algorithms.md §2.2 steps 2–3)

export interface PreparedHessian {
  /** (cols, cols) float64: dead diagonals set to 1, then λ added to the diagonal. */
  Hd: Float64Array;
  dead: number[];
  lambda: number;
}

export function prepareHessian(H: ArrayLike<number>, cols: number, damp: number): PreparedHessian {
  const Hd = Float64Array.from(H);
  const dead: number[] = [];
  for (let j = 0; j < cols; j++) {
    if (Hd[j * cols + j] === 0) {
      dead.push(j);
      Hd[j * cols + j] = 1;
    }
  }
  let mean = 0;
  for (let j = 0; j < cols; j++) mean += Hd[j * cols + j];
  mean /= cols;
  const lambda = damp * mean;
  for (let j = 0; j < cols; j++) Hd[j * cols + j] += lambda;
  return { Hd, dead, lambda };
}

export type RefPattern = { sparsity: number } | { n: number; m: number };

export interface SparseGptResult {
  /** (rows, cols) pruned weights, float64. */
  W: Float64Array;
  mask: Uint8Array;
  /** Σ (w−q)²/d² / 2: SparseGPT's own error estimate. */
  loss: number;
  /** Unstructured: per block, the index k = floor(numel·s) and the number of scores <= sorted[k]. */
  blocks: { start: number; width: number; k: number; pruned: number }[];
  dead: number[];
}

/**
 * SparseGPT's fasterprune in float64, literally as algorithms.md §2.2:
 * Hinv = upper Cholesky factor of inv(H_damped) (explicit inverse, then Cholesky); per block an adaptive
 * unstructured mask w²/Hinv_jj² with thresh = sorted[floor(numel·s)] and `<=`; or N:M chosen inside the
 * column loop on the compensated weights (ties: leftmost first); then column-by-column OBS updates and
 * a lazy update of later blocks. One deliberate difference from the Python: a trailing partial N:M group
 * (cols % M != 0) stays dense, as PruneKit specifies. `blockSize` must be a multiple of M for N:M.
 * `fixedMask` skips mask selection.
 */
export function sparsegptReference(
  W32: ArrayLike<number>, H32: ArrayLike<number>, rows: number, cols: number,
  pattern: RefPattern, blockSize = 128, damp = 0.01, fixedMask?: Uint8Array,
): SparseGptResult {
  const nm = 'n' in pattern ? pattern : undefined;
  if (nm && blockSize % nm.m !== 0) throw new Error(`reference: blockSize ${blockSize} is not a multiple of M=${nm.m}`);
  const W = Float64Array.from(W32);
  const { Hd, dead } = prepareHessian(H32, cols, damp);
  for (const j of dead) for (let r = 0; r < rows; r++) W[r * cols + j] = 0;
  const Hinv = choleskyUpper(spdInverse(Hd, cols), cols); // H⁻¹ = UᵀU
  const mask = new Uint8Array(rows * cols);
  const denseFrom = nm ? cols - (cols % nm.m) : cols;
  let loss = 0;
  const blocks: SparseGptResult['blocks'] = [];

  for (let i1 = 0; i1 < cols; i1 += blockSize) {
    const i2 = Math.min(i1 + blockSize, cols);
    const count = i2 - i1;
    const W1 = new Float64Array(rows * count);
    for (let r = 0; r < rows; r++) for (let k = 0; k < count; k++) W1[r * count + k] = W[r * cols + i1 + k];
    const d = (k: number): number => Hinv[(i1 + k) * cols + i1 + k];
    const mask1 = new Uint8Array(rows * count);
    if (fixedMask) {
      for (let r = 0; r < rows; r++) for (let k = 0; k < count; k++) mask1[r * count + k] = fixedMask[r * cols + i1 + k];
    } else if (!nm) {
      const s = (pattern as { sparsity: number }).sparsity;
      const tmp = new Float64Array(rows * count);
      for (let r = 0; r < rows; r++) for (let k = 0; k < count; k++) tmp[r * count + k] = W1[r * count + k] ** 2 / d(k) ** 2;
      const sorted = Float64Array.from(tmp).sort();
      const k = Math.floor(tmp.length * s);
      const thresh = sorted[k];
      let pruned = 0;
      for (let i = 0; i < tmp.length; i++) if (tmp[i] <= thresh) { mask1[i] = 1; pruned++; }
      blocks.push({ start: i1, width: count, k, pruned });
    }
    const Err1 = new Float64Array(rows * count);
    for (let i = 0; i < count; i++) {
      if (nm && !fixedMask && i % nm.m === 0 && i1 + i + nm.m <= denseFrom) {
        for (let r = 0; r < rows; r++) {
          const idx = Array.from({ length: nm.m }, (_, j) => j);
          const score = idx.map((j) => W1[r * count + i + j] ** 2 / d(i + j) ** 2);
          idx.sort((a, b) => score[a] - score[b] || a - b); // stable: leftmost first among equal scores
          for (let t = 0; t < nm.n; t++) mask1[r * count + i + idx[t]] = 1;
        }
      }
      const dii = d(i);
      for (let r = 0; r < rows; r++) {
        const w = W1[r * count + i];
        const q = mask1[r * count + i] ? 0 : w;
        loss += (w - q) ** 2 / dii ** 2 / 2;
        const err = (w - q) / dii;
        Err1[r * count + i] = err;
        if (err === 0) continue;
        for (let j = i; j < count; j++) W1[r * count + j] -= err * Hinv[(i1 + i) * cols + i1 + j];
        W1[r * count + i] = q; // exact (the update above gives q up to round-off)
      }
    }
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < count; k++) {
        W[r * cols + i1 + k] = W1[r * count + k];
        mask[r * cols + i1 + k] = mask1[r * count + k];
      }
      // Lazy update: W[:, i2:] −= Err1 · Hinv[i1:i2, i2:]
      for (let k = 0; k < count; k++) {
        const e = Err1[r * count + k];
        if (e === 0) continue;
        const hrow = (i1 + k) * cols;
        for (let j = i2; j < cols; j++) W[r * cols + j] -= e * Hinv[hrow + j];
      }
    }
  }
  return { W, mask, loss, blocks, dead };
}

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
