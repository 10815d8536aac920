// Pieces the LayerNorm decoders (GPT-2, GPT-NeoX, the MoE families) share, emitted in the HF [out, in] mode of
// the Llama builder: a 2-D residual stream [batch·seq, width], attention on [batch, seq, heads, head_dim].
//  - positions = max(cumsum(attention_mask) − 1, 0) as int64, as Llama's builder computes them (so left and
//    right padding give the unpadded logits on real tokens);
//  - the combined causal + padding mask [B, 1, S, S] (key j visible to query i iff j ≤ i and mask[j] = 1);
//  - multi-head attention with masked scores set to the float32 minimum (a row with no visible key gives a
//    uniform softmax, never NaN), LayerNorm, the GELUs, the logits output.

import { DataType } from '../onnx/proto';
import { Emitter, FLOAT32_LOWEST } from './emitter';
import type { LlamaTensor, TensorRef } from './weights';

export type Weight = (name: string) => LlamaTensor | TensorRef;

/** The sizes every resolved LayerNorm-decoder config has. */
export interface DecoderSizes {
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  headDim: number;
  /** The MLP's width. */
  inner: number;
}

/** What every block reads, computed once under `scope` (the pipeline's prefix). */
export interface DecoderInputs {
  /** Shape of input_ids: [B, S] (int64). */
  batchSeq: string;
  /** int64 [B, S]. */
  positions: string;
  /** bool [B, 1, S, S]. */
  allowed: string;
}

export function decoderInputs(e: Emitter, scope: string): DecoderInputs {
  const batchSeq = e.op1(scope, 'Shape', ['input_ids']);
  const one = e.constant(scope, [1], [], DataType.INT64);
  const cum = e.op1(scope, 'CumSum', ['attention_mask', e.constant(scope, [1], [], DataType.INT32)]);
  const positions = e.op1(scope, 'Max', [e.op1(scope, 'Sub', [cum, one]), e.constant(scope, [0], [], DataType.INT64)]);
  const seqLen = e.op1(scope, 'Gather', [batchSeq, one], { axis: 0 });
  const idx = e.op1(scope, 'Range', [e.constant(scope, [0], [], DataType.INT64), seqLen, one]);
  const causal = e.op1(scope, 'LessOrEqual', [e.op1(scope, 'Unsqueeze', [idx, e.ints(scope, [0])]), e.op1(scope, 'Unsqueeze', [idx, e.ints(scope, [1])])]); // [S(query), S(key)]
  const keyMask = e.op1(scope, 'Cast', [e.op1(scope, 'Unsqueeze', ['attention_mask', e.ints(scope, [1, 2])])], { to: DataType.BOOL }); // [B, 1, 1, S]
  return { batchSeq, positions, allowed: e.op1(scope, 'And', [causal, keyMask]) };
}

/** [B·S, heads·D] ↔ [B, S, heads, D]. */
export function splitHeads(e: Emitter, scope: string, inputs: DecoderInputs, x: string, heads: number, D: number): string {
  return e.op1(scope, 'Reshape', [x, e.op1(scope, 'Concat', [inputs.batchSeq, e.ints(scope, [heads, D])], { axis: 0 })]);
}

export function flatten(e: Emitter, scope: string, x: string, width: number): string {
  return e.op1(scope, 'Reshape', [x, e.ints(scope, [-1, width])]);
}

/** softmax(q·kᵀ·scale, masked)·v for q, k, v [B, S, H, D]; the context merged back to [B·S, H·D]. */
export function attention(e: Emitter, scope: string, inputs: DecoderInputs, q: string, k: string, v: string, H: number, D: number, scale: number): string {
  const q4 = e.op1(scope, 'Transpose', [q], { perm: [0, 2, 1, 3] }); // [B, H, S, D]
  const kT = e.op1(scope, 'Transpose', [k], { perm: [0, 2, 3, 1] }); // [B, H, D, S]
  const v4 = e.op1(scope, 'Transpose', [v], { perm: [0, 2, 1, 3] });
  const scores = e.op1(scope, 'Mul', [e.op1(scope, 'MatMul', [q4, kT]), e.scalar(scope, scale)]);
  const probs = e.op1(scope, 'Softmax', [e.op1(scope, 'Where', [inputs.allowed, scores, e.scalar(scope, FLOAT32_LOWEST)])], { axis: -1 });
  const ctx = e.op1(scope, 'Transpose', [e.op1(scope, 'MatMul', [probs, v4])], { perm: [0, 2, 1, 3] });
  return flatten(e, scope, ctx, H * D);
}

export function layerNorm(e: Emitter, w: Weight, scope: string, x: string, name: string, eps: number): string {
  const gamma = e.weight(`${name}.weight`, w(`${name}.weight`));
  return e.op1(scope, 'LayerNormalization', [x, gamma, e.weight(`${name}.bias`, w(`${name}.bias`))], { axis: -1, epsilon: { f: eps } });
}

/** HF's activation names → the GELU form: exact (erf) or the tanh approximation (gelu_new). */
const GELU_FORMS = new Map<string, 'erf' | 'tanh'>([
  ['gelu', 'erf'], ['gelu_new', 'tanh'], ['gelu_pytorch_tanh', 'tanh'], ['gelu_fast', 'tanh'],
]);

/** The GELU form of an activation name, or an error naming the family and field. */
export function geluForm(family: string, field: string, act: unknown): 'erf' | 'tanh' {
  const form = typeof act === 'string' ? GELU_FORMS.get(act) : undefined;
  if (!form) throw new Error(`${family} config: ${field} ${JSON.stringify(act)} is not supported (supported: ${[...GELU_FORMS.keys()].join(', ')})`);
  return form;
}

/** 0.5·x·(1 + erf(x/√2)), or 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))): opset 17 has no Gelu op. */
export function gelu(e: Emitter, scope: string, x: string, form: 'erf' | 'tanh'): string {
  let inner: string;
  if (form === 'erf') inner = e.op1(scope, 'Erf', [e.op1(scope, 'Mul', [x, e.scalar(scope, Math.SQRT1_2)])]);
  else {
    const cube = e.op1(scope, 'Mul', [e.op1(scope, 'Mul', [x, x]), x]);
    const arg = e.op1(scope, 'Mul', [e.op1(scope, 'Add', [x, e.op1(scope, 'Mul', [cube, e.scalar(scope, 0.044715)])]), e.scalar(scope, Math.sqrt(2 / Math.PI))]);
    inner = e.op1(scope, 'Tanh', [arg]);
  }
  return e.op1(scope, 'Mul', [e.op1(scope, 'Mul', [x, e.scalar(scope, 0.5)]), e.op1(scope, 'Add', [inner, e.scalar(scope, 1)])]);
}

/** `logits` [B, S, vocab] from the head's 2-D output [B·S, vocab]. */
export function logitsOutput(e: Emitter, inputs: DecoderInputs, flat: string, vocab: number): void {
  const shape = e.op1('/lm_head', 'Concat', [inputs.batchSeq, e.ints('/lm_head', [vocab])], { axis: 0 });
  e.nodes.push({ name: '/lm_head/Reshape', opType: 'Reshape', input: [flat, shape], output: ['logits'], attribute: [] });
}

/** The LM head: the embedding initializer itself when tied (discovery leaves a shared weight dense), else `name`. */
export function lmHead(e: Emitter, w: Weight, hidden: string, tied: boolean, embedName: string, name: string): string {
  return tied ? e.op1('/lm_head', 'Gemm', [hidden, embedName], { transB: 1 }) : e.gemm('/lm_head', hidden, name, w(name));
}
