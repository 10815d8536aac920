// The run's memory estimate (src/backend/pipeline/budget.ts) on a Llama-2-7B-shaped block: each term from the
// layer shapes, the attention's score maps per head (three float32 seq × seq maps each at the graph's peak), and
// the preflight refusing a run that the one-map-per-window estimate let through.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DataType } from '../src/backend/onnx/proto';
import { estimateRunMemory, memoryProblem, SCORE_MAPS_PER_HEAD } from '../src/backend/pipeline/budget';
import type { PrunableLayer } from '../src/backend/pipeline/layers';

/** A MatMul layer of block 0 reading `input`, [rows, cols] = [out, in]. */
function linear(name: string, input: string, rows: number, cols: number): PrunableLayer {
  return {
    name: `layers.0.${name}`, kind: 'linear', node: `/model/layers.0/${name}/MatMul`, nodeIndex: 0, op: 'MatMul', weight: `${name}.weight`,
    rows, cols, layout: 'in_out', weightDims: [cols, rows], dataType: DataType.FLOAT, input, output: `${name}.out`, block: 0,
  };
}

// Llama-2-7B's block: hidden 4096, intermediate 11008, 32 heads.
const H = 4096;
const I = 11008;
const block = [
  linear('self_attn.q_proj', 'ln1', H, H), linear('self_attn.k_proj', 'ln1', H, H), linear('self_attn.v_proj', 'ln1', H, H),
  linear('self_attn.o_proj', 'ctx', H, H),
  linear('mlp.gate_proj', 'ln2', I, H), linear('mlp.up_proj', 'ln2', I, H), linear('mlp.down_proj', 'act', H, I),
];
const papers = { nsamples: 128, seqlen: 2048, evalSeqlen: 0, microBatch: 1 };

describe('estimateRunMemory', () => {
  test('the papers protocol on a 7B block: every term from the shapes, three score maps per head', () => {
    const e = estimateRunMemory(block, { ...papers, heads: 32 });
    const activations = 128 * 2048 * H * 4; // the block's input stream
    // One pass holds the four distinct inputs' float32 sums (ln1, ctx, ln2: H², act: I²), plus one batch's XᵀX of the largest.
    const hessians = (3 * H * H + I * I) * 4 + I * I * 4;
    const largestLayer = I * H * 8 * 4;
    const batch = 1 * 2048 * (I + SCORE_MAPS_PER_HEAD * 32 * 2048) * 4; // the MLP's width, 3 × 32 maps of 2048²
    assert.equal(SCORE_MAPS_PER_HEAD, 3);
    assert.deepEqual(e, { activations, hessians, largestLayer, batch, total: activations + hessians + largestLayer + batch });
    assert.equal(e.total, 8_609_333_248);
  });

  test('without a head count (no attention: Mamba) the batch term is one map per window, as before', () => {
    for (const heads of [undefined, null, 0]) {
      assert.equal(estimateRunMemory(block, { ...papers, heads }).batch, 2048 * (I + 2048) * 4);
    }
    // Micro-batches and the evaluation length scale the maps as they scale the activation.
    const e = estimateRunMemory(block, { ...papers, evalSeqlen: 4096, microBatch: 2, heads: 8 });
    assert.equal(e.batch, 2 * 4096 * (I + 3 * 8 * 4096) * 4);
  });

  test('a run the one-map estimate let through is refused: the maps are 1.6 GB more at 128 × 2048', () => {
    const old = estimateRunMemory(block, papers);
    const now = estimateRunMemory(block, { ...papers, heads: 32 });
    assert.equal(now.total - old.total, 2048 * (96 - 1) * 2048 * 4); // 1.59 GB
    const available = { bytes: old.total + 2 ** 30, source: 'free memory' };
    assert.equal(memoryProblem(old, available), null);
    assert.match(memoryProblem(now, available) ?? '', /^the run needs about 8\.0 GiB \(.*one batch 1\.6 GiB\) but free memory is 7\.5 GiB; lower/);
  });
});
