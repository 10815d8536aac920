// GPT-NeoX ONNX graph builder: a Hugging Face GPTNeoXForCausalLM (EleutherAI's Pythia, GPT-NeoX-20B), HF [out, in]
// layout, weights referenced where they are stored, names as in the checkpoint (`gpt_neox.layers.N.…`, `embed_out`).
//
// The maths is HF's (transformers modeling_gpt_neox.py, eager attention):
//  - attention.query_key_value is one fused [3·hidden, hidden] layer, pruned as one; its output is viewed
//    [heads, 3, head_dim] per token (q, k, v interleaved per head, not q | k | v);
//  - partial rotary: the first rotary_ndims = ⌊head_dim · rotary_pct⌋ features of each q and k head are rotated
//    (rotate_half on halves, inv_freq = 1 / base^(2i / rotary_ndims), base rotary_emb_base), the rest pass;
//  - scores · head_dim^−½, the causal + padding mask of decoderParts;
//  - use_parallel_residual (default true): h + attn(ln1(h)) + mlp(ln2(h)); false: h += attn(ln1(h));
//    h += mlp(ln2(h)); mlp = dense_4h_to_h(gelu(dense_h_to_4h(·)));
//  - LayerNorm eps layer_norm_eps; final_layer_norm; the untied head embed_out (tie_word_embeddings default false).
// Ops: ai.onnx opset 17, as the other builders.

import { DataType, ModelProto } from '../onnx/proto';
import { attention, decoderInputs, DecoderInputs, DecoderSizes, flatten, gelu, geluForm, layerNorm, lmHead, logitsOutput } from './decoderParts';
import { configPositiveInt } from './configFields';
import { Dim, expected, ExpectedTensor, shapesOf } from './expected';
import { causalLmModel, Emitter, familyBuilder } from './emitter';
import { RopeScaling, ropeInvFreq } from './rope';
import type { LlamaWeights } from './weights';

/** The fields of a Hugging Face GPTNeoXConfig the builder reads; optional ones take HF's defaults. */
export interface NeoxConfig {
  model_type?: string;
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  max_position_embeddings?: number;
  /** Default gelu. */
  hidden_act?: string;
  /** Default 0.25 (newer configs: partial_rotary_factor). */
  rotary_pct?: number;
  partial_rotary_factor?: number;
  /** Default 10000 (newer configs: rope_theta). */
  rotary_emb_base?: number;
  rope_theta?: number;
  rope_scaling?: RopeScaling | null;
  /** Default 1e-5. */
  layer_norm_eps?: number;
  /** Default true. */
  use_parallel_residual?: boolean;
  /** Biases on query_key_value and dense (default true). */
  attention_bias?: boolean;
  /** Default false. */
  tie_word_embeddings?: boolean;
}

export interface ResolvedNeoxConfig extends DecoderSizes {
  rotaryDims: number;
  /** rotaryDims / 2 frequencies, float32-rounded as HF computes them. */
  invFreq: Float32Array;
  act: 'erf' | 'tanh';
  eps: number;
  parallel: boolean;
  attentionBias: boolean;
  tied: boolean;
}

/** The config without its rotary table: nothing here is sized from config numbers (see expected.ts). */
export function resolveNeoxConfig(config: NeoxConfig): ResolvedNeoxConfig {
  const c = resolveNeoxSizes(config);
  return { ...c, invFreq: ropeInvFreq(c.rotaryDims, config.rotary_emb_base ?? config.rope_theta ?? 10000, config.rope_scaling) };
}

function resolveNeoxSizes(config: NeoxConfig): Omit<ResolvedNeoxConfig, 'invFreq'> {
  const int = (v: unknown, field: string) => configPositiveInt('GPT-NeoX', v, field);
  const hidden = int(config.hidden_size, 'hidden_size');
  const heads = int(config.num_attention_heads, 'num_attention_heads');
  if (hidden % heads !== 0) throw new Error(`GPT-NeoX config: hidden_size (${hidden}) is not a multiple of num_attention_heads (${heads})`);
  const headDim = hidden / heads;
  const pct = config.rotary_pct ?? config.partial_rotary_factor ?? 0.25;
  if (typeof pct !== 'number' || !(pct > 0 && pct <= 1)) throw new Error(`GPT-NeoX config: rotary_pct must be in (0, 1], got ${JSON.stringify(pct)}`);
  const rotaryDims = Math.floor(headDim * pct);
  if (rotaryDims < 2 || rotaryDims % 2 !== 0) throw new Error(`GPT-NeoX config: rotary_pct ${pct} of head_dim ${headDim} gives ${rotaryDims} rotary features; an even number ≥ 2 is needed`);
  const eps = config.layer_norm_eps ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0)) throw new Error(`GPT-NeoX config: layer_norm_eps must be a positive number, got ${JSON.stringify(eps)}`);
  return {
    vocabSize: int(config.vocab_size, 'vocab_size'),
    hidden,
    layers: int(config.num_hidden_layers, 'num_hidden_layers'),
    heads,
    headDim,
    inner: int(config.intermediate_size, 'intermediate_size'),
    rotaryDims,
    act: geluForm('GPT-NeoX', 'hidden_act', config.hidden_act ?? 'gelu'),
    eps,
    parallel: config.use_parallel_residual ?? true,
    attentionBias: config.attention_bias ?? true,
    tied: config.tie_word_embeddings ?? false,
  };
}

/** Every tensor the graph reads, in checkpoint order, each dim with its config field ([out, in] for Linear weights). */
export function* neoxExpectedTensors(config: NeoxConfig): Generator<ExpectedTensor> {
  const c = resolveNeoxSizes(config);
  const h: Dim = [c.hidden, 'hidden_size'];
  const inner: Dim = [c.inner, 'intermediate_size'];
  const vocab: Dim = [c.vocabSize, 'vocab_size'];
  const norm = function* (name: string, because?: string) {
    yield expected(`${name}.weight`, [h], because);
    yield expected(`${name}.bias`, [h]);
  };
  const linear = function* (name: string, out: Dim, inp: Dim, bias: string | null) {
    yield expected(`${name}.weight`, [out, inp]);
    if (bias) yield expected(`${name}.bias`, [out], bias);
  };
  yield expected('gpt_neox.embed_in.weight', [vocab, h]);
  for (let i = 0; i < c.layers; i++) {
    const p = `gpt_neox.layers.${i}`;
    yield* norm(`${p}.input_layernorm`, 'num_hidden_layers');
    yield* norm(`${p}.post_attention_layernorm`);
    const attnBias = c.attentionBias ? 'attention_bias' : null;
    yield* linear(`${p}.attention.query_key_value`, [3 * c.hidden, '3 · hidden_size'], h, attnBias);
    yield* linear(`${p}.attention.dense`, h, h, attnBias);
    yield* linear(`${p}.mlp.dense_h_to_4h`, inner, h, 'intermediate_size');
    yield* linear(`${p}.mlp.dense_4h_to_h`, h, inner, 'hidden_size');
  }
  yield* norm('gpt_neox.final_layer_norm');
  if (!c.tied) yield expected('embed_out.weight', [vocab, h], 'tie_word_embeddings');
}

export const neoxTensorShapes = (config: NeoxConfig): Map<string, number[]> => shapesOf(neoxExpectedTensors(config));

/** cos and sin [B, S, 1, 2·invFreq.length] of the positions (HF's emb = [angle, angle]). */
export function rotaryCosSin(e: Emitter, scope: string, inputs: DecoderInputs, invFreq: Float32Array): { cos: string; sin: string } {
  const pos = e.op1(scope, 'Cast', [inputs.positions], { to: DataType.FLOAT });
  const angle = e.op1(scope, 'Mul', [e.op1(scope, 'Unsqueeze', [pos, e.ints(scope, [2])]), e.constant(scope, Array.from(invFreq), [1, 1, invFreq.length], DataType.FLOAT)]);
  const emb = e.op1(scope, 'Concat', [angle, angle], { axis: -1 });
  const axis2 = e.ints(scope, [2]);
  return { cos: e.op1(scope, 'Unsqueeze', [e.op1(scope, 'Cos', [emb]), axis2]), sin: e.op1(scope, 'Unsqueeze', [e.op1(scope, 'Sin', [emb]), axis2]) };
}

/** x·cos + rotate_half(x)·sin on the first `dims` features of each head of x [B, S, H, D]; the rest pass through. */
export function partialRope(e: Emitter, scope: string, x: string, rot: { cos: string; sin: string }, dims: number, headDim: number): string {
  const slice = (from: number, to: number) => e.op1(scope, 'Slice', [x, e.ints(scope, [from]), e.ints(scope, [to]), e.ints(scope, [-1])]);
  const half = dims / 2;
  const rotated = e.op1(scope, 'Concat', [e.op1(scope, 'Neg', [slice(half, dims)]), slice(0, half)], { axis: -1 });
  const xr = dims === headDim ? x : slice(0, dims);
  const y = e.op1(scope, 'Add', [e.op1(scope, 'Mul', [xr, rot.cos]), e.op1(scope, 'Mul', [rotated, rot.sin])]);
  return dims === headDim ? y : e.op1(scope, 'Concat', [y, slice(dims, headDim)], { axis: -1 });
}

/**
 * Builds the ONNX graph of a GPTNeoXForCausalLM: inputs `input_ids`, `attention_mask` (int64 [batch, seq]), output
 * `logits` (float [batch, seq, vocab]). Throws, naming the tensor, when a weight is missing or has the wrong dims.
 */
export function buildNeoxModel(config: NeoxConfig, weights: LlamaWeights): ModelProto {
  const c = resolveNeoxConfig(config);
  const { e, w, linear } = familyBuilder('GPT-NeoX', neoxTensorShapes(config), weights);
  const h = c.hidden;
  const H = c.heads;
  const D = c.headDim;
  const scope = '/gpt_neox';

  const inputs = decoderInputs(e, scope);
  const rot = rotaryCosSin(e, `${scope}/rotary_emb`, inputs, c.invFreq);
  const embedName = e.weight('gpt_neox.embed_in.weight', w('gpt_neox.embed_in.weight'));
  let hidden = flatten(e, `${scope}/embed_in`, e.op1(`${scope}/embed_in`, 'Gather', [embedName, 'input_ids'], { axis: 0 }), h);

  for (let i = 0; i < c.layers; i++) {
    const ls = `${scope}/layers.${i}`;
    const as = `${ls}/attention`;
    const ms = `${ls}/mlp`;
    const p = `gpt_neox.layers.${i}`;
    const qkv = linear(`${as}/query_key_value`, layerNorm(e, w, `${ls}/input_layernorm`, hidden, `${p}.input_layernorm`, c.eps), `${p}.attention.query_key_value`, c.attentionBias);
    const perHead = e.op1(as, 'Reshape', [qkv, e.op1(as, 'Concat', [inputs.batchSeq, e.ints(as, [H, 3 * D])], { axis: 0 })]); // [B, S, H, 3·D]
    const [q, k, v] = e.op(as, 'Split', [perHead, e.ints(as, [D, D, D])], { axis: -1 }, 3);
    const ctx = attention(e, as, inputs, partialRope(e, as, q, rot, c.rotaryDims, D), partialRope(e, as, k, rot, c.rotaryDims, D), v, H, D, 1 / Math.sqrt(D));
    const attn = linear(`${as}/dense`, ctx, `${p}.attention.dense`, c.attentionBias);
    const mlp = (x: string): string => {
      const up = linear(`${ms}/dense_h_to_4h`, layerNorm(e, w, `${ls}/post_attention_layernorm`, x, `${p}.post_attention_layernorm`, c.eps), `${p}.mlp.dense_h_to_4h`, true);
      return linear(`${ms}/dense_4h_to_h`, gelu(e, `${ms}/act`, up, c.act), `${p}.mlp.dense_4h_to_h`, true);
    };
    if (c.parallel) hidden = e.op1(ls, 'Add', [e.op1(ls, 'Add', [hidden, attn]), mlp(hidden)]);
    else {
      hidden = e.op1(ls, 'Add', [hidden, attn]);
      hidden = e.op1(ls, 'Add', [hidden, mlp(hidden)]);
    }
  }

  hidden = layerNorm(e, w, `${scope}/final_layer_norm`, hidden, 'gpt_neox.final_layer_norm', c.eps);
  logitsOutput(e, inputs, lmHead(e, w, hidden, c.tied, embedName, 'embed_out.weight'), c.vocabSize);
  return causalLmModel(e, 'gpt_neox', `GPTNeoXForCausalLM (${c.layers} layers, hidden ${h}, ${H} heads, rotary ${c.rotaryDims}/${D})`,
    { vocabSize: c.vocabSize, weightLayout: 'out_in', tied: c.tied });
}
