// The inverse-Hessian factor and the recursive Cholesky (src/backend/linalg), and the Hessian accumulator
// (src/backend/calibration/hessian.ts), against float64 references in test/helpers/reference.ts.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { HessianAccumulator } from './helpers/hessian';
import { choleskyWithInverse, dampedCholeskyFactor, invertUpper, NotPositiveDefiniteError } from '../src/backend/linalg/cholesky';
import { DeviceFactor, dampedDeviceFactor, releaseDeviceFactor } from '../src/backend/linalg/deviceFactor';
import { Kernels, mat } from '../src/backend/linalg/kernels';
import { Engine } from '../src/backend/onnx/session';
import {
  activationSource, addGram, choleskyUpper, dampedInverseFactor, extremeEigenvalues, matmul, matrixWithSpectrum, prepareHessian, randomHessian,
  relDiff, spdInverse, symmetrizeUpper,
} from './helpers/reference';

const engine = new Engine({ device: 'cpu', threads: 0 });
const kernels = new Kernels(engine);
after(() => engine.release());

/** max |(UᵀU)·A − I| for upper-triangular U (n×n, row-major), in float64. */
function inverseResidual(U: ArrayLike<number>, A: ArrayLike<number>, n: number): number {
  const M = new Float64Array(n * n); // UᵀU, using U[k][i] = 0 for k > i
  for (let k = 0; k < n; k++) {
    for (let i = k; i < n; i++) {
      const uki = U[k * n + i];
      if (uki === 0) continue;
      for (let j = k; j < n; j++) M[i * n + j] += uki * U[k * n + j];
    }
  }
  const P = matmul(M, A, n, n, n);
  let worst = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) worst = Math.max(worst, Math.abs(P[i * n + j] - (i === j ? 1 : 0)));
  return worst;
}

function isUpperTriangular(U: ArrayLike<number>, n: number): boolean {
  for (let i = 1; i < n; i++) for (let j = 0; j < i; j++) if (U[i * n + j] !== 0) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------------------
// (a) dampedInverseFactor: H_damped⁻¹ = UᵀU

describe('dampedInverseFactor', () => {
  // BASE = 128 in cholesky.ts: 50 is one leaf, 200 and 300 recurse once or twice (300 → 128 + 172 → 128 + 44),
  // 700 recurses three levels deep with a ragged last leaf.
  //
  // Tolerance. The residual of an inverse computed in fp32 by a backward-stable method is about
  // c·n·eps32·cond(H_damped) in the worst case, with eps32 = 6e-8. The 1% dampening caps cond(H_damped) at
  // λmax/(0.01·mean diag H) ≤ 100·n, and for these Hessians it is 1e3–2e4 (measured below), so the bound is
  // ~1e-3 at worst; observed residuals are ~1e-5. A bug in block placement, a transposed factor or a missed
  // Schur update gives O(1) entries. We assert max |UᵀU·H_damped − I| < 1e-3 and, since the Cholesky factor
  // is unique, also that U agrees with the float64 factor chol_upper(inv(H_damped)) to 1e-4 relative.
  const cases: { n: number; kind: 'well' | 'ill' | 'dead' | 'ill+dead' }[] = [
    ...[50, 200, 300].flatMap((n) => (['well', 'ill', 'dead'] as const).map((kind) => ({ n, kind }))),
    { n: 700, kind: 'ill+dead' },
  ];
  for (const { n, kind } of cases) {
    test(`n=${n}, ${kind} Hessian`, async (t) => {
      const dead = kind.includes('dead') ? [0, 7, Math.floor(n / 2), n - 1] : [];
      const ill = kind.includes('ill');
      const h = randomHessian(n, 1000 + n, {
        scaleDecades: ill ? 2 : 0,
        dead,
        // tokens ≈ 1.5–3× cols: full rank, ill-conditioning comes from the feature scales
        sequences: Math.ceil(((n > 300 ? 1.5 : 3) * n) / 16),
      });
      const { Hd, dead: deadRef } = prepareHessian(h.H, n, 0.01);
      let condRaw = NaN;
      if (!dead.length) condRaw = extremeEigenvalues(Float64Array.from(h.H), n).cond; // singular with dead columns
      if (ill && !dead.length) assert.ok(condRaw > 3e5, `ill-conditioned case should have cond(H) ~1e6 before dampening, got ${condRaw.toExponential(2)}`);
      const condDamped = extremeEigenvalues(Hd, n).cond;

      const f = await dampedInverseFactor(h.H, n, 0.01, kernels);
      assert.equal(f.U.rows, n);
      assert.equal(f.U.cols, n);
      assert.deepEqual(f.dead, deadRef, 'dead columns');
      assert.deepEqual(f.dead, dead, 'dead columns are exactly the all-zero activation features');
      assert.equal(f.dampening, 0.01);
      assert.deepEqual(f.notes, []);
      const U = f.U.toMat().data;
      assert.ok(isUpperTriangular(U, n), 'U is upper triangular');
      // The sweep reads U by row ranges straight from the factor's panels: any range equals the full matrix's.
      for (const [r, c0, c1] of [[0, 0, n], [n - 1, 0, n], [1, n >> 1, n], [n >> 1, 3, n - 2], [n - 2, n - 2, n]]) {
        const row = new Float64Array(c1 - c0 + 2).fill(NaN);
        f.U.row(r, c0, c1, row, 1);
        assert.deepEqual(Array.from(row.subarray(1, -1)), Array.from(U.subarray(r * n + c0, r * n + c1)), `U.row(${r}, ${c0}, ${c1})`);
        assert.ok(Number.isNaN(row[0]) && Number.isNaN(row[row.length - 1]), 'writes only its range');
      }
      const residual = inverseResidual(U, Hd, n);
      const vsRef = n <= 300 ? relDiff(U, choleskyUpper(spdInverse(Hd, n), n)) : NaN;
      t.diagnostic(`cond(H)=${condRaw.toExponential(2)} cond(H_damped)=${condDamped.toExponential(2)} max|UᵀU·Hd−I|=${residual.toExponential(2)} ‖U−U_ref‖/‖U_ref‖=${vsRef.toExponential(2)}`);
      assert.ok(residual < 1e-3, `max |UᵀU·H_damped − I| = ${residual}`);
      if (n <= 300) assert.ok(vsRef < 1e-4, `U vs float64 reference: ${vsRef}`);
    });
  }
});

// ---------------------------------------------------------------------------------------------------------
// (a') dampedCholeskyFactor: H_damped = R·Rᵀ, and R⁻¹ = U (what the left-looking sweep relies on)

describe('dampedCholeskyFactor', () => {
  // 300 and 700 cross panel and leaf boundaries; 'ill+dead' also has dead columns and a ragged last leaf.
  for (const { n, kind } of [{ n: 50, kind: 'well' }, { n: 300, kind: 'ill' }, { n: 700, kind: 'ill+dead' }] as const) {
    test(`n=${n}, ${kind} Hessian: R upper, R·Rᵀ = H_damped, R⁻¹ = dampedInverseFactor's U`, async (t) => {
      const dead = kind.includes('dead') ? [0, 7, Math.floor(n / 2), n - 1] : [];
      const h = randomHessian(n, 3000 + n, { scaleDecades: kind.includes('ill') ? 2 : 0, dead, sequences: Math.ceil((1.5 * n) / 16) });
      const { Hd } = prepareHessian(h.H, n, 0.01);
      const f = await dampedCholeskyFactor(h.H, n, 0.01, kernels);
      assert.deepEqual(f.dead, dead);
      assert.equal(f.dampening, 0.01);
      const R = f.R.toMat().data;
      assert.ok(isUpperTriangular(R, n), 'R is upper triangular');
      // R·Rᵀ against H_damped, relative to H_damped's largest entry (fp32 factorisation: ~1e-6 expected).
      const worst = factorResidual(R, Hd, n);
      // R⁻¹ in float64 (invertUpper) is the inverse factor U, up to fp32 rounding of the two factorisations.
      const Rinv = new Float64Array(n * n);
      invertUpper(Float64Array.from(R), n, Rinv);
      const U = (await dampedInverseFactor(h.H, n, 0.01, kernels)).U.toMat().data;
      const vsU = relDiff(Rinv, U);
      t.diagnostic(`max|R·Rᵀ − Hd|/max|Hd| = ${worst.toExponential(2)}, ‖R⁻¹ − U‖/‖U‖ = ${vsU.toExponential(2)}`);
      assert.ok(worst < 1e-5, `R·Rᵀ vs H_damped: ${worst}`);
      assert.ok(vsU < 1e-3, `R⁻¹ vs U: ${vsU}`);
    });
  }

  test('invertUpper: X·U = I in float64 for a random upper-triangular matrix (with zeros above the diagonal)', () => {
    const n = 37;
    const U = new Float64Array(n * n);
    let seed = 7;
    const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647) - 0.5;
    for (let i = 0; i < n; i++) for (let j = i; j < n; j++) U[i * n + j] = i === j ? 1 + Math.abs(rand()) : (j % 5 === 0 ? 0 : rand());
    const X = new Float64Array(n * n).fill(NaN);
    invertUpper(U, n, X);
    assert.ok(isUpperTriangular(X, n), 'X upper triangular');
    const P = matmul(X, U, n, n, n);
    let worst = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) worst = Math.max(worst, Math.abs(P[i * n + j] - (i === j ? 1 : 0)));
    assert.ok(worst < 1e-12, `max |X·U − I| = ${worst}`);
  });
});

// (a'') dampedDeviceFactor: the same R, computed from the last block to the first with the trailing matrix and R's
// columns left where the engine keeps outputs (WebGPU; here, on the CPU provider, the same graph calls on the host)

/** R (n × n, float64) assembled from a device factor: R[b, b] = G_b⁻¹, R[:i1, b] its column tensor. */
async function assembleR(f: DeviceFactor, n: number, B: number): Promise<Float64Array> {
  const R = new Float64Array(n * n);
  for (let b = 0; b * B < n; b++) {
    const i1 = b * B;
    const w = Math.min(B, n - i1);
    const Rbb = new Float64Array(w * w);
    invertUpper(f.inverses[b], w, Rbb);
    for (let r = 0; r < w; r++) for (let c = 0; c < w; c++) R[(i1 + r) * n + i1 + c] = Rbb[r * w + c];
    const col = f.columns[b];
    if (b === 0) assert.equal(col, null);
    else {
      const data = mat(i1, w);
      await kernels.download(col as NonNullable<typeof col>, data);
      for (let p = 0; p < i1; p++) for (let c = 0; c < w; c++) R[p * n + i1 + c] = data.data[p * w + c];
    }
  }
  return R;
}

describe('dampedDeviceFactor', () => {
  // 300 in blocks of 128 (a narrow last block, factored first); 256 in blocks of 64; dead columns in a middle block.
  for (const { n, B, dead } of [{ n: 300, B: 128, dead: [] }, { n: 256, B: 64, dead: [0, 70, 255] }]) {
    test(`n=${n}, blocks of ${B}: R·Rᵀ = H_damped, and the host factor's R`, async (t) => {
      const h = randomHessian(n, 4000 + n, { scaleDecades: 2, dead, sequences: Math.ceil((1.5 * n) / 16) });
      const { Hd } = prepareHessian(h.H, n, 0.01);
      const f = await dampedDeviceFactor(h.H, n, B, 0.01, kernels);
      const host = await dampedCholeskyFactor(h.H, n, 0.01, kernels);
      assert.deepEqual(f.dead, dead);
      assert.equal(f.lambda, host.lambda);
      const R = await assembleR(f, n, B);
      releaseDeviceFactor(f);
      assert.ok(isUpperTriangular(R, n), 'R is upper triangular');
      const worst = factorResidual(R, Hd, n);
      const vsHost = relDiff(R, host.R.toMat().data);
      t.diagnostic(`max|R·Rᵀ − Hd|/max|Hd| = ${worst.toExponential(2)}, ‖R − R_host‖/‖R_host‖ = ${vsHost.toExponential(2)}`);
      assert.ok(worst < 1e-5, `R·Rᵀ vs H_damped: ${worst}`);
      assert.ok(vsHost < 1e-5, `R vs the host factor's: ${vsHost}`);
    });
  }

  test('retries with 10× the dampening, and names the failing column when even 100×mean is not enough', async () => {
    const n = 200;
    const H = Float32Array.from(matrixWithSpectrum(Array.from({ length: n }, (_, i) => (i === 60 ? -0.05 : 1)), 11));
    const f = await dampedDeviceFactor(H, n, 64, 0.01, kernels);
    releaseDeviceFactor(f);
    assert.ok(Math.abs(f.dampening - 0.1) < 1e-12, `dampening ${f.dampening}`);
    assert.match(f.notes[0], /not positive definite with dampening 0\.01; used 0\.1/);
    // A tridiagonal with one diagonal entry −200 (mean diag 0.99: λ = 99 at 100×): the blocks after it (factored
    // first) are fine, its own fails at that column, as on the host.
    const A = new Float32Array(n * n);
    for (let i = 0; i < n; i++) A[i * n + i] = 2;
    for (let i = 0; i + 1 < n; i++) A[i * n + i + 1] = A[(i + 1) * n + i] = 0.5;
    A[70 * n + 70] = -200;
    for (const factor of [() => dampedDeviceFactor(A, n, 64, 0.01, kernels), () => dampedCholeskyFactor(A, n, 0.01, kernels)]) {
      await assert.rejects(factor(), (e: unknown) => {
        assert.ok(e instanceof NotPositiveDefiniteError, `got ${e}`);
        assert.match(e.message, /even with dampening 100 \(pivot 70\)/);
        return true;
      });
    }
  });
});

/** max |R·Rᵀ − Hd| / max |Hd| (n × n, float64). */
function factorResidual(R: ArrayLike<number>, Hd: ArrayLike<number>, n: number): number {
  const RRt = matmul(R, transposed(R, n), n, n, n);
  let scale = 0;
  for (let i = 0; i < n * n; i++) scale = Math.max(scale, Math.abs(Hd[i]));
  let worst = 0;
  for (let i = 0; i < n * n; i++) worst = Math.max(worst, Math.abs(RRt[i] - Hd[i]) / scale);
  return worst;
}

function transposed(a: ArrayLike<number>, n: number): Float64Array {
  const t = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = a[i * n + j];
  return t;
}

// ---------------------------------------------------------------------------------------------------------
// (b) choleskyWithInverse: L·Lᵀ = A, L·X = I

describe('choleskyWithInverse', () => {
  // Panel width 128 (what n < 2048 gets) and 256 (n >= 2048: each 256-wide diagonal block is itself factored
  // in 128-wide panels), at sizes with a partial last panel.
  for (const [n, nb] of [[50, 128], [200, 128], [300, 128], [300, 256], [600, 256]] as const) {
    test(`n=${n}, panels of ${nb}: L·Lᵀ = A and L·X = I`, async (t) => {
      const { Hd: A } = prepareHessian(randomHessian(n, 2000 + n).H, n, 0.01);
      const { L, X } = await choleskyWithInverse(mat(n, n, Float32Array.from(A)), kernels, nb);
      const A32 = Float64Array.from(Float32Array.from(A)); // what the code was given
      for (let i = 0; i < n; i++) {
        for (let j = i + 1; j < n; j++) {
          assert.equal(L.data[i * n + j], 0, `L[${i}][${j}] above the diagonal`);
          assert.equal(X.data[i * n + j], 0, `X[${i}][${j}] above the diagonal`);
        }
      }
      const LLt = matmul(L.data, Array.from({ length: n * n }, (_, k) => L.data[(k % n) * n + Math.floor(k / n)]), n, n, n);
      let maxA = 0;
      let errA = 0;
      for (let k = 0; k < n * n; k++) {
        maxA = Math.max(maxA, Math.abs(A32[k]));
        errA = Math.max(errA, Math.abs(LLt[k] - A32[k]));
      }
      const LX = matmul(L.data, X.data, n, n, n);
      let errI = 0;
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) errI = Math.max(errI, Math.abs(LX[i * n + j] - (i === j ? 1 : 0)));
      t.diagnostic(`max|LLᵀ−A|/max|A|=${(errA / maxA).toExponential(2)} max|LX−I|=${errI.toExponential(2)}`);
      // fp32 factors: each entry of LLᵀ carries ~n·eps32 relative error of its terms.
      assert.ok(errA / maxA < 1e-5, `L·Lᵀ − A: ${errA / maxA}`);
      // cond(L) = sqrt(cond(A)) ≈ 30 here, so the triangular inverse is good to ~1e-6.
      assert.ok(errI < 1e-4, `L·X − I: ${errI}`);
    });
  }
});

// ---------------------------------------------------------------------------------------------------------
// (c) non-positive-definite input

describe('non-positive-definite input', () => {
  test('choleskyWithInverse throws NotPositiveDefiniteError with the global pivot index', async () => {
    // n = 300 in panels of 128 (128 | 128 | 44) or 256 (a 256-wide diagonal block factored in panels of 128,
    // then 44): the failing pivot is inside a later or nested block, so the reported index checks the offsets.
    const n = 300;
    for (const [bad, nb] of [[3, 128], [200, 128], [299, 128], [200, 256], [299, 256]]) {
      const A = new Float32Array(n * n);
      for (let i = 0; i < n; i++) A[i * n + i] = 2;
      for (let i = 0; i + 1 < n; i++) A[i * n + i + 1] = A[(i + 1) * n + i] = 0.5;
      A[bad * n + bad] = -1;
      await assert.rejects(choleskyWithInverse(mat(n, n, A), kernels, nb), (e: unknown) => {
        assert.ok(e instanceof NotPositiveDefiniteError, `got ${e}`);
        // a tridiagonal with a bad diagonal entry fails exactly at that pivot (the earlier ones are > 0)
        assert.equal(e.pivot, bad);
        assert.match(e.message, new RegExp(`pivot ${bad}\\b`));
        return true;
      });
    }
  });

  test('choleskyWithInverse rejects a dense indefinite matrix (one eigenvalue −1)', async () => {
    const n = 200;
    const eigs = Array.from({ length: n }, (_, i) => (i === 17 ? -1 : 1 + i / n));
    const A = Float32Array.from(matrixWithSpectrum(eigs, 5));
    await assert.rejects(choleskyWithInverse(mat(n, n, A), kernels), NotPositiveDefiniteError);
  });

  for (const { negative, expected } of [{ negative: -0.05, expected: 0.1 }, { negative: -0.5, expected: 1 }]) {
    test(`dampedInverseFactor retries: eigenvalue ${negative} needs dampening ${expected}`, async (t) => {
      // Spectrum: n−1 eigenvalues 1 and one negative; mean diag H = trace/n ≈ 1, so λ = d·mean ≈ d.
      // 1% leaves the negative eigenvalue negative; `expected` (10× or 100×) is the first that fixes it.
      const n = 200;
      const eigs = Array.from({ length: n }, (_, i) => (i === 60 ? negative : 1));
      const H = Float32Array.from(matrixWithSpectrum(eigs, 11));
      const f = await dampedInverseFactor(H, n, 0.01, kernels);
      t.diagnostic(`dampening=${f.dampening} notes=${JSON.stringify(f.notes)}`);
      assert.ok(Math.abs(f.dampening - expected) < 1e-12, `dampening ${f.dampening}, expected ${expected}`);
      assert.equal(f.notes.length, 1);
      assert.match(f.notes[0], /not positive definite/);
      assert.match(f.notes[0], /0\.01/);
      assert.ok(f.notes[0].includes(String(f.dampening)), `note names the dampening used: ${f.notes[0]}`);
      const { Hd } = prepareHessian(H, n, f.dampening);
      const residual = inverseResidual(f.U.toMat().data, Hd, n);
      assert.ok(residual < 1e-3, `U inverts H + ${f.dampening}·mean·I: residual ${residual}`);
    });
  }

  test('dampedInverseFactor gives up after 4 retries (1% … 100×mean) and rethrows NotPositiveDefiniteError', async () => {
    // mean diag = (299 − 200)/300 = 0.33; even 100·0.33 = 33 < 200.
    const n = 300;
    const eigs = Array.from({ length: n }, (_, i) => (i === 3 ? -200 : 1));
    const H = Float32Array.from(matrixWithSpectrum(eigs, 13));
    await assert.rejects(dampedInverseFactor(H, n, 0.01, kernels), NotPositiveDefiniteError);
  });
});

// ---------------------------------------------------------------------------------------------------------
// (d) HessianAccumulator

describe('HessianAccumulator', () => {
  test('H = (2/N)·Σ XᵀX over batches and colNorm2 = (1/N)·Σ_tokens x_j² (N = sequences)', async (t) => {
    const cols = 40;
    const acc = new HessianAccumulator(cols, engine);
    const source = activationSource(cols, 99, { dead: [5] });
    // (tokens, sequences) per batch: uneven, so the running rescale n/(n+b) matters.
    const batches: [number, number][] = [[32, 2], [48, 3], [16, 1], [80, 5]];
    const S = new Float64Array(cols * cols);
    const norms = new Float64Array(cols);
    let N = 0;
    let worstH = 0;
    for (const [tokens, seqs] of batches) {
      const X = Float32Array.from(source(tokens));
      await acc.addBatch(X, seqs);
      const X64 = Float64Array.from(X);
      addGram(S, X64, cols);
      for (let k = 0; k < X64.length; k++) norms[k % cols] += X64[k] ** 2;
      N += seqs;
      assert.equal(acc.nsamples, N);
      // check after every batch, not only at the end
      const ref = Float64Array.from(S);
      symmetrizeUpper(ref, cols);
      let scale = 0;
      let err = 0;
      for (let k = 0; k < ref.length; k++) {
        ref[k] *= 2 / N;
        scale = Math.max(scale, Math.abs(ref[k]));
        err = Math.max(err, Math.abs(acc.H[k] - ref[k]));
      }
      worstH = Math.max(worstH, err / scale);
      let errN = 0;
      let scaleN = 0;
      for (let j = 0; j < cols; j++) {
        scaleN = Math.max(scaleN, norms[j] / N);
        errN = Math.max(errN, Math.abs(acc.colNorm2[j] - norms[j] / N));
      }
      assert.ok(err / scale < 1e-5, `H after ${N} sequences: max error ${err / scale} of max |H|`);
      assert.ok(errN / scaleN < 1e-5, `colNorm2 after ${N} sequences: ${errN / scaleN}`);
    }
    t.diagnostic(`worst max|H − (2/N)ΣXᵀX| / max|H| = ${worstH.toExponential(2)}`);
    assert.equal(acc.H[5 * cols + 5], 0, 'a dead feature has an exactly zero diagonal');
    assert.equal(acc.colNorm2[5], 0);
    for (let j = 0; j < cols; j++) {
      assert.ok(Math.abs(acc.H[j * cols + j] - 2 * acc.colNorm2[j]) <= 1e-5 * acc.H[j * cols + j], `diag H = 2·colNorm2 at ${j}`);
    }
  });
});
