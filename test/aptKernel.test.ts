// APT's per-row small SPD solves: the WebAssembly SIMD kernel (src/backend/wasm/aptLaneSolve.ts, driven by
// aptSolveRowsWasm), in float64 (two rows per vector) and in float32 (four rows, with float64 for ill-conditioned
// groups), against the JavaScript float64 kernel (aptSolveRows) and an independent float64 reference
// (test/helpers/reference.ts spdSolve), on well- and ill-conditioned SPD blocks.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { aptSolveRows, aptSolveRowsWasm, rowPool } from '../src/backend/methods/rowKernels';
import { sharedF64, sharedU8 } from '../src/backend/parallel/rowPool';
import { aptLaneSolveModule } from '../src/backend/wasm/aptLaneSolve';
import { choleskyUpper, extremeEigenvalues, matrixWithSpectrum, relDiff, Rng, spdSolve } from './helpers/reference';

after(() => rowPool.close());
const wasm64 = aptLaneSolveModule('f64x2');
const wasm32 = aptLaneSolveModule('f32x4');

interface Case {
  B: number;
  S: Float64Array;
  G: Float64Array;
  w: Float64Array;
  mask: Uint8Array;
  rows: number;
}

/** S (B×B SPD) with the given spectrum, G upper with S = GᵀG, and rows whose pruned counts cover 0, 1, B, odd
 *  and even counts, repeated counts (pairs) and unique ones (a row solved alone). */
function makeCase(B: number, eigs: number[], rows: number, seed: number): Case {
  const rng = new Rng(seed);
  const S = sharedF64(B * B);
  S.set(matrixWithSpectrum(eigs, seed));
  const G = sharedF64(B * B);
  G.set(choleskyUpper(S, B));
  const w = sharedF64(rows * B);
  for (let i = 0; i < w.length; i++) w[i] = rng.normal();
  const mask = sharedU8(rows * B);
  for (let r = 0; r < rows; r++) {
    const density = r === 0 ? 0 : r === 1 ? 1 : r === 2 ? 1 / B : rng.uniform();
    for (let k = 0; k < B; k++) mask[r * B + k] = r === 1 || (r === 2 ? k === B - 1 : rng.uniform() < density) ? 1 : 0;
  }
  return { B, S, G, w, mask, rows };
}

/** Per row: λ = S_PP⁻¹ w_P (float64 Cholesky solve), E[r, k] = Σ_i G[k, P_i]·λ_i. */
function reference({ B, S, G, w, mask, rows }: Case): Float64Array {
  const E = new Float64Array(rows * B);
  for (let r = 0; r < rows; r++) {
    const P: number[] = [];
    for (let k = 0; k < B; k++) if (mask[r * B + k]) P.push(k);
    if (!P.length) continue;
    const n = P.length;
    const SPP = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) SPP[i * n + j] = S[P[i] * B + P[j]];
    const lambda = spdSolve(SPP, n, P.map((p) => w[r * B + p]), 1);
    for (let k = 0; k < B; k++) {
      let e = 0;
      for (let i = 0; i < n; i++) e += G[k * B + P[i]] * lambda[i];
      E[r * B + k] = e;
    }
  }
  return E;
}

const logspace = (B: number, hi: number, lo: number) =>
  Array.from({ length: B }, (_, i) => hi * Math.pow(lo / hi, i / Math.max(1, B - 1)));

describe('APT per-row solves: WebAssembly SIMD kernel in float64', () => {
  const wasm = { wasm64, wasm32: null };
  test('the modules validate (WebAssembly SIMD available)', () => {
    assert.ok(WebAssembly.validate(wasm64));
    assert.ok(WebAssembly.validate(wasm32));
  });

  // Relative error of a backward-stable float64 solve ≈ cond·1e-16: the tolerances leave room above that
  // (ill: cond(S) = 1e8, so up to ≈ 1e-8 on the worst row) and are far below a wrong pivot, lane or index (O(1)).
  const cases = [
    { label: 'B=128, well-conditioned', B: 128, eigs: logspace(128, 10, 1), tol: 1e-12 },
    { label: 'B=128, ill-conditioned (cond 1e8)', B: 128, eigs: logspace(128, 1, 1e-8), tol: 1e-6 },
    { label: 'B=37 (odd width), ill-conditioned (cond 1e6)', B: 37, eigs: logspace(37, 1e3, 1e-3), tol: 1e-8 },
    { label: 'B=2', B: 2, eigs: [3, 0.5], tol: 1e-14 },
  ];
  for (const { label, B, eigs, tol } of cases) {
    test(label, async (t) => {
      const c = makeCase(B, eigs, 160, B + 11);
      const cond = extremeEigenvalues(c.S, B).cond;
      const ref = reference(c);
      const js = new Float64Array(c.rows * B);
      aptSolveRows(0, c.rows, { ...c, E: js });
      const inline = new Float64Array(c.rows * B);
      aptSolveRowsWasm(0, c.rows, { ...c, E: inline, ...wasm });
      const pooled = sharedF64(c.rows * B);
      await rowPool.run('aptSolveRowsWasm', c.rows, { ...c, E: pooled, ...wasm });
      const dRef = relDiff(inline, ref);
      const dJs = relDiff(inline, js);
      t.diagnostic(`cond(S) ≈ ${cond.toExponential(1)}: ‖E_wasm − E_ref‖/‖E_ref‖ = ${dRef.toExponential(2)}, vs the JS kernel ${dJs.toExponential(2)} (JS vs ref ${relDiff(js, ref).toExponential(2)})`);
      assert.ok(dRef < tol, `wasm vs float64 reference: ${dRef}`);
      assert.ok(dJs < tol, `wasm vs JS kernel: ${dJs}`);
      assert.deepEqual(pooled, Float64Array.from(inline), 'the pool (worker threads) gives the same results as an inline call');
      // Rows with nothing pruned stay zero; every row is compared on its own too (a swapped pair would show).
      assert.ok(inline.subarray(0, B).every((v) => v === 0));
      for (let r = 1; r < c.rows; r++) {
        const d = relDiff(inline.subarray(r * B, (r + 1) * B), ref.subarray(r * B, (r + 1) * B));
        assert.ok(d < tol * 100, `row ${r}: ${d}`);
      }
    });
  }

  test('a block whose S_PP is not positive definite fails with the pivot named', () => {
    const B = 8;
    const c = makeCase(B, logspace(B, 2, 1), 4, 5);
    c.S[3 * B + 3] = -1; // pruning column 3 now meets a negative pivot
    c.mask.fill(0);
    c.mask[2 * B + 3] = 1;
    for (const wasm32OrNot of [null, wasm32]) {
      assert.throws(() => aptSolveRowsWasm(0, c.rows, { ...c, E: new Float64Array(c.rows * B), wasm64, wasm32: wasm32OrNot }), /S_PP not positive definite in row 2 or 2 \(pivot 0\)/);
    }
  });
});

describe('APT per-row solves: WebAssembly SIMD kernel in float32, float64 where a group is ill-conditioned', () => {
  // float32's error is ≈ cond(S_PP)·6e-8: tiny for well-conditioned blocks. Rows whose pivots spread by more than
  // √1e3 (the squared spread bounds cond(S_PP) from below) are redone in float64, so even a block with cond(S) = 1e8
  // comes out accurate row by row, with some rows left in float32 and some redone.
  const cases = [
    { label: 'B=128, well-conditioned', B: 128, eigs: logspace(128, 10, 1), tol: 1e-5, redone: 'none' },
    { label: 'B=128, ill-conditioned (cond 1e8)', B: 128, eigs: logspace(128, 1, 1e-8), tol: 1e-4, redone: 'some' },
    { label: 'B=37 (odd width), ill-conditioned (cond 1e6)', B: 37, eigs: logspace(37, 1e3, 1e-3), tol: 1e-4, redone: 'some' },
    { label: 'B=2', B: 2, eigs: [3, 0.5], tol: 1e-6, redone: 'none' },
  ];
  for (const { label, B, eigs, tol, redone } of cases) {
    test(label, async (t) => {
      const c = makeCase(B, eigs, 160, B + 11);
      const ref = reference(c);
      const stats = new Int32Array(new SharedArrayBuffer(8));
      const inline = new Float64Array(c.rows * B);
      aptSolveRowsWasm(0, c.rows, { ...c, E: inline, wasm64, wasm32, stats });
      const pooled = sharedF64(c.rows * B);
      await rowPool.run('aptSolveRowsWasm', c.rows, { ...c, E: pooled, wasm64, wasm32 });
      let worst = 0;
      for (let r = 1; r < c.rows; r++) worst = Math.max(worst, relDiff(inline.subarray(r * B, (r + 1) * B), ref.subarray(r * B, (r + 1) * B)));
      t.diagnostic(`‖E − E_ref‖/‖E_ref‖ = ${relDiff(inline, ref).toExponential(2)}, worst row ${worst.toExponential(2)}; rows solved in float32 ${stats[0]}, redone in float64 ${stats[1]}`);
      assert.ok(worst < tol, `worst row vs float64 reference: ${worst}`);
      assert.ok(stats[0] > 0, 'rows were solved in float32');
      if (redone === 'none') assert.equal(stats[1], 0, 'no row needed float64');
      else assert.ok(stats[1] > 0 && stats[1] < stats[0], 'some rows, not all, were redone in float64');
      assert.deepEqual(pooled, Float64Array.from(inline), 'the pool (worker threads) gives the same results as an inline call');
      assert.ok(inline.subarray(0, B).every((v) => v === 0), 'a row with nothing pruned has E = 0');
    });
  }
});
