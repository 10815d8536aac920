// An independent float64 forward of MixtralForCausalLM, Qwen2MoeForCausalLM and Qwen3MoeForCausalLM, written from
// Hugging Face transformers' modeling_mixtral.py (MixtralSparseMoeBlock), modeling_qwen2_moe.py
// (Qwen2MoeSparseMoeBlock) and modeling_qwen3_moe.py (Qwen3MoeSparseMoeBlock: no shared expert, Qwen3 attention):
// test/helpers/llamaReference.ts's attention blocks with the sparse MoE block in place of the MLP. Routing is
// per token as HF does it (softmax, top-k, optional renormalisation, only the chosen experts evaluated).

import type { MoeConfig } from '../../src/backend/models/moe';
import { getter, linear, Weights } from './gptReference';
import { referenceForward } from './llamaReference';

const silu = (v: number): number => v / (1 + Math.exp(-v));

/** What layer `layer`'s MoE block saw for one token: its input and each expert's routing weight (0: not routed). */
export interface RoutedToken { layer: number; x: Float64Array; g: Float64Array }

/** Logits [B, S, V] (NaN at padded positions); `seen` receives every real and padded token's routing. */
export function moeReference(modelType: 'mixtral' | 'qwen2_moe' | 'qwen3_moe', config: MoeConfig, W: Weights, ids: number[][], mask: number[][], seen?: (t: RoutedToken) => void): Float64Array {
  const get = getter(W);
  const mixtral = modelType === 'mixtral';
  const module = mixtral ? 'block_sparse_moe' : 'mlp';
  const proj = mixtral ? ['w1', 'w3', 'w2'] : ['gate_proj', 'up_proj', 'down_proj'];
  const E = (mixtral ? config.num_local_experts : config.num_experts) as number;
  const K = config.num_experts_per_tok as number;
  const sparse = (l: number) => mixtral || (!(config.mlp_only_layers ?? []).includes(l) && (l + 1) % (config.decoder_sparse_step ?? 1) === 0);
  const swiglu = (x: Float64Array, prefix: string, names: string[]): Float64Array => {
    const up = linear(x, get(`${prefix}.${names[1]}.weight`));
    const act = linear(x, get(`${prefix}.${names[0]}.weight`)).map((v, i) => silu(v) * up[i]);
    return linear(act, get(`${prefix}.${names[2]}.weight`));
  };
  const mlp = (x: Float64Array, l: number): Float64Array => {
    const p = `model.layers.${l}`;
    if (!sparse(l)) return swiglu(x, `${p}.mlp`, ['gate_proj', 'up_proj', 'down_proj']);
    const logits = linear(x, get(`${p}.${module}.gate.weight`));
    const m = Math.max(...logits);
    const ex = logits.map((v) => Math.exp(v - m));
    const z = ex.reduce((a, v) => a + v, 0);
    const probs = ex.map((v) => v / z);
    const chosen = [...probs.keys()].sort((a, b) => probs[b] - probs[a]).slice(0, K);
    const sum = mixtral || config.norm_topk_prob ? chosen.reduce((a, j) => a + probs[j], 0) : 1;
    const g = new Float64Array(E);
    for (const j of chosen) g[j] = probs[j] / sum;
    seen?.({ layer: l, x, g });
    const y = new Float64Array(x.length);
    for (const j of chosen) swiglu(x, `${p}.${module}.experts.${j}`, proj).forEach((v, c) => { y[c] += g[j] * v; });
    if (modelType === 'qwen2_moe') {
      const sg = 1 / (1 + Math.exp(-linear(x, get(`${p}.mlp.shared_expert_gate.weight`))[0]));
      swiglu(x, `${p}.mlp.shared_expert`, ['gate_proj', 'up_proj', 'down_proj']).forEach((v, c) => { y[c] += sg * v; });
    }
    return y;
  };
  const tensors = new Map([...W].map(([n, data]) => [n, { data, dims: [] }]));
  return referenceForward({ ...config, model_type: mixtral ? 'mistral' : modelType === 'qwen2_moe' ? 'qwen2' : 'qwen3' }, tensors, ids, mask, 'float32', mlp);
}
