// APT refinement (src/backend/methods/aptRefine.ts) on real stories260K layers (Hessians from real text):
// never worse than one-shot APT, N:M exact, its fixed-mask refit equal to the float64 least-squares optimum,
// and refine 0 identical to today's APT.
//
//   node --import tsx --test test/aptRefine.test.ts
//
// Protocol: 8 windows of 128 tokens of data/tinystories_train_head_2MiB.txt, seed 0, dampening 0.01, CPU.

import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pruneLayer } from '../src/backend/methods';
import { fixedMaskRefit } from '../src/backend/methods/aptRefine';
import { rowPool } from '../src/backend/methods/rowKernels';
import type { Pattern } from '../src/backend/methods/types';
import { Engine } from '../src/backend/onnx/session';
import { fixedMaskOptimum, prepareHessian, quadLoss } from './helpers/reference';
import { collectRealLayers, fixturesDir, RealLayer } from './helpers/realLayers';

const MODEL = path.join(fixturesDir, 'stories260K-onnx', 'model.onnx');
const TEXT = path.join(fixturesDir, 'data', 'tinystories_train_head_2MiB.txt');
const DAMP = 0.01;
const SEVENTY: Pattern = { kind: 'unstructured', sparsity: 0.7 };
const NM24: Pattern = { kind: 'nm', n: 2, m: 4 };
/** One block's seven layers (64..172 wide) and the last block's down_proj. */
const pick = (layers: RealLayer[]) => [...layers.slice(7, 14), layers[34]];

describe('APT refinement on real stories260K layers', { timeout: 300_000 }, () => {
  const engine = new Engine({ device: 'cpu', threads: 0 });
  let layers: RealLayer[];

  before(async () => {
    const data = await collectRealLayers(MODEL, TEXT, engine, { nsamples: 8, seqlen: 128, seed: 0, batch: 8 });
    layers = pick(data.layers);
  });
  after(async () => {
    await engine.release();
    await rowPool.close();
  });

  test('refine 0 is one-shot APT bit for bit', async () => {
    for (const l of layers.slice(0, 3)) {
      const a = await pruneLayer('apt', l, { pattern: SEVENTY }, engine);
      const b = await pruneLayer('apt', l, { pattern: SEVENTY, refine: 0 }, engine);
      assert.deepEqual(b.W, a.W, l.name);
      assert.deepEqual(b.mask, a.mask, l.name);
      assert.equal(b.refine, undefined);
    }
  });

  for (const [label, pattern] of [['70%', SEVENTY], ['2:4', NM24]] as const) {
    test(`${label}: the loss never rises above one-shot APT, the pattern stays exact, the loss is reported per iteration`, async (t) => {
      let before = 0;
      let afterRefine = 0;
      let refined = 0;
      for (const l of layers) {
        const one = await pruneLayer('apt', l, { pattern }, engine);
        const res = await pruneLayer('apt', l, { pattern, refine: 4 }, engine);
        const r = res.refine;
        assert.ok(r, l.name);
        assert.equal(r.iterationLosses.length, 4, l.name);
        assert.ok(Math.abs(r.oneShotLoss - one.loss) <= 1e-5 * one.loss, `${l.name}: one-shot loss ${r.oneShotLoss} vs ${one.loss}`);
        assert.ok(quadLoss(l.W, res.W, l.H, l.rows, l.cols) <= quadLoss(l.W, one.W, l.H, l.rows, l.cols) * (1 + 1e-6), `${l.name}: refined loss above one-shot`);
        assert.ok(res.loss <= one.loss * (1 + 1e-6), `${l.name}: ${res.loss} > ${one.loss}`);
        const exact = quadLoss(l.W, res.W, l.H, l.rows, l.cols);
        assert.ok(Math.abs(res.loss - exact) <= 1e-5 * exact, `${l.name}: reported loss ${res.loss}, float64 on the returned weights ${exact}`);
        assert.equal(r.kept, r.refitLoss < r.oneShotLoss ? 'refined' : 'one-shot', l.name);
        for (let i = 0; i < res.W.length; i++) if (res.mask[i]) assert.equal(res.W[i], 0, `${l.name}: pruned weight ${i} not zero`);
        if (pattern.kind === 'nm') {
          for (let g = 0; g < res.mask.length; g += 4) assert.equal(res.mask[g] + res.mask[g + 1] + res.mask[g + 2] + res.mask[g + 3], 2, `${l.name}: group at ${g}`);
        } else {
          for (let row = 0; row < l.rows; row++) {
            const zeros = (m: Uint8Array) => m.subarray(row * l.cols, (row + 1) * l.cols).reduce((s, x) => s + x, 0);
            assert.equal(zeros(res.mask), zeros(one.mask), `${l.name}: row ${row} zeros`);
          }
        }
        before += one.loss;
        afterRefine += res.loss;
        if (r.kept === 'refined') refined++;
        t.diagnostic(`${l.name}: one-shot ${one.loss.toExponential(4)} iterations ${r.iterationLosses.map((x) => x.toExponential(3)).join(' ')} refit ${r.refitLoss.toExponential(4)} (${r.kept}, ${r.maskChanges} mask changes)`);
      }
      t.diagnostic(`sum of layer losses: one-shot ${before.toExponential(4)}, refined ${afterRefine.toExponential(4)} (${(100 * (1 - afterRefine / before)).toFixed(1)}% lower), ${refined}/${layers.length} layers refined`);
      assert.ok(refined > 0, 'refinement improved no layer');
    });
  }

  test('the fixed-mask refit equals the float64 least-squares optimum (1e-6 relative)', async (t) => {
    for (const l of layers) {
      const one = await pruneLayer('apt', l, { pattern: SEVENTY }, engine);
      const Hd = prepareHessian(l.H, l.cols, DAMP).Hd;
      const want = fixedMaskOptimum(l.W, Hd, l.rows, l.cols, one.mask);
      const got = await fixedMaskRefit(l.W, Hd, l.rows, l.cols, one.mask, one.W, engine);
      let num = 0;
      let den = 0;
      for (let i = 0; i < want.length; i++) {
        num += (got[i] - want[i]) ** 2;
        den += (want[i] - l.W[i]) ** 2;
      }
      const rel = Math.sqrt(num / den);
      t.diagnostic(`${l.name}: ‖refit − optimum‖ / ‖optimum − W0‖ = ${rel.toExponential(2)}`);
      assert.ok(rel <= 1e-6, `${l.name}: ${rel}`);
      const lossRel = Math.abs(quadLoss(l.W, got, Hd, l.rows, l.cols) / quadLoss(l.W, want, Hd, l.rows, l.cols) - 1);
      assert.ok(lossRel <= 1e-6, `${l.name}: loss ${lossRel}`);
    }
  });
});
