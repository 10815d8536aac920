// OWL allocation (src/backend/methods/owl.ts, the pipeline's dense outlier pass) and the config rules of
// allocation and refine:
// - the outlier ratios and block sparsities equal a float64 recomputation of the published formula (luuyin/OWL,
//   prune_wanda_outlier) on the stories260K layers with dense calibration activations;
// - a whole run with allocation "owl" reports per-block and per-layer sparsities whose parameter-weighted mean is
//   the requested sparsity;
// - config errors name the field.
//
//   node --import tsx --test test/owl.test.ts

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { outlierRatio, owlOffsets } from '../src/backend/methods/owl';
import { rowPool } from '../src/backend/methods/rowKernels';
import { Engine } from '../src/backend/onnx/session';
import { ConfigError, resolveConfig } from '../src/protocol/config';
import type { EventOf } from '../src/protocol/events';
import { RunModel } from '../webview/model';
import { quickRun } from './helpers/quickRun';
import { collectRealLayers, fixturesDir, RealLayer } from './helpers/realLayers';

const MODEL_DIR = path.join(fixturesDir, 'stories260K-onnx');
const TRAIN = path.join(fixturesDir, 'data', 'tinystories_train_head_2MiB.txt');
const VALID = path.join(fixturesDir, 'data', 'tinystories_valid_head.txt');
const work = mkdtempSync(path.join(tmpdir(), 'prunekit-owl-'));

after(async () => {
  rmSync(work, { recursive: true, force: true });
  await rowPool.close();
});

/** The published computation, in float64: all Wanda scores |W|·sqrt(scaler_row) of the block concatenated,
 *  the percentage above M·mean; then density_b = (D_b − min D)/(max D − min D)·2λ − mean + (1 − S). */
function publishedRatio(layers: RealLayer[], M: number): number {
  const scores: number[] = [];
  for (const l of layers) {
    for (let r = 0; r < l.rows; r++) for (let j = 0; j < l.cols; j++) scores.push(Math.abs(l.W[r * l.cols + j]) * Math.sqrt(l.colNorm2[j]));
  }
  const mean = scores.reduce((s, a) => s + a, 0) / scores.length;
  return (100 * scores.filter((a) => a > mean * M).length) / scores.length;
}

function publishedSparsities(ratios: number[], S: number, lambda: number): number[] {
  const lo = Math.min(...ratios);
  const hi = Math.max(...ratios);
  const d = ratios.map((r) => ((r - lo) * (1 / (hi - lo))) * lambda * 2);
  const mean = d.reduce((s, x) => s + x, 0) / d.length;
  return d.map((x) => 1 - (x - mean + (1 - S)));
}

describe('OWL allocation', { timeout: 300_000 }, () => {
  test('outlier ratios and block sparsities equal the published formula in float64 (stories260K, dense activations)', async (t) => {
    const engine = new Engine({ device: 'cpu', threads: 0 });
    const { layers } = await collectRealLayers(path.join(MODEL_DIR, 'model.onnx'), TRAIN, engine, { nsamples: 8, seqlen: 128, seed: 0, batch: 8 });
    await engine.release();
    const blocks = [0, 1, 2, 3, 4].map((b) => layers.filter((l) => l.name.startsWith(`/model/layers.${b}/`)));
    assert.deepEqual(blocks.map((b) => b.length), [7, 7, 7, 7, 7]);
    for (const M of [5, 3]) {
      const ours = blocks.map((b) => outlierRatio(b.map((l) => ({ ...l, transposed: false })), M));
      const ref = blocks.map((b) => publishedRatio(b, M));
      t.diagnostic(`M=${M}: outlier ratios (%) ${ours.map((r) => r.toFixed(4)).join(' ')}`);
      ours.forEach((r, b) => assert.ok(Math.abs(r - ref[b]) <= 1e-12, `block ${b}: ${r} vs ${ref[b]}`));
      assert.ok(Math.max(...ours) > Math.min(...ours), 'the blocks differ in outliers');
      // Transposed storage ((cols, rows), as the ONNX export stores projections) gives the same ratio.
      const tr = (l: RealLayer) => ({ ...l, transposed: true, W: Float32Array.from({ length: l.W.length }, (_, i) => l.W[(i % l.rows) * l.cols + Math.floor(i / l.rows)]) });
      assert.equal(outlierRatio(blocks[2].map(tr), M), ours[2]);
      const params = blocks.map((b) => b.reduce((n, l) => n + l.rows * l.cols, 0));
      for (const [S, lambda] of [[0.7, 0.08], [0.5, 0.1]]) {
        const offsets = owlOffsets(ours, params, lambda);
        const want = publishedSparsities(ref, S, lambda);
        offsets.forEach((o, b) => assert.ok(Math.abs(S + o - want[b]) <= 1e-12, `block ${b}: ${S + o} vs ${want[b]}`));
        assert.ok(Math.abs(Math.max(...offsets) - Math.min(...offsets) - 2 * lambda) <= 1e-12);
      }
    }
  });

  test('blocks of different sizes: the parameter-weighted mean sparsity is the target', () => {
    const params = [1000, 3000, 500, 12000];
    const offsets = owlOffsets([1.2, 4.5, 0.3, 2.2], params, 0.08);
    const mean = offsets.reduce((s, o, b) => s + o * params[b], 0) / params.reduce((s, n) => s + n, 0);
    assert.ok(Math.abs(mean) <= 1e-15, `${mean}`);
    assert.ok(offsets[1] < offsets[3] && offsets[3] < offsets[0] && offsets[0] < offsets[2], 'more outliers, lower sparsity');
    assert.deepEqual(owlOffsets([2, 2, 2], [1, 2, 3], 0.08), [0, 0, 0]);
    assert.throws(() => owlOffsets([1, 2], [1], 0.08), /2 outlier ratios for 1 blocks/);
  });

  test('a run with allocation "owl" prunes each block at its allocated sparsity, the model at the requested one', async (t) => {
    const r = await quickRun({ checkpoint: MODEL_DIR, output: path.join(work, 'owl'), method: 'wanda', sparsity: 0.7, allocation: 'owl', evaluation: false }, VALID, work);
    assert.equal(r.error, undefined, r.error?.message);
    const alloc = r.events.find((e) => e.type === 'allocation.computed') as EventOf<'allocation.computed'>;
    assert.ok(alloc, 'allocation.computed');
    assert.equal(alloc.blocks.length, 5);
    const ratios = alloc.blocks.map((b) => b.outlierRatio);
    const want = publishedSparsities(ratios, 0.7, 0.08);
    alloc.blocks.forEach((b, i) => assert.ok(Math.abs(b.sparsity - want[i]) <= 1e-12, `block ${i}: ${b.sparsity} vs ${want[i]}`));
    const achieved = (run: typeof r) => {
      let zeros = 0;
      let total = 0;
      let target = 0;
      for (const e of run.pruned.values()) {
        zeros += e.sparsity * e.shape[0] * e.shape[1];
        target += e.targetSparsity * e.shape[0] * e.shape[1];
        total += e.shape[0] * e.shape[1];
      }
      return { model: zeros / total, target: target / total };
    };
    for (const e of r.pruned.values()) {
      const b = alloc.blocks.find((x) => x.block === e.block) as (typeof alloc.blocks)[number];
      assert.ok(Math.abs(e.targetSparsity - b.sparsity) <= 1e-12, `${e.layer}: target ${e.targetSparsity} vs block ${b.sparsity}`);
      assert.ok(Math.abs(e.sparsity - e.targetSparsity) <= 1 / e.shape[1], `${e.layer}: ${e.sparsity}`);
    }
    const uniform = await quickRun({ checkpoint: MODEL_DIR, output: path.join(work, 'uniform'), method: 'wanda', sparsity: 0.7, evaluation: false }, VALID, work);
    assert.equal(uniform.events.find((e) => e.type === 'allocation.computed'), undefined);
    const [o, u] = [achieved(r), achieved(uniform)];
    t.diagnostic(`block sparsities ${alloc.blocks.map((b) => b.sparsity.toFixed(4)).join(' ')}; model ${o.model.toFixed(5)} (uniform ${u.model.toFixed(5)}: whole weights per row)`);
    // The targets' parameter-weighted mean is the requested sparsity; what is pruned differs from it only by
    // each row's rounding to whole weights, as with the uniform allocation (at most 1/64 here).
    assert.ok(Math.abs(o.target - 0.7) <= 1e-12, `weighted target ${o.target}`);
    assert.ok(Math.abs(o.model - 0.7) <= 1 / 64 && Math.abs(o.model - u.model) <= 1 / 64, `model sparsity ${o.model} (uniform ${u.model})`);
    assert.ok(r.events.some((e) => e.type === 'calibration.progressed' && e.phase === 'outliers'));
    // The run panel's second series: each layer's sparsity in axis order, only when the allocation varies it.
    const panel = (run: typeof r) => {
      const m = new RunModel('r', 'r');
      run.events.forEach((e, i) => m.add(e, i));
      return m;
    };
    const series = panel(r).sparsitySeries();
    assert.ok(series);
    assert.deepEqual(series.map((p) => p.x), [...series.keys()]);
    assert.deepEqual(series.map((p) => [p.row.layer, p.y]), [...r.pruned.values()].map((e) => [e.layer, e.sparsity]));
    assert.equal(panel(r).allocation, alloc);
    assert.equal(panel(uniform).sparsitySeries(), null);
  });
});

describe('config: allocation and refine', () => {
  const base = { checkpoint: 'm', output: 'o', calibration: { path: 'c.txt' } };
  const problem = (fields: Record<string, unknown>): string[] => {
    try {
      resolveConfig({ ...base, ...fields }, '/w');
    } catch (e) {
      if (e instanceof ConfigError) return e.problems.map((p) => `${p.path}: ${p.message}`);
      throw e;
    }
    return [];
  };
  test('errors name the field', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ allocation: 'owl', pattern: '2:4' }, /^\$\.allocation: .*unstructured/],
      [{ allocation: 'uneven' }, /^\$\.allocation: /],
      [{ allocation: 'owl', sparsity: 0.9, owl: { maxDeviation: 0.08 } }, /^\$\.owl\.maxDeviation: /],
      [{ owl: { outlierThreshold: 0 } }, /^\$\.owl\.outlierThreshold: /],
      [{ owl: { lambda: 0.1 } }, /^\$\.owl\.lambda: /],
      [{ refine: { iterations: 1.5 } }, /^\$\.refine\.iterations: /],
      [{ refine: { iterations: -1 } }, /^\$\.refine\.iterations: /],
      [{ method: 'sparsegpt', refine: { iterations: 3 } }, /^\$\.refine\.iterations: refinement is APT's/],
    ];
    for (const [fields, re] of cases) {
      const got = problem(fields);
      assert.ok(got.some((m) => re.test(m)), `${JSON.stringify(fields)} → ${JSON.stringify(got)}`);
    }
    assert.deepEqual(problem({ allocation: 'owl', sparsity: 0.7, refine: { iterations: 4 } }), []);
    const c = resolveConfig(base, '/w');
    assert.deepEqual([c.allocation, c.owl, c.refine], ['uniform', { outlierThreshold: 5, maxDeviation: 0.08 }, { iterations: 0 }]);
  });
});
