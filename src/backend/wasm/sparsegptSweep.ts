// SparseGPT's per-row column loop (methods/rowKernels.ts sparsegptSweepRows) as a WebAssembly SIMD kernel,
// with the very same float64 operations on every weight, so the results are bit-identical to the
// JavaScript kernel: for each pruned column i in order, err = cur[i] / G[i,i], E[i] = err, and
// cur[j] −= err·G[i,j] for j > i (a multiply, then a subtraction: baseline wasm SIMD has no fused
// multiply-add, and neither has JavaScript).
//
// Rows run one at a time and the vector runs along the row (f64x2 over columns), so rows with different masks
// never waste a lane. Branches that depend on the mask are what cost (a random mask mispredicts them), so
// there are as few as possible: a row's pruned columns are first listed without branches, and the axpy
// after column p starts at the multiple of `unroll`·2 at or below p+1, not at p+1: the columns ≤ p it also
// changes are finished (never read again), and every pass then has the same alignment and no odd head.
//
// N:M (m > 0): at each group start below groupsEnd, the N smallest cur²/G_jj² of the group (ties: leftmost)
// become its mask, on the weights compensated for every pruned column before the group.
//
// Memory (byte offsets are parameters; row stride B): G f64 B×B; W f64 rows×B (the rows' block weights,
// overwritten as `cur`); E f64 rows×B (written at pruned columns only); M u8 rows×B (1 = pruned; written
// for N:M groups); P i32 B (scratch: the pruned columns of a row or group).

import { encodeModule, FunctionBuilder } from './encoder';

export const SPARSEGPT_SWEEP_EXPORT = 'sparsegptSweep';

/** `unroll`: f64x2 vectors per loop iteration of the axpy. */
export function sparsegptSweepModule(unroll = 2): Uint8Array<ArrayBuffer> {
  const f = new FunctionBuilder(Array(10).fill('i32'), []);
  const [rows, B, G, W, E, M, P, n, m, groupsEnd] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const r = f.local('i32');
  const Bb = f.local('i32'); // B·8, a row's bytes
  const cur = f.local('i32');
  const er = f.local('i32');
  const mk = f.local('i32');
  const i = f.local('i32');
  const lim = f.local('i32');
  const cnt = f.local('i32');
  const j = f.local('i32');
  const q = f.local('i32');
  const qEnd = f.local('i32'); // bytes of the row's columns a whole vector iteration covers
  const t = f.local('i32');
  const col = f.local('i32');
  const gp = f.local('i32'); // row `col` of G (byte offset)
  const best = f.local('i32');
  const err = f.local('f64');
  const c = f.local('f64');
  const d = f.local('f64');
  const sc = f.local('f64');
  const bs = f.local('f64');
  const ev = f.local('v128');
  const step = unroll * 16;

  const lit = (v: number) => () => f.i32(v);
  const loc = (v: number) => () => f.get(v);
  const at = (base: number, idx: number) => f.get(base).get(idx).i32(3).i32Shl().i32Add(); // base + idx·8

  // cur[k] −= err·G[col, k] for k at byte offset `k8` (one column).
  const scalarUpdate = (k8: () => void) => {
    f.get(cur); k8(); f.i32Add();
    f.get(cur); k8(); f.i32Add().f64Load();
    f.get(err).get(gp); k8(); f.i32Add().f64Load().f64Mul().f64Sub();
    f.f64Store();
  };
  // Column `col` is pruned: err = cur[col] / G[col, col], E[col] = err, cur −= err·G[col, :] from col+1 on
  // (in fact from the vector boundary at or below col+1; see the header).
  const pass = () => {
    f.get(G).get(col).get(Bb).i32Mul().i32Add().set(gp);
    at(cur, col).f64Load();
    at(gp, col).f64Load();
    f.f64Div().set(err);
    at(er, col).get(err).f64Store();
    f.get(err).f64x2Splat().set(ev);
    f.forRange(q, () => f.get(col).i32(1).i32Add().i32(3).i32Shl().i32(-step).i32And(), loc(qEnd), step, () => {
      for (let u = 0; u < unroll; u++) {
        f.get(cur).get(q).i32Add();
        f.get(cur).get(q).i32Add().v128Load(u * 16);
        f.get(ev).get(gp).get(q).i32Add().v128Load(u * 16).f64x2Mul().f64x2Sub();
        f.v128Store(u * 16);
      }
    });
    // The last B mod (2·unroll) columns one at a time (the same ones for every pass: no mispredictions).
    f.forRange(q, loc(qEnd), loc(Bb), 8, () => scalarUpdate(loc(q)));
  };
  // The group [i, i+m): its n smallest cur²/G_jj² become pruned (strict <: ties go to the leftmost).
  const chooseGroup = () => {
    f.forRange(j, lit(0), loc(m), 1, () => f.get(mk).get(i).i32Add().get(j).i32Add().i32(0).i32Store8());
    f.forRange(t, lit(0), loc(n), 1, () => {
      f.i32(-1).set(best);
      f.f64(Infinity).set(bs);
      f.forRange(j, lit(0), loc(m), 1, () => {
        f.get(mk).get(i).i32Add().get(j).i32Add().i32Load8U().i32Eqz().if(() => {
          f.get(i).get(j).i32Add().set(col);
          at(cur, col).f64Load().set(c);
          f.get(G).get(col).get(B).i32Mul().get(col).i32Add().i32(3).i32Shl().i32Add().f64Load().set(d);
          f.get(c).get(c).f64Mul().get(d).get(d).f64Mul().f64Div().set(sc);
          f.get(sc).get(bs).f64Lt().if(() => {
            f.get(sc).set(bs);
            f.get(j).set(best);
          });
        });
      });
      f.get(best).i32(0).i32GeS().if(() => f.get(mk).get(i).i32Add().get(best).i32Add().i32(1).i32Store8());
    });
  };

  f.get(B).i32(3).i32Shl().set(Bb);
  f.get(Bb).i32(-step).i32And().set(qEnd);
  f.forRange(r, lit(0), loc(rows), 1, () => {
    f.get(W).get(r).get(Bb).i32Mul().i32Add().set(cur);
    f.get(E).get(r).get(Bb).i32Mul().i32Add().set(er);
    f.get(M).get(r).get(B).i32Mul().i32Add().set(mk);
    // Segments [i, lim): an N:M group (its mask chosen first), or the rest of the row.
    f.forRange(i, lit(0), loc(B), 0, () => {
      f.get(B).set(lim);
      f.get(m).i32(0).i32GtS().get(i).get(m).i32Add().get(groupsEnd).i32GtS().i32Eqz().i32And().if(() => {
        chooseGroup();
        f.get(i).get(m).i32Add().set(lim);
      });
      // The segment's pruned columns, listed without branches.
      f.i32(0).set(cnt);
      f.forRange(j, loc(i), loc(lim), 1, () => {
        f.get(P).get(cnt).i32(2).i32Shl().i32Add().get(j).i32Store();
        f.get(cnt).get(mk).get(j).i32Add().i32Load8U().i32Eqz().i32Eqz().i32Add().set(cnt); // any non-zero byte is pruned
      });
      f.forRange(t, lit(0), loc(cnt), 1, () => {
        f.get(P).get(t).i32(2).i32Shl().i32Add().i32Load().set(col);
        pass();
      });
      f.get(lim).set(i);
    });
  });
  return encodeModule(SPARSEGPT_SWEEP_EXPORT, f);
}
