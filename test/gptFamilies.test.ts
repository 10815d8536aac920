// GPT-2 and GPT-NeoX from generated Hugging Face folders (src/backend/models/gpt2.ts, gptNeox.ts): random weights
// with the real models' config fields and key names, logits against the float64 forwards of
// test/helpers/gptReference.ts, then a whole prune re-read (test/helpers/familyCheck.ts). GPT-2's Conv1D weights
// must be pruned with rows = output features and written back in their stored [in, out] orientation.
//
//   node --import tsx --test test/gptFamilies.test.ts

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { openCheckpoint } from '../src/backend/formats/checkpoint';
import { rowPool } from '../src/backend/methods/rowKernels';
import { Gpt2Config, gpt2TensorShapes } from '../src/backend/models/gpt2';
import { NeoxConfig, neoxTensorShapes } from '../src/backend/models/gptNeox';
import { Engine } from '../src/backend/onnx/session';
import type { EventOf } from '../src/protocol/events';
import { RunError, runPrune } from '../src/backend/pipeline/run';
import { resolveConfig } from '../src/protocol/config';
import { checkFamily, randomTensors, writeIds } from './helpers/familyCheck';
import { gpt2Reference, neoxReference } from './helpers/gptReference';
import { writeHfFolder } from './helpers/hfFolder';

const work = mkdtempSync(path.join(os.tmpdir(), 'prunekit-gpt-'));
const engine = new Engine({ device: 'cpu', threads: 1 });
after(async () => {
  rmSync(work, { recursive: true, force: true });
  await engine.release();
  await rowPool.close();
});

/** openai-community/gpt2's config.json fields, at toy sizes. */
const GPT2: Gpt2Config & Record<string, unknown> = {
  activation_function: 'gelu_new', architectures: ['GPT2LMHeadModel'], attn_pdrop: 0.1, bos_token_id: 63, embd_pdrop: 0.1, eos_token_id: 63,
  initializer_range: 0.02, layer_norm_epsilon: 1e-5, model_type: 'gpt2', n_ctx: 40, n_embd: 32, n_head: 4, n_layer: 2, n_positions: 40,
  resid_pdrop: 0.1, summary_activation: null, summary_first_dropout: 0.1, summary_proj_to_labels: true, summary_type: 'cls_index',
  summary_use_proj: true, vocab_size: 64,
};

describe('GPT-2 from a generated Hugging Face folder', () => {
  const variants = [
    { what: 'hub names (h.N.…), tied head, F32', config: GPT2, prefix: '', dtype: 'F32', shards: 1 },
    {
      what: 'transformer.-prefixed names, untied head, exact gelu, n_inner, inverse-layer scaling, BF16 in 2 shards',
      config: { ...GPT2, tie_word_embeddings: false, activation_function: 'gelu', n_inner: 48, scale_attn_by_inverse_layer_idx: true },
      prefix: 'transformer.', dtype: 'BF16', shards: 2,
    },
  ];
  for (const [k, v] of variants.entries()) {
    test(`${v.what}: logits match modeling_gpt2.py in float64; pruned in the output-feature orientation, written back [in, out]`, async () => {
      const shapes = gpt2TensorShapes(v.config, v.prefix);
      const r = await checkFamily(engine, work, {
        name: `gpt2-${k}`, config: v.config, shapes, dtype: v.dtype, shards: v.shards,
        reference: (W, ids, mask) => gpt2Reference(v.config, W, v.prefix, ids, mask),
      }, { fields: { pattern: '2:4' } });
      // GPT-2's n_positions bounds the windows (the learned position table has no row past it).
      assert.equal((r.events.find((e) => e.type === 'run.started') as EventOf<'run.started'>).model.maxPositions, GPT2.n_positions);
      // c_attn, attn.c_proj, c_fc, mlp.c_proj per block, [in, out] Gemms; the tied head or lm_head stays dense.
      assert.deepEqual(r.pruned.map((e) => e.layer), [0, 1].flatMap((i) => ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'].map((p) => `h.${i}.${p}`)));
      for (const l of r.layers) {
        const [inp, out] = shapes.get(l.weight) as number[];
        assert.deepEqual([l.op, l.layout, l.rows, l.cols, l.weightDims], ['Gemm', 'in_out', out, inp, [inp, out]], l.name);
        // 2:4 groups run along the input features: in the stored [in, out] tensor, 4 consecutive rows of a column.
        const w = r.written.get(l.weight) as Float32Array;
        for (let o = 0; o < out; o++) {
          for (let g = 0; g < inp; g += 4) {
            let zeros = 0;
            for (let i = g; i < g + 4; i++) zeros += w[i * out + o] === 0 ? 1 : 0;
            assert.ok(zeros >= 2, `${l.weight}: output ${o}, inputs ${g}..${g + 3} hold ${zeros} zeros`);
          }
        }
      }
    });
  }

  test('unsupported GPT-2 settings fail naming the config field', () => {
    const dir = path.join(work, 'gpt2-relu');
    writeHfFolder(dir, { ...GPT2, activation_function: 'relu' }, randomTensors(gpt2TensorShapes(GPT2), 1));
    assert.throws(() => openCheckpoint(dir), /gpt2-relu\/config\.json: GPT-2 config: activation_function "relu" is not supported/);
    const cross = path.join(work, 'gpt2-cross');
    writeHfFolder(cross, { ...GPT2, add_cross_attention: true }, randomTensors(gpt2TensorShapes(GPT2), 1));
    assert.throws(() => openCheckpoint(cross), /add_cross_attention/);
  });

  test('windows longer than n_positions are refused before any work, naming the field', async () => {
    const dir = path.join(work, 'gpt2-short');
    writeHfFolder(dir, GPT2, randomTensors(gpt2TensorShapes(GPT2), 1));
    const ids = writeIds(path.join(work, 'gpt2-short-ids.json'), 1);
    const run = (seqlen: number, where: 'calibration' | 'evaluation') => runPrune(resolveConfig({
      checkpoint: dir, output: path.join(work, 'gpt2-short-out'), method: 'sparsegpt', sparsity: 0.5,
      calibration: { path: ids, nsamples: 2, seqlen: where === 'calibration' ? seqlen : 16, seed: 0 }, evaluation: { path: ids, seqlen: where === 'evaluation' ? seqlen : 16 },
    }, work), { emit: () => undefined });
    await assert.rejects(run(41, 'calibration'), (e: RunError) => e.where.jsonPath === '$.calibration.seqlen' && /calibration windows of 41 tokens do not fit .*gpt2-short: its learned position table has 40 rows/.test(e.message));
    await assert.rejects(run(64, 'evaluation'), (e: RunError) => e.where.jsonPath === '$.evaluation.seqlen');
  });
});

/** EleutherAI/pythia-70m's config.json fields (and the newer attention_bias), at toy sizes. */
const PYTHIA: NeoxConfig & Record<string, unknown> = {
  architectures: ['GPTNeoXForCausalLM'], bos_token_id: 0, eos_token_id: 0, hidden_act: 'gelu', hidden_size: 32, initializer_range: 0.02,
  intermediate_size: 64, layer_norm_eps: 1e-5, max_position_embeddings: 40, model_type: 'gpt_neox', num_attention_heads: 2,
  num_hidden_layers: 2, rotary_emb_base: 10000, rotary_pct: 0.25, tie_word_embeddings: false, torch_dtype: 'float16',
  transformers_version: '4.24.0', use_cache: true, use_parallel_residual: true, vocab_size: 64, attention_bias: true,
};

describe('GPT-NeoX from a generated Hugging Face folder', () => {
  const variants = [
    { what: 'Pythia: parallel residual, rotary on 1/4 of each head, F16', config: PYTHIA, dtype: 'F16' },
    { what: 'sequential residual, full rotary, no attention biases, F32 in 2 shards', config: { ...PYTHIA, use_parallel_residual: false, rotary_pct: 1, attention_bias: false }, dtype: 'F32', shards: 2 },
  ];
  for (const [k, v] of variants.entries()) {
    test(`${v.what}: logits match modeling_gpt_neox.py in float64; pruned, re-read`, async () => {
      const r = await checkFamily(engine, work, {
        name: `neox-${k}`, config: v.config, shapes: neoxTensorShapes(v.config), dtype: v.dtype, shards: v.shards,
        reference: (W, ids, mask) => neoxReference(v.config, W, ids, mask),
      });
      assert.deepEqual(r.pruned.map((e) => e.layer), [0, 1].flatMap((i) => ['attention.query_key_value', 'attention.dense', 'mlp.dense_h_to_4h', 'mlp.dense_4h_to_h'].map((p) => `layers.${i}.${p}`)));
      assert.ok(r.layers.every((l) => l.op === 'Gemm' && l.layout === 'out_in' && l.weight === `gpt_neox.${l.name}.weight`));
      assert.deepEqual(r.pruned.find((e) => e.layer === 'layers.0.attention.query_key_value')?.shape, [96, 32]);
    });
  }

  test('a rotary_pct leaving an odd number of rotary features fails naming the field', () => {
    const dir = path.join(work, 'neox-odd');
    const config = { ...PYTHIA, rotary_pct: 0.1 };
    writeHfFolder(dir, config, randomTensors(neoxTensorShapes(PYTHIA), 1));
    assert.throws(() => openCheckpoint(dir), /neox-odd\/config\.json: GPT-NeoX config: rotary_pct 0.1 of head_dim 16 gives 1 rotary features/);
  });
});
