// Llama-family ONNX graph builder: a Hugging Face LlamaForCausalLM (config.json + weights by HF tensor
// name) turned into an ONNX ModelProto that onnxruntime runs and the pipeline prunes like an exported
// checkpoint.
//
// The graph follows the conventions of the torch.onnx exports in the fixtures (and of Optimum), so layer
// discovery and segmentation (src/backend/pipeline) treat it exactly like one:
//  - inputs `input_ids`, `attention_mask` (int64 [batch_size, sequence_length]), output `logits`
//    (float [batch_size, sequence_length, vocab]); no KV cache;
//  - node names carry the module scope: `/model/layers.3/self_attn/q_proj/MatMul`, `/model/norm/...`,
//    `/lm_head/MatMul`; each projection is a MatMul whose weight is a 2-D initializer stored TRANSPOSED,
//    [in, out], named `<hf name>.T` (see `transposedName`/`hfTensorName`);
//  - what every block shares is computed once before block 0 under `/model` (position ids, rotary cos/sin,
//    the combined causal + padding mask), so it lands in the pipeline's prefix; small constants are Constant
//    nodes (the segmenter clones them into each segment that reads them).
//
// The maths is HF's (modeling_llama.py, eager attention):
//  - position ids = max(cumsum(attention_mask) − 1, 0), as the fixtures' export computes them (HF's
//    generate() does the same), so left and right padding give the unpadded logits on real tokens;
//  - RMSNorm: w · x / sqrt(mean(x²) + eps);
//  - rotary: inv_freq = 1 / theta^(2i/d) (optionally rescaled by rope_scaling linear/llama3),
//    angle = pos · inv_freq, emb = [angle, angle], x·cos + rotate_half(x)·sin with
//    rotate_half([x1, x2]) = [−x2, x1] (halves, not interleaved pairs);
//  - grouped-query attention: query head h uses key/value head floor(h / (heads / kv_heads)) (repeat_kv);
//    scores · head_dim^−½, key j visible to query i iff j ≤ i and attention_mask[j] = 1 (masked scores set to
//    the float32 minimum, so a row with no visible key gives a uniform softmax, never NaN);
//  - SwiGLU MLP: down(silu(gate(x)) · up(x)); pre-norm residual blocks; final norm; LM head (a transposed
//    copy of the embedding when tie_word_embeddings).
// The families that are "Llama plus X" (LlamaVariant in llamaConfig.ts) add, each from its HF modeling file:
//  - qwen3 (modeling_qwen3.py), gemma3_text: RMSNorm over head_dim of each query and key head before rotary;
//  - gemma (modeling_gemma.py): RMSNorm scaled by (1 + w); embedding × √hidden rounded to the embedding's dtype;
//    GeGLU MLP with tanh GELU; gemma2 (modeling_gemma2.py), gemma3_text (modeling_gemma3.py): norms after
//    attention and around the MLP, scores · query_pre_attn_scalar^−½, soft-capping cap·tanh(x/cap) of scores
//    and logits; gemma3_text: sliding layers' rotary from rope_local_base_freq;
//  - phi3 (modeling_phi3.py): fused qkv_proj and gate_up_proj, each ONE prunable Gemm/MatMul whose output is
//    sliced; partial rotary (only the first head_dim × partial_rotary_factor dims rotate);
//  - sliding windows (Mistral, Qwen2/3 with use_sliding_window, Gemma 2/3, Phi-3): in a sliding layer key j is
//    also required to be less than sliding_window positions before query i, a band mask built once in the
//    prefix (with windows no longer than sliding_window it equals the causal mask: same result);
//  - rope_scaling (rope.ts): static frequencies, or chosen in the graph from the largest position (longrope's
//    short/long factors, dynamic NTK's rescaled base), cos and sin × attention factor (yarn, longrope).
// Every op is in ai.onnx opset 17 and has CPU, CUDA and WebGPU kernels (Gather, MatMul, Mul, Add, Sub, Max,
// ReduceMean, Sqrt, Reciprocal, Cast, CumSum, Range, Unsqueeze, Reshape, Transpose, Slice, Neg, Concat, Cos,
// Sin, LessOrEqual, And, Where, Softmax, Sigmoid, Shape, Gather; Tanh, Less, Div, Pow, ReduceMax, Greater for
// the variants). The 5-D attention MatMuls broadcast the
// key/value heads over their query group instead of materializing repeat_kv.
//
// Two weight layouts (BuildLlamaOptions.layout):
//  - 'in_out' (default): the exporter's, described above; weights are copied (projections transposed) and
//    inlined as raw_data;
//  - 'out_in': HF's own [out, in] layout, so a weight can be REFERENCED where it is stored (a TensorRef, e.g.
//    ONNX external data pointing into a safetensors file) instead of copied. Each projection is a
//    Gemm(transB=1) (the pipeline's layer discovery reads it as an [out, in] layer), initializers carry the HF
//    tensor names unchanged, the residual stream is 2-D [batch·seq, hidden] (Gemm is 2-D), and a tied LM head
//    reads the embedding itself. Same maths: only the GEMM kernel's summation order differs.

import { roundToType } from '../formats/dtype';
import { DataType, ModelProto } from '../onnx/proto';
import { causalLmModel, Emitter, FLOAT32_LOWEST, transpose } from './emitter';
import { LlamaConfig, resolveLlamaConfig, llamaTensorShapes, transposedName } from './llamaConfig';
import type { Rotary } from './rope';
import { checkWeights, isTensorRef, LlamaTensor, LlamaWeights, TensorRef, weightOf } from './weights';

// The Llama family's public face: its config, weights and demo weights live in their own modules.
export * from './llamaConfig';
export { ropeInvFreq } from './rope';
export type { RopeScaling } from './rope';
export { randomLlamaWeights } from './randomWeights';
export type { LlamaTensor, LlamaWeights, TensorRef } from './weights';

export interface BuildLlamaOptions {
  /** Default-domain opset (default 17). */
  opset?: number;
  /** The graph's name (default `llama`). */
  name?: string;
  /** 'in_out' (default): exporter-style transposed copies; 'out_in': HF layout, weights referenced (see the top). */
  layout?: 'in_out' | 'out_in';
  /** The embedding's stored type (default FLOAT): Gemma's √hidden is rounded to it, as HF computes it. */
  embedType?: DataType;
  /** Replaces layer i's SwiGLU MLP (the MoE families): `x` is the post-attention norm's output; returns what is
   *  added to the residual stream. */
  mlp?: (e: Emitter, x: string, layer: number) => string;
  /** The tensors checked against `weights` (default llamaTensorShapes: a replaced MLP reads others). */
  tensorShapes?: ReadonlyMap<string, number[]>;
}

/**
 * Builds the ONNX graph of a LlamaForCausalLM: inputs `input_ids` and `attention_mask` (int64 [batch,
 * seq]), output `logits` (float [batch, seq, vocab]). Throws, naming the tensor, when a weight the config
 * requires is missing or has the wrong dims. Projection weights are copied (transposed); the embedding,
 * norms and biases are referenced (their Float32Arrays back the initializers' raw_data).
 */
export function buildLlamaModel(config: LlamaConfig, weights: LlamaWeights, options: BuildLlamaOptions = {}): ModelProto {
  const c = resolveLlamaConfig(config);
  checkWeights('Llama', options.tensorShapes ?? llamaTensorShapes(c), weights);
  const w = (name: string): LlamaTensor | TensorRef => weightOf(weights, name);
  const hfLayout = options.layout === 'out_in';

  const e = new Emitter();
  const hd = c.hiddenSize;
  const D = c.headDim;
  const H = c.heads;
  const KV = c.kvHeads;
  const R = H / KV;

  /** y = x · Wᵀ (+ b): a MatMul with a transposed copy ('in_out'), or a Gemm on the weight as stored ('out_in'). */
  const linear = (scope: string, x: string, hfPrefix: string, bias: boolean): string => {
    const t = w(`${hfPrefix}.weight`);
    const b = bias ? { name: `${hfPrefix}.bias`, t: w(`${hfPrefix}.bias`) } : undefined;
    if (hfLayout) return e.gemm(scope, x, `${hfPrefix}.weight`, t, b);
    if (isTensorRef(t)) throw new Error(`${hfPrefix}.weight is a reference: the 'in_out' layout copies weights transposed, so it needs their values`);
    const [out, inp] = t.dims;
    const weight = e.initializer(transposedName(`${hfPrefix}.weight`), transpose(t.data, out, inp), [inp, out]);
    let y = e.op1(scope, 'MatMul', [x, weight]);
    if (b) y = e.op1(scope, 'Add', [y, e.weight(b.name, b.t)]);
    return y;
  };

  const v = c.variant;
  const normOffset = v.gemma ? e.scalar('/model', 1) : '';
  /** RMSNorm over the last axis: (w or 1 + w) · x / sqrt(mean(x²) + eps). */
  const rmsNorm = (scope: string, x: string, hfName: string): string => {
    const sq = e.op1(scope, 'Mul', [x, x]);
    const mean = e.op1(scope, 'ReduceMean', [sq], { axes: [-1], keepdims: 1 });
    const std = e.op1(scope, 'Sqrt', [e.op1(scope, 'Add', [mean, e.scalar(scope, c.rmsNormEps)])]);
    const normed = e.op1(scope, 'Mul', [x, e.op1(scope, 'Reciprocal', [std])]);
    const weight = e.weight(hfName, w(hfName));
    return e.op1(scope, 'Mul', [v.gemma ? e.op1(scope, 'Add', [weight, normOffset]) : weight, normed]);
  };
  /** x → cap · tanh(x / cap) (Gemma 2's soft-capping). */
  const softcap = (scope: string, x: string, cap: number | null): string =>
    cap === null ? x : e.op1(scope, 'Mul', [e.op1(scope, 'Tanh', [e.op1(scope, 'Div', [x, e.scalar(scope, cap)])]), e.scalar(scope, cap)]);

  // Activations are [B, S, width] ('in_out') or [B·S, width] ('out_in'); attention works on [B, S, heads, …].
  const batchSeq = hfLayout ? e.op1('/model', 'Shape', ['input_ids']) : '';
  const split = (scope: string, x: string, dims: number[]): string =>
    e.op1(scope, 'Reshape', [x, hfLayout ? e.op1(scope, 'Concat', [batchSeq, e.ints(scope, dims)], { axis: 0 }) : e.ints(scope, [0, 0, ...dims])]);
  const merge = (scope: string, x: string, width: number): string => e.op1(scope, 'Reshape', [x, e.ints(scope, hfLayout ? [-1, width] : [0, 0, width])]);
  /** Columns [from, to) of the last axis (a fused projection's part). */
  const cols = (scope: string, x: string, from: number, to: number): string => e.op1(scope, 'Slice', [x, e.ints(scope, [from]), e.ints(scope, [to]), e.ints(scope, [-1])]);

  // --- Shared inputs of every block, computed once (the pipeline's prefix).
  const maskF = e.op1('/model', 'Cast', ['attention_mask'], { to: DataType.FLOAT });
  const cum = e.op1('/model', 'CumSum', [maskF, e.constant('/model', [1], [], DataType.INT32)]);
  const positions = e.op1('/model', 'Max', [e.op1('/model', 'Sub', [cum, e.scalar('/model', 1)]), e.scalar('/model', 0)]);
  const rotaries = new Map<Rotary, { cos: string; sin: string }>();
  for (const r of [c.rotary, c.localRotary]) if (r) rotaries.set(r, rotaryTables(e, '/model/rotary_emb', positions, r));

  const seqLen = e.op1('/model', 'Gather', [e.op1('/model', 'Shape', ['input_ids']), e.constant('/model', [1], [], DataType.INT64)], { axis: 0 });
  const idx = e.op1('/model', 'Range', [e.constant('/model', [0], [], DataType.INT64), seqLen, e.constant('/model', [1], [], DataType.INT64)]);
  const keyIdx = e.op1('/model', 'Unsqueeze', [idx, e.ints('/model', [0])]);
  const queryIdx = e.op1('/model', 'Unsqueeze', [idx, e.ints('/model', [1])]);
  const causal = e.op1('/model', 'LessOrEqual', [keyIdx, queryIdx]); // [S(query), S(key)]: key ≤ query
  const keyMask = e.op1('/model', 'Cast', [e.op1('/model', 'Unsqueeze', ['attention_mask', e.ints('/model', [1, 2, 3])])], { to: DataType.BOOL }); // [B, 1, 1, 1, S]
  const allowed = e.op1('/model', 'And', [causal, keyMask]); // [B, 1, 1, S, S]
  // Sliding layers: also query − key < window (a band).
  const bands = new Map<number, string>();
  for (const window of new Set(c.windows)) {
    if (window === null) continue;
    const near = e.op1('/model', 'Less', [e.op1('/model', 'Sub', [queryIdx, keyIdx]), e.constant('/model', [window], [], DataType.INT64)]);
    bands.set(window, e.op1('/model', 'And', [allowed, near]));
  }

  const embed = w('model.embed_tokens.weight');
  const embedName = e.weight('model.embed_tokens.weight', embed);
  let hidden = e.op1('/model/embed_tokens', 'Gather', [embedName, 'input_ids'], { axis: 0 });
  if (hfLayout) hidden = merge('/model/embed_tokens', hidden, hd);
  if (v.gemma) {
    // HF: inputs_embeds * torch.tensor(hidden_size ** 0.5, dtype=inputs_embeds.dtype).
    const normalizer = roundToType(options.embedType ?? DataType.FLOAT, Float32Array.of(Math.sqrt(hd)))[0];
    hidden = e.op1('/model', 'Mul', [hidden, e.scalar('/model', normalizer)]);
  }

  // --- Decoder layers.
  /** Rotates the first r.dim dims of each head: x·cos + rotate_half(x)·sin, the rest passes through. */
  const rope = (scope: string, x: string, r: Rotary): string => {
    const { cos, sin } = rotaries.get(r) as { cos: string; sin: string };
    const half = r.dim / 2;
    const xr = r.dim === D ? x : cols(scope, x, 0, r.dim);
    const x1 = cols(scope, xr, 0, half);
    const x2 = cols(scope, xr, half, r.dim);
    const rotated = e.op1(scope, 'Concat', [e.op1(scope, 'Neg', [x2]), x1], { axis: -1 });
    const y = e.op1(scope, 'Add', [e.op1(scope, 'Mul', [xr, cos]), e.op1(scope, 'Mul', [rotated, sin])]);
    return r.dim === D ? y : e.op1(scope, 'Concat', [y, cols(scope, x, r.dim, D)], { axis: -1 });
  };
  const q = H * D;
  const kv = KV * D;

  for (let i = 0; i < c.layers; i++) {
    const ls = `/model/layers.${i}`;
    const as = `${ls}/self_attn`;
    const ms = `${ls}/mlp`;
    const hp = `model.layers.${i}`;
    const x = rmsNorm(`${ls}/input_layernorm`, hidden, `${hp}.input_layernorm.weight`);
    let qh: string, kh: string, vh: string;
    if (v.fused) {
      const qkv = linear(`${as}/qkv_proj`, x, `${hp}.self_attn.qkv_proj`, c.attentionBias);
      [qh, kh, vh] = [cols(as, qkv, 0, q), cols(as, qkv, q, q + kv), cols(as, qkv, q + kv, q + 2 * kv)];
    } else {
      qh = linear(`${as}/q_proj`, x, `${hp}.self_attn.q_proj`, c.attentionBias);
      kh = linear(`${as}/k_proj`, x, `${hp}.self_attn.k_proj`, c.attentionBias);
      vh = linear(`${as}/v_proj`, x, `${hp}.self_attn.v_proj`, c.attentionBias);
    }
    // [B, S, heads·D] → [B, S, heads, D], (normalize,) rotate, then group query heads under their key/value head.
    let qs = split(as, qh, [H, D]);
    let ks = split(as, kh, [KV, D]);
    if (v.qkNorm) {
      qs = rmsNorm(`${as}/q_norm`, qs, `${hp}.self_attn.q_norm.weight`);
      ks = rmsNorm(`${as}/k_norm`, ks, `${hp}.self_attn.k_norm.weight`);
    }
    const window = c.windows[i];
    const rotary = window !== null && c.localRotary ? c.localRotary : c.rotary;
    const qr = rope(as, qs, rotary);
    const kr = rope(as, ks, rotary);
    const q5 = e.op1(as, 'Transpose', [e.op1(as, 'Reshape', [qr, e.ints(as, [0, 0, KV, R, D])])], { perm: [0, 2, 3, 1, 4] }); // [B, KV, R, S, D]
    const kT = e.op1(as, 'Transpose', [e.op1(as, 'Reshape', [kr, e.ints(as, [0, 0, KV, 1, D])])], { perm: [0, 2, 3, 4, 1] }); // [B, KV, 1, D, S]
    const v5 = e.op1(as, 'Transpose', [split(as, vh, [KV, 1, D])], { perm: [0, 2, 3, 1, 4] }); // [B, KV, 1, S, D]
    const scores = softcap(as, e.op1(as, 'Mul', [e.op1(as, 'MatMul', [q5, kT]), e.scalar(as, c.attentionScale)]), c.attnSoftcap); // [B, KV, R, S, S]
    const masked = e.op1(as, 'Where', [window === null ? allowed : (bands.get(window) as string), scores, e.scalar(as, FLOAT32_LOWEST)]);
    const probs = e.op1(as, 'Softmax', [masked], { axis: -1 });
    const ctx5 = e.op1(as, 'MatMul', [probs, v5]); // [B, KV, R, S, D]
    const ctx = merge(as, e.op1(as, 'Transpose', [ctx5], { perm: [0, 3, 1, 2, 4] }), H * D);
    let attnOut = linear(`${as}/o_proj`, ctx, `${hp}.self_attn.o_proj`, c.outputBias);
    if (v.sandwichNorms) attnOut = rmsNorm(`${ls}/post_attention_layernorm`, attnOut, `${hp}.post_attention_layernorm.weight`);
    hidden = e.op1(ls, 'Add', [hidden, attnOut]);

    const y = v.sandwichNorms
      ? rmsNorm(`${ls}/pre_feedforward_layernorm`, hidden, `${hp}.pre_feedforward_layernorm.weight`)
      : rmsNorm(`${ls}/post_attention_layernorm`, hidden, `${hp}.post_attention_layernorm.weight`);
    if (options.mlp) {
      hidden = e.op1(ls, 'Add', [hidden, options.mlp(e, y, i)]);
      continue;
    }
    let gate: string, up: string;
    if (v.fused) {
      const gateUp = linear(`${ms}/gate_up_proj`, y, `${hp}.mlp.gate_up_proj`, c.mlpBias);
      [gate, up] = [cols(ms, gateUp, 0, c.intermediateSize), cols(ms, gateUp, c.intermediateSize, 2 * c.intermediateSize)];
    } else {
      gate = linear(`${ms}/gate_proj`, y, `${hp}.mlp.gate_proj`, c.mlpBias);
      up = linear(`${ms}/up_proj`, y, `${hp}.mlp.up_proj`, c.mlpBias);
    }
    const act = c.activation === 'silu' ? e.op1(ms, 'Mul', [gate, e.op1(ms, 'Sigmoid', [gate])]) : geluTanh(e, ms, gate);
    let down = linear(`${ms}/down_proj`, e.op1(ms, 'Mul', [act, up]), `${hp}.mlp.down_proj`, c.mlpBias);
    if (v.sandwichNorms) down = rmsNorm(`${ls}/post_feedforward_layernorm`, down, `${hp}.post_feedforward_layernorm.weight`);
    hidden = e.op1(ls, 'Add', [hidden, down]);
  }

  // --- Final norm and LM head (soft-capped logits for Gemma 2).
  const normed = rmsNorm('/model/norm', hidden, 'model.norm.weight');
  const head = c.tied ? embed : w('lm_head.weight');
  const finish = (scope: string, opType: string, inputs: string[]): void => {
    const out = c.finalSoftcap === null ? 'logits' : `${scope}/logits`;
    e.nodes.push({ name: `${scope}/${opType}`, opType, input: inputs, output: [out], attribute: [] });
    if (out !== 'logits') e.nodes.push({ name: `${scope}/Softcap`, opType: 'Identity', input: [softcap(scope, out, c.finalSoftcap)], output: ['logits'], attribute: [] });
  };
  if (hfLayout) {
    // A tied head reads the embedding initializer itself (discovery leaves a shared weight dense).
    const flat = c.tied ? e.op1('/lm_head', 'Gemm', [normed, embedName], { transB: 1 }) : e.gemm('/lm_head', normed, 'lm_head.weight', head);
    const shape = e.op1('/lm_head', 'Concat', [batchSeq, e.ints('/lm_head', [c.vocabSize])], { axis: 0 });
    finish('/lm_head', 'Reshape', [flat, shape]);
  } else {
    if (isTensorRef(head)) throw new Error(`${c.tied ? 'model.embed_tokens.weight' : 'lm_head.weight'} is a reference: the 'in_out' layout copies the LM head transposed, so it needs its values`);
    const headWeight = e.initializer(transposedName('lm_head.weight'), transpose(head.data, c.vocabSize, hd), [hd, c.vocabSize]);
    finish('/lm_head', 'MatMul', [normed, headWeight]);
  }

  return causalLmModel(e, 'llama', `LlamaForCausalLM (${c.layers} layers, hidden ${hd}, ${H} heads, ${KV} kv heads)`,
    { vocabSize: c.vocabSize, weightLayout: hfLayout ? 'out_in' : 'in_out', tied: c.tied, graphName: options.name, opset: options.opset });
}

/** cos and sin [B, S, 1, r.dim] of the positions [B, S] for rotary embedding `r`, × its attention factor. */
function rotaryTables(e: Emitter, rs: string, positions: string, r: Rotary): { cos: string; sin: string } {
  const half = r.dim / 2;
  const freqs = (f: Float32Array, dims: number[]) => e.constant(rs, Array.from(f), dims, DataType.FLOAT);
  let invFreq = freqs(r.invFreq, [1, 1, half]);
  if (r.long || r.dynamic) {
    // Both depend on L = the largest position + 1, as HF's rotary embedding reads it per forward.
    const L = e.op1(rs, 'Add', [e.op1(rs, 'ReduceMax', [positions], { keepdims: 0 }), e.scalar(rs, 1)]);
    if (r.long) invFreq = e.op1(rs, 'Where', [e.op1(rs, 'Greater', [L, e.scalar(rs, r.long.originalMax)]), freqs(r.long.invFreq, [1, 1, half]), invFreq]);
    if (r.dynamic) {
      const { base, factor, maxPositions } = r.dynamic;
      const len = e.op1(rs, 'Max', [L, e.scalar(rs, maxPositions)]);
      const ratio = e.op1(rs, 'Sub', [e.op1(rs, 'Mul', [len, e.scalar(rs, factor / maxPositions)]), e.scalar(rs, factor - 1)]);
      const scaledBase = e.op1(rs, 'Mul', [e.op1(rs, 'Pow', [ratio, e.scalar(rs, r.dim / (r.dim - 2))]), e.scalar(rs, base)]);
      const exponents = e.constant(rs, Array.from({ length: half }, (_, i) => Math.fround((2 * i) / r.dim)), [1, 1, half], DataType.FLOAT);
      invFreq = e.op1(rs, 'Reciprocal', [e.op1(rs, 'Pow', [scaledBase, exponents])]);
    }
  }
  const angle = e.op1(rs, 'Mul', [e.op1(rs, 'Unsqueeze', [positions, e.ints(rs, [2])]), invFreq]);
  const emb = e.op1(rs, 'Concat', [angle, angle], { axis: -1 });
  const axis2 = e.ints(rs, [2]);
  const scaled = (x: string) => (r.attentionFactor === 1 ? x : e.op1(rs, 'Mul', [x, e.scalar(rs, r.attentionFactor)]));
  return {
    cos: e.op1(rs, 'Unsqueeze', [scaled(e.op1(rs, 'Cos', [emb])), axis2]),
    sin: e.op1(rs, 'Unsqueeze', [scaled(e.op1(rs, 'Sin', [emb])), axis2]),
  };
}

/** GELU, tanh approximation (gelu_pytorch_tanh): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
function geluTanh(e: Emitter, scope: string, x: string): string {
  const cube = e.op1(scope, 'Mul', [e.op1(scope, 'Mul', [x, x]), x]);
  const inner = e.op1(scope, 'Mul', [e.op1(scope, 'Add', [x, e.op1(scope, 'Mul', [cube, e.scalar(scope, 0.044715)])]), e.scalar(scope, Math.sqrt(2 / Math.PI))]);
  const t = e.op1(scope, 'Add', [e.op1(scope, 'Tanh', [inner]), e.scalar(scope, 1)]);
  return e.op1(scope, 'Mul', [e.op1(scope, 'Mul', [x, e.scalar(scope, 0.5)]), t]);
}
