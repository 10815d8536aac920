// The per-layer loss SparseGPT and APT report comes from their own solve (methods/sweep.ts), not from a second
// pass over H. The identity: the sweep's compensation F satisfies F·R = E with H_d = R·Rᵀ (H_d the damped H), so
// ½·tr(F H_d Fᵀ) = ½·‖E‖²: the sum of SparseGPT's per-column OBS errors err²/2, or of APT's joint removal losses
// ½·w_P [(H_AA⁻¹)_PP]⁻¹ w_Pᵀ. The reported (undamped) loss is that minus ½·λ·‖ΔW‖² over the live columns.
//
// Proven here in float64 on the references (src/backend/methods/*.reference.ts), on random layers with dead inputs
// and on real stories260K layers, for 50% and 2:4; then the float32 production path against float64.
//
//   node --import tsx --test test/lossIdentity.test.ts

import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { aptReference } from '../src/backend/methods/apt.reference';
import { halfTrace, HalfTraceCuts, pruneLayer } from '../src/backend/methods';
import { Kernels, mat } from '../src/backend/linalg/kernels';
import * as ort from 'onnxruntime-node';
import { rowPool } from '../src/backend/methods/rowKernels';
import type { MethodName, Pattern } from '../src/backend/methods/types';
import { Engine } from '../src/backend/onnx/session';
import { prepareHessian, quadLoss, randomHessian, randomWeights, sparsegptReference } from './helpers/reference';
import { collectRealLayers, fixturesDir } from './helpers/realLayers';

interface Layer {
  name: string;
  rows: number;
  cols: number;
  W: Float32Array;
  H: Float32Array;
}

const DAMP = 0.01;
const PATTERNS: [string, Pattern][] = [['50%', { kind: 'unstructured', sparsity: 0.5 }], ['2:4', { kind: 'nm', n: 2, m: 4 }]];
/** Float64: both sides are the same sums in another order (measured ≤ 1e-12; the brief's 1e-6 with margin). */
const F64_REL = 1e-9;
/** The float32 production path against float64 on its own weights: κ(H_d)·u-sized round-off (measured: 2.3e-7). */
const F32_REL = 1e-5;

const rel = (a: number, b: number): number => Math.abs(a - b) / Math.abs(b);

/** ΔW = W0 − W on the live columns (dead ones: zero diagonal of H), and ½·λ·‖ΔW_live‖². */
function dampingTerm(l: Layer, W: ArrayLike<number>, lambda: number, dead: number[]): number {
  const isDead = new Uint8Array(l.cols);
  for (const j of dead) isDead[j] = 1;
  let s = 0;
  for (let i = 0; i < l.W.length; i++) if (!isDead[i % l.cols]) s += (l.W[i] - W[i]) ** 2;
  return 0.5 * lambda * s;
}

/** ½·tr(ΔW H_d ΔWᵀ) in float64, ΔW zero on dead columns (their H_d rows are e_j·(1+λ), their weights zeroed). */
function dampedLoss(l: Layer, W: ArrayLike<number>, Hd: Float64Array, dead: number[]): number {
  const W0 = Float64Array.from(l.W);
  for (const j of dead) for (let r = 0; r < l.rows; r++) W0[r * l.cols + j] = 0;
  return quadLoss(W0, W, Hd, l.rows, l.cols);
}

/** A random layer whose inputs `dead` never fire (H rows and columns exactly zero). */
function randomLayer(rows: number, cols: number, seed: number, dead: number[]): Layer {
  return { name: `random ${rows}×${cols}`, rows, cols, W: randomWeights(rows, cols, seed), H: randomHessian(cols, seed + 1, { dead }).H };
}

const reference = (method: 'sparsegpt' | 'apt', l: Layer, pattern: Pattern) =>
  (method === 'apt' ? aptReference : sparsegptReference)(l.W, l.H, l.rows, l.cols, { pattern, dampening: DAMP });

describe('the loss from the solve', { timeout: 300_000 }, () => {
  const engine = new Engine({ device: 'cpu', threads: 0 });
  const layers: Layer[] = [randomLayer(40, 96, 3, [5, 6, 70]), randomLayer(24, 200, 11, [0, 199])];

  before(async () => {
    // One layer per kind of input of the first and last blocks: q (64×64), down_proj (64×172).
    const real = await collectRealLayers(path.join(fixturesDir, 'stories260K-onnx', 'model.onnx'),
      path.join(fixturesDir, 'data', 'tinystories_train_head_2MiB.txt'), engine, { nsamples: 8, seqlen: 128, seed: 0, batch: 8 });
    for (const name of ['layers.0/self_attn/q_proj', 'layers.0/mlp/down_proj', 'layers.4/mlp/gate_proj']) {
      const l = real.layers.find((x) => x.name.includes(name));
      assert.ok(l, `stories260K has no layer ${name}`);
      layers.push(l);
    }
  });

  after(async () => {
    await engine.release();
    await rowPool.close();
  });

  test('float64: the errors sum to the damped loss, and minus ½λ‖ΔW‖² to the undamped one', (t) => {
    let worst = 0;
    for (const l of layers) {
      const { Hd, dead, lambda } = prepareHessian(l.H, l.cols, DAMP);
      for (const [key, pattern] of PATTERNS) {
        for (const method of ['sparsegpt', 'apt'] as const) {
          const r = reference(method, l, pattern);
          const damped = dampedLoss(l, r.W, Hd, dead);
          const undamped = quadLoss(l.W, r.W, l.H, l.rows, l.cols);
          const fromErrors = r.loss - dampingTerm(l, r.W, lambda, dead);
          const at = `${l.name} ${method} ${key}`;
          assert.ok(r.loss > 0 && undamped > 0, at);
          assert.ok(rel(r.loss, damped) <= F64_REL, `${at}: Σ errors ${r.loss} vs damped loss ${damped}`);
          assert.ok(rel(fromErrors, undamped) <= F64_REL, `${at}: from the errors ${fromErrors} vs undamped loss ${undamped}`);
          // The correction is not negligible: without it the damped loss would be reported.
          assert.ok(rel(r.loss, undamped) > 100 * F64_REL, `${at}: damping term too small to test`);
          worst = Math.max(worst, rel(r.loss, damped), rel(fromErrors, undamped));
        }
      }
    }
    t.diagnostic(`float64: max relative difference ${worst.toExponential(2)} over ${layers.length} layers × 2 patterns × 2 methods`);
  });

  test('float32 production: the reported loss and relLoss against float64 on the returned weights', async (t) => {
    let worst = 0;
    for (const l of layers) {
      const ref0 = quadLoss(l.W, new Float32Array(l.W.length), l.H, l.rows, l.cols);
      for (const [key, pattern] of PATTERNS) {
        for (const method of ['sparsegpt', 'apt'] as MethodName[]) {
          const res = await pruneLayer(method, { ...l }, { pattern, dampening: DAMP }, engine);
          const exact = quadLoss(l.W, res.W, l.H, l.rows, l.cols);
          const at = `${l.name} ${method} ${key}`;
          assert.ok(rel(res.loss, exact) <= F32_REL, `${at}: reported ${res.loss}, float64 ${exact}`);
          assert.ok(rel(res.relLoss, exact / ref0) <= F32_REL, `${at}: relLoss ${res.relLoss}, float64 ${exact / ref0}`);
          worst = Math.max(worst, rel(res.loss, exact));
        }
      }
    }
    t.diagnostic(`float32: max relative difference of the reported loss from float64 ${worst.toExponential(2)}`);
  });
});

// The relative loss's reference ½·tr(W H Wᵀ) of a layer the calibration pass gave no output for (a block's last):
// the OBS sweep takes it from its own factor, ½·‖W·R‖² − ½·λ·‖W_live‖² (sweep.ts HostOperands), block by block.
describe('the reference from the sweep\'s factor', { timeout: 300_000 }, () => {
  const engine = new Engine({ device: 'cpu', threads: 0 });
  after(async () => {
    await engine.release();
    await rowPool.close();
  });

  // Dead inputs at a block's first and last columns and inside one, their weights large: any share of them that got into
  // the reference (R's dead rows, `rbb`'s dead rows left in) would show far above the tolerance.
  const dead = [0, 31, 45, 199];
  const layer = randomLayer(40, 200, 21, dead);
  for (const j of dead) for (let r = 0; r < layer.rows; r++) layer.W[r * layer.cols + j] = 50;
  const exact = quadLoss(layer.W, new Float32Array(layer.W.length), layer.H, layer.rows, layer.cols);
  const Wt = Float32Array.from({ length: layer.W.length }, (_, i) => layer.W[(i % layer.rows) * layer.cols + Math.floor(i / layer.rows)]);

  for (const blockSize of [32, 128, 256]) {
    test(`blocks of ${blockSize} (200 columns, dead inputs among them): float64 to ${F32_REL}, the same from W or Wᵀ`, async () => {
      for (const method of ['sparsegpt', 'apt'] as MethodName[]) {
        const options = { pattern: { kind: 'unstructured', sparsity: 0.5 } as Pattern, dampening: DAMP, blockSize };
        const fromW = await pruneLayer(method, { ...layer }, options, engine);
        const fromWt = await pruneLayer(method, { ...layer, Wt }, options, engine);
        assert.ok(fromW.reference !== undefined && rel(fromW.reference, exact) <= F32_REL, `${method}: ${fromW.reference} vs float64 ${exact}`);
        assert.equal(fromWt.reference, fromW.reference, `${method}: from Wᵀ`);
        assert.ok(rel(fromW.relLoss, fromW.loss / exact) <= F32_REL, `${method}: relLoss ${fromW.relLoss}`);
        const given = await pruneLayer(method, { ...layer, reference: 2 * exact }, options, engine);
        assert.equal(given.reference, undefined, `${method}: measured although given`);
        assert.ok(rel(given.relLoss, given.loss / (2 * exact)) <= 1e-12, `${method}: the given reference unused`);
      }
    });
  }
});

// The relative loss's reference ½·tr(W H Wᵀ) (and Wanda's and magnitude's loss) when the calibration pass did not
// give it: halfTrace's symmetric form reads H's lower block triangle only (half the flops of ⟨W·H, W⟩).
describe('halfTrace: ½·tr(X H Xᵀ) from H\'s lower block triangle', () => {
  const engine = new Engine({ device: 'cpu', threads: 0 });
  after(() => engine.release());
  const cases: [string, number, number, HalfTraceCuts | undefined][] = [
    ['several row chunks, column blocks of 16 with a partial last one', 37, 130, { block: 16, divisor: 64 }],
    ['one row', 1, 75, { block: 8, divisor: 8 }],
    ['a block wider than the matrix', 20, 40, { block: 64, divisor: 8 }],
    ['the production cuts', 150, 700, undefined],
  ];
  for (const [what, rows, cols, cuts] of cases) {
    test(`${what} (${rows} × ${cols}): float64 to 1e-6, and the device form (⟨X·H, X⟩) alike`, async () => {
      const X = randomWeights(rows, cols, rows + cols);
      const H = randomHessian(cols, cols).H;
      const exact = quadLoss(X, new Float32Array(X.length), H, rows, cols);
      const kernels = new Kernels(engine);
      const rowsOf = (r0: number, r1: number) => X.subarray(r0 * cols, r1 * cols);
      const got = await halfTrace(rows, cols, mat(cols, cols, H), kernels, rowsOf, cuts);
      assert.ok(rel(got, exact) <= 1e-6, `symmetric ${got} vs float64 ${exact}`);
      const tensor = new ort.Tensor('float32', H, [cols, cols]); // the path for an H left on a device
      const full = await halfTrace(rows, cols, tensor, kernels, rowsOf, cuts);
      assert.ok(rel(full, exact) <= 1e-6, `full form ${full} vs float64 ${exact}`);
    });
  }
});
