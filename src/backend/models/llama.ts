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
// Every op is in ai.onnx opset 17 and has CPU, CUDA and WebGPU kernels (Gather, MatMul, Mul, Add, Sub, Max,
// ReduceMean, Sqrt, Reciprocal, Cast, CumSum, Range, Unsqueeze, Reshape, Transpose, Slice, Neg, Concat, Cos,
// Sin, LessOrEqual, And, Where, Softmax, Sigmoid, Shape, Gather). The 5-D attention MatMuls broadcast the
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

import { KERNEL_OPSET, tensorFromValues, valueInfo } from '../onnx/graph';
import { AttributeProto, AttributeType, DataType, ModelProto, NodeProto, TensorProto } from '../onnx/proto';
import { normalRng } from '../synthetic';
import { POSITION_LIMIT_KEY } from './inputs';

// ---------------------------------------------------------------------------------------------------------
// Configuration

/** `rope_scaling` (or transformers v5 `rope_parameters`) as found in config.json. */
export interface RopeScaling {
  rope_type?: string;
  /** Older configs say `type`. */
  type?: string;
  factor?: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  original_max_position_embeddings?: number;
  rope_theta?: number;
}

/** The fields of a Hugging Face LlamaConfig (config.json) the builder reads; optional ones take HF's defaults. */
export interface LlamaConfig {
  model_type?: string;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  /** Default: num_attention_heads (multi-head attention). */
  num_key_value_heads?: number | null;
  /** Default: hidden_size / num_attention_heads. */
  head_dim?: number | null;
  /** Default 1e-6 (HF LlamaConfig). */
  rms_norm_eps?: number;
  /** Default 10000. */
  rope_theta?: number;
  rope_scaling?: RopeScaling | null;
  rope_parameters?: RopeScaling | null;
  /** Default 2048; informational (the graph accepts any sequence length). */
  max_position_embeddings?: number;
  vocab_size: number;
  /** Default false (HF LlamaConfig). */
  tie_word_embeddings?: boolean;
  /** Biases on q/k/v/o_proj (default false; Qwen2: always on q/k/v, never on o). */
  attention_bias?: boolean;
  /** Biases on gate/up/down_proj (default false). */
  mlp_bias?: boolean;
  /** Only silu (swish) is supported. */
  hidden_act?: string;
  /** Standard deviation of `randomLlamaWeights` (default 0.02, HF's initializer_range). */
  initializer_range?: number;
  /** Mistral/Qwen2 sliding-window attention is not modelled: refused when it could change the result. */
  sliding_window?: number | null;
  use_sliding_window?: boolean;
}

/** A weight: row-major float32 values and their dims (HF layout: Linear weights are [out, in]). */
export interface LlamaTensor {
  data: Float32Array;
  dims: number[];
}

/** A weight whose bytes live elsewhere: the builder uses `initializer` (renamed to the HF tensor name) as is.
 *  It must be FLOAT with these dims (typically external data pointing into a checkpoint file). */
export interface TensorRef {
  dims: number[];
  initializer: TensorProto;
}

/** Weights by Hugging Face tensor name (`model.layers.0.self_attn.q_proj.weight`, …). */
export type LlamaWeights = ReadonlyMap<string, LlamaTensor | TensorRef> | Readonly<Record<string, LlamaTensor | TensorRef>>;

export function isTensorRef(t: LlamaTensor | TensorRef): t is TensorRef {
  return 'initializer' in t;
}

/** A config with every default filled in and every derived size computed. */
export interface ResolvedLlamaConfig {
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** Per rotary frequency (headDim / 2 of them), float32-rounded, after rope_scaling. */
  invFreq: Float32Array;
  tied: boolean;
  /** Biases on q/k/v_proj. */
  attentionBias: boolean;
  /** Bias on o_proj (Qwen2 has q/k/v biases but none here). */
  outputBias: boolean;
  mlpBias: boolean;
  maxPositions: number;
  initializerRange: number;
}

function positiveInt(value: unknown, field: string): number {
  return configPositiveInt('Llama', value, field);
}

function finitePositive(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new Error(`Llama config: ${field} must be a positive number, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** Rotary inverse frequencies as HF computes them in float32 (`rope_init_fn`), for the supported rope types:
 *  default, linear (positions divided by `factor`) and llama3 (Llama 3.1's band-wise rescaling). */
export function ropeInvFreq(headDim: number, theta: number, scaling: RopeScaling | null | undefined): Float32Array {
  if (headDim % 2 !== 0) throw new Error(`Llama config: head_dim ${headDim} must be even for rotary embeddings`);
  const half = headDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const e = Math.fround((2 * i) / headDim);
    inv[i] = Math.fround(1 / Math.fround(theta ** e));
  }
  const type = scaling ? (scaling.rope_type ?? scaling.type ?? 'default') : 'default';
  if (type === 'default') return inv;
  const factor = finitePositive(scaling?.factor, `rope_scaling.factor (${type})`);
  if (type === 'linear') return inv.map((f) => Math.fround(f / factor));
  if (type === 'llama3') {
    const low = finitePositive(scaling?.low_freq_factor, 'rope_scaling.low_freq_factor');
    const high = finitePositive(scaling?.high_freq_factor, 'rope_scaling.high_freq_factor');
    const oldLen = finitePositive(scaling?.original_max_position_embeddings, 'rope_scaling.original_max_position_embeddings');
    if (!(high > low)) throw new Error(`Llama config: rope_scaling.high_freq_factor (${high}) must exceed low_freq_factor (${low})`);
    const lowWavelen = oldLen / low;
    const highWavelen = oldLen / high;
    return inv.map((f) => {
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < highWavelen) return f; // high frequencies: unchanged
      if (wavelen > lowWavelen) return Math.fround(f / factor); // low frequencies: interpolated
      const smooth = (oldLen / wavelen - low) / (high - low);
      return Math.fround((1 - smooth) * (f / factor) + smooth * f);
    });
  }
  throw new Error(`Llama config: rope_scaling type '${type}' is not supported (supported: default, linear, llama3)`);
}

/** Fills HF's defaults into `config` and checks that the sizes fit together. */
export function resolveLlamaConfig(config: LlamaConfig): ResolvedLlamaConfig {
  const hiddenSize = positiveInt(config.hidden_size, 'hidden_size');
  const heads = positiveInt(config.num_attention_heads, 'num_attention_heads');
  const kvHeads = positiveInt(config.num_key_value_heads ?? heads, 'num_key_value_heads');
  if (heads % kvHeads !== 0) {
    throw new Error(`Llama config: num_attention_heads (${heads}) must be a multiple of num_key_value_heads (${kvHeads})`);
  }
  if (config.head_dim == null && hiddenSize % heads !== 0) {
    throw new Error(`Llama config: hidden_size (${hiddenSize}) is not a multiple of num_attention_heads (${heads}) and no head_dim is given`);
  }
  const headDim = positiveInt(config.head_dim ?? hiddenSize / heads, 'head_dim');
  const act = config.hidden_act ?? 'silu';
  if (act !== 'silu' && act !== 'swish') throw new Error(`Llama config: hidden_act '${act}' is not supported (only silu)`);
  const maxPositions = positiveInt(config.max_position_embeddings ?? 2048, 'max_position_embeddings');
  if (typeof config.sliding_window === 'number' && config.use_sliding_window !== false && config.sliding_window < maxPositions) {
    throw new Error(`Llama config: sliding_window ${config.sliding_window} < max_position_embeddings ${maxPositions}: sliding-window attention is not supported`);
  }
  const params = config.rope_parameters ?? undefined;
  // Qwen2 hard-codes biases on q/k/v_proj (none on o_proj); Llama and Mistral read attention_bias.
  const qkvBias = config.model_type === 'qwen2' ? true : config.attention_bias ?? false;
  const oBias = config.model_type === 'qwen2' ? false : config.attention_bias ?? false;
  const ropeTheta = finitePositive(params?.rope_theta ?? config.rope_theta ?? 10000, 'rope_theta');
  return {
    hiddenSize,
    intermediateSize: positiveInt(config.intermediate_size, 'intermediate_size'),
    layers: positiveInt(config.num_hidden_layers, 'num_hidden_layers'),
    heads,
    kvHeads,
    headDim,
    vocabSize: positiveInt(config.vocab_size, 'vocab_size'),
    rmsNormEps: finitePositive(config.rms_norm_eps ?? 1e-6, 'rms_norm_eps'),
    ropeTheta,
    invFreq: ropeInvFreq(headDim, ropeTheta, config.rope_scaling ?? params),
    tied: config.tie_word_embeddings ?? false,
    attentionBias: qkvBias,
    outputBias: oBias,
    mlpBias: config.mlp_bias ?? false,
    maxPositions,
    initializerRange: finitePositive(config.initializer_range ?? 0.02, 'initializer_range'),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Weight names

export const ATTENTION_PROJECTIONS = ['q_proj', 'k_proj', 'v_proj', 'o_proj'] as const;
export const MLP_PROJECTIONS = ['gate_proj', 'up_proj', 'down_proj'] as const;

/** Suffix of initializers that hold an HF Linear weight transposed to [in, out]. */
export const TRANSPOSED_SUFFIX = '.T';

/** The initializer name of HF Linear weight `hfName` (stored transposed). */
export function transposedName(hfName: string): string {
  return hfName + TRANSPOSED_SUFFIX;
}

/** The HF tensor behind an initializer of a built model, and whether it is stored transposed. The LM head of
 *  a tied model maps to `lm_head.weight`, which the checkpoint does not hold (it is the embedding). */
export function hfTensorName(initializer: string): { name: string; transposed: boolean } {
  return initializer.endsWith(TRANSPOSED_SUFFIX)
    ? { name: initializer.slice(0, -TRANSPOSED_SUFFIX.length), transposed: true }
    : { name: initializer, transposed: false };
}

/** Every HF tensor a model with this config reads, with its expected dims ([out, in] for Linear weights). */
export function llamaTensorShapes(config: LlamaConfig | ResolvedLlamaConfig): Map<string, number[]> {
  const c = 'hiddenSize' in config ? config : resolveLlamaConfig(config);
  const hd = c.hiddenSize;
  const q = c.heads * c.headDim;
  const kv = c.kvHeads * c.headDim;
  const im = c.intermediateSize;
  const shapes = new Map<string, number[]>();
  shapes.set('model.embed_tokens.weight', [c.vocabSize, hd]);
  for (let i = 0; i < c.layers; i++) {
    const p = `model.layers.${i}`;
    shapes.set(`${p}.input_layernorm.weight`, [hd]);
    const attn: Record<string, [number, number]> = { q_proj: [q, hd], k_proj: [kv, hd], v_proj: [kv, hd], o_proj: [hd, q] };
    for (const proj of ATTENTION_PROJECTIONS) {
      shapes.set(`${p}.self_attn.${proj}.weight`, attn[proj]);
      if (proj === 'o_proj' ? c.outputBias : c.attentionBias) shapes.set(`${p}.self_attn.${proj}.bias`, [attn[proj][0]]);
    }
    shapes.set(`${p}.post_attention_layernorm.weight`, [hd]);
    const mlp: Record<string, [number, number]> = { gate_proj: [im, hd], up_proj: [im, hd], down_proj: [hd, im] };
    for (const proj of MLP_PROJECTIONS) {
      shapes.set(`${p}.mlp.${proj}.weight`, mlp[proj]);
      if (c.mlpBias) shapes.set(`${p}.mlp.${proj}.bias`, [mlp[proj][0]]);
    }
  }
  shapes.set('model.norm.weight', [hd]);
  if (!c.tied) shapes.set('lm_head.weight', [c.vocabSize, hd]);
  return shapes;
}

function lookup(weights: LlamaWeights, name: string): LlamaTensor | TensorRef | undefined {
  const map = weights as ReadonlyMap<string, LlamaTensor | TensorRef>;
  if (typeof map.get === 'function') return map.get(name);
  return Object.prototype.hasOwnProperty.call(weights, name) ? (weights as Readonly<Record<string, LlamaTensor | TensorRef>>)[name] : undefined;
}

/** Checks every tensor `shapes` names against `weights` (present, dims, value count); throws listing the problems. */
export function checkWeights(family: string, shapes: ReadonlyMap<string, number[]>, weights: LlamaWeights): void {
  const problems: string[] = [];
  for (const [name, dims] of shapes) {
    const t = lookup(weights, name);
    if (!t) { problems.push(`${name} is missing`); continue; }
    const count = dims.reduce((a, b) => a * b, 1);
    if (t.dims.length !== dims.length || t.dims.some((d, k) => d !== dims[k])) problems.push(`${name} is [${t.dims.join(', ')}], expected [${dims.join(', ')}]`);
    else if (!isTensorRef(t) && t.data.length !== count) problems.push(`${name} holds ${t.data.length} values, its dims [${dims.join(', ')}] say ${count}`);
    else if (isTensorRef(t) && t.initializer.dataType !== DataType.FLOAT) problems.push(`${name} is referenced as ${DataType[t.initializer.dataType]}, the graph computes in FLOAT`);
  }
  if (problems.length) {
    const shown = problems.slice(0, 8).join('; ');
    throw new Error(`${family} weights do not match the config: ${shown}${problems.length > 8 ? `; and ${problems.length - 8} more` : ''}`);
  }
}

/** A weight by name (after checkWeights). */
export function weightOf(weights: LlamaWeights, name: string): LlamaTensor | TensorRef {
  const t = lookup(weights, name);
  if (!t) throw new Error(`weight ${name} is missing`);
  return t;
}

// ---------------------------------------------------------------------------------------------------------
// Graph emission with exporter-style scoped names

function attr(name: string, v: number | number[] | { f: number } | TensorProto): AttributeProto {
  if (typeof v === 'number') return { name, type: AttributeType.INT, i: v };
  if (Array.isArray(v)) return { name, type: AttributeType.INTS, ints: v };
  if ('f' in v) return { name, type: AttributeType.FLOAT, f: v.f };
  return { name, type: AttributeType.TENSOR, t: v };
}

export class Emitter {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  private readonly used = new Set<string>();

  /** Emits `op` named `<scope>/<op>` (`_1`, `_2`… when taken) with outputs `<name>_output_<k>`. */
  op(scope: string, opType: string, inputs: string[], attrs: Record<string, number | number[] | { f: number } | TensorProto> = {}, nOutputs = 1): string[] {
    let name = `${scope}/${opType}`;
    for (let k = 1; this.used.has(name); k++) name = `${scope}/${opType}_${k}`;
    this.used.add(name);
    const output = Array.from({ length: nOutputs }, (_, k) => `${name}_output_${k}`);
    this.nodes.push({ name, opType, input: inputs, output, attribute: Object.entries(attrs).map(([k, v]) => attr(k, v)) });
    return output;
  }

  op1(scope: string, opType: string, inputs: string[], attrs: Record<string, number | number[] | { f: number } | TensorProto> = {}): string {
    return this.op(scope, opType, inputs, attrs)[0];
  }

  /** A Constant node (small values only). */
  constant(scope: string, values: number[] | bigint[], dims: number[], dataType: DataType): string {
    return this.op1(scope, 'Constant', [], { value: tensorFromValues('', values, dims, dataType) });
  }

  ints(scope: string, values: number[]): string {
    return this.constant(scope, values, [values.length], DataType.INT64);
  }

  scalar(scope: string, value: number): string {
    return this.constant(scope, [value], [], DataType.FLOAT);
  }

  initializer(name: string, data: Float32Array, dims: number[]): string {
    this.initializers.push({
      name,
      dims,
      dataType: DataType.FLOAT,
      rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    });
    return name;
  }

  /** An initializer named `name` holding `t`: its values (copied by reference), or the referenced TensorProto. */
  weight(name: string, t: LlamaTensor | TensorRef): string {
    if (isTensorRef(t)) {
      this.initializers.push({ ...t.initializer, name, dims: t.dims.slice() });
      return name;
    }
    return this.initializer(name, t.data, t.dims);
  }

  /** y = x · Wᵀ (+ b) for an HF Linear weight `hfName` [out, in] referenced as stored: Gemm(transB=1) on 2-D x. */
  gemm(scope: string, x: string, hfName: string, w: LlamaTensor | TensorRef, bias?: { name: string; t: LlamaTensor | TensorRef }): string {
    const inputs = [x, this.weight(hfName, w)];
    if (bias) inputs.push(this.weight(bias.name, bias.t));
    return this.op1(scope, 'Gemm', inputs, { transB: 1 });
  }
}

/** [rows, cols] row-major → [cols, rows], in 64×64 tiles (cache-friendly for 4096×11008 weights). */
export function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const T = 64;
  for (let r0 = 0; r0 < rows; r0 += T) {
    const r1 = Math.min(r0 + T, rows);
    for (let c0 = 0; c0 < cols; c0 += T) {
      const c1 = Math.min(c0 + T, cols);
      for (let r = r0; r < r1; r++) {
        const src = r * cols;
        for (let c = c0; c < c1; c++) out[c * rows + r] = data[src + c];
      }
    }
  }
  return out;
}

/** The float32 lowest value: masked attention scores (exp underflows to exactly 0, never NaN). */
export const FLOAT32_LOWEST = -3.4028234663852886e38;

export interface BuildLlamaOptions {
  /** Default-domain opset (default 17). */
  opset?: number;
  /** The graph's name (default `llama`). */
  name?: string;
  /** 'in_out' (default): exporter-style transposed copies; 'out_in': HF layout, weights referenced (see the top). */
  layout?: 'in_out' | 'out_in';
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

  const rmsNorm = (scope: string, x: string, hfName: string): string => {
    const sq = e.op1(scope, 'Mul', [x, x]);
    const mean = e.op1(scope, 'ReduceMean', [sq], { axes: [-1], keepdims: 1 });
    const std = e.op1(scope, 'Sqrt', [e.op1(scope, 'Add', [mean, e.scalar(scope, c.rmsNormEps)])]);
    const normed = e.op1(scope, 'Mul', [x, e.op1(scope, 'Reciprocal', [std])]);
    return e.op1(scope, 'Mul', [e.weight(hfName, w(hfName)), normed]);
  };

  // Activations are [B, S, width] ('in_out') or [B·S, width] ('out_in'); attention works on [B, S, heads, …].
  const batchSeq = hfLayout ? e.op1('/model', 'Shape', ['input_ids']) : '';
  const split = (scope: string, x: string, dims: number[]): string =>
    e.op1(scope, 'Reshape', [x, hfLayout ? e.op1(scope, 'Concat', [batchSeq, e.ints(scope, dims)], { axis: 0 }) : e.ints(scope, [0, 0, ...dims])]);
  const merge = (scope: string, x: string, width: number): string => e.op1(scope, 'Reshape', [x, e.ints(scope, hfLayout ? [-1, width] : [0, 0, width])]);

  // --- Shared inputs of every block, computed once (the pipeline's prefix).
  const maskF = e.op1('/model', 'Cast', ['attention_mask'], { to: DataType.FLOAT });
  const cum = e.op1('/model', 'CumSum', [maskF, e.constant('/model', [1], [], DataType.INT32)]);
  const positions = e.op1('/model', 'Max', [e.op1('/model', 'Sub', [cum, e.scalar('/model', 1)]), e.scalar('/model', 0)]);

  const rs = '/model/rotary_emb';
  const angle = e.op1(rs, 'Mul', [
    e.op1(rs, 'Unsqueeze', [positions, e.ints(rs, [2])]),
    e.constant(rs, Array.from(c.invFreq), [1, 1, D / 2], DataType.FLOAT),
  ]);
  const emb = e.op1(rs, 'Concat', [angle, angle], { axis: -1 });
  const axis2 = e.ints(rs, [2]);
  const cos = e.op1(rs, 'Unsqueeze', [e.op1(rs, 'Cos', [emb]), axis2]); // [B, S, 1, D]
  const sin = e.op1(rs, 'Unsqueeze', [e.op1(rs, 'Sin', [emb]), axis2]);

  const seqLen = e.op1('/model', 'Gather', [e.op1('/model', 'Shape', ['input_ids']), e.constant('/model', [1], [], DataType.INT64)], { axis: 0 });
  const idx = e.op1('/model', 'Range', [e.constant('/model', [0], [], DataType.INT64), seqLen, e.constant('/model', [1], [], DataType.INT64)]);
  const causal = e.op1('/model', 'LessOrEqual', [e.op1('/model', 'Unsqueeze', [idx, e.ints('/model', [0])]), e.op1('/model', 'Unsqueeze', [idx, e.ints('/model', [1])])]); // [S(query), S(key)]: key ≤ query
  const keyMask = e.op1('/model', 'Cast', [e.op1('/model', 'Unsqueeze', ['attention_mask', e.ints('/model', [1, 2, 3])])], { to: DataType.BOOL }); // [B, 1, 1, 1, S]
  const allowed = e.op1('/model', 'And', [causal, keyMask]); // [B, 1, 1, S, S]

  const embed = w('model.embed_tokens.weight');
  const embedName = e.weight('model.embed_tokens.weight', embed);
  let hidden = e.op1('/model/embed_tokens', 'Gather', [embedName, 'input_ids'], { axis: 0 });
  if (hfLayout) hidden = merge('/model/embed_tokens', hidden, hd);

  // --- Decoder layers.
  const half = D / 2;
  const rope = (scope: string, x: string): string => {
    const x1 = e.op1(scope, 'Slice', [x, e.ints(scope, [0]), e.ints(scope, [half]), e.ints(scope, [-1])]);
    const x2 = e.op1(scope, 'Slice', [x, e.ints(scope, [half]), e.ints(scope, [D]), e.ints(scope, [-1])]);
    const rotated = e.op1(scope, 'Concat', [e.op1(scope, 'Neg', [x2]), x1], { axis: -1 });
    return e.op1(scope, 'Add', [e.op1(scope, 'Mul', [x, cos]), e.op1(scope, 'Mul', [rotated, sin])]);
  };

  for (let i = 0; i < c.layers; i++) {
    const ls = `/model/layers.${i}`;
    const as = `${ls}/self_attn`;
    const ms = `${ls}/mlp`;
    const hp = `model.layers.${i}`;
    const x = rmsNorm(`${ls}/input_layernorm`, hidden, `${hp}.input_layernorm.weight`);
    const q = linear(`${as}/q_proj`, x, `${hp}.self_attn.q_proj`, c.attentionBias);
    const k = linear(`${as}/k_proj`, x, `${hp}.self_attn.k_proj`, c.attentionBias);
    const v = linear(`${as}/v_proj`, x, `${hp}.self_attn.v_proj`, c.attentionBias);
    // [B, S, heads·D] → [B, S, heads, D], rotate, then group query heads under their key/value head.
    const qr = rope(as, split(as, q, [H, D]));
    const kr = rope(as, split(as, k, [KV, D]));
    const q5 = e.op1(as, 'Transpose', [e.op1(as, 'Reshape', [qr, e.ints(as, [0, 0, KV, R, D])])], { perm: [0, 2, 3, 1, 4] }); // [B, KV, R, S, D]
    const kT = e.op1(as, 'Transpose', [e.op1(as, 'Reshape', [kr, e.ints(as, [0, 0, KV, 1, D])])], { perm: [0, 2, 3, 4, 1] }); // [B, KV, 1, D, S]
    const v5 = e.op1(as, 'Transpose', [split(as, v, [KV, 1, D])], { perm: [0, 2, 3, 1, 4] }); // [B, KV, 1, S, D]
    const scores = e.op1(as, 'Mul', [e.op1(as, 'MatMul', [q5, kT]), e.scalar(as, 1 / Math.sqrt(D))]); // [B, KV, R, S, S]
    const masked = e.op1(as, 'Where', [allowed, scores, e.scalar(as, FLOAT32_LOWEST)]);
    const probs = e.op1(as, 'Softmax', [masked], { axis: -1 });
    const ctx5 = e.op1(as, 'MatMul', [probs, v5]); // [B, KV, R, S, D]
    const ctx = merge(as, e.op1(as, 'Transpose', [ctx5], { perm: [0, 3, 1, 2, 4] }), H * D);
    const attnOut = linear(`${as}/o_proj`, ctx, `${hp}.self_attn.o_proj`, c.outputBias);
    hidden = e.op1(ls, 'Add', [hidden, attnOut]);

    const y = rmsNorm(`${ls}/post_attention_layernorm`, hidden, `${hp}.post_attention_layernorm.weight`);
    if (options.mlp) {
      hidden = e.op1(ls, 'Add', [hidden, options.mlp(e, y, i)]);
      continue;
    }
    const gate = linear(`${ms}/gate_proj`, y, `${hp}.mlp.gate_proj`, c.mlpBias);
    const act = e.op1(ms, 'Mul', [gate, e.op1(ms, 'Sigmoid', [gate])]);
    const up = linear(`${ms}/up_proj`, y, `${hp}.mlp.up_proj`, c.mlpBias);
    const down = linear(`${ms}/down_proj`, e.op1(ms, 'Mul', [act, up]), `${hp}.mlp.down_proj`, c.mlpBias);
    hidden = e.op1(ls, 'Add', [hidden, down]);
  }

  // --- Final norm and LM head.
  const normed = rmsNorm('/model/norm', hidden, 'model.norm.weight');
  const head = c.tied ? embed : w('lm_head.weight');
  if (hfLayout) {
    // A tied head reads the embedding initializer itself (discovery leaves a shared weight dense).
    const flat = c.tied ? e.op1('/lm_head', 'Gemm', [normed, embedName], { transB: 1 }) : e.gemm('/lm_head', normed, 'lm_head.weight', head);
    const shape = e.op1('/lm_head', 'Concat', [batchSeq, e.ints('/lm_head', [c.vocabSize])], { axis: 0 });
    e.nodes.push({ name: '/lm_head/Reshape', opType: 'Reshape', input: [flat, shape], output: ['logits'], attribute: [] });
  } else {
    if (isTensorRef(head)) throw new Error(`${c.tied ? 'model.embed_tokens.weight' : 'lm_head.weight'} is a reference: the 'in_out' layout copies the LM head transposed, so it needs its values`);
    const headWeight = e.initializer(transposedName('lm_head.weight'), transpose(head.data, c.vocabSize, hd), [hd, c.vocabSize]);
    e.nodes.push({ name: '/lm_head/MatMul', opType: 'MatMul', input: [normed, headWeight], output: ['logits'], attribute: [] });
  }

  return causalLmModel({
    builder: 'llama',
    graphName: options.name ?? 'llama',
    opset: options.opset ?? KERNEL_OPSET,
    docString: `LlamaForCausalLM built by PruneKit from a Hugging Face config (${c.layers} layers, hidden ${hd}, ${H} heads, ${KV} kv heads)`,
    nodes: e.nodes,
    initializers: e.initializers,
    vocabSize: c.vocabSize,
    weightLayout: hfLayout ? 'out_in' : 'in_out',
    tied: c.tied,
  });
}

/** What every causal-LM builder hands back: inputs input_ids and attention_mask [batch, seq] (int64), output
 *  logits [batch, seq, vocab], and the metadata the Hugging Face front end reads back. */
export function causalLmModel(m: {
  builder: string;
  graphName: string;
  opset: number;
  docString: string;
  nodes: NodeProto[];
  initializers: TensorProto[];
  vocabSize: number;
  weightLayout: 'out_in' | 'in_out';
  tied: boolean;
  /** The rows of a learned position table: the longest window the graph runs (POSITION_LIMIT_KEY). */
  positionLimit?: number;
}): ModelProto {
  return {
    irVersion: 8,
    opsetImport: [{ domain: '', version: m.opset }],
    producerName: 'prunekit',
    docString: m.docString,
    graph: {
      name: m.graphName,
      node: m.nodes,
      initializer: m.initializers,
      input: [
        valueInfo('input_ids', DataType.INT64, ['batch_size', 'sequence_length']),
        valueInfo('attention_mask', DataType.INT64, ['batch_size', 'sequence_length']),
      ],
      output: [valueInfo('logits', DataType.FLOAT, ['batch_size', 'sequence_length', m.vocabSize])],
      valueInfo: [],
    },
    metadataProps: [
      { key: 'prunekit.builder', value: m.builder },
      { key: 'prunekit.weight_layout', value: m.weightLayout },
      { key: 'prunekit.tied_lm_head', value: String(m.tied) },
      ...(m.positionLimit ? [{ key: POSITION_LIMIT_KEY, value: String(m.positionLimit) }] : []),
    ],
  };
}

/** A config field that must be a positive integer, or an error naming the family and the field. */
export function configPositiveInt(family: string, value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new Error(`${family} config: ${field} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

// ---------------------------------------------------------------------------------------------------------
// Random weights for the demo

/** A 32-bit FNV-1a hash, so each tensor's random stream depends only on (seed, name). */
function hashName(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/**
 * Deterministic random weights for `config`, initialised as HF's LlamaPreTrainedModel does: Linear and
 * embedding weights ~ N(0, initializer_range²) (default 0.02), norm weights 1, biases 0. Each tensor has its
 * own stream seeded by (seed, name), so a tensor does not change when other layers are added.
 */
export function randomLlamaWeights(config: LlamaConfig, seed = 0): Map<string, LlamaTensor> {
  const c = resolveLlamaConfig(config);
  const out = new Map<string, LlamaTensor>();
  for (const [name, dims] of llamaTensorShapes(c)) {
    const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
    if (name.endsWith('norm.weight')) data.fill(1);
    else if (!name.endsWith('.bias')) {
      const rand = normalRng((hashName(name) ^ Math.imul(seed + 1, 0x9e3779b1)) >>> 0);
      for (let i = 0; i < data.length; i++) data[i] = rand() * c.initializerRange;
    }
    out.set(name, { data, dims });
  }
  return out;
}
