// Mixtral and Qwen2-MoE from generated Hugging Face folders (src/backend/models/moe.ts): logits against the float64
// forward of test/helpers/moeReference.ts, a whole prune re-read (test/helpers/familyCheck.ts) with the routers
// dense, each expert's calibration Hessian against a float64 recomputation from the tokens routed to it (weighted
// by the routing weight²), and the warning for an expert routed fewer tokens than its inputs.
//
//   node --import tsx --test test/moeFamilies.test.ts

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { rowPool } from '../src/backend/methods/rowKernels';
import { layerPatternSuggestions, parseInspectOutput } from '../src/extension/config/layerInfo';
import type { LlamaTensor } from '../src/backend/models/llama';
import { buildMoeModel, MoeConfig, moeTensorShapes } from '../src/backend/models/moe';
import { Engine } from '../src/backend/onnx/session';
import { discoverLayers, PrunableLayer } from '../src/backend/pipeline/layers';
import { calibrationBytes, calibrationGroups, calibrationKey, calibrationModel, CalibrationSums, emptySums, HESSIAN_GROUP_FACTOR, planSegments, runCalibration, segmentModel } from '../src/backend/pipeline/segments';
import type { EventOf } from '../src/protocol/events';
import { groupExpertRows, LayerRow, RunModel } from '../webview/model';
import { checkFamily, IDS, randomTensors } from './helpers/familyCheck';
import { int64 } from './helpers/hfFolder';
import { moeReference, RoutedToken } from './helpers/moeReference';

const work = mkdtempSync(path.join(os.tmpdir(), 'prunekit-moe-'));
const engine = new Engine({ device: 'cpu', threads: 1 });
after(async () => {
  rmSync(work, { recursive: true, force: true });
  await engine.release();
  await rowPool.close();
});

/** mistralai/Mixtral-8x7B-v0.1's config.json fields, at toy sizes. */
const MIXTRAL: MoeConfig & Record<string, unknown> = {
  architectures: ['MixtralForCausalLM'], attention_dropout: 0, bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu', hidden_size: 32,
  initializer_range: 0.02, intermediate_size: 48, max_position_embeddings: 64, model_type: 'mixtral', num_attention_heads: 4,
  num_experts_per_tok: 2, num_hidden_layers: 2, num_key_value_heads: 2, num_local_experts: 4, output_router_logits: false,
  rms_norm_eps: 1e-5, rope_theta: 1e6, router_aux_loss_coef: 0.02, sliding_window: null, tie_word_embeddings: false,
  torch_dtype: 'bfloat16', transformers_version: '4.36.0', use_cache: true, vocab_size: 64,
};

/** Qwen/Qwen1.5-MoE-A2.7B's config.json fields, at toy sizes (layer 1 in mlp_only_layers: a plain MLP). */
const QWEN2_MOE: MoeConfig & Record<string, unknown> = {
  architectures: ['Qwen2MoeForCausalLM'], attention_dropout: 0, bos_token_id: 63, eos_token_id: 63, decoder_sparse_step: 1,
  hidden_act: 'silu', hidden_size: 32, initializer_range: 0.02, intermediate_size: 40, max_position_embeddings: 64,
  max_window_layers: 2, model_type: 'qwen2_moe', moe_intermediate_size: 24, norm_topk_prob: false, num_attention_heads: 4,
  num_experts: 6, num_experts_per_tok: 2, num_hidden_layers: 2, num_key_value_heads: 4, output_router_logits: false,
  rms_norm_eps: 1e-6, rope_theta: 1e6, router_aux_loss_coef: 0.001, shared_expert_intermediate_size: 56, sliding_window: 64,
  tie_word_embeddings: false, torch_dtype: 'bfloat16', use_cache: true, use_sliding_window: false, vocab_size: 64, mlp_only_layers: [1],
};

/** Qwen/Qwen3-30B-A3B's config.json fields, at toy sizes (head_dim ≠ hidden / heads; layer 1 a plain MLP). */
const QWEN3_MOE: MoeConfig & Record<string, unknown> = {
  architectures: ['Qwen3MoeForCausalLM'], attention_bias: false, attention_dropout: 0, bos_token_id: 63, eos_token_id: 63,
  decoder_sparse_step: 1, head_dim: 16, hidden_act: 'silu', hidden_size: 32, initializer_range: 0.02, intermediate_size: 40,
  max_position_embeddings: 64, max_window_layers: 2, model_type: 'qwen3_moe', moe_intermediate_size: 24, norm_topk_prob: true,
  num_attention_heads: 4, num_experts: 6, num_experts_per_tok: 3, num_hidden_layers: 2, num_key_value_heads: 2,
  output_router_logits: false, rms_norm_eps: 1e-6, rope_theta: 1e6, router_aux_loss_coef: 0.001, sliding_window: null,
  tie_word_embeddings: false, torch_dtype: 'bfloat16', use_cache: true, use_sliding_window: false, vocab_size: 64, mlp_only_layers: [1],
};

const expertLayers = (prefix: string, experts: number, proj: string[]) =>
  Array.from({ length: experts }, (_, j) => proj.map((p) => `${prefix}.experts.${j}.${p}`)).flat();

describe('Mixture-of-experts families from generated Hugging Face folders', () => {
  test('mixtral: logits match modeling_mixtral.py in float64; experts pruned, routers dense, re-read; grouped in the table and inspect', async () => {
    const r = await checkFamily(engine, work, {
      name: 'mixtral', config: MIXTRAL, shapes: moeTensorShapes('mixtral', MIXTRAL), dtype: 'BF16', shards: 2,
      reference: (W, ids, mask) => moeReference('mixtral', MIXTRAL, W, ids, mask),
    });
    const attn = (i: number) => ['q_proj', 'k_proj', 'v_proj', 'o_proj'].map((p) => `layers.${i}.self_attn.${p}`);
    assert.deepEqual(r.pruned.map((e) => e.layer), [0, 1].flatMap((i) => [...attn(i), ...expertLayers(`layers.${i}.block_sparse_moe`, 4, ['w1', 'w3', 'w2'])]));
    assert.ok(r.pruned.every((e) => e.method === 'sparsegpt'));
    assert.equal(r.events.filter((e) => e.type === 'warning.raised').length, 0);
    const d = discoverLayers(buildMoeModel('mixtral', MIXTRAL, new Map([...r.dense].map(([n, data]) => [n, { data, dims: moeTensorShapes('mixtral', MIXTRAL).get(n) as number[] }]))));
    assert.deepEqual(d.skipped.map((s) => [s.name, s.reason]), [
      ['layers.0.block_sparse_moe.gate', 'MoE router (kept dense: it chooses the experts)'],
      ['layers.1.block_sparse_moe.gate', 'MoE router (kept dense: it chooses the experts)'],
      ['lm_head', 'LM head (left dense by default)'],
    ]);

    // The run panel's table: one row per block and expert projection, its numbers the experts' own.
    const model = new RunModel('mixtral', 'mixtral');
    r.events.forEach((e, i) => model.add(e, i));
    const rows = groupExpertRows(model.rows);
    assert.deepEqual(rows.map((x) => x.layer), [0, 1].flatMap((i) => [...attn(i), ...['w1', 'w3', 'w2'].map((p) => `layers.${i}.block_sparse_moe.experts.*.${p}`)]));
    const w2 = rows.find((x) => x.layer === 'layers.1.block_sparse_moe.experts.*.w2') as LayerRow;
    const members = model.rows.filter((x) => /^layers\.1\.block_sparse_moe\.experts\.\d\.w2$/.test(x.layer));
    assert.equal(members.length, 4);
    assert.equal(w2.loss, members.reduce((a, x) => a + (x.loss as number), 0));
    assert.equal(w2.sparsity, members.reduce((a, x) => a + x.sparsity, 0) / 4);
    assert.equal(w2.kind, 'down');

    // `prunekit inspect`: the same grouping, with the expert count.
    const inspect = spawnSync(process.execPath, ['--import', 'tsx', path.join(__dirname, '..', 'src', 'backend', 'cli', 'main.ts'), 'inspect', path.join(work, 'mixtral')], { encoding: 'utf8' });
    assert.equal(inspect.status, 0, inspect.stderr);
    assert.match(inspect.stdout, /^ {2}layers\.0\.block_sparse_moe\.experts\.\*\.w1 +4 experts × 48x32$/m);
    assert.match(inspect.stdout, /^ {2}layers\.1\.block_sparse_moe\.experts\.\*\.w2 +4 experts × 32x48$/m);
    assert.doesNotMatch(inspect.stdout, /experts\.\d/);
    assert.match(inspect.stdout, /^left dense: layers\.0\.block_sparse_moe\.gate 4x32 Gemm \(MoE router/m);
    // The config editor's completions: one glob per expert projection across blocks, none per expert.
    const json = spawnSync(process.execPath, ['--import', 'tsx', path.join(__dirname, '..', 'src', 'backend', 'cli', 'main.ts'), 'inspect', path.join(work, 'mixtral'), '--json'], { encoding: 'utf8' });
    const globs = layerPatternSuggestions(parseInspectOutput(json.stdout)).filter((x) => x.kind === 'glob');
    assert.deepEqual(globs.find((x) => x.label === '*.block_sparse_moe.experts.*.w2')?.detail, '8 layers');
    assert.ok(!globs.some((x) => /experts\.\d/.test(x.label)), globs.map((x) => x.label).join(' '));
  });

  test('qwen2_moe: shared expert and gate, a plain-MLP layer; logits match modeling_qwen2_moe.py in float64; re-read', async () => {
    const r = await checkFamily(engine, work, {
      name: 'qwen2-moe', config: QWEN2_MOE, shapes: moeTensorShapes('qwen2_moe', QWEN2_MOE),
      reference: (W, ids, mask) => moeReference('qwen2_moe', QWEN2_MOE, W, ids, mask),
    });
    const attn = (i: number) => ['q_proj', 'k_proj', 'v_proj', 'o_proj'].map((p) => `layers.${i}.self_attn.${p}`);
    const swiglu = (p: string) => ['gate_proj', 'up_proj', 'down_proj'].map((x) => `${p}.${x}`);
    assert.deepEqual(r.pruned.map((e) => e.layer), [
      ...attn(0), ...expertLayers('layers.0.mlp', 6, ['gate_proj', 'up_proj', 'down_proj']), ...swiglu('layers.0.mlp.shared_expert'),
      ...attn(1), ...swiglu('layers.1.mlp'),
    ]);
    assert.equal(r.events.filter((e) => e.type === 'warning.raised').length, 0);
  });

  test('qwen3_moe: Qwen3 attention (q_norm, k_norm), no shared expert, a plain-MLP layer; logits match modeling_qwen3_moe.py in float64; re-read', async () => {
    const shapes = moeTensorShapes('qwen3_moe', QWEN3_MOE);
    assert.deepEqual(shapes.get('model.layers.0.self_attn.q_norm.weight'), [16]);
    assert.ok(![...shapes.keys()].some((n) => n.includes('shared_expert')));
    const r = await checkFamily(engine, work, {
      name: 'qwen3-moe', config: QWEN3_MOE, shapes,
      reference: (W, ids, mask) => moeReference('qwen3_moe', QWEN3_MOE, W, ids, mask),
    });
    const attn = (i: number) => ['q_proj', 'k_proj', 'v_proj', 'o_proj'].map((p) => `layers.${i}.self_attn.${p}`);
    assert.deepEqual(r.pruned.map((e) => e.layer), [
      ...attn(0), ...expertLayers('layers.0.mlp', 6, ['gate_proj', 'up_proj', 'down_proj']),
      ...attn(1), ...['gate_proj', 'up_proj', 'down_proj'].map((x) => `layers.1.mlp.${x}`),
    ]);
    assert.equal(r.events.filter((e) => e.type === 'warning.raised').length, 0);
  });

  test('each expert\'s Hessian is Σ over the tokens routed to it of g²·x·xᵀ (float64 recomputation), with their count', async () => {
    const shapes = moeTensorShapes('mixtral', MIXTRAL);
    const W = new Map(randomTensors(shapes, 3).map((t) => [t.name, t.data]));
    const model = buildMoeModel('mixtral', MIXTRAL, new Map([...W].map(([n, data]) => [n, { data, dims: shapes.get(n) as number[] } as LlamaTensor])));
    const mask = IDS.map((row) => row.map(() => 1));
    const routed: RoutedToken[] = [];
    moeReference('mixtral', MIXTRAL, W, IDS, mask, (t) => { if (t.layer === 0) routed.push(t); });

    const plan = await planSegments(model, discoverLayers(model));
    const feeds: Record<string, ort.Tensor> = { input_ids: int64(IDS), attention_mask: int64(mask) };
    const prefix = segmentModel(plan, plan.segments[0]);
    Object.assign(feeds, await (await engine.kernel(prefix.model)).run(Object.fromEntries(prefix.inputs.map((n) => [n, feeds[n]]))));
    const block0 = plan.segments[1];
    const cg = calibrationModel(plan, block0);
    for (const w of cg.weights) feeds[w] = new ort.Tensor('float32', W.get(w) as Float32Array, shapes.get(w) as number[]);
    const sums = emptySums(cg);
    await runCalibration(await engine.kernel(cg.model), cg, Object.fromEntries([...cg.inputs, ...cg.weights].map((n) => [n, feeds[n]])), sums, IDS.length);

    const h = MIXTRAL.hidden_size;
    let worst = 0;
    for (let j = 0; j < 4; j++) {
      const layer = block0.layers.find((l) => l.name === `layers.0.block_sparse_moe.experts.${j}.w1`);
      assert.ok(layer?.tokenWeight);
      const stat = cg.stats.find((s) => s.key === calibrationKey(layer));
      assert.ok(stat?.routed);
      assert.deepEqual(stat.layers, [`layers.0.block_sparse_moe.experts.${j}.w1`, `layers.0.block_sparse_moe.experts.${j}.w3`]);
      const mine = routed.filter((t) => t.g[j] > 0);
      const got = sums.get(stat.key) as CalibrationSums;
      assert.equal(got.routedTokens, mine.length, `expert ${j}: routed tokens`);
      const ref = new Float64Array(h * h);
      for (const t of mine) for (let a = 0; a < h; a++) for (let b = 0; b < h; b++) ref[a * h + b] += t.g[j] ** 2 * t.x[a] * t.x[b];
      const scale = Math.max(...ref.map(Math.abs));
      for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(got.xtx[i] - ref[i]) / scale);
    }
    console.log(`expert Hessians vs float64: worst relative error ${worst.toExponential(2)}`);
    assert.ok(worst < 1e-4, `worst ${worst}`);
    // Unweighted statistics would not match: the routing weights are well below 1.
    assert.ok(routed.every((t) => t.g.reduce((a, v) => a + v, 0) > 0.999 && Math.max(...t.g) < 1));
  });

  test('calibration in passes of at most 2× the largest Hessian: the same sums as one pass over the whole block', async () => {
    const shapes = moeTensorShapes('mixtral', MIXTRAL);
    const W = new Map(randomTensors(shapes, 5).map((t) => [t.name, t.data]));
    const model = buildMoeModel('mixtral', MIXTRAL, new Map([...W].map(([n, data]) => [n, { data, dims: shapes.get(n) as number[] } as LlamaTensor])));
    const plan = await planSegments(model, discoverLayers(model));
    const mask = IDS.map((row) => row.map(() => 1));
    const feeds: Record<string, ort.Tensor> = { input_ids: int64(IDS), attention_mask: int64(mask) };
    const prefix = segmentModel(plan, plan.segments[0]);
    Object.assign(feeds, await (await engine.kernel(prefix.model)).run(Object.fromEntries(prefix.inputs.map((n) => [n, feeds[n]]))));
    const block0 = plan.segments[1];
    for (const w of block0.weights) feeds[w] = new ort.Tensor('float32', W.get(w) as Float32Array, shapes.get(w) as number[]);
    const calibrate = async (layers?: PrunableLayer[]) => {
      const cg = calibrationModel(plan, block0, { layers });
      const sums = emptySums(cg);
      await runCalibration(await engine.kernel(cg.model), cg, Object.fromEntries([...cg.inputs, ...cg.weights].map((n) => [n, feeds[n]])), sums, IDS.length);
      return new Map([...sums].map(([key, s]) => [key, [s.xtx, s.colSq, Float64Array.of(s.routedTokens ?? -1)]]));
    };
    const whole = await calibrate();
    const groups = calibrationGroups(block0.layers);
    // Hidden 32, intermediate 48: the largest Hessian is a w2 input's (48²); passes filled in layer order up to
    // 2 × 48² hold the attention's two (2 × 32²) and one w1/w3 input (32²), then a w2 input and the next w1/w3 one.
    const largest = calibrationBytes(block0.layers.filter((l) => l.name.endsWith('.w2')).slice(0, 1));
    const expert = (j: number, p: string[]) => p.map((x) => `block_sparse_moe.experts.${j}.${x}`);
    assert.deepEqual(groups.map((g) => g.map((l) => l.name.replace(/^layers\.0\./, ''))), [
      ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', ...expert(0, ['w1', 'w3'])],
      ...[1, 2, 3].map((j) => [...expert(j - 1, ['w2']), ...expert(j, ['w1', 'w3'])]),
      expert(3, ['w2']),
    ]);
    const seen = new Set<string>();
    for (const g of groups) {
      assert.ok(calibrationBytes(g) <= HESSIAN_GROUP_FACTOR * largest, `${calibrationBytes(g)} > ${HESSIAN_GROUP_FACTOR} × ${largest}`);
      for (const [key, sums] of await calibrate(g)) {
        assert.ok(!seen.has(key), `${key} in two passes`);
        seen.add(key);
        const want = whole.get(key) as (Float32Array | Float64Array)[];
        sums.forEach((got, i) => got.forEach((v, k) => assert.ok(Math.abs(v - want[i][k]) <= 1e-6 * Math.max(1, Math.abs(want[i][k])), `${key}[${i}][${k}]: ${v} vs ${want[i][k]}`)));
      }
    }
    assert.deepEqual([...seen].sort(), [...whole.keys()].sort());
  });

  test('an expert routed fewer calibration tokens than its inputs: a warning naming it, pruned by magnitude', async () => {
    // One 16-token window: no expert of 4 (top 2) gets the 32 tokens its gate/up inputs (hidden 32) would need.
    const r = await checkFamily(engine, work, {
      name: 'mixtral-starved', config: MIXTRAL, shapes: moeTensorShapes('mixtral', MIXTRAL),
      reference: (W, ids, mask) => moeReference('mixtral', MIXTRAL, W, ids, mask),
    }, { nsamples: 1 });
    const warnings = r.events.filter((e) => e.type === 'warning.raised') as EventOf<'warning.raised'>[];
    const experts = r.pruned.filter((e) => /experts/.test(e.layer));
    assert.equal(experts.length, 24);
    const starved = experts.filter((e) => e.method === 'magnitude').map((e) => e.layer);
    assert.equal(starved.length, 24); // 16 tokens in all: no expert reaches 32
    assert.deepEqual(warnings.map((w) => [w.code, w.layer]), starved.map((l) => ['expert-few-tokens', l]));
    for (const w of warnings) assert.match(w.message, /^layers\.\d\.block_sparse_moe\.experts\.\d\.w[123]: \d+ calibration tokens routed to it, fewer than its (32|48) inputs: pruned by magnitude$/);
    assert.ok(r.pruned.filter((e) => /self_attn/.test(e.layer)).every((e) => e.method === 'sparsegpt'));
  });
});
