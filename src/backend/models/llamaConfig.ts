// The Hugging Face LlamaConfig fields the Llama builder reads, HF's defaults filled in, and the tensors (names and
// dims) a config implies; the families that are "Llama plus X" (Qwen2/3, Mistral, Gemma 1–3, Phi-3) are each a
// LlamaVariant, one flag per difference, read from their config fields by the same resolver.

import { configFinitePositive, configPositiveInt } from './configFields';
import { Dim, expected, ExpectedTensor, shapesOf } from './expected';
import { resolveRotary, Rotary, RopeScaling } from './rope';

/** The fields of a Hugging Face LlamaConfig (config.json) the builder reads, and those of the families that are
 *  "Llama plus X" (Qwen3, Gemma 1–3, Phi-3); optional ones take HF's defaults. */
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
  /** transformers v5: rope_theta and the scaling in one object; Gemma 3 nests one per layer type. */
  rope_parameters?: (RopeScaling & { full_attention?: RopeScaling; sliding_attention?: RopeScaling }) | null;
  /** Default 2048; the graph accepts any sequence length (dynamic and longrope scaling read it). */
  max_position_embeddings?: number;
  /** Phi-3 longrope: the pretrained context (max_position_embeddings / it = the scaling factor). */
  original_max_position_embeddings?: number;
  /** Phi-3: rotary embedding on the first head_dim × this dims of each head (default 1). */
  partial_rotary_factor?: number;
  vocab_size: number;
  /** Default false (Llama, Qwen3, Phi-3), true (Gemma). */
  tie_word_embeddings?: boolean;
  /** Biases on q/k/v/o_proj (default false; Qwen2: always on q/k/v, never on o). */
  attention_bias?: boolean;
  /** Biases on gate/up/down_proj (default false). */
  mlp_bias?: boolean;
  /** silu (Llama family); Gemma reads hidden_activation first. */
  hidden_act?: string;
  /** Gemma: gelu_pytorch_tanh (the default). */
  hidden_activation?: string | null;
  /** Standard deviation of `randomLlamaWeights` (default 0.02, HF's initializer_range). */
  initializer_range?: number;
  /** Keys visible to a query in sliding-window layers: those less than this many positions back. */
  sliding_window?: number | null;
  /** Qwen2/Qwen3: sliding windows only when true, and only in layers ≥ max_window_layers. */
  use_sliding_window?: boolean;
  max_window_layers?: number;
  /** Per layer 'sliding_attention' or 'full_attention' (recent configs); otherwise derived as HF does. */
  layer_types?: string[] | null;
  /** Gemma 3: every n-th layer is global, the others sliding (default 6). */
  sliding_window_pattern?: number;
  /** Gemma 2/3: attention scores scaled by query_pre_attn_scalar^−½ instead of head_dim^−½. */
  query_pre_attn_scalar?: number;
  /** Gemma 2: scores → cap·tanh(scores/cap) before the mask. */
  attn_logit_softcapping?: number | null;
  /** Gemma 2: logits → cap·tanh(logits/cap). */
  final_logit_softcapping?: number | null;
  /** Gemma 3: rope base of the sliding-window layers (default 10000; no rope_scaling there). */
  rope_local_base_freq?: number;
}

/** How a Llama-like family differs from Llama (HF modeling_<model_type>.py); each flag is one difference. */
export interface LlamaVariant {
  /** Qwen2: biases on q/k/v_proj whatever attention_bias says, none on o_proj. */
  qkvBiasOnly: boolean;
  /** Qwen3, Gemma 3: per-head RMSNorm of queries and keys (`self_attn.q_norm` / `k_norm`, [head_dim]) before rotary. */
  qkNorm: boolean;
  /** Gemma: RMSNorm scales by (1 + w); embedding × √hidden (in the embedding's dtype); tanh-GELU MLP; tied by default. */
  gemma: boolean;
  /** Gemma 2/3: post_attention_layernorm on the attention output, pre_/post_feedforward_layernorm around the MLP. */
  sandwichNorms: boolean;
  /** Phi-3: fused `self_attn.qkv_proj` [q + 2·kv, hidden] and `mlp.gate_up_proj` [2·intermediate, hidden]. */
  fused: boolean;
  /** Which layers slide: all (Mistral, Phi-3), from max_window_layers on (Qwen2/3), even ones (Gemma 2),
   *  all but every sliding_window_pattern-th (Gemma 3). `layer_types` in the config overrides. */
  slidingLayers: 'none' | 'all' | 'qwen' | 'alternate' | 'pattern';
  /** Gemma 3: sliding layers use rope_local_base_freq, unscaled. */
  localRope: boolean;
  /** Gemma 2: attn_logit_softcapping and final_logit_softcapping when the config omits them (null: off). */
  softcapDefaults: { attn: number; final: number } | null;
}

const LLAMA: LlamaVariant = { qkvBiasOnly: false, qkNorm: false, gemma: false, sandwichNorms: false, fused: false, slidingLayers: 'none', localRope: false, softcapDefaults: null };
const GEMMA: LlamaVariant = { ...LLAMA, gemma: true };

/** The Llama-like model types and their differences from Llama. */
export const LLAMA_VARIANTS: Readonly<Record<string, LlamaVariant>> = {
  llama: LLAMA,
  mistral: { ...LLAMA, slidingLayers: 'all' },
  qwen2: { ...LLAMA, qkvBiasOnly: true, slidingLayers: 'qwen' },
  qwen3: { ...LLAMA, qkNorm: true, slidingLayers: 'qwen' },
  gemma: GEMMA,
  gemma2: { ...GEMMA, sandwichNorms: true, slidingLayers: 'alternate', softcapDefaults: { attn: 50, final: 30 } },
  gemma3_text: { ...GEMMA, sandwichNorms: true, qkNorm: true, slidingLayers: 'pattern', localRope: true },
  phi3: { ...LLAMA, fused: true, slidingLayers: 'all' },
};

/** A config's tensor sizes with HF's defaults filled in: what its expected tensors follow, nothing allocated, so
 *  that they are checked against a checkpoint's tensors before a rotary table or per-layer list is made. */
export interface LlamaSizes {
  variant: LlamaVariant;
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocabSize: number;
  tied: boolean;
  /** Biases on q/k/v_proj. */
  attentionBias: boolean;
  /** Bias on o_proj (Qwen2 has q/k/v biases but none here). */
  outputBias: boolean;
  mlpBias: boolean;
}

/** A config with every default filled in and every derived size computed. */
export interface ResolvedLlamaConfig extends LlamaSizes {
  rmsNormEps: number;
  ropeTheta: number;
  /** Per rotary frequency, float32-rounded, after rope_scaling (= rotary.invFreq). */
  invFreq: Float32Array;
  /** The rotary embedding of global layers (all layers but Gemma 3's sliding ones). */
  rotary: Rotary;
  /** Gemma 3's sliding layers: rope_local_base_freq, unscaled. */
  localRotary: Rotary | null;
  /** Per layer: its sliding window in positions, or null (global attention). */
  windows: (number | null)[];
  /** Attention scores are multiplied by this (head_dim^−½ or query_pre_attn_scalar^−½). */
  attentionScale: number;
  attnSoftcap: number | null;
  finalSoftcap: number | null;
  /** silu (SwiGLU) or gelu_tanh (GeGLU). */
  activation: 'silu' | 'gelu_tanh';
  maxPositions: number;
  initializerRange: number;
}

function positiveInt(value: unknown, field: string): number {
  return configPositiveInt('Llama', value, field);
}

function finitePositive(value: unknown, field: string): number {
  return configFinitePositive('Llama', value, field);
}

/** A field that is a positive number, null (off), or absent (then `absent`). */
function optionalPositive(value: unknown, absent: number | null, field: string): number | null {
  if (value === undefined) return absent;
  return value === null ? null : finitePositive(value, field);
}

function variantOf(modelType: string | undefined): LlamaVariant {
  const type = modelType ?? 'llama';
  const v = Object.hasOwn(LLAMA_VARIANTS, type) ? LLAMA_VARIANTS[type] : undefined; // no "__proto__" member
  if (!v) throw new Error(`Llama config: model_type '${modelType}' is not a Llama-like family (${Object.keys(LLAMA_VARIANTS).join(', ')})`);
  return v;
}

function activationOf(config: LlamaConfig, v: LlamaVariant): 'silu' | 'gelu_tanh' {
  const act = v.gemma ? config.hidden_activation ?? 'gelu_pytorch_tanh' : config.hidden_act ?? 'silu';
  if (act === 'silu' || act === 'swish') return 'silu';
  if (act === 'gelu_pytorch_tanh' || act === 'gelu_new') return 'gelu_tanh';
  throw new Error(`Llama config: ${v.gemma ? 'hidden_activation' : 'hidden_act'} '${act}' is not supported (silu, gelu_pytorch_tanh)`);
}

/** Each layer's sliding window (null: global), as HF's config classes derive `layer_types`. */
function layerWindows(config: LlamaConfig, v: LlamaVariant, layers: number): (number | null)[] {
  const w = config.sliding_window == null ? null : positiveInt(config.sliding_window, 'sliding_window');
  const types = config.layer_types;
  if (Array.isArray(types)) {
    if (types.length !== layers || !types.every((t) => t === 'sliding_attention' || t === 'full_attention')) {
      throw new Error(`Llama config: layer_types must list ${layers} entries, each 'sliding_attention' or 'full_attention'`);
    }
    if (w === null && types.includes('sliding_attention')) throw new Error('Llama config: layer_types has sliding_attention layers but sliding_window is not set');
    return types.map((t) => (t === 'sliding_attention' ? w : null));
  }
  const pattern = positiveInt(config.sliding_window_pattern ?? 6, 'sliding_window_pattern');
  const slides = (i: number): boolean => {
    switch (v.slidingLayers) {
      case 'all': return true;
      case 'qwen': return config.use_sliding_window === true && i >= (config.max_window_layers ?? 0);
      case 'alternate': return i % 2 === 0;
      case 'pattern': return (i + 1) % pattern !== 0;
      default: return false;
    }
  };
  return Array.from({ length: layers }, (_, i) => (w !== null && slides(i) ? w : null));
}

/** Fills HF's defaults into `config`'s tensor sizes and checks that they fit together (no allocation). */
export function resolveLlamaSizes(config: LlamaConfig): LlamaSizes {
  const v = variantOf(config.model_type);
  const hiddenSize = positiveInt(config.hidden_size, 'hidden_size');
  const heads = positiveInt(config.num_attention_heads, 'num_attention_heads');
  const kvHeads = positiveInt(config.num_key_value_heads ?? heads, 'num_key_value_heads');
  if (heads % kvHeads !== 0) {
    throw new Error(`Llama config: num_attention_heads (${heads}) must be a multiple of num_key_value_heads (${kvHeads})`);
  }
  if (config.head_dim == null && hiddenSize % heads !== 0) {
    throw new Error(`Llama config: hidden_size (${hiddenSize}) is not a multiple of num_attention_heads (${heads}) and no head_dim is given`);
  }
  // Qwen2 hard-codes biases on q/k/v_proj (none on o_proj); the others read attention_bias.
  const bias = config.attention_bias ?? false;
  return {
    variant: v,
    hiddenSize,
    intermediateSize: positiveInt(config.intermediate_size, 'intermediate_size'),
    layers: positiveInt(config.num_hidden_layers, 'num_hidden_layers'),
    heads,
    kvHeads,
    headDim: positiveInt(config.head_dim ?? hiddenSize / heads, 'head_dim'),
    vocabSize: positiveInt(config.vocab_size, 'vocab_size'),
    tied: config.tie_word_embeddings ?? v.gemma,
    attentionBias: v.qkvBiasOnly || bias,
    outputBias: !v.qkvBiasOnly && bias,
    mlpBias: config.mlp_bias ?? false,
  };
}

/** Fills HF's defaults into `config` and checks that the sizes fit together. Allocates per layer and per rotary
 *  frequency: a checkpoint's config passes checkStoredShapes (expected.ts) first. */
export function resolveLlamaConfig(config: LlamaConfig): ResolvedLlamaConfig {
  const sizes = resolveLlamaSizes(config);
  const { variant: v, headDim, layers } = sizes;
  const maxPositions = positiveInt(config.max_position_embeddings ?? 2048, 'max_position_embeddings');
  const params = config.rope_parameters?.full_attention ?? config.rope_parameters ?? undefined;
  const localParams = config.rope_parameters?.sliding_attention;
  const ropeTheta = finitePositive(params?.rope_theta ?? config.rope_theta ?? 10000, 'rope_theta');
  const partial = finitePositive(config.partial_rotary_factor ?? 1, 'partial_rotary_factor');
  const rotaryDim = Math.floor(headDim * partial);
  if (rotaryDim > headDim || rotaryDim < 2) throw new Error(`Llama config: partial_rotary_factor ${partial} leaves ${rotaryDim} rotary dims of ${headDim}`);
  const ctx = {
    maxPositions,
    originalMaxPositions: config.original_max_position_embeddings == null ? undefined : positiveInt(config.original_max_position_embeddings, 'original_max_position_embeddings'),
  };
  const rotary = resolveRotary(rotaryDim, ropeTheta, config.rope_scaling ?? params, ctx);
  const localBase = finitePositive(localParams?.rope_theta ?? config.rope_local_base_freq ?? 10000, 'rope_local_base_freq');
  const scalar = v.sandwichNorms ? finitePositive(config.query_pre_attn_scalar ?? 256, 'query_pre_attn_scalar') : headDim;
  return {
    ...sizes,
    rmsNormEps: finitePositive(config.rms_norm_eps ?? 1e-6, 'rms_norm_eps'),
    ropeTheta,
    invFreq: rotary.invFreq,
    rotary,
    localRotary: v.localRope ? resolveRotary(rotaryDim, localBase, localParams, ctx) : null,
    windows: layerWindows(config, v, layers),
    attentionScale: 1 / Math.sqrt(scalar),
    attnSoftcap: v.sandwichNorms ? optionalPositive(config.attn_logit_softcapping, v.softcapDefaults?.attn ?? null, 'attn_logit_softcapping') : null,
    finalSoftcap: v.sandwichNorms ? optionalPositive(config.final_logit_softcapping, v.softcapDefaults?.final ?? null, 'final_logit_softcapping') : null,
    activation: activationOf(config, v),
    maxPositions,
    initializerRange: finitePositive(config.initializer_range ?? 0.02, 'initializer_range'),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Weight names

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

/** Every HF tensor a model with this config reads, in checkpoint order, each dim labelled with its config field
 *  ([out, in] for Linear weights); lazy, so a checkpoint check stops at the first tensor it lacks. */
export function* llamaExpectedTensors(config: LlamaConfig | LlamaSizes): Generator<ExpectedTensor> {
  const c = 'hiddenSize' in config ? config : resolveLlamaSizes(config);
  const v = c.variant;
  const hd: Dim = [c.hiddenSize, 'hidden_size'];
  const q = c.heads * c.headDim;
  const kv = c.kvHeads * c.headDim;
  const im = c.intermediateSize;
  const vocab: Dim = [c.vocabSize, 'vocab_size'];
  function* linear(name: string, dims: [Dim, Dim], bias: boolean, biasField: string): Generator<ExpectedTensor> {
    yield expected(`${name}.weight`, dims);
    if (bias) yield expected(`${name}.bias`, [dims[0]], biasField);
  }
  const qDim: Dim = [q, 'num_attention_heads · head_dim'];
  const kvDim: Dim = [kv, 'num_key_value_heads · head_dim'];
  const imDim: Dim = [im, 'intermediate_size'];
  yield expected('model.embed_tokens.weight', [vocab, hd]);
  for (let i = 0; i < c.layers; i++) {
    const p = `model.layers.${i}`;
    yield expected(`${p}.input_layernorm.weight`, [hd], 'num_hidden_layers');
    const qkvBias = v.qkvBiasOnly ? 'model_type' : 'attention_bias';
    if (v.fused) yield* linear(`${p}.self_attn.qkv_proj`, [[q + 2 * kv, 'num_attention_heads · head_dim + 2 · num_key_value_heads · head_dim'], hd], c.attentionBias, qkvBias);
    else for (const [proj, out] of [['q_proj', qDim], ['k_proj', kvDim], ['v_proj', kvDim]] as const) yield* linear(`${p}.self_attn.${proj}`, [out, hd], c.attentionBias, qkvBias);
    yield* linear(`${p}.self_attn.o_proj`, [hd, qDim], c.outputBias, 'attention_bias');
    if (v.qkNorm) for (const n of ['q_norm', 'k_norm']) yield expected(`${p}.self_attn.${n}.weight`, [[c.headDim, 'head_dim']], 'model_type');
    yield expected(`${p}.post_attention_layernorm.weight`, [hd]);
    if (v.sandwichNorms) for (const n of ['pre_feedforward_layernorm', 'post_feedforward_layernorm']) yield expected(`${p}.${n}.weight`, [hd], 'model_type');
    if (v.fused) yield* linear(`${p}.mlp.gate_up_proj`, [[2 * im, '2 · intermediate_size'], hd], c.mlpBias, 'mlp_bias');
    else for (const proj of ['gate_proj', 'up_proj']) yield* linear(`${p}.mlp.${proj}`, [imDim, hd], c.mlpBias, 'mlp_bias');
    yield* linear(`${p}.mlp.down_proj`, [hd, imDim], c.mlpBias, 'mlp_bias');
  }
  yield expected('model.norm.weight', [hd]);
  if (!c.tied) yield expected('lm_head.weight', [vocab, hd], 'tie_word_embeddings');
}

/** Every HF tensor a model with this config reads, with its expected dims ([out, in] for Linear weights). */
export function llamaTensorShapes(config: LlamaConfig | LlamaSizes): Map<string, number[]> {
  return shapesOf(llamaExpectedTensors(config));
}
