// The sweep's factor R (upper, H_damped = R·Rᵀ) with H and R's columns in the device's memory (WebGPU): H goes up
// once, each diagonal block comes down to be factored in float64 on the host, and nothing else crosses. The host's
// blocked factor (cholesky.ts) is the reference; test/webgpu.test.ts checks the two agree.
//
// Right-looking from the last block to the first, on the sweep's own blocks b = [i1, i2) (i1 = b·B), with A = H:
//   R_bb:  A[b, b] + λ·I = R_bb·R_bbᵀ, R_bb upper   (host, float64; G_b = R_bb⁻¹ is what the sweep needs)
//   R[:i1, b] = A[:i1, b]·G_bᵀ                        (device; kept there for the sweep's left-looking products)
//   A ← A[:i1, :i1] − R[:i1, b]·R[:i1, b]ᵀ           (device)
// Damping each diagonal block only when it is factored is exact: λ·I touches no off-diagonal block, and the
// updates subtract from a diagonal entry what they would subtract from it damped. A dead input (zero diagonal: its
// whole row and column of H are zero, so no update reaches it) gets 1 + λ, as on the host.

import type * as ort from 'onnxruntime-node';
import { choleskyLowerInPlace, dampingOf, invertUpper, NotPositiveDefiniteError } from './cholesky';
import { Kernels, mat } from './kernels';

export interface DeviceFactor {
  /** G_b = R[b, b]⁻¹ (upper, width², float64 row-major) of each block, in block order. */
  inverses: Float64Array[];
  /** R[:i1, b] (i1 × width) of each block in the device's memory; null for block 0. */
  columns: (ort.Tensor | null)[];
  /** The relative dampening that succeeded, and λ = dampening · mean(diag H) (dead diagonals counted as 1). */
  dampening: number;
  lambda: number;
  /** Input columns with zero diagonal (no calibration signal). */
  dead: number[];
  notes: string[];
  /** H itself, left on the device for the loss's reference (null once taken, or when n ≤ B). */
  hessian: ort.Tensor | null;
}

export function releaseDeviceFactor(f: DeviceFactor): void {
  for (const c of f.columns) c?.dispose();
  f.columns.fill(null);
  f.hessian?.dispose();
  f.hessian = null;
}

/** dampedCholeskyFactor's contract (dead columns, λ, up to 4 retries with 10× the dampening, the failing column
 *  named) for blocks of B columns, computed on the device. */
export async function dampedDeviceFactor(H: Float32Array, n: number, B: number, dampening: number, k: Kernels): Promise<DeviceFactor> {
  const { dead, mean } = dampingOf(H, n);
  const isDead = new Uint8Array(n);
  for (const j of dead) isDead[j] = 1;
  const notes: string[] = [];
  const Hd = n > B ? await k.upload(mat(n, n, H)) : null;
  try {
    for (let attempt = 0, damp = dampening; ; attempt++, damp *= 10) {
      const lambda = damp * mean;
      try {
        const { inverses, columns } = await factorBlocks(H, Hd, n, B, lambda, isDead, k);
        if (attempt > 0) notes.push(`H was not positive definite with dampening ${dampening}; used ${damp}`);
        return { inverses, columns, dampening: damp, lambda, dead, notes, hessian: Hd };
      } catch (e) {
        if (!(e instanceof NotPositiveDefiniteError)) throw e;
        if (attempt >= 4) throw new NotPositiveDefiniteError(e.pivot, `H is not positive definite even with dampening ${damp}`);
      }
    }
  } catch (e) {
    Hd?.dispose();
    throw e;
  }
}

async function factorBlocks(H: Float32Array, Hd: ort.Tensor | null, n: number, B: number, lambda: number, isDead: Uint8Array, k: Kernels) {
  const count = Math.ceil(n / B);
  const inverses: Float64Array[] = new Array(count);
  const columns: (ort.Tensor | null)[] = new Array(count).fill(null);
  const last = (count - 1) * B;
  let D = Float64Array.from({ length: (n - last) ** 2 }, (_, i) => H[(last + Math.floor(i / (n - last))) * n + last + (i % (n - last))]);
  let A = Hd; // the trailing matrix A[:i2, :i2]
  try {
    for (let b = count - 1; ; b--) {
      const i1 = b * B;
      const w = Math.min(B, n - i1);
      const G = upperInverseDamped(D, w, i1, lambda, isDead);
      inverses[b] = G;
      if (b === 0) break;
      const step = await k.factorStep(A as ort.Tensor, mat(w, w, Float32Array.from(G)), i1, i1 - B);
      columns[b] = step.column;
      if (A !== Hd) A?.dispose();
      A = step.trailing;
      D = Float64Array.from(step.diagonal);
    }
    return { inverses, columns };
  } catch (e) {
    for (const c of columns) c?.dispose();
    throw e;
  } finally {
    if (A !== Hd) A?.dispose();
  }
}

/** G = R_bb⁻¹ for the diagonal block D (w × w, float64, overwritten) of columns i1 … i1 + w − 1: damped, then
 *  R_bb = J·chol(J·D·J)·J (J the reversal), as the host factor's reversed panels give it. */
function upperInverseDamped(D: Float64Array, w: number, i1: number, lambda: number, isDead: Uint8Array): Float64Array {
  for (let j = 0; j < w; j++) D[j * w + j] = (isDead[i1 + j] ? 1 : D[j * w + j]) + lambda;
  const L = new Float64Array(w * w);
  for (let r = 0; r < w; r++) for (let c = 0; c <= r; c++) L[r * w + c] = D[(w - 1 - r) * w + w - 1 - c];
  try {
    choleskyLowerInPlace(L, w);
  } catch (e) {
    if (e instanceof NotPositiveDefiniteError) throw new NotPositiveDefiniteError(i1 + w - 1 - e.pivot);
    throw e;
  }
  const R = D; // reused: R_bb[r, c] = L[w − 1 − r, w − 1 − c]
  for (let r = 0; r < w; r++) for (let c = 0; c < w; c++) R[r * w + c] = L[(w - 1 - r) * w + w - 1 - c];
  const G = new Float64Array(w * w);
  invertUpper(R, w, G);
  return G;
}
