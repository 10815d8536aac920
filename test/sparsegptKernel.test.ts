// SparseGPT's per-row column loop: the WebAssembly SIMD kernel (src/backend/wasm/sparsegptSweep.ts, driven by
// sparsegptSweepRowsWasm) against the JavaScript kernel (sparsegptSweepRows). Both do the same float64
// operations on every weight in the same order, so E and the mask must agree bit for bit — on unstructured
// and fixed masks and on N:M chosen inside the loop, odd and even widths and row counts, row ranges that do
// not start at 0, and several of the wasm driver's row chunks.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { rowPool, SparsegptRowArgs, sparsegptSweepRows, sparsegptSweepRowsWasm } from '../src/backend/methods/rowKernels';
import { sharedF64, sharedU8 } from '../src/backend/parallel/rowPool';
import { sparsegptSweepModule } from '../src/backend/wasm/sparsegptSweep';
import { choleskyUpper, matrixWithSpectrum, Rng } from './helpers/reference';

after(() => rowPool.close());
const wasm = sparsegptSweepModule();

type MaskKind = 'random' | 'empty' | 'full' | 'mixed';

/** G: the upper Cholesky factor of an SPD matrix (as SparseGPT's U[b, b]), its strictly lower triangle filled
 *  with garbage (NaN, ±Infinity, large numbers) that neither kernel may let into E; rows of normal weights
 *  with some exact ±0 and repeated values (N:M ties); E pre-filled with sentinels that must survive outside
 *  the rows a kernel runs on, and be overwritten (with 0 where nothing is pruned) inside them. */
function makeBlock(B: number, rows: number, seed: number, kind: MaskKind, nm?: { n: number; m: number; groupsEnd: number }): SparsegptRowArgs {
  const rng = new Rng(seed);
  const eigs = Array.from({ length: B }, (_, i) => 10 * Math.pow(1e-3, i / Math.max(1, B - 1)));
  const G = sharedF64(B * B);
  G.set(choleskyUpper(matrixWithSpectrum(eigs, seed), B));
  const junk = [Number.NaN, Infinity, -Infinity, 1e300, -7];
  for (let i = 1; i < B; i++) for (let j = 0; j < i; j++) G[i * B + j] = junk[(i + j) % junk.length];
  const w = sharedF64(rows * B);
  for (let k = 0; k < w.length; k++) {
    const u = rng.uniform();
    w[k] = u < 0.03 ? -0 : u < 0.05 ? 0 : u < 0.1 ? 0.25 : rng.normal();
  }
  if (rows > 4) w.fill(0, 4 * B, 5 * B); // row 4: all scores tie (N:M takes the leftmost)
  const mask = sharedU8(rows * B);
  for (let r = 0; r < rows; r++) {
    const density = kind === 'empty' ? 0 : kind === 'full' ? 1 : kind === 'random' ? 0.5 : r % 3 === 0 ? 0 : r % 3 === 1 ? 1 : rng.uniform();
    for (let k = 0; k < B; k++) mask[r * B + k] = rng.uniform() < density ? 1 : 0;
  }
  const E = sharedF64(rows * B);
  for (let k = 0; k < E.length; k++) E[k] = 1000 + k;
  return { B, w, G, mask, E, n: nm?.n ?? 0, m: nm?.m ?? 0, groupsEnd: nm?.groupsEnd ?? 0 };
}

const copy = (a: SparsegptRowArgs): SparsegptRowArgs => {
  const E = sharedF64(a.E.length);
  E.set(a.E);
  const mask = sharedU8(a.mask.length);
  mask.set(a.mask);
  return { ...a, E, mask };
};
const bytes = (a: Float64Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Runs both kernels on copies of the block over rows [start, end) and asserts identical E and mask bytes. */
function assertSame(block: SparsegptRowArgs, start: number, end: number): { js: SparsegptRowArgs; wa: SparsegptRowArgs } {
  const js = copy(block);
  const wa = copy(block);
  sparsegptSweepRows(start, end, js);
  sparsegptSweepRowsWasm(start, end, { ...wa, wasm });
  const B = block.B;
  for (let r = 0; r < block.E.length / B; r++) {
    const row = (a: SparsegptRowArgs) => bytes(a.E.subarray(r * B, (r + 1) * B));
    assert.ok(row(wa).equals(row(js)), `row ${r}: E differs (wasm ${wa.E.subarray(r * B, (r + 1) * B).join(',')} vs JS ${js.E.subarray(r * B, (r + 1) * B).join(',')})`);
  }
  assert.deepEqual(wa.mask, js.mask, 'mask');
  return { js, wa };
}

describe('SparseGPT column loop: WebAssembly SIMD kernel', () => {
  test('the module validates (WebAssembly SIMD available)', () => {
    assert.ok(WebAssembly.validate(wasm));
  });

  const unstructured: [label: string, B: number, rows: number, kind: MaskKind, start: number, end: number][] = [
    ['B=128, 50% random mask, 517 rows (3 chunks), rows 3..515', 128, 517, 'random', 3, 515],
    ['B=128, rows with no, all and random pruned weights, 96 rows', 128, 96, 'mixed', 0, 96],
    ['B=37 (odd), random mask, 41 rows (odd), rows 1..40', 37, 41, 'random', 1, 40],
    ['B=37, mixed rows, 20 rows, rows 5..6', 37, 20, 'mixed', 5, 6],
    ['B=128, empty mask', 128, 33, 'empty', 0, 33],
    ['B=128, full mask', 128, 33, 'full', 2, 31],
    ['B=5, full mask', 5, 7, 'full', 0, 7],
    ['B=1, full mask', 1, 9, 'full', 0, 9],
    ['B=2, mixed rows', 2, 11, 'mixed', 0, 11],
  ];
  for (const [label, B, rows, kind, start, end] of unstructured) {
    test(`unstructured / fixed mask: ${label}`, () => {
      const block = makeBlock(B, rows, B * 31 + rows, kind);
      const { js } = assertSame(block, start, end);
      // The comparison has teeth: in rows [start, end) E holds an error at every pruned weight and 0 elsewhere (the
      // sweep reuses E across blocks without clearing it); other rows keep their sentinels.
      let errors = 0;
      let pruned = 0;
      for (let r = 0; r < rows; r++) {
        for (let k = 0; k < B; k++) {
          const inRange = r >= start && r < end;
          const isPruned = inRange && block.mask[r * B + k] === 1;
          pruned += isPruned ? 1 : 0;
          const e = js.E[r * B + k];
          if (!inRange) assert.equal(e, block.E[r * B + k], `E[${r}, ${k}] outside the rows: untouched`);
          else if (!isPruned) assert.equal(e, 0, `E[${r}, ${k}] not pruned: 0`);
          else if (e !== block.E[r * B + k]) errors++; // 0 where the weight was exactly 0
        }
      }
      assert.equal(errors, pruned, 'every pruned weight got its error');
      if (kind !== 'empty') assert.ok(pruned > 0);
    });
  }

  const nm: [label: string, B: number, rows: number, n: number, m: number, groupsEnd: number, start: number, end: number][] = [
    ['2:4, B=128, 301 rows, rows 1..300', 128, 301, 2, 4, 128, 1, 300],
    ['4:8, B=128, 64 rows', 128, 64, 4, 8, 128, 0, 64],
    ['1:3, B=37 (odd; a partial group at 36 stays as given), 19 rows', 37, 19, 1, 3, 36, 0, 19],
    ['2:4, B=40, groups end at 22 (columns from 20 on dense as given), 10 rows, rows 2..9', 40, 10, 2, 4, 22, 2, 9],
    ['4:4 (all pruned), B=16', 16, 8, 4, 4, 16, 0, 8],
  ];
  for (const [label, B, rows, n, m, groupsEnd, start, end] of nm) {
    test(`N:M chosen in the loop: ${label}`, () => {
      const block = makeBlock(B, rows, B + 7 * n + m, 'mixed', { n, m, groupsEnd });
      const { js } = assertSame(block, start, end);
      if (rows > 4 && start <= 4 && end > 4) {
        for (let g = 0; g + m <= groupsEnd; g += m) {
          assert.deepEqual([...js.mask.subarray(4 * B + g, 4 * B + g + m)], Array.from({ length: m }, (_, k) => (k < n ? 1 : 0)), `row 4 (all zero), group ${g}: ties go left`);
        }
      }
      // Every full group below groupsEnd of every row in range holds exactly n pruned weights; the rest of the
      // mask is as given.
      for (let r = 0; r < rows; r++) {
        for (let g = 0; g < B; g += m) {
          const chosen = r >= start && r < end && g + m <= groupsEnd;
          for (let k = g; k < Math.min(B, g + m); k++) {
            if (!chosen) assert.equal(js.mask[r * B + k], block.mask[r * B + k], `mask[${r}, ${k}] as given`);
          }
          if (chosen) assert.equal(js.mask.subarray(r * B + g, r * B + g + m).reduce((s, v) => s + v, 0), n, `row ${r}, group ${g}`);
        }
      }
    });
  }

  test('N:M groups whose scores are all NaN get no pruned weight, in both kernels', () => {
    const block = makeBlock(16, 4, 3, 'empty', { n: 2, m: 4, groupsEnd: 16 });
    block.w.fill(Number.NaN, 16 + 4, 16 + 8); // row 1, group at column 4
    const { js } = assertSame(block, 0, 4);
    assert.deepEqual([...js.mask.subarray(16 + 4, 16 + 8)], [0, 0, 0, 0]);
  });

  test('on the worker pool (kernels shipped as source text), as inline', async () => {
    const block = makeBlock(128, 700, 99, 'random');
    const js = copy(block);
    sparsegptSweepRows(0, 700, js);
    const pooled = copy(block);
    await rowPool.run('sparsegptSweepRowsWasm', 700, { ...pooled, wasm });
    assert.ok(bytes(pooled.E).equals(bytes(js.E)));
    const nmBlock = makeBlock(128, 300, 5, 'empty', { n: 2, m: 4, groupsEnd: 128 });
    const nmJs = copy(nmBlock);
    sparsegptSweepRows(0, 300, nmJs);
    const nmPooled = copy(nmBlock);
    await rowPool.run('sparsegptSweepRowsWasm', 300, { ...nmPooled, wasm });
    assert.ok(bytes(nmPooled.E).equals(bytes(nmJs.E)));
    assert.deepEqual(nmPooled.mask, nmJs.mask);
  });
});
