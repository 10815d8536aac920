// The run's memory estimate (src/backend/pipeline/budget.ts) on a Llama-2-7B-shaped block: each term from the
// layer shapes, the attention's score maps per head (three float32 seq × seq maps each at the graph's peak), and
// the preflight refusing a run that the one-map-per-window estimate let through.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DataType } from '../src/backend/onnx/proto';
import { estimateRunMemory, fittingMicroBatch, memoryProblem, SCORE_MAPS_PER_HEAD } from '../src/backend/pipeline/budget';
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

describe('fittingMicroBatch', () => {
  // The papers' protocol on a 7B block with the run's default of 8 windows per onnxruntime run: their attention maps
  // alone are 8 × 3 × 32 × 2048² floats (12.9 GB).
  const sizes = { ...papers, microBatch: 8, heads: 32 };
  const total = (microBatch: number) => estimateRunMemory(block, { ...sizes, microBatch }).total;
  const free = (bytes: number) => ({ bytes, source: 'free memory' });

  test('halves the windows per run until the estimate fits, down to one', () => {
    assert.equal(fittingMicroBatch(block, sizes, free(total(8))), 8);
    assert.equal(fittingMicroBatch(block, sizes, free(total(8) - 1)), 4);
    assert.equal(fittingMicroBatch(block, sizes, free(total(2) + 2 ** 20)), 2);
    assert.equal(fittingMicroBatch(block, sizes, free(total(1))), 1);
    // Not even one window fits: one, which memoryProblem then refuses with its numbers.
    assert.equal(fittingMicroBatch(block, sizes, free(total(1) - 1)), 1);
    assert.match(memoryProblem(estimateRunMemory(block, { ...sizes, microBatch: 1 }), free(total(1) - 1)) ?? '', /^the run needs about/);
    // Each window more is 1.70 GB of the estimate (its maps and MLP activation): 8 windows need 20.5 GB, 4 13.7 GB,
    // 2 10.3 GB. 24 GB free keeps 8, 16 GB gives 4, 12 GB gives 2.
    assert.deepEqual([8, 4, 2].map((m) => Math.round(total(m) / 1e8) / 10), [20.5, 13.7, 10.3]);
    assert.equal(fittingMicroBatch(block, sizes, free(24e9)), 8);
    assert.equal(fittingMicroBatch(block, sizes, free(16e9)), 4);
    assert.equal(fittingMicroBatch(block, sizes, free(12e9)), 2);
  });

  test('a run without attention (one map per window) keeps more windows in the same memory', () => {
    const mamba = { ...sizes, heads: null };
    assert.equal(fittingMicroBatch(block, mamba, free(12e9)), 8);
  });
});

