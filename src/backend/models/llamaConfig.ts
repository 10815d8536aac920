// The Hugging Face LlamaConfig fields the Llama builder reads, HF's defaults filled in, and the tensors (names and
// dims) a config implies.

import { configFinitePositive, configPositiveInt } from './configFields';
import { RopeScaling, ropeInvFreq } from './rope';

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
  return configFinitePositive('Llama', value, field);
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
