// SparseGPT's per-row column loop (methods/rowKernels.ts sparsegptSweepRows) as a WebAssembly SIMD kernel,
// with the very same float64 operations on every weight whose value is used, so E and the mask are
// bit-identical to the JavaScript kernel's: for each pruned column i in order, err = cur[i] / G[i,i], E[i] = err, and
// cur[j] −= err·G[i,j] for j > i (a multiply, then a subtraction: baseline wasm SIMD has no fused
// multiply-add, and neither has JavaScript).
//
// Rows run one at a time and the vector runs along the row (f64x2 over columns), so rows with different masks
// never waste a lane. Up to `fuse` consecutive pruned columns share one pass over the rest of the row (one
// load and store of each weight for all of them), and a pass touches only what is read later: the weights
// after its last pruned column (see `pass`). Branches that depend on the mask cost most (a random mask
// mispredicts them), so a row's pruned columns are first listed without branches, and every pass starts at
// a vector boundary (no odd head). Measured (bench/sparsegptKernel.ts, 4096 rows, B=128, 50%): ≈ 6× faster
// than the JavaScript kernel; N:M 2:4 ≈ 3.6× (its group choices stay scalar).
//
// N:M (m > 0): at each group start below groupsEnd, the N smallest cur²/G_jj² of the group (ties: leftmost)
// become its mask, on the weights compensated for every pruned column before the group.
//
// Memory (byte offsets are parameters; row stride B): G f64 B×B; W f64 rows×B (the rows' block weights,
// overwritten as `cur`); E f64 rows×B (written at pruned columns only); M u8 rows×B (1 = pruned; written
// for N:M groups); P: scratch, i32 × B (the pruned columns of a row or group), then f64 × B (N:M scores).

import { encodeModule, FunctionBuilder } from './encoder';

export const SPARSEGPT_SWEEP_EXPORT = 'sparsegptSweep';

/** `fuse`: how many consecutive pruned columns of a row share one pass over the rest of the row; `unroll`:
 *  f64x2 vectors per iteration of that pass. */
export function sparsegptSweepModule(fuse = 4, unroll = 1): Uint8Array<ArrayBuffer> {
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
  const qEnd = f.local('i32'); // B·8 rounded down to whole vectors
  const t = f.local('i32');
  const col = f.local('i32');
  const best = f.local('i32');
  const scores = f.local('i32'); // scratch f64 × m after P
  const cols = Array.from({ length: fuse }, () => f.local('i32'));
  const gp = Array.from({ length: fuse }, () => f.local('i32')); // rows cols[s] of G (byte offsets)
  const e = Array.from({ length: fuse }, () => f.local('f64'));
  const c = f.local('f64');
  const d = f.local('f64');
  const sc = f.local('f64');
  const bs = f.local('f64');
  const ev = Array.from({ length: fuse }, () => f.local('v128'));
  const acc = f.local('v128');
  const step = 16 * unroll;

  const lit = (v: number) => () => f.i32(v);
  const loc = (v: number) => () => f.get(v);
  const at = (base: number, idx: number) => f.get(base).get(idx).i32(3).i32Shl().i32Add(); // base + idx·8

  // The pruned columns P[t], …, P[t+count−1] =: c_0 < … < c_{count−1} in one pass over the row:
  // e_s = (cur[c_s] − e_0·G[c_0, c_s] − … − e_{s−1}·G[c_{s−1}, c_s]) / G[c_s, c_s], then
  // cur[j] = (cur[j] − e_0·G[c_0, j]) − … − e_{count−1}·G[c_{count−1}, j] for j after c_{count−1}: every value
  // that is read later (a pruned column's, or an N:M group's still to be chosen) gets the same operations in
  // the same order as in JavaScript. The other columns are never read again, so they need no update — and
  // may take any: the loop starts at the vector boundary at or below c_{count−1} + 1, with no odd head.
  const pass = (count: number) => {
    for (let s = 0; s < count; s++) {
      f.get(P).get(t).i32(2).i32Shl().i32Add().i32Load(4 * s).set(cols[s]);
      f.get(G).get(cols[s]).get(Bb).i32Mul().i32Add().set(gp[s]);
      at(cur, cols[s]).f64Load().set(c);
      for (let u = 0; u < s; u++) {
        f.get(c).get(e[u]);
        at(gp[u], cols[s]).f64Load().f64Mul().f64Sub().set(c);
      }
      f.get(c);
      at(gp[s], cols[s]).f64Load();
      f.f64Div().set(e[s]);
      at(er, cols[s]).get(e[s]).f64Store();
      f.get(e[s]).f64x2Splat().set(ev[s]);
    }
    const from = () => f.get(cols[count - 1]).i32(1).i32Add().i32(3).i32Shl().i32(-step).i32And();
    f.forRange(q, from, loc(qEnd), step, () => {
      for (let v = 0; v < unroll; v++) {
        f.get(cur).get(q).i32Add().v128Load(16 * v).set(acc);
        for (let u = 0; u < count; u++) f.get(acc).get(ev[u]).get(gp[u]).get(q).i32Add().v128Load(16 * v).f64x2Mul().f64x2Sub().set(acc);
        f.get(cur).get(q).i32Add().get(acc).v128Store(16 * v);
      }
    });
    // The last B mod (2·unroll) columns one at a time (the same ones in every pass: no mispredictions).
    f.forRange(q, loc(qEnd), loc(Bb), 8, () => {
      f.get(cur).get(q).i32Add().f64Load().set(c);
      for (let u = 0; u < count; u++) f.get(c).get(e[u]).get(gp[u]).get(q).i32Add().f64Load().f64Mul().f64Sub().set(c);
      f.get(cur).get(q).i32Add().get(c).f64Store();
    });
  };

  // The group [i, i+m): its n smallest cur²/G_jj² become pruned (strict <: ties go to the leftmost). The scores
  // are computed once, into the scratch after P. (A branch-free selection with `select` measured slower.)
  const chooseGroup = () => {
    f.forRange(j, lit(0), loc(m), 1, () => {
      f.get(mk).get(i).i32Add().get(j).i32Add().i32(0).i32Store8();
      f.get(i).get(j).i32Add().set(col);
      at(cur, col).f64Load().set(c);
      f.get(G).get(col).get(B).i32Mul().get(col).i32Add().i32(3).i32Shl().i32Add().f64Load().set(d);
      at(scores, j).get(c).get(c).f64Mul().get(d).get(d).f64Mul().f64Div().f64Store();
    });
    f.forRange(t, lit(0), loc(n), 1, () => {
      f.i32(-1).set(best);
      f.f64(Infinity).set(bs);
      f.forRange(j, lit(0), loc(m), 1, () => {
        at(scores, j).f64Load().set(sc);
        f.get(sc).get(bs).f64Lt().get(mk).get(i).i32Add().get(j).i32Add().i32Load8U().i32Eqz().i32And().if(() => {
          f.get(sc).set(bs);
          f.get(j).set(best);
        });
      });
      f.get(best).i32(0).i32GeS().if(() => f.get(mk).get(i).i32Add().get(best).i32Add().i32(1).i32Store8());
    });
  };

  f.get(B).i32(3).i32Shl().set(Bb);
  f.get(P).get(B).i32(2).i32Shl().i32Add().i32(7).i32Add().i32(-8).i32And().set(scores);
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
      f.forRange(t, lit(0), () => f.get(cnt).i32(1 - fuse).i32Add(), fuse, () => pass(fuse));
      for (let k = 1; k < fuse; k++) f.get(cnt).get(t).i32Sub().i32(k).i32Eq().if(() => pass(k));
      f.get(lim).set(i);
    });
  });
  return encodeModule(SPARSEGPT_SWEEP_EXPORT, f);
}
