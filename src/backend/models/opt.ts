// OPT ONNX graph builder: a Hugging Face OPTForCausalLM (config.json + weights by HF tensor name) in the HF
// [out, in] layout, like the Llama builder's 'out_in' mode: each projection a Gemm(transB=1) on the 2-D residual
// stream [batch·seq, hidden], weights referenced (TensorRef) or inlined, initializers named as in the checkpoint.
//
// The maths is HF's (modeling_opt.py, eager attention):
//  - learned positions: index = cumsum(mask) · mask − 1 + 2 (OPT's offset of 2; padding lands on index 1);
//  - embeddings (project_in when word_embed_proj_dim ≠ hidden_size) + positions;
//  - do_layer_norm_before (default true): pre-norm blocks, h += attn(LN(h)); h += fc2(relu(fc1(LN(h)))),
//    then the final LayerNorm; false (OPT-350m): post-norm, h = LN(h + attn(h)), h = LN(h + mlp(h)), no final LN;
//  - multi-head attention, q scaled by head_dim^−½, key j visible to query i iff j ≤ i and mask[j] = 1;
//  - LayerNorm eps 1e-5; biases on every projection (enable_bias); ReLU; project_out; LM head (tied to the
//    embedding by default, no bias).
// Ops: ai.onnx opset 17 (LayerNormalization, Gemm, Gather, CumSum, ...), all with CPU, CUDA and WebGPU kernels.

import { DataType, ModelProto } from '../onnx/proto';
import { Dim, expected, ExpectedTensor, shapesOf } from './expected';
import { configPositiveInt } from './configFields';
import { causalLmModel, FLOAT32_LOWEST, familyBuilder } from './emitter';
import type { LlamaWeights } from './weights';

/** The fields of a Hugging Face OPTConfig the builder reads; optional ones take HF's defaults. */
export interface OptConfig {
  model_type?: string;
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  ffn_dim: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  /** Default true. */
  do_layer_norm_before?: boolean;
  /** Default hidden_size; otherwise project_in/project_out map between the two. */
  word_embed_proj_dim?: number;
  /** Default true: biases on every projection. */
  enable_bias?: boolean;
  /** Default true; false (no LayerNorm weights) is refused. */
  layer_norm_elementwise_affine?: boolean;
  /** Default relu (the only one supported). */
  activation_function?: string;
  /** Default true. */
  tie_word_embeddings?: boolean;
  _remove_final_layer_norm?: boolean;
}

export interface ResolvedOptConfig {
  vocabSize: number;
  hiddenSize: number;
  layers: number;
  ffnDim: number;
  heads: number;
  headDim: number;
  maxPositions: number;
  layerNormBefore: boolean;
  embedDim: number;
  bias: boolean;
  tied: boolean;
  finalLayerNorm: boolean;
  /** `model.` (OPTForCausalLM) or `` (checkpoints saved from OPTModel, like facebook/opt-*): tensor names' prefix. */
  prefix: string;
}

/** OPT's learned positions start at index 2 (indices 0 and 1 are padding slots fairseq reserved). */
export const OPT_POSITION_OFFSET = 2;

function positiveInt(value: unknown, field: string): number {
  return configPositiveInt('OPT', value, field);
}

export function resolveOptConfig(config: OptConfig, prefix = 'model.'): ResolvedOptConfig {
  const hiddenSize = positiveInt(config.hidden_size, 'hidden_size');
  const heads = positiveInt(config.num_attention_heads, 'num_attention_heads');
  if (hiddenSize % heads !== 0) throw new Error(`OPT config: hidden_size (${hiddenSize}) is not a multiple of num_attention_heads (${heads})`);
  const act = config.activation_function ?? 'relu';
  if (act !== 'relu') throw new Error(`OPT config: activation_function '${act}' is not supported (only relu)`);
  if (config.layer_norm_elementwise_affine === false) throw new Error('OPT config: layer_norm_elementwise_affine false (LayerNorms without weights) is not supported');
  const layerNormBefore = config.do_layer_norm_before ?? true;
  return {
    vocabSize: positiveInt(config.vocab_size, 'vocab_size'),
    hiddenSize,
    layers: positiveInt(config.num_hidden_layers, 'num_hidden_layers'),
    ffnDim: positiveInt(config.ffn_dim, 'ffn_dim'),
    heads,
    headDim: hiddenSize / heads,
    maxPositions: positiveInt(config.max_position_embeddings, 'max_position_embeddings'),
    layerNormBefore,
    embedDim: positiveInt(config.word_embed_proj_dim ?? hiddenSize, 'word_embed_proj_dim'),
    bias: config.enable_bias ?? true,
    tied: config.tie_word_embeddings ?? true,
    finalLayerNorm: layerNormBefore && !config._remove_final_layer_norm,
    prefix,
  };
}

/** Every HF tensor a model with this config reads, in checkpoint order, each dim labelled with its config field. */
export function* optExpectedTensors(config: OptConfig | ResolvedOptConfig, prefix = 'model.'): Generator<ExpectedTensor> {
  const c = 'hiddenSize' in config ? config : resolveOptConfig(config, prefix);
  const d = `${c.prefix}decoder`;
  const h: Dim = [c.hiddenSize, 'hidden_size'];
  const embed: Dim = [c.embedDim, 'word_embed_proj_dim'];
  const vocab: Dim = [c.vocabSize, 'vocab_size'];
  const ffn: Dim = [c.ffnDim, 'ffn_dim'];
  yield expected(`${d}.embed_tokens.weight`, [vocab, embed]);
  yield expected(`${d}.embed_positions.weight`, [[c.maxPositions + OPT_POSITION_OFFSET, 'max_position_embeddings + 2'], h]);
  if (c.embedDim !== c.hiddenSize) yield expected(`${d}.project_in.weight`, [h, embed], 'word_embed_proj_dim');
  function* norm(name: string, because?: string): Generator<ExpectedTensor> {
    yield expected(`${name}.weight`, [h], because);
    yield expected(`${name}.bias`, [h]);
  }
  function* linear(name: string, out: Dim, inp: Dim): Generator<ExpectedTensor> {
    yield expected(`${name}.weight`, [out, inp]);
    if (c.bias) yield expected(`${name}.bias`, [out], 'enable_bias');
  }
  for (let i = 0; i < c.layers; i++) {
    const p = `${d}.layers.${i}`;
    yield* norm(`${p}.self_attn_layer_norm`, 'num_hidden_layers');
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) yield* linear(`${p}.self_attn.${proj}`, h, h);
    yield* linear(`${p}.fc1`, ffn, h);
    yield* linear(`${p}.fc2`, h, ffn);
    yield* norm(`${p}.final_layer_norm`);
  }
  if (c.finalLayerNorm) yield* norm(`${d}.final_layer_norm`, 'do_layer_norm_before');
  if (c.embedDim !== c.hiddenSize) yield expected(`${d}.project_out.weight`, [embed, h], 'word_embed_proj_dim');
  if (!c.tied) yield expected('lm_head.weight', [vocab, embed], 'tie_word_embeddings');
}

/** Every HF tensor a model with this config reads, with its dims ([out, in] for Linear weights). */
export function optTensorShapes(config: OptConfig | ResolvedOptConfig, prefix = 'model.'): Map<string, number[]> {
  return shapesOf(optExpectedTensors(config, prefix));
}

/**
 * Builds the ONNX graph of an OPTForCausalLM: inputs `input_ids`, `attention_mask` (int64 [batch, seq]), output
 * `logits` (float [batch, seq, vocab]). Throws, naming the tensor, when a weight is missing or has the wrong dims.
 */
export function buildOptModel(config: OptConfig, weights: LlamaWeights, prefix = 'model.'): ModelProto {
  const c = resolveOptConfig(config, prefix);
  const { e, w, linear } = familyBuilder('OPT', optTensorShapes(c), weights);
  const h = c.hiddenSize;
  const H = c.heads;
  const D = c.headDim;
  const d = `${c.prefix}decoder`;
  const scope = '/model/decoder';

  const layerNorm = (sc: string, x: string, name: string): string =>
    e.op1(sc, 'LayerNormalization', [x, e.weight(`${name}.weight`, w(`${name}.weight`)), e.weight(`${name}.bias`, w(`${name}.bias`))], { axis: -1, epsilon: { f: 1e-5 } });

  // --- Shared by every block (the pipeline's prefix): shapes, positions, the causal + padding mask.
  const batchSeq = e.op1(scope, 'Shape', ['input_ids']);
  const split = (sc: string, x: string): string => e.op1(sc, 'Reshape', [x, e.op1(sc, 'Concat', [batchSeq, e.ints(sc, [H, D])], { axis: 0 })]);
  const merge = (sc: string, x: string, width: number): string => e.op1(sc, 'Reshape', [x, e.ints(sc, [-1, width])]);

  const cum = e.op1(scope, 'CumSum', ['attention_mask', e.constant(scope, [1], [], DataType.INT32)]);
  const positions = e.op1(scope, 'Add', [e.op1(scope, 'Mul', [cum, 'attention_mask']), e.constant(scope, [OPT_POSITION_OFFSET - 1], [], DataType.INT64)]);
  const seqLen = e.op1(scope, 'Gather', [batchSeq, e.constant(scope, [1], [], DataType.INT64)], { axis: 0 });
  const idx = e.op1(scope, 'Range', [e.constant(scope, [0], [], DataType.INT64), seqLen, e.constant(scope, [1], [], DataType.INT64)]);
  const causal = e.op1(scope, 'LessOrEqual', [e.op1(scope, 'Unsqueeze', [idx, e.ints(scope, [0])]), e.op1(scope, 'Unsqueeze', [idx, e.ints(scope, [1])])]); // [S(query), S(key)]
  const keyMask = e.op1(scope, 'Cast', [e.op1(scope, 'Unsqueeze', ['attention_mask', e.ints(scope, [1, 2])])], { to: DataType.BOOL }); // [B, 1, 1, S]
  const allowed = e.op1(scope, 'And', [causal, keyMask]); // [B, 1, S, S]

  const embedName = e.weight(`${d}.embed_tokens.weight`, w(`${d}.embed_tokens.weight`));
  let tokens = merge(`${scope}/embed_tokens`, e.op1(`${scope}/embed_tokens`, 'Gather', [embedName, 'input_ids'], { axis: 0 }), c.embedDim);
  if (c.embedDim !== h) tokens = linear(`${scope}/project_in`, tokens, `${d}.project_in`, false);
  const posName = e.weight(`${d}.embed_positions.weight`, w(`${d}.embed_positions.weight`));
  const pos = merge(`${scope}/embed_positions`, e.op1(`${scope}/embed_positions`, 'Gather', [posName, positions], { axis: 0 }), h);
  let hidden = e.op1(scope, 'Add', [tokens, pos]);

  // --- Decoder layers.
  for (let i = 0; i < c.layers; i++) {
    const ls = `${scope}/layers.${i}`;
    const as = `${ls}/self_attn`;
    const p = `${d}.layers.${i}`;
    let x = c.layerNormBefore ? layerNorm(`${ls}/self_attn_layer_norm`, hidden, `${p}.self_attn_layer_norm`) : hidden;
    const q = e.op1(as, 'Mul', [linear(`${as}/q_proj`, x, `${p}.self_attn.q_proj`, c.bias), e.scalar(as, 1 / Math.sqrt(D))]);
    const k = linear(`${as}/k_proj`, x, `${p}.self_attn.k_proj`, c.bias);
    const v = linear(`${as}/v_proj`, x, `${p}.self_attn.v_proj`, c.bias);
    const q4 = e.op1(as, 'Transpose', [split(as, q)], { perm: [0, 2, 1, 3] }); // [B, H, S, D]
    const kT = e.op1(as, 'Transpose', [split(as, k)], { perm: [0, 2, 3, 1] }); // [B, H, D, S]
    const v4 = e.op1(as, 'Transpose', [split(as, v)], { perm: [0, 2, 1, 3] }); // [B, H, S, D]
    const scores = e.op1(as, 'Where', [allowed, e.op1(as, 'MatMul', [q4, kT]), e.scalar(as, FLOAT32_LOWEST)]);
    const ctx4 = e.op1(as, 'MatMul', [e.op1(as, 'Softmax', [scores], { axis: -1 }), v4]);
    const ctx = merge(as, e.op1(as, 'Transpose', [ctx4], { perm: [0, 2, 1, 3] }), h);
    hidden = e.op1(ls, 'Add', [hidden, linear(`${as}/out_proj`, ctx, `${p}.self_attn.out_proj`, c.bias)]);
    if (!c.layerNormBefore) hidden = layerNorm(`${ls}/self_attn_layer_norm`, hidden, `${p}.self_attn_layer_norm`);

    x = c.layerNormBefore ? layerNorm(`${ls}/final_layer_norm`, hidden, `${p}.final_layer_norm`) : hidden;
    const up = e.op1(`${ls}/activation_fn`, 'Relu', [linear(`${ls}/fc1`, x, `${p}.fc1`, c.bias)]);
    hidden = e.op1(ls, 'Add', [hidden, linear(`${ls}/fc2`, up, `${p}.fc2`, c.bias)]);
    if (!c.layerNormBefore) hidden = layerNorm(`${ls}/final_layer_norm`, hidden, `${p}.final_layer_norm`);
  }

  // --- Final norm, project_out, LM head (a tied head reads the embedding initializer itself).
  if (c.finalLayerNorm) hidden = layerNorm(`${scope}/final_layer_norm`, hidden, `${d}.final_layer_norm`);
  if (c.embedDim !== h) hidden = linear(`${scope}/project_out`, hidden, `${d}.project_out`, false);
  const flat = c.tied ? e.op1('/lm_head', 'Gemm', [hidden, embedName], { transB: 1 }) : e.gemm('/lm_head', hidden, 'lm_head.weight', w('lm_head.weight'));
  const shape = e.op1('/lm_head', 'Concat', [batchSeq, e.ints('/lm_head', [c.vocabSize])], { axis: 0 });
  e.nodes.push({ name: '/lm_head/Reshape', opType: 'Reshape', input: [flat, shape], output: ['logits'], attribute: [] });

  return causalLmModel(e, 'opt', `OPTForCausalLM (${c.layers} layers, hidden ${h}, ${H} heads, ffn ${c.ffnDim})`,
    { vocabSize: c.vocabSize, weightLayout: 'out_in', tied: c.tied, positionLimit: c.maxPositions });
}
