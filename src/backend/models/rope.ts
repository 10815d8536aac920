// Rotary position embeddings: the inverse frequencies of each Hugging Face rope type (modeling_rope_utils.py).

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
