// GPT-2 ONNX graph builder: a Hugging Face GPT2LMHeadModel (config.json + weights by HF tensor name), weights
// referenced where they are stored. GPT-2's projections are `Conv1D` modules whose weights are stored [in, out]
// (`h.0.attn.c_attn.weight` is [n_embd, 3·n_embd]): each is a Gemm(transB=0) on the stored tensor, which layer
// discovery reads as an [in, out] layer, so it is pruned with rows = output features and written back [in, out].
//
// The maths is HF's (transformers modeling_gpt2.py, eager attention):
//  - embeddings wte(ids) + wpe(positions), positions as decoderParts computes them;
//  - pre-norm blocks: h += c_proj(attn(ln_1(h))); h += mlp.c_proj(act(c_fc(ln_2(h)))); final ln_f;
//  - c_attn is one fused [n_embd, 3·n_embd] layer (q | k | v along its output), pruned as one;
//  - scores · head_dim^−½ (scale_attn_weights, default true), also / (layer index + 1) when
//    scale_attn_by_inverse_layer_idx;
//  - LayerNorm eps layer_norm_epsilon (1e-5); activation_function gelu_new (default) or another GELU;
//  - the LM head is tied to wte (tie_word_embeddings, default true), else lm_head.weight [vocab, n_embd].
// Tensor names: `h.N.…`, `wte`, `wpe`, `ln_f` (the hub's gpt2 checkpoints) or the same under `transformer.`.

import type { ModelProto } from '../onnx/proto';
import { attention, decoderInputs, DecoderSizes, flatten, gelu, geluForm, layerNorm, lmHead, logitsOutput, splitHeads } from './decoderParts';
import { configPositiveInt } from './configFields';
import { causalLmModel, familyBuilder } from './emitter';
import { Dim, expected, ExpectedTensor, shapesOf } from './expected';
import type { LlamaWeights } from './weights';

/** The fields of a Hugging Face GPT2Config the builder reads; optional ones take HF's defaults. */
export interface Gpt2Config {
  model_type?: string;
  vocab_size: number;
  n_embd: number;
  n_layer: number;
  n_head: number;
  n_positions: number;
  /** Default 4·n_embd. */
  n_inner?: number | null;
  /** Default gelu_new. */
  activation_function?: string;
  /** Default 1e-5. */
  layer_norm_epsilon?: number;
  /** Default true. */
  scale_attn_weights?: boolean;
  /** Default false. */
  scale_attn_by_inverse_layer_idx?: boolean;
  /** Default true. */
  tie_word_embeddings?: boolean;
  /** Cross-attention (encoder-decoder use) is refused. */
  add_cross_attention?: boolean;
}

export interface ResolvedGpt2Config extends DecoderSizes {
  positions: number;
  act: 'erf' | 'tanh';
  eps: number;
  scaleAttn: boolean;
  inverseLayerIdx: boolean;
  tied: boolean;
  /** `transformer.` (saved from GPT2LMHeadModel) or `` (the hub's gpt2 files, saved from GPT2Model). */
  prefix: string;
}

/** Checkpoints saved from GPT2LMHeadModel name tensors `transformer.…`; the hub's gpt2 files have no prefix. */
export function gpt2Prefix(stored: ReadonlyMap<string, string>): string {
  return stored.has('transformer.wte.weight') ? 'transformer.' : '';
}

export function resolveGpt2Config(config: Gpt2Config, prefix = ''): ResolvedGpt2Config {
  const int = (v: unknown, field: string) => configPositiveInt('GPT-2', v, field);
  const hidden = int(config.n_embd, 'n_embd');
  const heads = int(config.n_head, 'n_head');
  if (hidden % heads !== 0) throw new Error(`GPT-2 config: n_embd (${hidden}) is not a multiple of n_head (${heads})`);
  if (config.add_cross_attention) throw new Error('GPT-2 config: add_cross_attention (an encoder-decoder model) is not supported');
  const eps = config.layer_norm_epsilon ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0)) throw new Error(`GPT-2 config: layer_norm_epsilon must be a positive number, got ${JSON.stringify(eps)}`);
  return {
    vocabSize: int(config.vocab_size, 'vocab_size'),
    hidden,
    layers: int(config.n_layer, 'n_layer'),
    heads,
    headDim: hidden / heads,
    inner: int(config.n_inner ?? 4 * hidden, 'n_inner'),
    positions: int(config.n_positions, 'n_positions'),
    act: geluForm('GPT-2', 'activation_function', config.activation_function ?? 'gelu_new'),
    eps,
    scaleAttn: config.scale_attn_weights ?? true,
    inverseLayerIdx: config.scale_attn_by_inverse_layer_idx ?? false,
    tied: config.tie_word_embeddings ?? true,
    prefix,
  };
}

/** Every tensor the graph reads, with its dims as stored: Conv1D weights [in, out], lm_head [vocab, n_embd]. */
export function* gpt2ExpectedTensors(config: Gpt2Config, prefix = ''): Generator<ExpectedTensor> {
  const c = resolveGpt2Config(config, prefix); // numbers only: nothing is sized from them here
  const t = c.prefix;
  const h: Dim = [c.hidden, 'n_embd'];
  const inner: Dim = [c.inner, 'n_inner'];
  const norm = function* (name: string, because?: string) {
    yield expected(`${name}.weight`, [h], because);
    yield expected(`${name}.bias`, [h]);
  };
  /** Conv1D stores [in, out]. */
  const conv1d = function* (name: string, inp: Dim, out: Dim) {
    yield expected(`${name}.weight`, [inp, out]);
    yield expected(`${name}.bias`, [out]);
  };
  yield expected(`${t}wte.weight`, [[c.vocabSize, 'vocab_size'], h]);
  yield expected(`${t}wpe.weight`, [[c.positions, 'n_positions'], h]);
  for (let i = 0; i < c.layers; i++) {
    const p = `${t}h.${i}`;
    yield* norm(`${p}.ln_1`, 'n_layer');
    yield* conv1d(`${p}.attn.c_attn`, h, [3 * c.hidden, '3 · n_embd']);
    yield* conv1d(`${p}.attn.c_proj`, h, h);
    yield* norm(`${p}.ln_2`);
    yield* conv1d(`${p}.mlp.c_fc`, h, inner);
    yield* conv1d(`${p}.mlp.c_proj`, inner, h);
  }
  yield* norm(`${t}ln_f`);
  if (!c.tied) yield expected('lm_head.weight', [[c.vocabSize, 'vocab_size'], h], 'tie_word_embeddings');
}

/** Every tensor the graph reads, with its dims as stored (Conv1D weights [in, out]). */
export const gpt2TensorShapes = (config: Gpt2Config, prefix = ''): Map<string, number[]> => shapesOf(gpt2ExpectedTensors(config, prefix));

/**
 * Builds the ONNX graph of a GPT2LMHeadModel: inputs `input_ids`, `attention_mask` (int64 [batch, seq]), output
 * `logits` (float [batch, seq, vocab]). Throws, naming the tensor, when a weight is missing or has the wrong dims.
 */
export function buildGpt2Model(config: Gpt2Config, weights: LlamaWeights, prefix = ''): ModelProto {
  const c = resolveGpt2Config(config, prefix);
  const { e, w } = familyBuilder('GPT-2', gpt2TensorShapes(config, prefix), weights);
  const h = c.hidden;
  const H = c.heads;
  const D = c.headDim;
  const t = c.prefix;
  const scope = '/transformer';

  /** Conv1D: y = x·W + b with W stored [in, out]. */
  const conv1d = (sc: string, x: string, name: string): string =>
    e.op1(sc, 'Gemm', [x, e.weight(`${name}.weight`, w(`${name}.weight`)), e.weight(`${name}.bias`, w(`${name}.bias`))]);
  const inputs = decoderInputs(e, scope);
  const wte = e.weight(`${t}wte.weight`, w(`${t}wte.weight`));
  const tokens = flatten(e, `${scope}/wte`, e.op1(`${scope}/wte`, 'Gather', [wte, 'input_ids'], { axis: 0 }), h);
  const wpe = e.weight(`${t}wpe.weight`, w(`${t}wpe.weight`));
  const pos = flatten(e, `${scope}/wpe`, e.op1(`${scope}/wpe`, 'Gather', [wpe, inputs.positions], { axis: 0 }), h);
  let hidden = e.op1(scope, 'Add', [tokens, pos]);

  for (let i = 0; i < c.layers; i++) {
    const ls = `${scope}/h.${i}`;
    const as = `${ls}/attn`;
    const p = `${t}h.${i}`;
    const qkv = conv1d(`${as}/c_attn`, layerNorm(e, w, `${ls}/ln_1`, hidden, `${p}.ln_1`, c.eps), `${p}.attn.c_attn`);
    const [q, k, v] = e.op(as, 'Split', [qkv, e.ints(as, [h, h, h])], { axis: -1 }, 3).map((x) => splitHeads(e, as, inputs, x, H, D));
    const scale = (c.scaleAttn ? 1 / Math.sqrt(D) : 1) / (c.inverseLayerIdx ? i + 1 : 1);
    const ctx = attention(e, as, inputs, q, k, v, H, D, scale);
    hidden = e.op1(ls, 'Add', [hidden, conv1d(`${as}/c_proj`, ctx, `${p}.attn.c_proj`)]);
    const ms = `${ls}/mlp`;
    const up = gelu(e, `${ms}/act`, conv1d(`${ms}/c_fc`, layerNorm(e, w, `${ls}/ln_2`, hidden, `${p}.ln_2`, c.eps), `${p}.mlp.c_fc`), c.act);
    hidden = e.op1(ls, 'Add', [hidden, conv1d(`${ms}/c_proj`, up, `${p}.mlp.c_proj`)]);
  }

  hidden = layerNorm(e, w, `${scope}/ln_f`, hidden, `${t}ln_f`, c.eps);
  logitsOutput(e, inputs, lmHead(e, w, hidden, c.tied, wte, 'lm_head.weight'), c.vocabSize);
  return causalLmModel(e, 'gpt2', `GPT2LMHeadModel (${c.layers} layers, n_embd ${h}, ${H} heads, inner ${c.inner})`,
    { vocabSize: c.vocabSize, weightLayout: 'in_out', tied: c.tied, positionLimit: c.positions });
}
