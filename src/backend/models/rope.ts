// Rotary position embeddings: the inverse frequencies of each Hugging Face rope type, as
// transformers' modeling_rope_utils.py computes them (`ROPE_INIT_FUNCTIONS`: default, linear, dynamic, yarn,
// longrope, llama3), and the two that depend on the sequence length (dynamic NTK; longrope's short/long
// factors, chosen as Phi-3's rotary embedding does per forward) described for the graph to finish at run time.

import { configFinitePositive } from './configFields';

const finitePositive = (value: unknown, field: string): number => configFinitePositive('Llama', value, field);

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
  /** yarn */
  attention_factor?: number;
  beta_fast?: number;
  beta_slow?: number;
  mscale?: number;
  mscale_all_dim?: number;
  /** yarn: round the correction range to whole dims (default true). */
  truncate?: boolean;
  /** longrope (`su` in early Phi-3 configs): one factor per rotary frequency. */
  short_factor?: number[];
  long_factor?: number[];
}

export const ROPE_TYPES = ['default', 'linear', 'dynamic', 'yarn', 'longrope', 'llama3'] as const;

/** A rotary embedding as the graph computes it: cos and sin of position × invFreq over the first `dim` dims of
 *  each head, multiplied by `attentionFactor`. */
export interface Rotary {
  /** Rotated dims per head (head_dim × partial_rotary_factor). */
  dim: number;
  /** Float32-rounded, dim / 2 of them (longrope: the short factors'). */
  invFreq: Float32Array;
  attentionFactor: number;
  /** longrope: these frequencies replace invFreq when the largest position + 1 exceeds originalMax. */
  long?: { invFreq: Float32Array; originalMax: number };
  /** dynamic NTK: when the largest position + 1 (L) exceeds maxPositions, the base becomes
   *  base · (factor·L/maxPositions − (factor − 1))^(dim/(dim − 2)). */
  dynamic?: { base: number; factor: number; maxPositions: number };
}

/** What a rope type reads outside rope_scaling. */
export interface RopeContext {
  maxPositions: number;
  /** Phi-3's top-level `original_max_position_embeddings` (longrope). */
  originalMaxPositions?: number;
}

/** theta^(−2i/dim) for i < dim/2, in float32 as torch computes `1 / base ** (arange(0, dim, 2).float() / dim)`. */
function baseInvFreq(dim: number, theta: number, extFactors?: number[]): Float32Array {
  const inv = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const e = Math.fround((2 * i) / dim);
    inv[i] = Math.fround(1 / Math.fround(Math.fround(extFactors?.[i] ?? 1) * Math.fround(theta ** e)));
  }
  return inv;
}

function ropeType(scaling: RopeScaling | null | undefined): string {
  const type = scaling ? (scaling.rope_type ?? scaling.type ?? 'default') : 'default';
  return type === 'su' ? 'longrope' : type;
}

/** Rotary inverse frequencies as HF computes them in float32 (`rope_init_fn`) for the rope types that do not
 *  depend on the sequence length: default, linear, llama3 and yarn. */
export function ropeInvFreq(headDim: number, theta: number, scaling: RopeScaling | null | undefined, ctx: RopeContext = { maxPositions: 2048 }): Float32Array {
  const type = ropeType(scaling);
  if (type === 'dynamic' || type === 'longrope') return resolveRotary(headDim, theta, scaling, ctx).invFreq;
  return staticRope(headDim, theta, scaling, ctx).invFreq;
}

/** The rotary embedding of `dim` rotated dims for a config's rope_scaling (any of ROPE_TYPES). */
export function resolveRotary(dim: number, theta: number, scaling: RopeScaling | null | undefined, ctx: RopeContext): Rotary {
  if (dim % 2 !== 0) throw new Error(`Llama config: head_dim ${dim} must be even for rotary embeddings`);
  const type = ropeType(scaling);
  if (type === 'dynamic') {
    const factor = finitePositive(scaling?.factor, 'rope_scaling.factor (dynamic)');
    // At lengths up to max_position_embeddings HF's dynamic rope is the default one.
    return { dim, invFreq: baseInvFreq(dim, theta), attentionFactor: 1, dynamic: { base: theta, factor, maxPositions: ctx.maxPositions } };
  }
  if (type === 'longrope') return longRope(dim, theta, scaling as RopeScaling, ctx);
  return staticRope(dim, theta, scaling, ctx);
}

function staticRope(dim: number, theta: number, scaling: RopeScaling | null | undefined, ctx: RopeContext): Rotary {
  if (dim % 2 !== 0) throw new Error(`Llama config: head_dim ${dim} must be even for rotary embeddings`);
  const inv = baseInvFreq(dim, theta);
  const type = ropeType(scaling);
  const plain = (invFreq: Float32Array, attentionFactor = 1): Rotary => ({ dim, invFreq, attentionFactor });
  if (type === 'default') return plain(inv);
  const factor = finitePositive(scaling?.factor, `rope_scaling.factor (${type})`);
  if (type === 'linear') return plain(inv.map((f) => Math.fround(f / factor)));
  if (type === 'llama3') return plain(llama3(inv, factor, scaling as RopeScaling));
  if (type === 'yarn') return yarn(dim, theta, factor, scaling as RopeScaling, ctx);
  throw new Error(`Llama config: rope_scaling type '${type}' is not supported (supported: ${ROPE_TYPES.join(', ')})`);
}

/** Llama 3.1: low frequencies divided by factor, high ones kept, a smooth blend between. */
function llama3(inv: Float32Array, factor: number, scaling: RopeScaling): Float32Array {
  const low = finitePositive(scaling.low_freq_factor, 'rope_scaling.low_freq_factor');
  const high = finitePositive(scaling.high_freq_factor, 'rope_scaling.high_freq_factor');
  const oldLen = finitePositive(scaling.original_max_position_embeddings, 'rope_scaling.original_max_position_embeddings');
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

/** YaRN (arXiv 2309.00071): frequencies blended between interpolated (÷ factor) and extrapolated (kept) by a
 *  linear ramp over the dims between the correction range of beta_fast and beta_slow rotations within
 *  original_max_position_embeddings; cos and sin scaled by attention_factor (default
 *  mscale(factor)[/ mscale(factor, mscale_all_dim)], mscale(s, m) = 0.1·m·ln(s) + 1 for s > 1). */
function yarn(dim: number, theta: number, factor: number, scaling: RopeScaling, ctx: RopeContext): Rotary {
  const mscale = (s: number, m = 1) => (s <= 1 ? 1 : 0.1 * m * Math.log(s) + 1);
  const attentionFactor = scaling.attention_factor
    ?? (scaling.mscale && scaling.mscale_all_dim ? mscale(factor, scaling.mscale) / mscale(factor, scaling.mscale_all_dim) : mscale(factor));
  const betaFast = scaling.beta_fast || 32;
  const betaSlow = scaling.beta_slow || 1;
  const truncate = scaling.truncate ?? true;
  const maxPos = scaling.original_max_position_embeddings ?? ctx.maxPositions;
  const correctionDim = (rotations: number) => (dim * Math.log(maxPos / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
  const low = Math.max(truncate ? Math.floor(correctionDim(betaFast)) : correctionDim(betaFast), 0);
  let high = Math.min(truncate ? Math.ceil(correctionDim(betaSlow)) : correctionDim(betaSlow), dim - 1);
  if (low === high) high += 0.001; // HF: prevent singularity
  const inv = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const posFreq = Math.fround(theta ** Math.fround((2 * i) / dim));
    const extrapolation = Math.fround(1 / posFreq);
    const interpolation = Math.fround(1 / Math.fround(factor * posFreq));
    const ramp = Math.fround(Math.min(Math.max(Math.fround((i - low) / (high - low)), 0), 1));
    const extrapolationFactor = Math.fround(1 - ramp);
    inv[i] = Math.fround(Math.fround(interpolation * Math.fround(1 - extrapolationFactor)) + Math.fround(extrapolation * extrapolationFactor));
  }
  return { dim, invFreq: inv, attentionFactor };
}

/** LongRoPE (Phi-3): per-frequency rescale factors, short ones up to the original context, long ones past it;
 *  cos and sin scaled by √(1 + ln(factor)/ln(original)) with factor = max_position_embeddings / original. */
function longRope(dim: number, theta: number, scaling: RopeScaling, ctx: RopeContext): Rotary {
  const factors = (field: 'short_factor' | 'long_factor'): number[] => {
    const f = scaling[field];
    if (!Array.isArray(f) || f.length !== dim / 2 || !f.every((x) => typeof x === 'number' && x > 0)) {
      throw new Error(`Llama config: rope_scaling.${field} must list ${dim / 2} positive numbers (one per rotary frequency)`);
    }
    return f;
  };
  let originalMax = ctx.maxPositions;
  let factor = scaling.factor ?? 1;
  if (ctx.originalMaxPositions !== undefined) {
    originalMax = ctx.originalMaxPositions;
    factor = ctx.maxPositions / originalMax;
  }
  const attentionFactor = scaling.attention_factor ?? (factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(originalMax)));
  return {
    dim,
    invFreq: baseInvFreq(dim, theta, factors('short_factor')),
    attentionFactor,
    long: { invFreq: baseInvFreq(dim, theta, factors('long_factor')), originalMax },
  };
}
