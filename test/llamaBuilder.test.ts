// The Llama ONNX graph builder (src/backend/models/llama.ts): built from the fixtures' Hugging Face folders
// (config.json + model.safetensors) it must reproduce their PyTorch reference logits; built from random
// weights it must run, agree with an independent float64 forward written here, and look to the pipeline
// (layer discovery, segmentation) exactly like an exported checkpoint.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import {
  buildLlamaModel, hfTensorName, LlamaConfig, LlamaTensor, llamaTensorShapes, randomLlamaWeights, resolveLlamaConfig, ropeInvFreq,
} from '../src/backend/models/llama';
import { DataType, decodeModel, ModelProto, TensorProto } from '../src/backend/onnx/proto';
import { Engine } from '../src/backend/onnx/session';
import { discoverLayers } from '../src/backend/pipeline/layers';
import { planSegments, segmentModel } from '../src/backend/pipeline/segments';
import { referenceForward } from './helpers/llamaReference';
import { Rng } from './helpers/reference';
import { readSafetensorsF32 } from './helpers/safetensors';

const repoRoot = path.resolve(__dirname, '..');
const fixtures = path.resolve(repoRoot, '..', 'shared', 'fixtures');

const engine = new Engine({ device: 'cpu', threads: 1 });
after(() => engine.release());

interface Case { input_ids: number[][]; attention_mask: number[][]; logits?: number[][][] }

interface LlamaFixture { name: string; hfDir: string; onnx: string | null; reference: string }

/** The Llama-family Hugging Face folders listed in the fixtures README (`<name>-hf/` rows whose config says
 *  llama and that have a `<name>-reference.json`), so new models are picked up without editing this test. */
function llamaFixtures(): LlamaFixture[] {
  const readme = readFileSync(path.join(fixtures, 'README.md'), 'utf8');
  const out: LlamaFixture[] = [];
  for (const m of readme.matchAll(/^\|\s*`([\w.-]+)-hf\/`\s*\|/gm)) {
    const name = m[1];
    const hfDir = path.join(fixtures, `${name}-hf`);
    const configFile = path.join(hfDir, 'config.json');
    const reference = path.join(fixtures, `${name}-reference.json`);
    if (!existsSync(configFile) || !existsSync(reference)) continue;
    if ((JSON.parse(readFileSync(configFile, 'utf8')) as { model_type?: string }).model_type !== 'llama') continue;
    const onnx = path.join(fixtures, `${name}-onnx`, 'model.onnx');
    out.push({ name, hfDir, onnx: existsSync(onnx) ? onnx : null, reference });
  }
  return out;
}

function int64(rows: number[][]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(rows.flat(), BigInt), [rows.length, rows[0].length]);
}

async function logits(model: ModelProto, ids: number[][], mask: number[][]): Promise<{ data: Float32Array; dims: number[] }> {
  const out = await (await engine.kernel(model)).run({ input_ids: int64(ids), attention_mask: int64(mask) });
  return { data: out.logits.data as Float32Array, dims: [...out.logits.dims] };
}

function floats(t: TensorProto): Float32Array {
  assert.equal(t.dataType, DataType.FLOAT);
  assert.ok(t.rawData);
  return new Float32Array(new Uint8Array(t.rawData).buffer);
}

function initializer(model: ModelProto, name: string): TensorProto {
  const t = model.graph.initializer.find((x) => x.name === name);
  assert.ok(t, `initializer ${name}`);
  return t;
}

const LAYER_KINDS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];

/** discoverLayers on a built model: `layers.N` blocks of the 7 projections (MatMul, [in, out] weights), LM head left dense. */
function checkDiscovery(model: ModelProto, config: LlamaConfig): void {
  const c = resolveLlamaConfig(config);
  const d = discoverLayers(model);
  assert.equal(d.blockSource, 'pattern');
  assert.deepEqual(d.blocks.map((b) => b.name), Array.from({ length: c.layers }, (_, i) => `layers.${i}`));
  const q = c.heads * c.headDim;
  const kv = c.kvHeads * c.headDim;
  const shape: Record<string, [number, number]> = {
    'self_attn.q_proj': [q, c.hiddenSize], 'self_attn.k_proj': [kv, c.hiddenSize], 'self_attn.v_proj': [kv, c.hiddenSize], 'self_attn.o_proj': [c.hiddenSize, q],
    'mlp.gate_proj': [c.intermediateSize, c.hiddenSize], 'mlp.up_proj': [c.intermediateSize, c.hiddenSize], 'mlp.down_proj': [c.hiddenSize, c.intermediateSize],
  };
  for (const b of d.blocks) {
    assert.deepEqual(b.layers, LAYER_KINDS.map((k) => `${b.name}.${k}`));
    for (const k of LAYER_KINDS) {
      const l = d.layers.find((x) => x.name === `${b.name}.${k}`);
      assert.ok(l);
      assert.equal(l.node, `/model/${b.name}/${k.replace('.', '/')}/MatMul`);
      assert.deepEqual([l.op, l.layout, l.rows, l.cols, l.block], ['MatMul', 'in_out', ...shape[k], b.index]);
      assert.deepEqual(hfTensorName(l.weight), { name: `model.${b.name}.${k}.weight`, transposed: true });
    }
  }
  assert.equal(d.layers.length, 7 * c.layers);
  assert.deepEqual(d.skipped.map((s) => [s.name, s.rows, s.cols]), [['lm_head', c.vocabSize, c.hiddenSize]]);
  assert.match(d.skipped[0].reason, /LM head/);
}

// ---------------------------------------------------------------------------------------------------------

describe('Llama builder on the fixtures', () => {
  const found = llamaFixtures();

  test('the README lists the Llama fixtures', () => {
    const names = found.map((f) => f.name);
    for (const n of ['stories260K', 'stories-llama-1M']) assert.ok(names.includes(n), `${n} in ${names.join(', ')}`);
  });

  for (const fx of found) {
    test(`${fx.name}: built from config.json + model.safetensors, reproduces the reference logits to 1e-4`, async () => {
      const config = JSON.parse(readFileSync(path.join(fx.hfDir, 'config.json'), 'utf8')) as LlamaConfig;
      const weights = readSafetensorsF32(path.join(fx.hfDir, 'model.safetensors'));
      const model = buildLlamaModel(config, weights);
      // Every tensor of the checkpoint is used (tied: no lm_head.weight in the file).
      assert.deepEqual([...weights.keys()].sort(), [...llamaTensorShapes(config).keys()].sort());
      const cases = (JSON.parse(readFileSync(fx.reference, 'utf8')) as { cases: Case[] }).cases;
      assert.ok(cases.some((c) => c.attention_mask.flat().includes(0)), 'a padded case');
      const errors: string[] = [];
      for (const c of cases) {
        const { data, dims } = await logits(model, c.input_ids, c.attention_mask);
        const B = c.input_ids.length;
        const S = c.input_ids[0].length;
        assert.deepEqual(dims, [B, S, config.vocab_size]);
        // The reference's padded positions are well defined (position id = last real one, attending to the
        // real tokens), and the graph computes them the same way: compare every position.
        const ref = Float32Array.from((c.logits as number[][][]).flat(2));
        let worst = 0;
        for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(data[i] - ref[i]));
        errors.push(`${B}x${S}: ${worst.toExponential(2)}`);
        assert.ok(worst <= 1e-4, `${fx.name} ${B}x${S}: max |Δlogit| ${worst}`);
      }
      console.log(`${fx.name}: max |Δlogit| vs PyTorch ${errors.join(', ')}`);

      // Left padding: the real tokens' logits do not change.
      const base = cases[0];
      const S = base.input_ids[0].length;
      const pad = 5;
      const left = await logits(model, [[...Array(pad).fill(0), ...base.input_ids[0]]], [[...Array(pad).fill(0), ...Array(S).fill(1)]]);
      const plain = await logits(model, base.input_ids, base.attention_mask);
      const V = config.vocab_size;
      let worst = 0;
      for (let i = 0; i < S * V; i++) worst = Math.max(worst, Math.abs(left.data[pad * V + i] - plain.data[i]));
      assert.ok(worst < 1e-4, `left padding changes real-token logits by ${worst}`);
      for (const x of left.data) assert.ok(Number.isFinite(x));

      checkDiscovery(model, config);
    });

    if (fx.onnx) {
      const onnxFile = fx.onnx;
      test(`${fx.name}: same layers and bit-identical [in, out] weights as the torch.onnx export`, () => {
        const config = JSON.parse(readFileSync(path.join(fx.hfDir, 'config.json'), 'utf8')) as LlamaConfig;
        const built = buildLlamaModel(config, readSafetensorsF32(path.join(fx.hfDir, 'model.safetensors')));
        const exported = decodeModel(readFileSync(onnxFile));
        const a = discoverLayers(built);
        const b = discoverLayers(exported);
        assert.deepEqual(a.layers.map((l) => [l.name, l.node, l.rows, l.cols]), b.layers.map((l) => [l.name, l.node, l.rows, l.cols]));
        assert.deepEqual(a.skipped.map((l) => [l.name, l.node]), b.skipped.map((l) => [l.name, l.node]));
        for (const [la, lb] of [...a.layers.map((l, i) => [l, b.layers[i]]), [a.skipped[0], b.skipped[0]]]) {
          assert.deepEqual(floats(initializer(built, la.weight)), floats(initializer(exported, lb.weight)), la.name);
        }
      });
    }
  }
});

// ---------------------------------------------------------------------------------------------------------
// Random weights

const SMALL: LlamaConfig = {
  model_type: 'llama', hidden_size: 48, intermediate_size: 80, num_hidden_layers: 2, num_attention_heads: 6, num_key_value_heads: 2,
  vocab_size: 96, max_position_embeddings: 64, rms_norm_eps: 1e-6, rope_theta: 500, tie_word_embeddings: false,
  attention_bias: true, mlp_bias: true, initializer_range: 0.15,
};

describe('Llama builder with random weights', () => {
  test('randomLlamaWeights: every tensor of the config, deterministic per seed, HF-like scale', () => {
    const a = randomLlamaWeights(SMALL, 3);
    const b = randomLlamaWeights(SMALL, 3);
    const c = randomLlamaWeights(SMALL, 4);
    assert.deepEqual([...a.keys()], [...llamaTensorShapes(SMALL).keys()]);
    for (const [name, t] of a) {
      assert.deepEqual(t.dims, llamaTensorShapes(SMALL).get(name));
      assert.deepEqual(t.data, (b.get(name) as LlamaTensor).data, name);
    }
    const q = (a.get('model.layers.0.self_attn.q_proj.weight') as LlamaTensor).data;
    assert.notDeepEqual(q, (c.get('model.layers.0.self_attn.q_proj.weight') as LlamaTensor).data);
    let s2 = 0;
    for (const v of q) s2 += v * v;
    assert.ok(Math.abs(Math.sqrt(s2 / q.length) - 0.15) < 0.015, `std ${Math.sqrt(s2 / q.length)}`);
    assert.ok((a.get('model.norm.weight') as LlamaTensor).data.every((v) => v === 1));
    assert.ok((a.get('model.layers.1.mlp.down_proj.bias') as LlamaTensor).data.every((v) => v === 0));
  });

  test('biases, untied head, GQA, padding: logits match an independent float64 forward', async () => {
    const W = randomLlamaWeights(SMALL, 1);
    // Give norms and biases random values too, so every tensor's place in the graph is checked.
    const rng = new Rng(11);
    for (const [name, t] of W) {
      if (name.endsWith('.bias')) t.data.forEach((_, i) => { t.data[i] = 0.1 * rng.normal(); });
      if (name.endsWith('norm.weight')) t.data.forEach((_, i) => { t.data[i] = 1 + 0.3 * rng.normal(); });
    }
    const model = buildLlamaModel(SMALL, W);
    const S = 12;
    const ids = [Array.from({ length: S }, (_, i) => (i * 37 + 5) % 96), Array.from({ length: S }, (_, i) => (i * 11 + 3) % 96), Array.from({ length: S }, (_, i) => (i * 7 + 1) % 96)];
    const mask = [Array(S).fill(1), [...Array(S - 4).fill(1), 0, 0, 0, 0], [0, 0, 0, ...Array(S - 3).fill(1)]];
    const got = await logits(model, ids, mask);
    for (const v of got.data) assert.ok(Number.isFinite(v));
    const ref = referenceForward(SMALL, W, ids, mask);
    let worst = 0;
    let scale = 0;
    for (let i = 0; i < ref.length; i++) {
      if (Number.isNaN(ref[i])) continue;
      worst = Math.max(worst, Math.abs(got.data[i] - ref[i]));
      scale = Math.max(scale, Math.abs(ref[i]));
    }
    assert.ok(scale > 0.5, `logits too small to test anything (${scale})`);
    assert.ok(worst < 1e-4 * scale, `max |Δ| ${worst} (logit scale ${scale})`);
  });

  test('the pipeline sees a checkpoint: 7 layers per block, lm_head skipped; segments reproduce the logits', async () => {
    const config: LlamaConfig = { ...SMALL, num_hidden_layers: 3, attention_bias: false, mlp_bias: false, tie_word_embeddings: true, initializer_range: 0.02 };
    const model = buildLlamaModel(config, randomLlamaWeights(config, 7));
    checkDiscovery(model, config);
    const d = discoverLayers(model);
    const plan = await planSegments(model, d);
    assert.deepEqual(plan.segments.map((s) => s.name), ['prefix', 'layers.0', 'layers.1', 'layers.2', 'suffix']);
    // Shared tensors come from the prefix: each block reads the residual stream, the mask and the rotary tables only.
    const shared = ['/model/And_output_0', '/model/rotary_emb/Unsqueeze_1_output_0', '/model/rotary_emb/Unsqueeze_2_output_0'];
    for (const s of plan.segments.filter((x) => x.kind === 'block')) {
      assert.deepEqual([...s.inputs].sort(), [...shared, s.block === 0 ? '/model/embed_tokens/Gather_output_0' : `/model/layers.${(s.block as number) - 1}/Add_1_output_0`].sort(), s.name);
    }
    const ids = [[1, 5, 9, 13, 17, 21, 25, 29], [2, 4, 6, 8, 10, 12, 14, 16]];
    const mask = [Array(8).fill(1), [1, 1, 1, 1, 1, 1, 0, 0]];
    const cache = new Map<string, ort.Tensor>([['input_ids', int64(ids)], ['attention_mask', int64(mask)]]);
    for (const seg of plan.segments) {
      const sg = segmentModel(plan, seg);
      const feeds: Record<string, ort.Tensor> = {};
      for (const t of sg.inputs) feeds[t] = cache.get(t) as ort.Tensor;
      for (const w of sg.weights) {
        const init = initializer(model, w);
        feeds[w] = new ort.Tensor('float32', floats(init), init.dims.map(Number));
      }
      const out = await (await engine.kernel(sg.model)).run(feeds);
      for (const t of sg.outputs) cache.set(t, out[t]);
    }
    const whole = await logits(model, ids, mask);
    assert.deepEqual(cache.get('logits')?.data, whole.data);
  });
});

describe('Llama config', () => {
  test('defaults and derived sizes follow HF', () => {
    const c = resolveLlamaConfig({ hidden_size: 64, intermediate_size: 128, num_hidden_layers: 1, num_attention_heads: 4, vocab_size: 10 });
    assert.deepEqual([c.kvHeads, c.headDim, c.rmsNormEps, c.ropeTheta, c.tied, c.attentionBias, c.mlpBias], [4, 16, 1e-6, 10000, false, false, false]);
    assert.equal(c.invFreq.length, 8);
    assert.equal(c.invFreq[0], 1);
    assert.equal(c.invFreq[1], Math.fround(1 / Math.fround(10000 ** Math.fround(2 / 16))));
  });

  test('rope_scaling: linear divides every frequency; llama3 keeps high ones and divides low ones', () => {
    const base = ropeInvFreq(128, 500000, null);
    const linear = ropeInvFreq(128, 500000, { type: 'linear', factor: 4 });
    base.forEach((f, i) => assert.equal(linear[i], Math.fround(f / 4)));
    const l3 = ropeInvFreq(128, 500000, { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 });
    base.forEach((f, i) => {
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < 8192 / 4) assert.equal(l3[i], f);
      else if (wavelen > 8192) assert.equal(l3[i], Math.fround(f / 8));
      else assert.ok(l3[i] < f && l3[i] > f / 8);
    });
    assert.throws(() => ropeInvFreq(64, 10000, { rope_type: 'ntk', factor: 2 }), /'ntk' is not supported \(supported: default, linear, dynamic, yarn, longrope, llama3\)/);
    const lr = { short_factor: [1, 2, 3, 4], long_factor: [5, 6, 7, 8] };
    assert.deepEqual(ropeInvFreq(8, 10000, { type: 'su', ...lr }), ropeInvFreq(8, 10000, { rope_type: 'longrope', ...lr }), "Phi-3's early name 'su' is longrope");
    assert.throws(() => ropeInvFreq(8, 10000, { rope_type: 'longrope', short_factor: [1, 1], long_factor: [1, 1, 1, 1] }), /rope_scaling\.short_factor must list 4 positive numbers/);
  });

  test('transformers v5 rope_parameters (Gemma 3: one per layer type) resolve as the v4 fields do', () => {
    const base: LlamaConfig = { model_type: 'gemma3_text', hidden_size: 32, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 2, head_dim: 16, vocab_size: 8, sliding_window: 4, sliding_window_pattern: 2 };
    const v4 = resolveLlamaConfig({ ...base, rope_theta: 1e6, rope_scaling: { rope_type: 'linear', factor: 8 }, rope_local_base_freq: 100 });
    const v5 = resolveLlamaConfig({ ...base, rope_parameters: { full_attention: { rope_type: 'linear', factor: 8, rope_theta: 1e6 }, sliding_attention: { rope_type: 'default', rope_theta: 100 } } });
    assert.deepEqual([v5.rotary, v5.localRotary, v5.windows], [v4.rotary, v4.localRotary, [4, null]]);
    assert.notDeepEqual(v4.rotary.invFreq, v4.localRotary?.invFreq);
  });

  test('bad configs and weights fail with the name of what is wrong', () => {
    const base: LlamaConfig = { hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 3, vocab_size: 8 };
    assert.throws(() => resolveLlamaConfig(base), /multiple of num_key_value_heads/);
    assert.throws(() => resolveLlamaConfig({ ...base, num_key_value_heads: 2, hidden_act: 'gelu' }), /hidden_act 'gelu'/);
    // Mistral-7B-v0.1's window (4096 < 32768 positions) is accepted: every layer gets the band mask.
    const mistral = resolveLlamaConfig({ ...base, model_type: 'mistral', num_key_value_heads: 2, sliding_window: 4096, max_position_embeddings: 32768 });
    assert.deepEqual(mistral.windows, [4096]);
    assert.throws(() => resolveLlamaConfig({ ...base, num_key_value_heads: 2, sliding_window: 8, layer_types: ['sliding_attention', 'full_attention'] }), /layer_types must list 1 entries/);
    assert.throws(() => resolveLlamaConfig({ ...base, model_type: 'gpt9', num_key_value_heads: 2 }), /model_type 'gpt9' is not a Llama-like family/);
    const ok = { ...base, num_key_value_heads: 2 };
    const W = randomLlamaWeights(ok, 0);
    W.delete('model.layers.0.mlp.up_proj.weight');
    W.set('model.layers.0.self_attn.k_proj.weight', { data: new Float32Array(16 * 16), dims: [16, 16] });
    assert.throws(() => buildLlamaModel(ok, W), (e: Error) =>
      /model\.layers\.0\.mlp\.up_proj\.weight is missing/.test(e.message) && /k_proj\.weight is \[16, 16\], expected \[8, 16\]/.test(e.message));
    // Weights may also come as a plain object.
    const plain = Object.fromEntries(randomLlamaWeights(ok, 0));
    assert.equal(buildLlamaModel(ok, plain).graph.output[0].name, 'logits');
  });
});
