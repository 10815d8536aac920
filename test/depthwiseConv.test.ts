// Depthwise convs (Mamba's conv1d) as opt-in layers: discovery, the per-channel Hessians the block graph
// accumulates (against a float64 recomputation from the captured conv inputs), the methods of
// src/backend/methods/depthwise.ts against float64 references on the fixture's real Hessians and on random ones,
// and end-to-end runs on ../shared/fixtures/stories-mamba-hf (folder, ONNX-file, bf16 and fp16 forms) with
// keepDense.depthwiseConv false.
//
//   node --import tsx --test test/depthwiseConv.test.ts

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { calibrationWindows, evaluationWindows, loadTokenizer, readTokens } from '../src/backend/data/tokens';
import { perplexity } from '../src/backend/eval/perplexity';
import { openCheckpoint } from '../src/backend/formats/checkpoint';
import { readSafetensorsHeader, readTensorBytes, readTensorFloat32 } from '../src/backend/formats/safetensors';
import { DepthwiseProblem, pruneDepthwise } from '../src/backend/methods/depthwise';
import { combinations } from '../src/backend/methods/masks';
import { sparsegptReference } from '../src/backend/methods/sparsegpt.reference';
import { rowPool } from '../src/backend/methods/rowKernels';
import { MethodName, Pattern, PruneResult } from '../src/backend/methods/types';
import { buildMambaModel, MambaConfig } from '../src/backend/models/mamba';
import { causalLmFeeds, inputSpecs } from '../src/backend/models/inputs';
import { encodeModel, ModelProto } from '../src/backend/onnx/proto';
import { Engine } from '../src/backend/onnx/session';
import { discoverLayers } from '../src/backend/pipeline/layers';
import { CalibrationSums, calibrationModel, emptySums, planSegments, runCalibration, segmentModel } from '../src/backend/pipeline/segments';
import { resolveConfig } from '../src/protocol/config';
import { EventOf } from '../src/protocol/events';
import { configSummary, layerHover, layerPatternSuggestions, parseInspectOutput, patternTargets } from '../src/extension/config/layerInfo';
import { withExtraOutputs } from './helpers/realLayers';
import { Rng, spdInverse, spdSolve } from './helpers/reference';
import { readSafetensorsF32 } from './helpers/safetensors';
import { writeHfFolder } from './helpers/hfFolder';
import { quickRun } from './helpers/quickRun';

const repoRoot = path.resolve(__dirname, '..');
const fixtures = path.resolve(repoRoot, '..', 'shared', 'fixtures');
const mambaDir = path.join(fixtures, 'stories-mamba-hf');
const text = path.join(fixtures, 'data', 'tinystories_valid_head.txt');
const work = mkdtempSync(path.join(os.tmpdir(), 'prunekit-dwconv-'));
const engine = new Engine({ device: 'cpu', threads: 1 });
const mambaConfig = JSON.parse(readFileSync(path.join(mambaDir, 'config.json'), 'utf8')) as MambaConfig;
const weights = readSafetensorsF32(path.join(mambaDir, 'model.safetensors'));
const CONVS = [0, 1, 2, 3].map((i) => `layers.${i}.mixer.conv1d`);
const LINEAR = [0, 1, 2, 3].flatMap((i) => ['in_proj', 'x_proj', 'dt_proj', 'out_proj'].map((p) => `layers.${i}.mixer.${p}`));

after(async () => {
  rmSync(work, { recursive: true, force: true });
  await engine.release();
  await rowPool.close();
});

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-300);

// ---------------------------------------------------------------------------------------------------------
// float64 references (written from the definitions, independent of methods/depthwise.ts)

/** The damped H_c and the weights the Hessian methods start from: dead taps (H_jj = 0) get H_jj = 1 and w_j = 0;
 *  λ = dampening·mean(diag) (dead counted as 1). */
function damped(H: ArrayLike<number>, w: ArrayLike<number>, K: number, dampening = 0.01): { Hd: Float64Array; w0: Float64Array } {
  const Hd = Float64Array.from(H);
  const w0 = Float64Array.from(w);
  let mean = 0;
  for (let j = 0; j < K; j++) {
    if (Hd[j * K + j] === 0) { Hd[j * K + j] = 1; w0[j] = 0; }
    mean += Hd[j * K + j];
  }
  for (let j = 0; j < K; j++) Hd[j * K + j] += (dampening * mean) / K;
  return { Hd, w0 };
}

const pick = (M: Float64Array, K: number, rows: number[], cols: number[]) => Float64Array.from(rows.flatMap((i) => cols.map((j) => M[i * K + j])));
const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

/** argmin (w − w0)ᵀ Hd (w − w0) subject to w_P = 0: w_F = w0_F + Hd_FF⁻¹ Hd_FP w0_P (the normal equations). */
function leastSquares(w0: Float64Array, Hd: Float64Array, K: number, P: number[]): Float64Array {
  const F = range(0, K).filter((j) => !P.includes(j));
  const w = new Float64Array(K);
  if (F.length === 0) return w;
  const rhs = new Float64Array(F.length);
  for (let a = 0; a < F.length; a++) for (const p of P) rhs[a] += Hd[F[a] * K + p] * w0[p];
  const x = spdSolve(pick(Hd, K, F, F), F.length, rhs, 1);
  F.forEach((j, a) => { w[j] = w0[j] + x[a]; });
  return w;
}

/** [(Hd_{[j:],[j:]})⁻¹]_00: SparseGPT's U_jj², the inverse diagonal over the columns still active at j. */
function activeInverseDiag(Hd: Float64Array, K: number, j: number): number {
  const A = range(j, K);
  return spdInverse(pick(Hd, K, A, A), A.length)[0];
}

/** The one float64 SparseGPT (src/backend/methods/sparsegpt.reference.ts) on one channel: a one-row layer over its
 *  already damped H_c (so dampening 0), one block. N:M: chosen at each group's first column into `mask`; otherwise
 *  `mask` is fixed. */
function sparsegptChannel(w0: Float64Array, Hd: Float64Array, K: number, mask: Uint8Array, nm?: { n: number; m: number }): Float64Array {
  const pattern: Pattern = nm ? { kind: 'nm', ...nm } : { kind: 'unstructured', sparsity: 0.5 };
  const ref = sparsegptReference(w0, Hd, 1, K, { pattern, blockSize: nm ? Math.ceil(K / nm.m) * nm.m : K, dampening: 0, mask: nm ? undefined : mask });
  mask.set(ref.mask);
  return ref.W;
}

/** SparseGPT's adaptive threshold: prune every score <= sorted[floor(n·s)]. */
function thresholdRule(scores: number[], s: number): Uint8Array {
  const t = [...scores].sort((a, b) => a - b)[Math.floor(scores.length * s)];
  return Uint8Array.from(scores, (v) => (v <= t ? 1 : 0));
}

function quad(d: ArrayLike<number>, H: ArrayLike<number>, K: number, o = 0): number {
  let q = 0;
  for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) q += d[i] * H[o + i * K + j] * d[j];
  return q;
}

/** Checks a result against the references for every channel; returns the worst relative weight error. */
function checkAgainstReferences(method: 'apt' | 'sparsegpt', p: DepthwiseProblem, pattern: Pattern, res: PruneResult, fixedMask?: Uint8Array): number {
  const { channels: C, taps: K } = p;
  const H = p.H as Float32Array;
  const start = Array.from({ length: C }, (_, c) => damped(H.subarray(c * K * K, (c + 1) * K * K), p.W.subarray(c * K, (c + 1) * K), K));
  // The mask: fixed, or the reference rule.
  const mask = fixedMask ? Uint8Array.from(fixedMask) : new Uint8Array(C * K);
  if (!fixedMask && pattern.kind === 'unstructured') {
    const scores = start.flatMap(({ Hd, w0 }) => range(0, K).map((j) => w0[j] ** 2 / (method === 'apt' ? spdInverse(Hd, K)[j * K + j] : activeInverseDiag(Hd, K, j))));
    mask.set(thresholdRule(scores, pattern.sparsity));
  }
  let worst = 0;
  for (let c = 0; c < C; c++) {
    const { Hd, w0 } = start[c];
    const m = mask.subarray(c * K, (c + 1) * K);
    let want: Float64Array;
    if (method === 'sparsegpt') {
      want = sparsegptChannel(w0, Hd, K, m, !fixedMask && pattern.kind === 'nm' ? pattern : undefined);
    } else {
      if (!fixedMask && pattern.kind === 'nm') {
        assert.equal(K % pattern.m, 0, 'the APT N:M reference covers one group per M taps with M | K');
        assert.equal(K, pattern.m, 'one group per channel: the joint mask is the best of all C(M, N) least-squares masks');
        let best = Infinity;
        for (const Q of combinations(K, pattern.n)) {
          const w = leastSquares(w0, Hd, K, Q);
          const l = quad(Float64Array.from(w0, (v, j) => v - w[j]), Hd, K);
          if (l < best) { best = l; m.fill(0); for (const j of Q) m[j] = 1; }
        }
      }
      want = leastSquares(w0, Hd, K, range(0, K).filter((j) => m[j]));
    }
    const got = res.W.subarray(c * K, (c + 1) * K);
    assert.deepEqual([...res.mask.subarray(c * K, (c + 1) * K)], [...m], `channel ${c}: mask`);
    const scale = Math.max(...w0.map(Math.abs), 1e-30);
    for (let j = 0; j < K; j++) {
      if (m[j]) assert.equal(got[j], 0, `channel ${c} tap ${j} pruned`);
      worst = Math.max(worst, Math.abs(got[j] - want[j]) / scale);
    }
  }
  return worst;
}

/** The reported loss against 0.5·Σ_c δw_c H_c δw_cᵀ summed here in float64. */
function checkLoss(p: DepthwiseProblem, res: PruneResult): void {
  const K = p.taps;
  let loss = 0;
  let refq = 0;
  for (let c = 0; c < p.channels; c++) {
    const d = Float64Array.from(p.W.subarray(c * K, (c + 1) * K), (v, j) => v - res.W[c * K + j]);
    loss += 0.5 * quad(d, p.H as Float32Array, K, c * K * K);
    refq += 0.5 * quad(p.W.subarray(c * K, (c + 1) * K), p.H as Float32Array, K, c * K * K);
  }
  assert.ok(rel(res.loss, loss) < 1e-9, `loss ${res.loss} vs ${loss}`);
  assert.ok(rel(res.relLoss, loss / refq) < 1e-9, `relLoss ${res.relLoss} vs ${loss / refq}`);
}

/** Exactly N pruned in every full group of M taps; the trailing K mod M taps kept. */
function checkNm(res: PruneResult, C: number, K: number, n: number, m: number): void {
  const full = K - (K % m);
  for (let c = 0; c < C; c++) {
    for (let g = 0; g + m <= full; g += m) {
      let z = 0;
      for (let j = 0; j < m; j++) z += res.mask[c * K + g + j];
      assert.equal(z, n, `channel ${c}, taps ${g}..${g + m - 1}`);
    }
    for (let j = full; j < K; j++) assert.equal(res.mask[c * K + j], 0, `channel ${c}: trailing tap ${j} stays dense`);
  }
}

// ---------------------------------------------------------------------------------------------------------

/** Random per-channel Hessians from correlated windows, with a dead channel (all inputs zero) and a dead tap. */
function randomProblem(C: number, K: number, seed: number): DepthwiseProblem {
  const rng = new Rng(seed);
  const N = 8;
  const T = 64;
  const H = new Float32Array(C * K * K);
  const colNorm2 = new Float32Array(C * K);
  for (let c = 0; c < C; c++) {
    if (c === 1) continue; // dead channel
    const x = new Float64Array(T);
    let prev = 0;
    for (let t = 0; t < T; t++) x[t] = prev = 0.7 * prev + rng.normal() * (1 + (c % 3));
    for (let s = 0; s < N; s++) {
      for (let t = 0; t < T; t++) {
        const u = range(0, K).map((j) => (t - K + 1 + j >= 0 ? x[(t - K + 1 + j + s * 7) % T] : 0));
        if (c === 2) u[0] = 0; // a tap never active
        for (let i = 0; i < K; i++) {
          colNorm2[c * K + i] += (u[i] * u[i]) / N;
          for (let j = 0; j < K; j++) H[c * K * K + i * K + j] += (2 / N) * u[i] * u[j];
        }
      }
    }
  }
  const W = Float32Array.from({ length: C * K }, () => rng.normal() * 0.5);
  return { name: `random ${C}x${K}`, channels: C, taps: K, W, H, colNorm2 };
}

describe('depthwise methods on random per-channel Hessians (dead channel and tap included)', () => {
  for (const K of [4, 3, 6]) {
    const p = randomProblem(24, K, 11 + K);
    test(`K=${K}: APT = least-squares optimum, SparseGPT = column-sequential OBS, losses, masks`, () => {
      const opts = (pattern: Pattern) => ({ pattern, dampening: 0.01 });
      const rng = new Rng(5);
      const fixed = Uint8Array.from({ length: p.W.length }, () => (rng.uniform() < 0.5 ? 1 : 0));
      const worst: string[] = [];
      for (const method of ['apt', 'sparsegpt'] as const) {
        const withMask = pruneDepthwise(method, p, { ...opts({ kind: 'unstructured', sparsity: 0.5 }), mask: fixed });
        const e = checkAgainstReferences(method, p, { kind: 'unstructured', sparsity: 0.5 }, withMask, fixed);
        assert.ok(e < 1e-6, `${method}, fixed mask: ${e}`);
        checkLoss(p, withMask);
        const un = pruneDepthwise(method, p, opts({ kind: 'unstructured', sparsity: 0.5 }));
        assert.ok(checkAgainstReferences(method, p, { kind: 'unstructured', sparsity: 0.5 }, un) < 1e-6);
        checkLoss(p, un);
        // The adaptive rule prunes floor(n·s) + 1 (continuous scores: no ties, except the exact zeros of dead taps).
        assert.ok(un.mask.reduce((a, b) => a + b, 0) >= Math.floor(p.W.length / 2) + 1);
        worst.push(`${method} ${e.toExponential(1)}`);
      }
      // On a fixed mask APT is the optimum, so no method does better there.
      const aptFixed = pruneDepthwise('apt', p, { pattern: { kind: 'unstructured', sparsity: 0.5 }, mask: fixed });
      const sgFixed = pruneDepthwise('sparsegpt', p, { pattern: { kind: 'unstructured', sparsity: 0.5 }, mask: fixed });
      assert.ok(aptFixed.loss <= sgFixed.loss * (1 + 1e-9), `APT ${aptFixed.loss} vs SparseGPT ${sgFixed.loss} on one mask`);
      // Dead channel: H_c = 0, weights zeroed, no failure.
      for (let j = 0; j < K; j++) assert.equal(aptFixed.W[1 * K + j], 0);
      assert.ok(aptFixed.notes.some((n) => /never active/.test(n)));
      console.log(`depthwise K=${K}: worst relative weight error vs float64 references (fixed mask): ${worst.join(', ')}`);
    });

    test(`K=${K}: N:M over the taps (exactly N per full group, trailing taps dense), Wanda and magnitude`, () => {
      for (const [n, m] of [[2, 4], [1, 2], [2, 3]] as const) {
        const pattern: Pattern = { kind: 'nm', n, m };
        for (const method of ['apt', 'sparsegpt', 'wanda', 'magnitude'] as MethodName[]) {
          const r = pruneDepthwise(method, p, { pattern, dampening: 0.01 });
          checkNm(r, p.channels, K, n, m);
          checkLoss(p, r);
          assert.equal(r.notes.some((x) => /not a multiple of M/.test(x)), K % m !== 0, `${method} ${n}:${m} K=${K}: ${r.notes.join('; ')}`);
          if (method === 'sparsegpt') assert.ok(checkAgainstReferences('sparsegpt', p, pattern, r) < 1e-6);
          if (method === 'apt' && m === K) assert.ok(checkAgainstReferences('apt', p, pattern, r) < 1e-6);
        }
      }
      // M > K: nothing is pruned, and a note says so.
      const none = pruneDepthwise('apt', p, { pattern: { kind: 'nm', n: 4, m: 8 } });
      assert.equal(none.mask.reduce((a, b) => a + b, 0), 0);
      assert.ok(none.notes.some((x) => /nothing is pruned/.test(x)));
      // Wanda: exactly floor(K·s) per channel, by |w|·sqrt(mean u²); magnitude: one threshold over the layer.
      const wanda = pruneDepthwise('wanda', p, { pattern: { kind: 'unstructured', sparsity: 0.5 } });
      for (let c = 0; c < p.channels; c++) {
        const s = range(0, K).map((j) => Math.abs(p.W[c * K + j]) * Math.sqrt((p.colNorm2 as Float32Array)[c * K + j]));
        const order = range(0, K).sort((a, b) => s[a] - s[b] || a - b);
        for (let j = 0; j < K; j++) assert.equal(wanda.mask[c * K + j], order.indexOf(j) < Math.floor(K / 2) ? 1 : 0, `wanda channel ${c}`);
      }
      const mag = pruneDepthwise('magnitude', p, { pattern: { kind: 'unstructured', sparsity: 0.5 } });
      assert.deepEqual([...mag.mask], [...thresholdRule([...p.W].map(Math.abs), 0.5)]);
    });
  }

  test('an indefinite H_c raises that channel\'s dampening (×10 steps) with a note; the others keep theirs', () => {
    const H = Float32Array.from([1, 0, 0, 1, /* channel 1: eigenvalues 4, −2 */ 1, 3, 3, 1]);
    const W = Float32Array.from([1, -0.5, 0.3, 2]);
    const r = pruneDepthwise('apt', { name: 'indefinite', channels: 2, taps: 2, W, H }, { pattern: { kind: 'nm', n: 1, m: 2 }, dampening: 0.01 });
    assert.equal(r.dampening, 10, 'λ = d·mean(diag) = d must exceed 2: 0.01 → 0.1 → 1 → 10');
    assert.ok(r.notes.some((n) => /dampening 0\.01 in 1 channel\(s\); used up to 10/.test(n)), r.notes.join('; '));
    assert.throws(() => pruneDepthwise('apt', { name: 'hopeless', channels: 1, taps: 2, W: W.subarray(0, 2), H: Float32Array.from([1, 1e6, 1e6, 1]) }, { pattern: { kind: 'nm', n: 1, m: 2 } }), /layer hopeless: H: channel 0: H_c is not positive definite even with dampening 100/);
  });

  test('bad input names the layer and the field', () => {
    const p = randomProblem(4, 4, 3);
    assert.throws(() => pruneDepthwise('apt', { ...p, H: undefined }, { pattern: { kind: 'nm', n: 2, m: 4 } }), /layer random 4x4: H: apt needs the layer's per-channel Hessians/);
    assert.throws(() => pruneDepthwise('apt', { ...p, W: p.W.subarray(1) }, { pattern: { kind: 'nm', n: 2, m: 4 } }), /layer random 4x4: W: has 15 values, expected 4x4/);
    const nan = Float32Array.from(p.H as Float32Array);
    nan[5] = NaN;
    assert.throws(() => pruneDepthwise('sparsegpt', { ...p, H: nan }, { pattern: { kind: 'nm', n: 2, m: 4 } }), /H: non-finite value NaN at index 5/);
  });
});

// ---------------------------------------------------------------------------------------------------------
// The fixture: per-channel Hessians from the block graphs, against the captured conv inputs

interface RealConv { name: string; problem: DepthwiseProblem; inputs: Float32Array; dims: number[]; sequences: number }

/** Every block's calibration graph run with the dense weights in order (the pipeline's protocol without pruning),
 *  and the full model with the conv inputs as extra outputs. */
async function realConvs(model: ModelProto, nsamples: number, seqlen: number): Promise<RealConv[]> {
  const d = discoverLayers(model, { includeDepthwiseConv: true });
  const plan = await planSegments(model, d);
  const specs = inputSpecs(model.graph.input, new Set(model.graph.initializer.map((t) => t.name)));
  const ids = readTokens(text, loadTokenizer(path.join(mambaDir, 'tokenizer.json')));
  const { windows } = calibrationWindows(ids, nsamples, seqlen, 0, 65536);
  const cache = new Map<string, ort.Tensor>(Object.entries(causalLmFeeds(specs, windows, 'model')));
  const weightFeed = (name: string) => {
    const w = weights.get(name);
    assert.ok(w);
    return new ort.Tensor('float32', w.data as Float32Array<ArrayBuffer>, w.dims);
  };
  const sums = new Map<string, CalibrationSums>();
  for (const seg of plan.segments) {
    const feeds = (inputs: string[], ws: string[]) => Object.fromEntries([...inputs.map((t) => [t, cache.get(t) as ort.Tensor]), ...ws.map((t) => [t, weightFeed(t)])]);
    if (seg.layers.length) {
      const cg = calibrationModel(plan, seg);
      const segSums = emptySums(cg);
      await runCalibration(await engine.kernel(cg.model), cg, feeds(cg.inputs, cg.weights), segSums, windows.length);
      for (const st of cg.stats.filter((s) => s.kind === 'depthwiseConv')) sums.set(st.layers[0], segSums.get(st.key) as CalibrationSums);
    }
    const sg = segmentModel(plan, seg);
    const out = await (await engine.kernel(sg.model)).run(feeds(sg.inputs, sg.weights));
    for (const t of sg.outputs) cache.set(t, out[t]);
  }
  const convs = d.layers.filter((l) => l.kind === 'depthwiseConv');
  const session = await engine.modelSession({ model: encodeModel(withExtraOutputs(model, convs.map((l) => l.input))), externalData: [] });
  const captured = await session.run(causalLmFeeds(specs, windows, 'model'));
  await session.release();
  return convs.map((l) => {
    const s = sums.get(l.name) as CalibrationSums;
    const x = captured[l.input];
    return {
      name: l.name, inputs: x.data as Float32Array, dims: x.dims.slice(), sequences: windows.length,
      problem: { name: l.name, channels: l.rows, taps: l.cols, W: weights.get(l.weight)?.data as Float32Array, H: Float32Array.from(s.hessian()), colNorm2: s.colNorm2() },
    };
  });
}

/** H_c = (2/N)·Σ_{b,t} u uᵀ, u = x_c[t−K+1 … t] (zeros before the start), in float64 from the conv's input [B, C, T]. */
function hessianFromInputs(conv: RealConv): Float64Array {
  const [B, C, T] = conv.dims;
  const K = conv.problem.taps;
  const H = new Float64Array(C * K * K);
  const u = new Float64Array(K);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      const o = (b * C + c) * T;
      for (let t = 0; t < T; t++) {
        for (let j = 0; j < K; j++) u[j] = t - K + 1 + j >= 0 ? conv.inputs[o + t - K + 1 + j] : 0;
        for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) H[c * K * K + i * K + j] += u[i] * u[j];
      }
    }
  }
  return H.map((v) => (2 / conv.sequences) * v);
}

/** 0.5·Σ_c δw_c H_c δw_cᵀ through the data: (1/N)·Σ_{b,t,c} (δw_c·u_c[t])², the change of the conv's output. */
function outputChange(conv: RealConv, W: Float32Array): number {
  const [B, C, T] = conv.dims;
  const K = conv.problem.taps;
  let s = 0;
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      const o = (b * C + c) * T;
      for (let t = 0; t < T; t++) {
        let y = 0;
        for (let j = 0; j < K; j++) if (t - K + 1 + j >= 0) y += (conv.problem.W[c * K + j] - W[c * K + j]) * conv.inputs[o + t - K + 1 + j];
        s += y * y;
      }
    }
  }
  return s / conv.sequences;
}

describe('stories-mamba conv1d: per-channel Hessians and methods on real data', () => {
  let convs: RealConv[] = [];
  before(async () => {
    convs = await realConvs(buildMambaModel(mambaConfig, weights), 16, 128);
  });

  test('discovery: four depthwise convs [256, 1, 4], opt-in; Hessians from the block graphs = float64 from the captured inputs (1e-4)', () => {
    const model = openCheckpoint(mambaDir).model;
    const d = discoverLayers(model);
    assert.deepEqual(d.layers.map((l) => l.name), LINEAR);
    const skipped = d.skipped.filter((s) => s.kind === 'depthwiseConv');
    assert.deepEqual(skipped.map((s) => [s.name, s.op, s.rows, s.cols, s.keptDenseBy, s.weight]), CONVS.map((n) => [n, 'Conv', 256, 4, 'depthwiseConv', `backbone.${n}.weight`]));
    const opted = discoverLayers(model, { includeDepthwiseConv: true });
    assert.deepEqual(opted.layers.map((l) => l.name).sort(), [...LINEAR, ...CONVS].sort());
    assert.deepEqual(opted.blocks.map((b) => b.layers), [0, 1, 2, 3].map((i) => [`layers.${i}.mixer.in_proj`, `layers.${i}.mixer.conv1d`, `layers.${i}.mixer.x_proj`, `layers.${i}.mixer.dt_proj`, `layers.${i}.mixer.out_proj`]));
    assert.deepEqual(opted.layers.find((l) => l.kind === 'depthwiseConv')?.weightDims, [256, 1, 4]);

    assert.equal(convs.length, 4);
    const worst: string[] = [];
    for (const conv of convs) {
      assert.deepEqual(conv.dims.slice(0, 2), [16, 256]);
      const want = hessianFromInputs(conv);
      const got = conv.problem.H as Float32Array;
      let num = 0;
      let den = 0;
      let maxRel = 0;
      for (let c = 0; c < 256; c++) {
        let cn = 0;
        let cd = 0;
        for (let i = 0; i < 16; i++) { cn += (got[c * 16 + i] - want[c * 16 + i]) ** 2; cd += want[c * 16 + i] ** 2; }
        num += cn;
        den += cd;
        if (cd > 0) maxRel = Math.max(maxRel, Math.sqrt(cn / cd));
      }
      worst.push(`${conv.name} ${Math.sqrt(num / den).toExponential(1)} (worst channel ${maxRel.toExponential(1)})`);
      assert.ok(maxRel < 1e-4, `${conv.name}: per-channel relative error ${maxRel}`);
      // Σ u² per tap (Wanda's norms) is half the diagonal.
      for (let c = 0; c < 256; c++) for (let j = 0; j < 4; j++) assert.ok(rel(2 * (conv.problem.colNorm2 as Float32Array)[c * 4 + j], want[c * 16 + j * 5]) < 1e-4 || want[c * 16 + j * 5] < 1e-12);
    }
    console.log(`conv1d H_c from the block graph vs float64 from the captured inputs (16 × 128 tokens): ${worst.join('; ')}`);
  });

  test('APT = least squares, SparseGPT = column-sequential OBS; losses = the change of the conv output; APT <= SparseGPT; exact masks', () => {
    const rows: string[] = [];
    for (const conv of convs) {
      const p = conv.problem;
      for (const pattern of [{ kind: 'unstructured', sparsity: 0.5 }, { kind: 'nm', n: 2, m: 4 }] as Pattern[]) {
        const apt = pruneDepthwise('apt', p, { pattern });
        const sg = pruneDepthwise('sparsegpt', p, { pattern });
        const ea = checkAgainstReferences('apt', p, pattern, apt);
        const es = checkAgainstReferences('sparsegpt', p, pattern, sg);
        assert.ok(ea < 1e-5 && es < 1e-5, `${conv.name}: APT ${ea}, SparseGPT ${es}`);
        for (const r of [apt, sg]) {
          checkLoss(p, r);
          const data = outputChange(conv, r.W);
          assert.ok(rel(r.loss, data) < 1e-4, `${conv.name}: loss ${r.loss} vs output change ${data}`);
        }
        if (pattern.kind === 'nm') { checkNm(apt, 256, 4, 2, 4); checkNm(sg, 256, 4, 2, 4); }
        else for (const r of [apt, sg]) assert.equal(r.mask.reduce((a, b) => a + b, 0), 513, 'floor(1024·0.5) + 1 (SparseGPT\'s adaptive rule)');
        assert.ok(apt.loss <= sg.loss, `${conv.name} ${pattern.kind}: APT ${apt.loss} > SparseGPT ${sg.loss}`);
        const wanda = pruneDepthwise('wanda', p, { pattern });
        const mag = pruneDepthwise('magnitude', p, { pattern });
        rows.push(`${conv.name} ${pattern.kind === 'nm' ? '2:4' : '50%'}: rel loss apt ${apt.relLoss.toFixed(4)} sparsegpt ${sg.relLoss.toFixed(4)} wanda ${wanda.relLoss.toFixed(4)} magnitude ${mag.relLoss.toFixed(4)}`);
        // Fixed random mask: APT's weights are the optimum for it.
        const rng = new Rng(9);
        const fixed = Uint8Array.from({ length: 1024 }, () => (rng.uniform() < 0.5 ? 1 : 0));
        assert.ok(checkAgainstReferences('apt', p, pattern, pruneDepthwise('apt', p, { pattern, mask: fixed }), fixed) < 1e-5);
      }
    }
    console.log(`stories-mamba conv1d (calibration 16 × 128):\n  ${rows.join('\n  ')}`);
  });
});

// ---------------------------------------------------------------------------------------------------------
// End to end

const header = readSafetensorsHeader(path.join(mambaDir, 'model.safetensors'));

/** APT 50% on the short protocol unless `extra` says otherwise. */
const prune = (checkpoint: string, output: string, extra: Record<string, unknown>) => quickRun({ checkpoint, output, ...extra }, text, work);

describe('stories-mamba with keepDense.depthwiseConv false: in_proj … out_proj and conv1d pruned', () => {
  const results: string[] = [];
  for (const pattern of ['unstructured', '2:4'] as const) {
    test(`APT ${pattern === '2:4' ? '2:4' : '50%'}: conv1d written with the pattern, everything else not targeted bit-identical, re-reads`, async () => {
      const out = path.join(work, `hf-apt-conv-${pattern.replace(':', 'of')}`);
      const r = await prune(mambaDir, out, { pattern, keepDense: { depthwiseConv: false } });
      assert.equal(r.error, undefined, r.error?.message);
      const started = r.events.find((e) => e.type === 'run.started') as EventOf<'run.started'>;
      assert.deepEqual(started.layers.filter((l) => l.op === 'Conv').map((l) => [l.name, l.shape, l.target?.pattern]), CONVS.map((n) => [n, [256, 4], pattern]));
      assert.deepEqual([...r.pruned.keys()].sort(), [...LINEAR, ...CONVS].sort());
      const b = readSafetensorsHeader(path.join(out, 'model.safetensors'));
      assert.deepEqual(b.headerBytes, header.headerBytes);
      for (const [name, e] of header.tensors) {
        const layer = name.replace(/^backbone\./, '').replace(/\.weight$/, '');
        const got = b.tensors.get(name) as typeof e;
        const ev = r.pruned.get(layer);
        if (!ev) {
          assert.deepEqual(readTensorBytes(got), readTensorBytes(e), `${name} bit-identical`);
          continue;
        }
        const v = readTensorFloat32(got);
        const zeros = v.filter((x) => x === 0).length;
        assert.equal(zeros / v.length, ev.sparsity, `${layer}: written zeros = reported sparsity`);
        if (!CONVS.includes(layer)) continue;
        assert.deepEqual(e.shape, [256, 1, 4]);
        assert.ok(ev.loss !== null && ev.loss > 0 && ev.relLoss !== null && ev.relLoss < 1);
        if (pattern === '2:4') {
          for (let c = 0; c < 256; c++) assert.ok(v.subarray(c * 4, c * 4 + 4).filter((x) => x === 0).length >= 2, `${layer} channel ${c}`);
        } else {
          assert.ok(zeros >= 513, `${layer}: ${zeros} zeros of 1024`);
        }
      }
      assert.equal(r.ppl.length, 2);
      const again = openCheckpoint(out);
      const ids = readTokens(text, loadTokenizer(path.join(out, 'tokenizer.json')));
      const session = await engine.modelSession(again.sessionSource());
      const res = await perplexity(session, inputSpecs(again.model.graph.input, new Set(again.model.graph.initializer.map((t) => t.name))), evaluationWindows(ids, 128, 16), { batch: 8 });
      await session.release();
      assert.ok(Math.abs(res.ppl / r.ppl[1] - 1) < 1e-6, `re-read ${res.ppl} vs reported ${r.ppl[1]}`);
      const convLoss = CONVS.map((n) => (r.pruned.get(n)?.relLoss as number).toFixed(4)).join(' ');
      results.push(`apt ${pattern}: ppl ${r.ppl.map((p) => p.toFixed(4)).join(' → ')}; conv1d rel losses ${convLoss}`);
    });
  }

  test('a pattern naming only conv1d without the opt-in fails and says which flag releases it', async () => {
    const r = await prune(mambaDir, path.join(work, 'unmatched'), { layers: { include: ['layers.*.mixer.conv1d'] } });
    assert.match(r.error?.message ?? '', /\$\.layers\.include\[0\]: "layers\.\*\.mixer\.conv1d" matches no prunable layer: layers\.0\.mixer\.conv1d is left dense by keepDense\.depthwiseConv \(set it to false to prune it\)/);
  });

  test('only conv1d (include, overrides): the Gemms stay bit-identical; ONNX-file form gives the same conv1d losses (1e-3)', async () => {
    const dir = path.join(work, 'mamba-onnx');
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'model.onnx');
    writeFileSync(file, encodeModel(buildMambaModel(mambaConfig, weights, { scan: 'fused' })));
    copyFileSync(path.join(mambaDir, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    const extra = { keepDense: { depthwiseConv: false }, layers: { include: ['*.conv1d'], overrides: [{ match: 'layers.3.*', pattern: '2:4' }] } };
    const hf = await prune(mambaDir, path.join(work, 'hf-conv-only'), extra);
    const onnx = await prune(file, path.join(work, 'onnx-conv-only'), extra);
    assert.equal(hf.error, undefined, hf.error?.message);
    assert.equal(onnx.error, undefined, onnx.error?.message);
    assert.deepEqual([...hf.pruned.keys()], CONVS);
    assert.deepEqual([...onnx.pruned.keys()], CONVS);
    assert.deepEqual(CONVS.map((n) => hf.pruned.get(n)?.pattern), ['unstructured', 'unstructured', 'unstructured', '2:4']);
    let worst = 0;
    for (const n of CONVS) worst = Math.max(worst, rel(onnx.pruned.get(n)?.loss as number, hf.pruned.get(n)?.loss as number));
    assert.ok(worst < 1e-3, `ONNX file vs folder conv1d losses: ${worst}`);
    const b = readSafetensorsHeader(path.join(work, 'hf-conv-only', 'model.safetensors'));
    for (const [name, e] of header.tensors) if (!name.endsWith('conv1d.weight')) assert.deepEqual(readTensorBytes(b.tensors.get(name) as typeof e), readTensorBytes(e), name);
    const written = openCheckpoint(path.join(work, 'onnx-conv-only'));
    const w = written.weightAsFloat32('backbone.layers.3.mixer.conv1d.weight');
    for (let c = 0; c < 256; c++) assert.ok(w.subarray(c * 4, c * 4 + 4).filter((x) => x === 0).length >= 2);
    results.push(`conv1d only (layers 0-2 50%, layer 3 2:4): ppl ${hf.ppl.map((p) => p.toFixed(4)).join(' → ')}; ONNX file vs folder conv1d loss: worst ${worst.toExponential(2)}`);
  });

  for (const dtype of ['BF16', 'F16']) {
    test(`the fixture's weights as ${dtype}: conv1d pruned in fp32, written back as ${dtype} with the pattern, the rest bit-identical`, async () => {
      const dir = path.join(work, `mamba-${dtype}`);
      writeHfFolder(dir, mambaConfig as unknown as Record<string, unknown>, [...weights].map(([name, t]) => ({ name, dims: t.dims, data: t.data as Float32Array })), { dtype, copy: [path.join(mambaDir, 'tokenizer.json')] });
      const out = path.join(work, `mamba-${dtype}-apt-2of4`);
      const r = await prune(dir, out, { pattern: '2:4', keepDense: { depthwiseConv: false }, evaluation: false, calibration: { path: text, nsamples: 8, seqlen: 64, seed: 0, skipTokens: 65536 } });
      assert.equal(r.error, undefined, r.error?.message);
      const before = readSafetensorsHeader(path.join(dir, 'model.safetensors'));
      const written = readSafetensorsHeader(path.join(out, 'model.safetensors'));
      assert.deepEqual(written.headerBytes, before.headerBytes);
      for (const [name, e] of before.tensors) {
        const got = written.tensors.get(name) as typeof e;
        const layer = name.replace(/^backbone\./, '').replace(/\.weight$/, '');
        if (!r.pruned.has(layer)) {
          assert.deepEqual(readTensorBytes(got), readTensorBytes(e), `${name} bit-identical`);
          continue;
        }
        assert.equal(got.dtype, dtype);
        const v = readTensorFloat32(got);
        assert.equal(v.filter((x) => x === 0).length / v.length, r.pruned.get(layer)?.sparsity, `${layer}: written zeros = reported sparsity`);
        if (CONVS.includes(layer)) for (let c = 0; c < 256; c++) assert.ok(v.subarray(c * 4, c * 4 + 4).filter((x) => x === 0).length >= 2, `${layer} channel ${c}`);
      }
      assert.deepEqual(CONVS.filter((n) => r.pruned.has(n)), CONVS);
    });
  }

  after(() => {
    if (results.length) console.log(`stories-mamba with conv1d (calibration 16×128, evaluation 16×128):\n  ${results.join('\n  ')}`);
  });
});

// ---------------------------------------------------------------------------------------------------------

describe('prunekit inspect and the editor: conv1d listed as opt-in', () => {
  test('inspect --json lists conv1d among the skipped layers with keptDenseBy; completions and summaries follow keepDense', () => {
    // The CLI from its sources (a clean checkout has no dist/ until `npm run build`).
    const prunekit = (...args: string[]) => execFileSync(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src', 'backend', 'cli', 'main.ts'), ...args], { encoding: 'utf8' });
    const info = parseInspectOutput(prunekit('inspect', mambaDir, '--json'));
    const convs = info.skipped.filter((s) => s.keptDenseBy === 'depthwiseConv');
    assert.deepEqual(convs.map((s) => [s.name, s.op, s.shape]), CONVS.map((n) => [n, 'Conv', [256, 4]]));
    assert.deepEqual(patternTargets(info), LINEAR);
    assert.deepEqual(patternTargets(info, { depthwiseConv: false }).sort(), [...LINEAR, ...CONVS].sort());
    const offered = layerPatternSuggestions(info, { depthwiseConv: false });
    assert.equal(offered.find((s) => s.label === 'layers.0.mixer.conv1d')?.detail, '256×4 Conv (depthwise, opt-in)');
    assert.equal(offered.find((s) => s.label === '*.mixer.conv1d')?.detail, '4 layers');
    assert.ok(!layerPatternSuggestions(info).some((s) => s.label.includes('conv1d')));
    assert.equal(layerHover(info, 'layers.2.mixer.conv1d'), '**layers.2.mixer.conv1d** — 256×4 Conv, left dense: depthwise conv (left dense by default; opt-in: pruned when keepDense.depthwiseConv is false)');
    const config = resolveConfig({ checkpoint: mambaDir, output: path.join(work, 'x'), calibration: { path: text }, keepDense: { depthwiseConv: false } }, work);
    assert.equal(configSummary(config, info), 'apt · 50% · 20 layers');
    const text0 = prunekit('inspect', mambaDir);
    assert.match(text0, /left dense: layers\.0\.mixer\.conv1d 256x4 Conv \(depthwise conv \(left dense by default\)\) \[opt-in: keepDense\.depthwiseConv false prunes it\]/);
  });
});
