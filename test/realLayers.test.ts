// The numerical core on real layers: every linear layer of the stories260K fixture (35 layers, 32..172 rows,
// 64 or 172 columns), with Hessians from real calibration text, checked against float64 references.
//
//   node --import tsx --test test/realLayers.test.ts
//   PRUNEKIT_PRINT_TABLE=1 node --import tsx test/realLayers.test.ts     (also prints markdown tables)
//   PRUNEKIT_VERBOSE=1 …                                                 (every check's numbers per layer)
//
// Protocol (printed with the tables): 32 windows of 256 tokens from data/tinystories_train_head_2MiB.txt,
// seed 0 (see test/helpers/realLayers.ts), dampening 0.01, block size 128, CPU.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { Kernels } from '../src/backend/linalg/kernels';
import { pruneLayer } from '../src/backend/methods';
import { rowPool } from '../src/backend/methods/rowKernels';
import type { MethodName, Pattern, PruneOptions, PruneResult } from '../src/backend/methods/types';
import { decodeModel } from '../src/backend/onnx/proto';
import { Engine } from '../src/backend/onnx/session';
import { dampedInverseFactor, extremeEigenvalues, fixedMaskOptimum, prepareHessian, quadLoss, sparsegptReference } from './helpers/reference';
import { collectRealLayers, findLinearLayers, fixturesDir, loadTokenizer, RealLayer, RealLayers, withExtraOutputs } from './helpers/realLayers';

const MODEL_DIR = path.join(fixturesDir, 'stories260K-onnx');
const TEXT = path.join(fixturesDir, 'data', 'tinystories_train_head_2MiB.txt');
const DAMP = 0.01;

// ---------------------------------------------------------------------------------------------------
// Tolerances
//
// fp32 unit round-off u = 2^-24 ≈ 6e-8. The implementation factors the damped H in fp32 (float64 leaves of
// 128 columns in JS, fp32 GEMMs between them) and applies its updates as fp32 GEMMs, so its results carry
// relative errors of order κ(H_damped)·u in the worst direction. With 1% dampening, κ(H_damped) on these 20
// Hessians is 27..533 (printed by the U test), so κ·u ≤ 3.2e-5.

/** Reported loss vs 0.5·tr(ΔW H ΔWᵀ) recomputed in float64 from the returned W (the 1e-4). */
const LOSS_REL = 1e-4;
/** Two computations of the same optimum (implementation vs float64, or two implementations): their losses
 *  agree to the 1e-4. */
const SAME_LOSS_REL = 1e-4;
/** ‖W_a − W_b‖_F / ‖W_b − W_0‖_F: a weight difference relative to the size of the compensation itself.
 *  ≈ 3·max κ·u; measured values are ≤ 1e-6 (printed). */
const WEIGHT_REL = 1e-4;
/** max |(UᵀU·H_damped − I)_ij| ≤ UTU_K · n · κ · u: the standard first-order bound for an inverse from a
 *  Cholesky factorisation (measured: at most 0.0015 of it). */
const UTU_K = 1;
/** Round-off slack for "APT ≤ SparseGPT": each reported fp32 loss is off by up to ~5e-7 relative (measured
 *  against float64 below), so two equal losses may compare either way by about 1e-6. */
const ORDER_SLACK = 1e-5;

// ---------------------------------------------------------------------------------------------------
// Float64 references: src/backend/methods/sparsegpt.reference.ts (which also records how close each mask decision
// was to a tie: MASK_TIE), test/helpers/reference.ts (fixedMaskOptimum, quadLoss, …).

/** H_damped in float64, as SparseGPT prepares it (no dead columns on these layers: checked). */
const dampedF64 = (H: Float32Array, n: number): Float64Array => prepareHessian(H, n, DAMP).Hd;

/** ‖A − B‖_F / ‖B − W0‖_F: a weight difference relative to the size of the compensation. */
function relWeightDiff(A: ArrayLike<number>, B: ArrayLike<number>, W0: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < W0.length; i++) {
    num += (A[i] - B[i]) ** 2;
    den += (B[i] - W0[i]) ** 2;
  }
  return Math.sqrt(num / den);
}

const relDiff = (a: number, b: number): number => Math.abs(a - b) / Math.abs(b);

function maskMismatches(a: Uint8Array, b: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

// ---------------------------------------------------------------------------------------------------
// Runs

const HALF: Pattern = { kind: 'unstructured', sparsity: 0.5 };
const NM24: Pattern = { kind: 'nm', n: 2, m: 4 };
const METHODS: MethodName[] = ['apt', 'sparsegpt', 'wanda', 'magnitude'];
type PatternKey = '50%' | '2:4';
const PATTERNS: [PatternKey, Pattern][] = [['50%', HALF], ['2:4', NM24]];

interface LayerRun {
  layer: RealLayer;
  res: Record<PatternKey, Record<MethodName, PruneResult>>;
  /** APT 2:4 with the other mask rule ('saliency'; the default is 'joint'). */
  aptSaliency: PruneResult;
  aptJoint: PruneResult;
}

const VERBOSE = process.env.PRUNEKIT_VERBOSE === '1';

/** The largest value of each named quantity and where it occurred: one summary line per check. */
class Worst {
  private readonly seen = new Map<string, { v: number; at: string }>();
  see(what: string, v: number, at: string): void {
    const cur = this.seen.get(what);
    if (!cur || v > cur.v) this.seen.set(what, { v, at });
  }
  print(t: { diagnostic(msg: string): void }): void {
    for (const [what, { v, at }] of this.seen) t.diagnostic(`max ${what}: ${v.toExponential(3)} (${at})`);
  }
}

const short = (name: string): string => name.replace(/^\/model\//, '').replace(/\/MatMul$/, '');
const e3 = (x: number): string => x.toExponential(3);
const p3 = (x: number): string => x.toPrecision(3);

describe('real layers of stories260K', { timeout: 300_000 }, () => {
  const engine = new Engine({ device: 'cpu', threads: 0 });
  let data: RealLayers;
  const runs: LayerRun[] = [];
  let pruneSeconds = 0;

  before(async () => {
    data = await collectRealLayers(path.join(MODEL_DIR, 'model.onnx'), TEXT, engine);
    const t0 = performance.now();
    for (const layer of data.layers) {
      const res = {} as LayerRun['res'];
      for (const [key, pattern] of PATTERNS) {
        res[key] = {} as Record<MethodName, PruneResult>;
        for (const m of METHODS) res[key][m] = await pruneLayer(m, layer, { pattern }, engine);
      }
      const aptSaliency = await pruneLayer('apt', layer, { pattern: NM24, nmMask: 'saliency' }, engine);
      const aptJoint = await pruneLayer('apt', layer, { pattern: NM24, nmMask: 'joint' }, engine);
      runs.push({ layer, res, aptSaliency, aptJoint });
    }
    pruneSeconds = (performance.now() - t0) / 1000;
  });

  after(async () => {
    await engine.release();
    // The row pool's workers keep the process alive after the last test (see the report: their unref()
    // is undone by the 'message' listener added after it); close them so this file's process ends.
    await rowPool.close();
  });

  test('the tokenizer reproduces the fixture oracle ([BOS] + encode(text))', () => {
    const tok = loadTokenizer(MODEL_DIR);
    const ref = JSON.parse(readFileSync(path.join(fixturesDir, 'stories260K-reference.json'), 'utf8')) as { tokenizer_cases: { text: string; ids: number[] }[] };
    assert.ok(ref.tokenizer_cases.length >= 5);
    for (const c of ref.tokenizer_cases) assert.deepEqual(tok.encodeWithBos(c.text), c.ids, JSON.stringify(c.text));
  });

  test('the graph with the layer inputs as extra outputs still reproduces the PyTorch logits', async () => {
    const model = decodeModel(readFileSync(path.join(MODEL_DIR, 'model.onnx')));
    const inputs = [...new Set(findLinearLayers(model).map((l) => l.input))];
    const kernel = await engine.kernel(withExtraOutputs(model, inputs));
    const ref = JSON.parse(readFileSync(path.join(fixturesDir, 'stories260K-reference.json'), 'utf8')) as { cases: { input_ids: number[][]; attention_mask: number[][]; logits: number[][][] }[] };
    const c = ref.cases[0];
    const dims = [c.input_ids.length, c.input_ids[0].length];
    const out = await kernel.run({
      input_ids: new ort.Tensor('int64', BigInt64Array.from(c.input_ids.flat(), BigInt), dims),
      attention_mask: new ort.Tensor('int64', BigInt64Array.from(c.attention_mask.flat(), BigInt), dims),
    });
    const logits = out.logits.data as Float32Array;
    const want = c.logits.flat(2);
    assert.equal(logits.length, want.length);
    let maxDiff = 0;
    for (let i = 0; i < want.length; i++) maxDiff = Math.max(maxDiff, Math.abs(logits[i] - want[i]));
    // The fixtures report onnxruntime vs PyTorch max |Δ| 1.3e-5 (logits span about −19…24, JSON rounded to 1e-6).
    assert.ok(maxDiff <= 1e-4, `max |Δlogit| ${maxDiff}`);
    for (const name of inputs) assert.equal(out[name].dims.length, 3, name);
  });

  test('calibration finds the 35 linear layers with their Hessians', (t) => {
    t.diagnostic(`protocol: ${JSON.stringify(data.protocol)}`);
    t.diagnostic(`tokenize ${data.seconds.tokenize.toFixed(2)} s, calibrate ${data.seconds.calibrate.toFixed(2)} s, prune (10 runs per layer) ${pruneSeconds.toFixed(2)} s`);
    assert.equal(data.layers.length, 35);
    const kinds = ['self_attn/q_proj', 'self_attn/k_proj', 'self_attn/v_proj', 'self_attn/o_proj', 'mlp/gate_proj', 'mlp/up_proj', 'mlp/down_proj'];
    const shapes: Record<string, [number, number]> = {
      q_proj: [64, 64], k_proj: [32, 64], v_proj: [32, 64], o_proj: [64, 64], gate_proj: [172, 64], up_proj: [172, 64], down_proj: [64, 172],
    };
    data.layers.forEach((l, i) => {
      assert.equal(l.name, `/model/layers.${Math.floor(i / 7)}/${kinds[i % 7]}/MatMul`);
      assert.deepEqual([l.rows, l.cols], shapes[kinds[i % 7].split('/')[1]], l.name);
      const n = l.cols;
      for (let a = 0; a < n; a++) {
        assert.ok(l.H[a * n + a] > 0, `${l.name}: dead input column ${a}`);
        assert.ok(Math.abs(l.colNorm2[a] - l.H[a * n + a] / 2) <= 1e-4 * l.colNorm2[a], `${l.name}: colNorm2[${a}] != H[${a},${a}]/2`);
        for (let b = 0; b < a; b++) assert.ok(Math.abs(l.H[a * n + b] - l.H[b * n + a]) <= 1e-5 * Math.sqrt(l.H[a * n + a] * l.H[b * n + b]), `${l.name}: H not symmetric at (${a},${b})`);
      }
    });
    // q/k/v and gate/up read the same tensor, so they share one H.
    const byInput = new Map<string, RealLayer[]>();
    for (const l of data.layers) byInput.set(l.input, [...(byInput.get(l.input) ?? []), l]);
    assert.equal(byInput.size, 20);
    for (const group of byInput.values()) for (const l of group) assert.equal(l.H, group[0].H);
  });

  test('‖UᵀU·H_damped − I‖ is at the fp32 round-off level (κ·n·u)', async (t) => {
    const kernels = new Kernels(engine);
    const seen = new Set<Float32Array>();
    const worst = new Worst();
    for (const l of data.layers) {
      if (seen.has(l.H)) continue;
      seen.add(l.H);
      const n = l.cols;
      const f = await dampedInverseFactor(l.H, n, DAMP, kernels);
      assert.equal(f.dampening, DAMP, `${l.name}: dampening was raised`);
      // The H the implementation factored: fp32 H with λ added in fp32.
      const hd = Float32Array.from(l.H);
      let mean = 0;
      for (let j = 0; j < n; j++) mean += l.H[j * n + j];
      for (let j = 0; j < n; j++) hd[j * n + j] += (DAMP * mean) / n;
      const U = f.U.toMat().data;
      // X = UᵀU, then R = X·H − I.
      const X = new Float64Array(n * n);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k <= Math.min(i, j); k++) s += U[k * n + i] * U[k * n + j];
        X[i * n + j] = s;
      }
      let maxAbs = 0;
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += X[i * n + k] * hd[k * n + j];
        maxAbs = Math.max(maxAbs, Math.abs(s - (i === j ? 1 : 0)));
      }
      const kappa = extremeEigenvalues(hd, n, 200).cond;
      const bound = UTU_K * n * kappa * 2 ** -24;
      if (VERBOSE) t.diagnostic(`${short(l.input).padEnd(40)} n=${n} κ=${e3(kappa)} max|UᵀUH−I|=${e3(maxAbs)} bound n·κ·u=${e3(bound)}`);
      worst.see('κ(H_damped)', kappa, short(l.input));
      worst.see('|UᵀU·H_damped − I|_ij', maxAbs, short(l.input));
      worst.see('|UᵀU·H_damped − I|_ij / (n·κ·u)', maxAbs / bound, short(l.input));
      assert.ok(maxAbs <= bound, `${l.input}: max|UᵀU·H−I| = ${maxAbs} > ${bound} (κ=${kappa})`);
    }
    worst.print(t);
  });

  test('every reported loss equals 0.5·tr(ΔW H ΔWᵀ) recomputed in float64', (t) => {
    const worst = new Worst();
    for (const { layer: l, res, aptSaliency } of runs) {
      const ref0 = quadLoss(l.W, new Float32Array(l.W.length), l.H, l.rows, l.cols);
      for (const r of [...Object.values(res['50%']), ...Object.values(res['2:4']), aptSaliency]) {
        const ref = quadLoss(l.W, r.W, l.H, l.rows, l.cols);
        const rel = relDiff(r.loss, ref);
        worst.see('rel. difference of a reported loss from float64', rel, `${short(l.name)} ${r.method}`);
        assert.ok(rel <= LOSS_REL, `${l.name} ${r.method}: reported ${r.loss}, float64 ${ref} (rel ${rel})`);
        assert.ok(relDiff(r.relLoss, ref / ref0) <= LOSS_REL, `${l.name} ${r.method}: relLoss ${r.relLoss}, float64 ${ref / ref0}`);
      }
    }
    worst.print(t);
  });

  test('masks: exact 2:4 groups, 50% sparsity, pruned weights exactly zero', () => {
    for (const { layer: l, res, aptSaliency } of runs) {
      for (const r of [...Object.values(res['2:4']), aptSaliency]) {
        for (let row = 0; row < l.rows; row++) {
          for (let g = 0; g < l.cols; g += 4) {
            let n = 0;
            for (let j = g; j < g + 4; j++) n += r.mask[row * l.cols + j];
            assert.equal(n, 2, `${l.name} ${r.method} 2:4: row ${row} group ${g / 4} has ${n} pruned`);
          }
        }
      }
      for (const r of [...Object.values(res['50%']), ...Object.values(res['2:4']), aptSaliency]) {
        let pruned = 0;
        for (let i = 0; i < r.mask.length; i++) {
          if (!r.mask[i]) continue;
          pruned++;
          assert.equal(r.W[i], 0, `${l.name} ${r.method}: masked weight ${i} is ${r.W[i]}`);
        }
        const frac = pruned / r.mask.length;
        // SparseGPT/APT's threshold rule prunes floor(n·s)+1 or more per block (ties), Wanda exactly half per
        // row, magnitude one threshold over the layer.
        assert.ok(frac >= 0.5 && frac <= 0.5 + 2 / l.cols, `${l.name} ${r.method}: mask sparsity ${frac}`);
      }
    }
  });

  test('SparseGPT equals its float64 reference (mask and weights)', (t) => {
    const worst = new Worst();
    let minGap = Infinity;
    for (const { layer: l, res } of runs) {
      for (const [key, pattern] of PATTERNS) {
        const got = res[key].sparsegpt;
        const ref = sparsegptReference(l.W, l.H, l.rows, l.cols, { pattern, dampening: DAMP });
        const mism = maskMismatches(got.mask, ref.mask);
        // Mask: equal, except that a row may part from the reference at a tie (a decision closer than
        // MASK_TIE); later decisions of that row then see other weights and are not comparable.
        for (let r = 0; r < l.rows; r++) {
          for (let j = 0; j < l.cols; j++) {
            const i = r * l.cols + j;
            if (got.mask[i] === ref.mask[i]) continue;
            assert.ok(ref.tie[i], `${l.name} ${key}: row ${r} column ${j} is ${got.mask[i] ? '' : 'not '}pruned, unlike the float64 reference (closest decision of the layer: relative score gap ${ref.minGap})`);
            break;
          }
        }
        // Weights and loss: against the float64 sweep with the implementation's own mask (the same as `ref`
        // when the masks agree, as they do on this fixture).
        const same = mism === 0 ? ref : sparsegptReference(l.W, l.H, l.rows, l.cols, { pattern, dampening: DAMP, mask: got.mask });
        const wrel = relWeightDiff(got.W, same.W, l.W);
        const refLoss = quadLoss(l.W, same.W, l.H, l.rows, l.cols);
        const lrel = relDiff(got.loss, refLoss);
        if (VERBOSE) t.diagnostic(`${short(l.name).padEnd(26)} ${key.padEnd(4)} mask mismatches ${mism}  weight rel ${e3(wrel)}  loss rel ${e3(lrel)}`);
        worst.see('mask mismatches', mism, `${short(l.name)} ${key}`);
        worst.see('weight rel. difference', wrel, `${short(l.name)} ${key}`);
        worst.see('loss rel. difference', lrel, `${short(l.name)} ${key}`);
        minGap = Math.min(minGap, ref.minGap);
        assert.ok(wrel <= WEIGHT_REL, `${l.name} ${key}: weights differ from the float64 reference by ${wrel}`);
        assert.ok(lrel <= SAME_LOSS_REL, `${l.name} ${key}: loss ${got.loss} vs float64 ${refLoss}`);
      }
    }
    worst.print(t);
    t.diagnostic(`closest mask decision of the reference: relative score gap ${e3(minGap)}`);
  });

  test('APT with a fixed mask: blockSize ≥ cols is the exact LS optimum, blockSize 1 is SparseGPT', async (t) => {
    const worst = new Worst();
    let gainMin = Infinity;
    let gainMax = 0;
    for (const { layer: l, res } of runs) {
      const hd = dampedF64(l.H, l.cols);
      for (const [key] of PATTERNS) {
        // The mask SparseGPT chose, held fixed. With a fixed mask the pattern only sets the block rounding: an
        // N:M pattern rounds blockSize up to a multiple of M (blockSize 1 would silently become 4), so the
        // fixed-mask runs say 'unstructured' to get the block size asked for.
        const mask = res[key].sparsegpt.mask;
        const opts = (blockSize: number): PruneOptions => ({ pattern: HALF, mask, blockSize });
        const full = await pruneLayer('apt', l, opts(l.cols), engine);
        const opt = fixedMaskOptimum(l.W, hd, l.rows, l.cols, mask);
        const optLoss = quadLoss(l.W, opt, l.H, l.rows, l.cols);
        const wFull = relWeightDiff(full.W, opt, l.W);
        const lFull = relDiff(full.loss, optLoss);
        assert.ok(wFull <= WEIGHT_REL, `${l.name} ${key}: APT(B=cols) weights differ from the LS optimum by ${wFull}`);
        assert.ok(lFull <= SAME_LOSS_REL, `${l.name} ${key}: APT(B=cols) loss ${full.loss} vs LS optimum ${optLoss}`);

        const one = await pruneLayer('apt', l, opts(1), engine);
        const sgFixed = await pruneLayer('sparsegpt', l, opts(128), engine);
        const sgRef = sparsegptReference(l.W, l.H, l.rows, l.cols, { pattern: HALF, dampening: DAMP, mask });
        const w1 = relWeightDiff(one.W, sgRef.W, l.W);
        const w1impl = relWeightDiff(one.W, sgFixed.W, l.W);
        const l1 = relDiff(one.loss, quadLoss(l.W, sgRef.W, l.H, l.rows, l.cols));
        assert.ok(w1 <= WEIGHT_REL, `${l.name} ${key}: APT(B=1) differs from float64 SparseGPT (same mask) by ${w1}`);
        assert.ok(w1impl <= WEIGHT_REL, `${l.name} ${key}: APT(B=1) differs from SparseGPT (same mask) by ${w1impl}`);
        assert.ok(l1 <= SAME_LOSS_REL, `${l.name} ${key}: APT(B=1) loss ${one.loss} vs SparseGPT float64 (same mask) rel ${l1}`);
        // Reported: how much the optimal compensation of SparseGPT's own mask gains over SparseGPT's sweep.
        const at = `${short(l.name)} ${key}`;
        if (VERBOSE) t.diagnostic(`${at.padEnd(31)} B=cols vs LS opt: w ${e3(wFull)} loss ${e3(lFull)} | B=1 vs SparseGPT f64: w ${e3(w1)} loss ${e3(l1)}, vs impl w ${e3(w1impl)} | LS-opt/SparseGPT loss ${p3(optLoss / sgFixed.loss)}`);
        worst.see('APT(B=cols) vs LS optimum, weight rel.', wFull, at);
        worst.see('APT(B=cols) vs LS optimum, loss rel.', lFull, at);
        worst.see('APT(B=1) vs float64 SparseGPT, weight rel.', w1, at);
        worst.see('APT(B=1) vs SparseGPT, weight rel.', w1impl, at);
        worst.see('APT(B=1) vs float64 SparseGPT, loss rel.', l1, at);
        gainMin = Math.min(gainMin, optLoss / sgFixed.loss);
        gainMax = Math.max(gainMax, optLoss / sgFixed.loss);
      }
    }
    worst.print(t);
    t.diagnostic(`SparseGPT's mask, optimally compensated: loss / SparseGPT's loss in ${p3(gainMin)}..${p3(gainMax)}`);
  });

  // The ordering claim, one test per pattern so that a failure names its pattern.
  for (const [key] of PATTERNS) {
    test(`APT ≤ SparseGPT on every layer at ${key}`, () => {
      // At N:M this rests on APT choosing each group on weights compensated for the groups before it (see
      // methods/apt.ts): groups chosen up front from a block's start weights lost to SparseGPT on 2 of 35 layers.
      const failures: string[] = [];
      for (const { layer: l, res } of runs) {
        const a = res[key].apt.loss;
        const s = res[key].sparsegpt.loss;
        if (!(a <= s * (1 + ORDER_SLACK))) failures.push(`${l.name} ${key}: APT ${a} > SparseGPT ${s} (+${p3((a / s - 1) * 100)}%)`);
      }
      assert.deepEqual(failures, []);
    });
  }

  test('summed over layers, SparseGPT < Wanda and SparseGPT < magnitude', () => {
    for (const [key] of PATTERNS) {
      const sum = (m: MethodName): number => runs.reduce((acc, r) => acc + r.res[key][m].loss, 0);
      assert.ok(sum('sparsegpt') < sum('wanda'), `${key}: SparseGPT ${sum('sparsegpt')} >= Wanda ${sum('wanda')}`);
      assert.ok(sum('sparsegpt') < sum('magnitude'), `${key}: SparseGPT ${sum('sparsegpt')} >= magnitude ${sum('magnitude')}`);
    }
  });

  test('report: per-layer losses, Wanda vs magnitude, APT 2:4 mask rules', (t) => {
    for (const line of summaryTables(runs, data, false).split('\n')) t.diagnostic(line);
    if (process.env.PRUNEKIT_PRINT_TABLE === '1') process.stdout.write(`\n${summaryTables(runs, data, true)}\n`);
  });
});

// ---------------------------------------------------------------------------------------------------
// Tables

function summaryTables(runs: LayerRun[], data: RealLayers, markdown: boolean): string {
  const out: string[] = [];
  const p = data.protocol;
  out.push(`stories260K, ${p.nsamples} × ${p.seqlen} tokens of ${p.text} (seed ${p.seed}), dampening ${DAMP}, block 128, CPU. loss = 0.5·tr(ΔW H ΔWᵀ); rel = loss / 0.5·tr(W H Wᵀ).`);
  for (const [key] of PATTERNS) {
    const header = ['layer', 'shape', 'APT', 'SparseGPT', 'Wanda', 'magnitude', 'APT rel', 'SparseGPT rel', 'Wanda rel', 'magnitude rel'];
    if (key === '2:4') header.splice(3, 0, 'APT (saliency mask)');
    const rows: string[][] = [];
    const sums = new Map<string, number>();
    const add = (k: string, v: number): void => void sums.set(k, (sums.get(k) ?? 0) + v);
    for (const { layer: l, res, aptSaliency, aptJoint } of runs) {
      const r = res[key];
      const row = [short(l.name), `${l.rows}×${l.cols}`, ...METHODS.map((m) => e3(r[m].loss)), ...METHODS.map((m) => p3(r[m].relLoss))];
      if (key === '2:4') row.splice(3, 0, e3(aptSaliency.loss));
      for (const m of METHODS) add(m, r[m].loss);
      add('aptSaliency', aptSaliency.loss);
      add('aptJoint', aptJoint.loss);
      rows.push(row);
    }
    // The sum row's rel is pooled: Σ loss / Σ 0.5·tr(W H Wᵀ).
    const pooled = (m: MethodName): string => p3((sums.get(m) as number) / runs.reduce((acc, r) => acc + r.res[key][m].loss / r.res[key][m].relLoss, 0));
    const sumRow = ['**sum**', '', ...METHODS.map((m) => e3(sums.get(m) as number)), ...METHODS.map(pooled)];
    if (key === '2:4') sumRow.splice(3, 0, e3(sums.get('aptSaliency') as number));
    rows.push(markdown ? sumRow : sumRow.map((c) => c.replace(/\*\*/g, '')));
    out.push('');
    out.push(`${markdown ? '### ' : ''}${key === '50%' ? '50% unstructured' : '2:4'}`);
    out.push(...table(header, rows, markdown));
    const w = sums.get('wanda') as number;
    const m = sums.get('magnitude') as number;
    out.push(`${markdown ? '\n' : ''}${key}: summed loss Wanda ${e3(w)} vs magnitude ${e3(m)}: ${w < m ? 'Wanda' : 'magnitude'} lower by ${p3(Math.abs(w - m) / Math.max(w, m) * 100)}% (reported, not asserted)`);
    if (key === '2:4') {
      const j = sums.get('aptJoint') as number;
      const s = sums.get('aptSaliency') as number;
      const wins = runs.filter((r) => r.aptJoint.loss < r.aptSaliency.loss).length;
      out.push(`${markdown ? '\n' : ''}APT 2:4 mask rule: summed loss 'joint' ${e3(j)} vs 'saliency' ${e3(s)}: ${j < s ? "'joint'" : "'saliency'"} lower by ${p3(Math.abs(j - s) / Math.max(j, s) * 100)}%; 'joint' lower on ${wins}/${runs.length} layers (reported, not asserted)`);
    }
  }
  return out.join('\n');
}

function table(header: string[], rows: string[][], markdown: boolean): string[] {
  if (markdown) {
    return [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i < 2 ? ' --- ' : ' ---: ')).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string => `${cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')}`;
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
}
