// The Llama-like Hugging Face families (src/backend/models/llamaConfig.ts LLAMA_VARIANTS, built by llama.ts):
// qwen3, gemma, gemma2, gemma3_text, phi3, sliding windows (mistral, qwen2) and the rope types. For each, a tiny
// random-weight folder generated here with the real models' config.json fields (the values scaled down) and
// their safetensors key names must give the logits of the independent float64 forward
// (test/helpers/llamaReference.ts) to 1e-4 relative; each family is then pruned, the output re-read: its
// perplexity is the one the run reported, and only the pruned layers' tensors changed.
//
//   node --import tsx --test test/llamaFamilies.test.ts

import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { evaluationWindows, loadTokenizer, readTokens } from '../src/backend/data/tokens';
import { perplexity } from '../src/backend/eval/perplexity';
import { HfCheckpoint, openHfCheckpoint } from '../src/backend/formats/hfCheckpoint';
import { readTensorBytes } from '../src/backend/formats/safetensors';
import { rowPool } from '../src/backend/methods/rowKernels';
import { LlamaConfig, llamaTensorShapes, randomLlamaWeights } from '../src/backend/models/llama';
import { inputSpecs } from '../src/backend/models/inputs';
import { Engine } from '../src/backend/onnx/session';
import { discoverLayers } from '../src/backend/pipeline/layers';
import { runPrune } from '../src/backend/pipeline/run';
import { resolveConfig } from '../src/protocol/config';
import { Event, EventOf } from '../src/protocol/events';
import { checkpointLogits, compareLogits, writeHfFolder } from './helpers/hfFolder';
import { referenceForward } from './helpers/llamaReference';
import { Rng } from './helpers/reference';

const repoRoot = path.resolve(__dirname, '..');
const fixtures = path.resolve(repoRoot, '..', 'shared', 'fixtures');
const tokenizerFiles = ['tokenizer.json', 'tokenizer_config.json'].map((f) => path.join(fixtures, 'stories260K-hf', f));
const work = mkdtempSync(path.join(os.tmpdir(), 'prunekit-families-'));
// The first 24 KB of the TinyStories text (~10k tokens, enough for 8 + 8 windows of 32): tokenizing all of it
// takes longer than pruning these models.
const text = path.join(work, 'tinystories_head_24k.txt');
writeFileSync(text, readFileSync(path.join(fixtures, 'data', 'tinystories_valid_head.txt')).subarray(0, 24 * 1024));
const engine = new Engine({ device: 'cpu', threads: 1 });

after(async () => {
  rmSync(work, { recursive: true, force: true });
  await engine.release();
  await rowPool.close();
});

// The real configs' fields (Qwen/Qwen3-0.6B, google/gemma-2b, google/gemma-2-2b, google/gemma-3-1b-pt,
// microsoft/Phi-3-mini-128k-instruct, mistralai/Mistral-7B-v0.1, Qwen/Qwen2-0.5B), sizes scaled down; vocab 512
// for the stories260K tokenizer. Windows and rope lengths are below the test's 12-token inputs so they act.
const common = { attention_dropout: 0.0, bos_token_id: 1, eos_token_id: 2, initializer_range: 0.02, torch_dtype: 'float32', transformers_version: '4.51.0', use_cache: true, vocab_size: 512 };
const factors = (n: number, seed: number) => Array.from({ length: n }, (_, i) => 1 + ((i * 7 + seed) % 5) * 0.37);

interface Family { name: string; config: LlamaConfig & Record<string, unknown>; layersPerBlock: number }
const families: Family[] = [
  {
    name: 'qwen3',
    layersPerBlock: 7,
    config: {
      ...common, architectures: ['Qwen3ForCausalLM'], attention_bias: false, head_dim: 16, hidden_act: 'silu', hidden_size: 32, intermediate_size: 48,
      max_position_embeddings: 40960, max_window_layers: 28, model_type: 'qwen3', num_attention_heads: 4, num_hidden_layers: 2, num_key_value_heads: 2,
      rms_norm_eps: 1e-6, rope_scaling: null, rope_theta: 1000000, sliding_window: null, tie_word_embeddings: true, use_sliding_window: false,
    },
  },
  {
    name: 'gemma',
    layersPerBlock: 7,
    config: {
      ...common, architectures: ['GemmaForCausalLM'], attention_bias: false, head_dim: 16, hidden_act: 'gelu', hidden_activation: 'gelu_pytorch_tanh', hidden_size: 32,
      intermediate_size: 64, max_position_embeddings: 8192, model_type: 'gemma', num_attention_heads: 4, num_hidden_layers: 2, num_key_value_heads: 1,
      pad_token_id: 0, rms_norm_eps: 1e-6, rope_scaling: null, rope_theta: 10000,
    },
  },
  {
    name: 'gemma2 (soft-capping, sliding window 4 on even layers)',
    layersPerBlock: 7,
    config: {
      ...common, architectures: ['Gemma2ForCausalLM'], attention_bias: false, attn_logit_softcapping: 1.5, cache_implementation: 'hybrid', final_logit_softcapping: 2.5,
      head_dim: 16, hidden_act: 'gelu_pytorch_tanh', hidden_activation: 'gelu_pytorch_tanh', hidden_size: 32, intermediate_size: 64, max_position_embeddings: 8192,
      model_type: 'gemma2', num_attention_heads: 4, num_hidden_layers: 2, num_key_value_heads: 2, pad_token_id: 0, query_pre_attn_scalar: 24, rms_norm_eps: 1e-6,
      rope_theta: 10000, sliding_window: 4,
    },
  },
  {
    name: 'gemma3_text (q/k norms, 2 sliding layers of 5 then a global one, local and linear-scaled global rope)',
    layersPerBlock: 7,
    config: {
      ...common, architectures: ['Gemma3ForCausalLM'], attention_bias: false, attn_logit_softcapping: null, cache_implementation: 'hybrid', final_logit_softcapping: null,
      head_dim: 16, hidden_activation: 'gelu_pytorch_tanh', hidden_size: 32, intermediate_size: 48, max_position_embeddings: 32768, model_type: 'gemma3_text',
      num_attention_heads: 4, num_hidden_layers: 3, num_key_value_heads: 1, pad_token_id: 0, query_pre_attn_scalar: 16, rms_norm_eps: 1e-6,
      rope_local_base_freq: 10000, rope_scaling: { factor: 8.0, rope_type: 'linear' }, rope_theta: 1000000, sliding_window: 5, sliding_window_pattern: 3,
    },
  },
  {
    name: 'phi3 (fused qkv_proj and gate_up_proj, longrope past the original 8 positions, partial rotary 0.5)',
    layersPerBlock: 4,
    config: {
      ...common, architectures: ['Phi3ForCausalLM'], attention_bias: false, embd_pdrop: 0.0, hidden_act: 'silu', hidden_size: 32, intermediate_size: 48,
      max_position_embeddings: 64, model_type: 'phi3', num_attention_heads: 4, num_hidden_layers: 2, num_key_value_heads: 2, original_max_position_embeddings: 8,
      pad_token_id: 0, partial_rotary_factor: 0.5, resid_pdrop: 0.0, rms_norm_eps: 1e-5,
      rope_scaling: { long_factor: factors(2, 3), short_factor: factors(2, 1), type: 'longrope' }, rope_theta: 10000, sliding_window: 262144, tie_word_embeddings: false,
    },
  },
  {
    name: 'mistral (sliding window 5 < sequence length)',
    layersPerBlock: 7,
    config: {
      ...common, architectures: ['MistralForCausalLM'], hidden_act: 'silu', hidden_size: 32, intermediate_size: 48, max_position_embeddings: 32768, model_type: 'mistral',
      num_attention_heads: 4, num_hidden_layers: 2, num_key_value_heads: 2, rms_norm_eps: 1e-5, rope_theta: 10000.0, sliding_window: 5, tie_word_embeddings: false,
    },
  },
  {
    name: 'qwen2 (use_sliding_window from layer 1, window 3)',
    layersPerBlock: 7,
    config: {
      ...common, architectures: ['Qwen2ForCausalLM'], hidden_act: 'silu', hidden_size: 32, intermediate_size: 48, max_position_embeddings: 32768, max_window_layers: 1,
      model_type: 'qwen2', num_attention_heads: 4, num_hidden_layers: 2, num_key_value_heads: 2, rms_norm_eps: 1e-6, rope_theta: 1000000.0, sliding_window: 3,
      tie_word_embeddings: true, use_sliding_window: true,
    },
  },
];

const llamaBase = {
  ...common, architectures: ['LlamaForCausalLM'], attention_bias: false, hidden_act: 'silu', hidden_size: 32, intermediate_size: 48, max_position_embeddings: 8,
  mlp_bias: false, model_type: 'llama', num_attention_heads: 4, num_hidden_layers: 2, num_key_value_heads: 2, rms_norm_eps: 1e-5, rope_theta: 500000.0, tie_word_embeddings: false,
};
const ropes: Family[] = [
  { name: 'rope yarn ×4 (beta 32/1)', layersPerBlock: 7, config: { ...llamaBase, rope_scaling: { factor: 4.0, original_max_position_embeddings: 8, rope_type: 'yarn' }, rope_theta: 100.0 } },
  { name: 'rope yarn ×4 with mscale / mscale_all_dim (DeepSeek-style), truncate false', layersPerBlock: 7, config: { ...llamaBase, rope_scaling: { factor: 4.0, mscale: 1.0, mscale_all_dim: 0.5, original_max_position_embeddings: 16, rope_type: 'yarn', truncate: false }, rope_theta: 100.0 } },
  { name: 'rope dynamic ×2 past max_position_embeddings 8', layersPerBlock: 7, config: { ...llamaBase, rope_scaling: { factor: 2.0, type: 'dynamic' } } },
  { name: 'rope llama3', layersPerBlock: 7, config: { ...llamaBase, rope_scaling: { factor: 8.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 64, rope_type: 'llama3' }, rope_theta: 50.0 } },
  { name: 'rope longrope with factor (no original_max_position_embeddings): short factors within 64', layersPerBlock: 7, config: { ...llamaBase, max_position_embeddings: 64, rope_scaling: { factor: 4.0, long_factor: factors(4, 2), short_factor: factors(4, 4), rope_type: 'longrope' } } },
];

const S = 12;
const ids = [Array.from({ length: S }, (_, i) => (i * 37 + 5) % 512), Array.from({ length: S }, (_, i) => (i * 11 + 3) % 512)];
const mask = [Array(S).fill(1), [0, 0, 0, ...Array(S - 3).fill(1)]];

/** A folder with random weights (norms and biases perturbed so that every weight matters), and those weights. */
function randomFolder(f: Family, k: number): { dir: string; W: ReturnType<typeof randomLlamaWeights> } {
  const W = randomLlamaWeights({ ...f.config, initializer_range: 0.15 }, k);
  const rng = new Rng(40 + k);
  for (const [name, t] of W) {
    if (name.endsWith('.bias')) t.data.forEach((_, i) => { t.data[i] = 0.1 * rng.normal(); });
    if (name.endsWith('norm.weight')) t.data.forEach((_, i) => { t.data[i] = (f.config.model_type?.startsWith('gemma') ? 0 : 1) + 0.3 * rng.normal(); });
  }
  const dir = path.join(work, `family-${k}`);
  writeHfFolder(dir, f.config, [...W].map(([name, t]) => ({ name, dims: t.dims, data: t.data })), { copy: tokenizerFiles });
  return { dir, W };
}

async function prune(checkpoint: string, output: string): Promise<{ events: Event[]; losses: Map<string, number>; ppl: number[] }> {
  const events: Event[] = [];
  const config = resolveConfig({
    checkpoint, output, method: 'sparsegpt', sparsity: 0.5,
    calibration: { path: text, nsamples: 8, seqlen: 32, seed: 0, skipTokens: 1024 },
    evaluation: { path: text, seqlen: 32, maxWindows: 8 },
  }, work);
  await runPrune(config, { emit: (e) => events.push(e) });
  const losses = new Map((events.filter((e) => e.type === 'layer.pruned') as EventOf<'layer.pruned'>[]).map((e) => [e.layer, e.loss as number]));
  const ppl = (events.filter((e) => e.type === 'evaluation.finished') as EventOf<'evaluation.finished'>[]).map((e) => e.perplexity);
  return { events, losses, ppl };
}

describe('Llama-like families from generated folders', () => {
  for (const [k, f] of [...families, ...ropes].entries()) {
    test(`${f.name}: the graph's logits match the float64 forward to 1e-4`, async () => {
      const { dir, W } = randomFolder(f, k);
      const ckpt = openHfCheckpoint(dir);
      assert.deepEqual([...ckpt.entries.keys()].sort(), [...llamaTensorShapes(f.config).keys()].sort(), 'the real key names, every one read');
      const got = await checkpointLogits(engine, ckpt, ids, mask);
      const ref = referenceForward(f.config, W, ids, mask);
      const { worst, scale } = compareLogits(got, ref);
      console.log(`${f.name}: max |Δlogit| ${worst.toExponential(2)} at logit scale ${scale.toFixed(2)}`);
      assert.ok(scale > 0.5, `logits too small to test anything (${scale})`);
      assert.ok(worst < 1e-4 * scale, `max |Δ| ${worst}`);
    });
  }

  test('mistral with a window that every input fits in (Mistral-7B-v0.1: 4096): the same logits as without one, bit for bit', async () => {
    const f = families.find((x) => x.config.model_type === 'mistral') as Family;
    const W = randomLlamaWeights(f.config, 3);
    const run = async (sliding_window: number | null) => {
      const dir = path.join(work, `mistral-window-${sliding_window}`);
      writeHfFolder(dir, { ...f.config, sliding_window }, [...W].map(([name, t]) => ({ name, dims: t.dims, data: t.data })));
      return checkpointLogits(engine, openHfCheckpoint(dir), ids, mask);
    };
    assert.deepEqual(await run(S), await run(null));
    assert.notDeepEqual(await run(S - 1), await run(null));
  });

  test('gemma in bf16: the embedding is scaled by √hidden rounded to bfloat16, as HF does (48: 6.9282 → 6.9375)', async () => {
    const config = { ...families[1].config, hidden_size: 48, torch_dtype: 'bfloat16' };
    const W = randomLlamaWeights({ ...config, initializer_range: 0.15 }, 7);
    const dir = path.join(work, 'gemma-bf16');
    const stored = writeHfFolder(dir, config, [...W].map(([name, t]) => ({ name, dims: t.dims, data: t.data })), { dtype: 'BF16' });
    const asStored = new Map([...W].map(([name, t]) => [name, { data: stored.get(name) as Float32Array, dims: t.dims }]));
    const got = await checkpointLogits(engine, openHfCheckpoint(dir), ids, mask);
    const worst = (ref: Float64Array) => ref.reduce((m, r, i) => (Number.isNaN(r) ? m : Math.max(m, Math.abs(got[i] - r))), 0);
    const scale = referenceForward(config, asStored, ids, mask, 'bfloat16').reduce((m, r) => (Number.isNaN(r) ? m : Math.max(m, Math.abs(r))), 0);
    const exact = worst(referenceForward(config, asStored, ids, mask, 'bfloat16'));
    const unrounded = worst(referenceForward(config, asStored, ids, mask, 'float32'));
    console.log(`gemma bf16: max |Δlogit| ${exact.toExponential(2)} with the bf16 normalizer, ${unrounded.toExponential(2)} with the exact one (scale ${scale.toFixed(2)})`);
    assert.ok(exact < 1e-4 * scale && unrounded > 1e-4 * scale);
  });

  for (const [k, f] of families.entries()) {
    test(`${f.name}: pruned, the output re-reads with the reported perplexity; only the pruned layers' tensors changed`, async () => {
      const dir = path.join(work, `family-${k}`);
      const out = path.join(work, `family-${k}-out`);
      const run = await prune(dir, out);
      const src = openHfCheckpoint(dir);
      const layers = discoverLayers(src.model).layers;
      assert.equal(layers.length, f.layersPerBlock * (f.config.num_hidden_layers as number));
      assert.deepEqual([...run.losses.keys()].sort(), layers.map((l) => l.name).sort());
      if (f.config.model_type === 'phi3') assert.ok(run.losses.has('layers.0.self_attn.qkv_proj') && run.losses.has('layers.1.mlp.gate_up_proj'), [...run.losses.keys()].join());

      const written = openHfCheckpoint(out) as HfCheckpoint;
      const pruned = new Set(layers.map((l) => l.weight));
      for (const [name, e] of src.entries) {
        const before = readTensorBytes(e);
        const after = readTensorBytes(written.entries.get(name) as typeof e);
        if (!pruned.has(name)) { assert.deepEqual(after, before, `${name} bit-identical`); continue; }
        const v = written.weightAsFloat32(name);
        assert.ok(v.filter((x) => x === 0).length >= v.length / 2, `${name} half zeros`);
      }
      const tokens = readTokens(text, loadTokenizer(path.join(out, 'tokenizer.json')));
      const specs = inputSpecs(written.model.graph.input, new Set(written.model.graph.initializer.map((t) => t.name)));
      const session = await engine.modelSession(written.sessionSource());
      const res = await perplexity(session, specs, evaluationWindows(tokens, 32, 8), { batch: 8 });
      await session.release();
      console.log(`${f.name}: perplexity dense ${run.ppl[0].toFixed(3)} → pruned ${run.ppl[1].toFixed(3)}, re-read ${res.ppl.toFixed(3)}`);
      assert.ok(Math.abs(res.ppl / run.ppl[1] - 1) < 1e-5, `${res.ppl} vs ${run.ppl[1]}`);
      assert.ok(!readdirSync(work).some((n) => n.includes('.tmp-')));
    });
  }
});
