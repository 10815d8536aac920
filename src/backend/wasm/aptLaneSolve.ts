// APT's per-row small SPD solve (methods/rowKernels.ts aptSolveRows) as a WebAssembly SIMD kernel that solves
// one row per vector lane: two rows in float64 ('f64x2') or four in float32 ('f32x4'), from the same source. The
// rows must prune the same number n of weights in the block (the caller groups rows by n), so every lane runs the
// same instructions: no horizontal sums, no padding. Same arithmetic as the JavaScript kernel in the lanes'
// precision, up to the order of the additions.
//
// Per lane (row), with P its pruned columns, S = GᵀG (ld×ld) and GT = Gᵀ (ld×ld; ld a multiple of the lane count,
// lower part and padding zero), all in the lanes' float type:
//   L Lᵀ = S_PP (Crout, two columns and four rows at a time; the right-hand side w_P rides along as an
//   extra row n of L, so its row comes out as y = L⁻¹ w_P), then x = L⁻ᵀ y (back-substitution by rows of L),
//   then E = G[:, P]·x  (E[k] += GT[P_i, k]·x_i for k ≤ P_i).
//
// Memory (byte offsets are parameters): S, GT ld×ld; P_l i32 n per lane; W_l ld per lane (the rows' block weights);
// E_l ld per lane (out); L: (n+1)×n vectors; D: n vectors (1/L_jj per lane, which the caller may inspect). Returns 0,
// or j+1 when the pivot of column j is not positive in some lane (S_PP not positive definite).

import { encodeModule, FunctionBuilder, LaneKind, LANES } from './encoder';

export const APT_LANE_SOLVE_EXPORT = 'aptLaneSolve';

export function aptLaneSolveModule(kind: LaneKind): Uint8Array<ArrayBuffer> {
  const { lanes, shift } = LANES[kind];
  const laneIds = Array.from({ length: lanes }, (_, l) => l);
  const f = new FunctionBuilder(Array(6 + 3 * lanes).fill('i32'), ['i32']);
  // Parameters: n, S, GT, ld, P_0 … P_{lanes−1}, W_0 …, E_0 …, L, D.
  const [n, S, GT, ld] = [0, 1, 2, 3];
  const Pl = laneIds.map((l) => 4 + l);
  const Wl = laneIds.map((l) => 4 + lanes + l);
  const El = laneIds.map((l) => 4 + 2 * lanes + l);
  const L = 4 + 3 * lanes;
  const D = L + 1;
  const i = f.local('i32');
  const j = f.local('i32');
  const q = f.local('i32'); // byte offset within a row of L
  const rs = f.local('i32'); // row stride of L in bytes
  const pj = f.local('i32');
  const rowOf = laneIds.map(() => f.local('i32'));
  const jb = f.local('i32'); // j·16
  const qEnd = f.local('i32');
  const p = f.local('i32');
  const g = f.local('i32');
  const pn = f.local('i32');
  const r = [f.local('i32'), f.local('i32'), f.local('i32'), f.local('i32')]; // row pointers
  const acc = [0, 1, 2, 3].map(() => [f.local('v128'), f.local('v128')]); // two partial sums per row
  const l0 = f.local('v128');
  const l1 = f.local('v128');
  const inv = f.local('v128');
  const x = f.local('v128');
  const zero = f.local('v128'); // locals start at zero
  const pjA = f.local('i32');
  const jbA = f.local('i32');
  const invA = f.local('v128');
  const lj = f.local('v128');
  const xv = f.local('v128');

  const lit = (c: number) => () => f.i32(c);
  const loc = (v: number) => () => f.get(v);
  // One vector from `lanes` scalars: lane l's value is pushed by load(l).
  const gather = (load: (l: number) => void) => {
    for (const l of laneIds) {
      load(l);
      if (l === 0) f.fxSplat(kind);
      else f.fxReplaceLane(kind, l);
    }
  };
  // P_l[idx] of lane l, idx in the local `idx`.
  const pIndex = (l: number, idx: number) => f.get(Pl[l]).get(idx).i32(2).i32Shl().i32Add().i32Load();

  f.get(n).i32(16).i32Mul().set(rs);

  // Gather S_PP (lower triangle) into L, and w_P into row n.
  f.forRange(i, lit(0), loc(n), 1, () => {
    for (const l of laneIds) pIndex(l, i).get(ld).i32Mul().set(rowOf[l]);
    f.get(L).get(i).get(rs).i32Mul().i32Add().set(r[0]);
    f.forRange(j, lit(0), () => f.get(i).i32(1).i32Add(), 1, () => {
      f.get(r[0]).get(j).i32(4).i32Shl().i32Add();
      gather((l) => {
        f.get(S).get(rowOf[l]);
        pIndex(l, j).i32Add().i32(shift).i32Shl().i32Add().fxLoad(kind);
      });
      f.v128Store();
    });
  });
  f.get(L).get(n).get(rs).i32Mul().i32Add().set(pn);
  f.forRange(j, lit(0), loc(n), 1, () => {
    f.get(pn).get(j).i32(4).i32Shl().i32Add();
    gather((l) => {
      f.get(Wl[l]);
      pIndex(l, j).i32(shift).i32Shl().i32Add().fxLoad(kind);
    });
    f.v128Store();
  });

  // acc[k][0] −= L[row k][q]·l0, acc[k][1] −= L[row k][q+1]·l1 for rows 0..count-1, at byte offset q.
  const dotStep = (count: number, both: boolean) => {
    f.get(pj).get(q).i32Add().v128Load().set(l0);
    if (both) f.get(pj).get(q).i32Add().v128Load(16).set(l1);
    for (let k = 0; k < count; k++) {
      f.get(acc[k][0]).get(r[k]).get(q).i32Add().v128Load().get(l0).fxMul(kind).fxSub(kind).set(acc[k][0]);
      if (both) f.get(acc[k][1]).get(r[k]).get(q).i32Add().v128Load(16).get(l1).fxMul(kind).fxSub(kind).set(acc[k][1]);
    }
  };
  // For rows r[0..count): L[row][j] = (L[row][j] − L[row][:j]·L[j][:j]) / L[j][j].
  const rowsUpdate = (count: number) => {
    for (let k = 0; k < count; k++) {
      f.get(r[k]).get(jb).i32Add().v128Load().set(acc[k][0]);
      f.get(zero).set(acc[k][1]);
    }
    f.forRange(q, lit(0), loc(qEnd), 32, () => dotStep(count, true));
    f.get(j).i32(1).i32And().if(() => dotStep(count, false));
    for (let k = 0; k < count; k++) {
      f.get(r[k]).get(jb).i32Add().get(acc[k][0]).get(acc[k][1]).fxAdd(kind).get(inv).fxMul(kind).v128Store();
    }
  };

  const setColumn = () => {
    f.get(L).get(j).get(rs).i32Mul().i32Add().set(pj);
    f.get(j).i32(4).i32Shl().set(jb);
    f.get(j).i32(-2).i32And().i32(4).i32Shl().set(qEnd);
  };
  // Column j's pivot: L[j][j] = √(L[j][j] − ‖L[j][:j]‖²), inv = D[j] = 1/L[j][j]; returns j+1 if not positive.
  const pivot = () => {
    f.get(pj).get(jb).i32Add().v128Load().set(acc[0][0]);
    f.get(zero).set(acc[0][1]);
    f.forRange(q, lit(0), loc(qEnd), 32, () => {
      f.get(acc[0][0]).get(pj).get(q).i32Add().v128Load().tee(l0).get(l0).fxMul(kind).fxSub(kind).set(acc[0][0]);
      f.get(acc[0][1]).get(pj).get(q).i32Add().v128Load(16).tee(l1).get(l1).fxMul(kind).fxSub(kind).set(acc[0][1]);
    });
    f.get(j).i32(1).i32And().if(() => {
      f.get(acc[0][0]).get(pj).get(qEnd).i32Add().v128Load().tee(l0).get(l0).fxMul(kind).fxSub(kind).set(acc[0][0]);
    });
    f.get(acc[0][0]).get(acc[0][1]).fxAdd(kind).set(x);
    f.get(x).get(zero).fxAllGt(kind).i32Eqz().if(() => f.get(j).i32(1).i32Add().return());
    f.get(x).fxSqrt(kind).set(x);
    f.get(pj).get(jb).i32Add().get(x).v128Store();
    f.fxConst(kind, 1).get(x).fxDiv(kind).set(inv);
    f.get(D).get(jb).i32Add().get(inv).v128Store();
  };
  // Rows from r[0] (row i) to n, four then one at a time, by `update(count)`.
  const allRows = (update: (count: number) => void) => {
    f.get(L).get(i).get(rs).i32Mul().i32Add().set(r[0]);
    f.forRange(i, loc(i), () => f.get(n).i32(-2).i32Add(), 4, () => {
      f.get(r[0]).get(rs).i32Add().set(r[1]);
      f.get(r[1]).get(rs).i32Add().set(r[2]);
      f.get(r[2]).get(rs).i32Add().set(r[3]);
      update(4);
      f.get(r[3]).get(rs).i32Add().set(r[0]);
    });
    f.forRange(i, loc(i), () => f.get(n).i32(1).i32Add(), 1, () => {
      update(1);
      f.get(r[0]).get(rs).i32Add().set(r[0]);
    });
  };
  // Columns jA = j−1 and j = jA+1 at once for rows r[0..count): one pass over L[row][:jA] feeds both dot products
  // (half the loads and loop trips of two single-column passes); L[row][j] then takes its last term from L[row][jA].
  const pairRows = (count: number) => {
    for (let k = 0; k < count; k++) {
      f.get(r[k]).get(jbA).i32Add().v128Load().set(acc[k][0]);
      f.get(r[k]).get(jbA).i32Add().v128Load(16).set(acc[k][1]);
    }
    f.forRange(q, lit(0), loc(jbA), 16, () => {
      f.get(pjA).get(q).i32Add().v128Load().set(l0);
      f.get(pj).get(q).i32Add().v128Load().set(l1);
      for (let k = 0; k < count; k++) {
        f.get(r[k]).get(q).i32Add().v128Load().set(xv);
        f.get(acc[k][0]).get(xv).get(l0).fxMul(kind).fxSub(kind).set(acc[k][0]);
        f.get(acc[k][1]).get(xv).get(l1).fxMul(kind).fxSub(kind).set(acc[k][1]);
      }
    });
    for (let k = 0; k < count; k++) {
      f.get(r[k]).get(jbA).i32Add().get(acc[k][0]).get(invA).fxMul(kind).tee(acc[k][0]).v128Store();
      f.get(r[k]).get(jbA).i32Add().get(acc[k][1]).get(acc[k][0]).get(lj).fxMul(kind).fxSub(kind).get(inv).fxMul(kind).v128Store(16);
    }
  };

  // Crout, two columns at a time: pivot j, L[j+1][j], pivot j+1, then rows j+2..n (n = the right-hand side)
  // for both columns; a last odd column alone.
  f.forRange(j, lit(0), loc(n), 0, () => {
    setColumn();
    pivot();
    f.get(j).i32(1).i32Add().get(n).i32LtS().ifElse(() => {
      f.get(pj).get(rs).i32Add().set(r[0]);
      rowsUpdate(1); // L[j+1][j]
      f.get(pj).set(pjA);
      f.get(jb).set(jbA);
      f.get(inv).set(invA);
      f.get(j).i32(1).i32Add().set(j);
      setColumn();
      pivot();
      f.get(pj).get(jbA).i32Add().v128Load().set(lj);
      f.get(j).i32(1).i32Add().set(i);
      allRows(pairRows);
    }, () => {
      f.get(j).i32(1).i32Add().set(i);
      allRows(rowsUpdate);
    });
    f.get(j).i32(1).i32Add().set(j);
  });

  // Back-substitution Lᵀx = y in row n, i = n−1 … 0: x_i = y_i / L_ii, then y[:i] −= x_i·L[i][:i].
  f.forRange(p, lit(0), loc(n), 1, () => {
    f.get(n).i32(-1).i32Add().get(p).i32Sub().set(i);
    f.get(i).i32(4).i32Shl().set(jb);
    f.get(L).get(i).get(rs).i32Mul().i32Add().set(r[0]);
    f.get(pn).get(jb).i32Add().v128Load().get(D).get(jb).i32Add().v128Load().fxMul(kind).set(x);
    f.get(pn).get(jb).i32Add().get(x).v128Store();
    f.forRange(q, lit(0), loc(jb), 16, () => {
      f.get(pn).get(q).i32Add();
      f.get(pn).get(q).i32Add().v128Load().get(r[0]).get(q).i32Add().v128Load().get(x).fxMul(kind).fxSub(kind);
      f.v128Store();
    });
  });

  // E = G[:, P]·x per lane: E[k] += GT[P_i, k]·x_i for k ≤ P_i, a vector of `lanes` k's at a time (GT is zero right
  // of its diagonal up to the padded width ld).
  for (const l of laneIds) {
    f.forRange(q, lit(0), () => f.get(ld).i32(shift).i32Shl(), 16, () => f.get(El[l]).get(q).i32Add().get(zero).v128Store());
  }
  f.forRange(i, lit(0), loc(n), 1, () => {
    f.get(pn).get(i).i32(4).i32Shl().i32Add().v128Load().set(x);
    for (const l of laneIds) {
      pIndex(l, i).set(p);
      f.get(GT).get(p).get(ld).i32Mul().i32(shift).i32Shl().i32Add().set(g);
      f.get(p).i32(lanes).i32Add().i32(-lanes).i32And().i32(shift).i32Shl().set(qEnd);
      f.get(x).fxExtractLane(kind, l).fxSplat(kind).set(l0);
      f.forRange(q, lit(0), loc(qEnd), 16, () => {
        f.get(El[l]).get(q).i32Add();
        f.get(El[l]).get(q).i32Add().v128Load().get(g).get(q).i32Add().v128Load().get(l0).fxMul(kind).fxAdd(kind);
        f.v128Store();
      });
    }
  });
  f.i32(0);
  return encodeModule(APT_LANE_SOLVE_EXPORT, f);
}
