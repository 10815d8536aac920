// Deterministic random weights for the demo and the tests, initialised as HF's PreTrainedModel does.

import { normalRng } from '../random';
import { LlamaConfig, llamaTensorShapes, resolveLlamaConfig } from './llamaConfig';
import type { LlamaTensor } from './weights';

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
