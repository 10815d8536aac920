// Mixture-of-experts ONNX graph builders: Hugging Face MixtralForCausalLM, Qwen2MoeForCausalLM and
// Qwen3MoeForCausalLM are Llama-family (Mistral, Qwen2, Qwen3) attention blocks whose SwiGLU MLP is replaced by top-k routed experts (buildLlamaModel's `mlp` option); HF layout,
// weights referenced where they are stored, names as in the checkpoint.
//
// The maths is HF's (modeling_mixtral.py MixtralSparseMoeBlock, modeling_qwen2_moe.py Qwen2MoeSparseMoeBlock):
//  - router logits = gate(x) ([experts, hidden], no bias); p = softmax(logits); the top num_experts_per_tok of p
//    are kept, renormalised to sum 1 (Mixtral always, Qwen2-MoE when norm_topk_prob); y = Σ_e g_e(x)·E_e(x) with
//    E_e(x) = down(silu(gate(x)) · up(x)) (Mixtral: w1 = gate, w3 = up, w2 = down);
//  - Qwen2-MoE adds the shared expert, y += sigmoid(shared_expert_gate(x)) · shared_expert(x), and keeps the
//    plain MLP (intermediate_size) in layers listed in mlp_only_layers or off the decoder_sparse_step grid;
//  - Qwen3-MoE (modeling_qwen3_moe.py Qwen3MoeSparseMoeBlock) is Qwen2-MoE without the shared expert, on Qwen3
//    attention (per-head q_norm/k_norm).
// Routing is computed densely: every expert runs on every token and its output is multiplied by its weight g_e
// (0 for tokens not routed to it), so the graph costs experts / num_experts_per_tok times the routed MoE FLOPs
// (Mixtral 4×, Qwen1.5-MoE-A2.7B 15×); exact for the routed result, simple, and the same for every runtime.
//
// For pruning, the graph's metadata tells layer discovery (pipeline/layers.ts):
//  - the routers (and Qwen2-MoE's shared_expert_gate) stay dense: they choose the experts, and a pruned router
//    changes which expert a token goes to, an error no layer-wise reconstruction sees;
//  - each expert projection's calibration statistics weight token t by g_e(t)² (0 where not routed): the block
//    output carries expert e's output error multiplied by g_e, so the squared error its down projection adds is
//    g_e²·‖ΔW·a‖² exactly; for gate/up the error passes through the SwiGLU, and g_e² is its first-order weight too
//    (the error reaching the block output is g_e·J_e·ΔW·x). The shared expert is weighted by its sigmoid gate².

import type { ModelProto } from '../onnx/proto';
import { DENSE_WEIGHTS_KEY, TOKEN_WEIGHTS_KEY } from '../pipeline/layers';
import { configPositiveInt } from './configFields';
import type { Emitter } from './emitter';
import { Dim, expected, ExpectedTensor, shapesOf } from './expected';
import { buildLlamaModel, LlamaConfig, LlamaWeights } from './llama';
import { llamaExpectedTensors, resolveLlamaSizes } from './llamaConfig';
import { weightOf } from './weights';

/** The MoE fields of Hugging Face MixtralConfig / Qwen2MoeConfig the builder reads, besides Llama's. */
export interface MoeConfig extends LlamaConfig {
  /** Mixtral: experts per layer (default 8). */
  num_local_experts?: number;
  /** Qwen2-MoE: experts per layer (default 60). */
  num_experts?: number;
  /** Routed experts per token (Mixtral default 2, Qwen2-MoE 4). */
  num_experts_per_tok?: number;
  /** Qwen2-MoE: each routed expert's intermediate size (default 1408). */
  moe_intermediate_size?: number;
  /** Qwen2-MoE: the shared expert's intermediate size (default 5632). */
  shared_expert_intermediate_size?: number;
  /** Qwen2-MoE: renormalise the top-k weights (default false; Mixtral always does). */
  norm_topk_prob?: boolean;
  /** Qwen2-MoE: layer i is sparse iff (i + 1) % decoder_sparse_step = 0 and i is not in mlp_only_layers. */
  decoder_sparse_step?: number;
  mlp_only_layers?: number[];
}

/** How one family names and routes its experts. */
interface MoeFamily {
  /** The MoE module under `model.layers.N.`. */
  module: string;
  /** gate, up, down projection names of an expert. */
  proj: [string, string, string];
  experts: (c: MoeConfig) => unknown;
  topK: (c: MoeConfig) => unknown;
  expertInner: (c: MoeConfig) => unknown;
  normalize: (c: MoeConfig) => boolean;
  /** The shared expert's intermediate size (0: none). */
  sharedInner: (c: MoeConfig) => unknown;
  sparse: (c: MoeConfig, layer: number) => boolean;
  /** Attention as this Llama-family model_type (Mixtral: Mistral's, a sliding window on every layer; Qwen2-MoE:
   *  Qwen2's q/k/v biases and windows). */
  attention: string;
}

const SWIGLU: [string, string, string] = ['gate_proj', 'up_proj', 'down_proj'];

/** Qwen2-MoE, Qwen3-MoE: routed experts in layer i iff (i + 1) % decoder_sparse_step = 0 and i is not in mlp_only_layers. */
const sparseStep = (c: MoeConfig, i: number): boolean => !(c.mlp_only_layers ?? []).includes(i) && (i + 1) % (c.decoder_sparse_step ?? 1) === 0;

const MOE_FAMILIES: ReadonlyMap<string, MoeFamily> = new Map([
  ['mixtral', {
    module: 'block_sparse_moe', proj: ['w1', 'w3', 'w2'] as [string, string, string],
    experts: (c: MoeConfig) => c.num_local_experts ?? 8, topK: (c: MoeConfig) => c.num_experts_per_tok ?? 2,
    expertInner: (c: MoeConfig) => c.intermediate_size, normalize: () => true, sharedInner: () => 0, sparse: () => true, attention: 'mistral',
  }],
  ['qwen2_moe', {
    module: 'mlp', proj: SWIGLU,
    experts: (c: MoeConfig) => c.num_experts ?? 60, topK: (c: MoeConfig) => c.num_experts_per_tok ?? 4,
    expertInner: (c: MoeConfig) => c.moe_intermediate_size ?? 1408, normalize: (c: MoeConfig) => c.norm_topk_prob ?? false,
    sharedInner: (c: MoeConfig) => c.shared_expert_intermediate_size ?? 5632,
    sparse: sparseStep,
    attention: 'qwen2',
  }],
  ['qwen3_moe', {
    module: 'mlp', proj: SWIGLU,
    experts: (c: MoeConfig) => c.num_experts ?? 128, topK: (c: MoeConfig) => c.num_experts_per_tok ?? 8,
    expertInner: (c: MoeConfig) => c.moe_intermediate_size ?? 768, normalize: (c: MoeConfig) => c.norm_topk_prob ?? false,
    sharedInner: () => 0, sparse: sparseStep, attention: 'qwen3',
  }],
]);

export const MOE_MODEL_TYPES: readonly string[] = [...MOE_FAMILIES.keys()];

export interface ResolvedMoe {
  family: MoeFamily;
  hidden: number;
  experts: number;
  topK: number;
  expertInner: number;
  sharedInner: number;
  normalize: boolean;
  /** Per layer: routed experts (true) or the plain MLP. */
  sparse: boolean[];
  /** The config for the Llama builder (attention, norms, embeddings, head). */
  llama: LlamaConfig;
}

/** The MoE config's sizes: numbers only, nothing sized from them (see expected.ts). */
function resolveMoeSizes(modelType: string, config: MoeConfig): Omit<ResolvedMoe, 'sparse'> & { layers: number } {
  const family = MOE_FAMILIES.get(modelType);
  if (!family) throw new Error(`MoE: model_type '${modelType}' is not one of ${MOE_MODEL_TYPES.join(', ')}`);
  const llama: LlamaConfig = { ...config, model_type: family.attention };
  const l = resolveLlamaSizes(llama);
  const int = (v: unknown, field: string) => configPositiveInt(modelType, v, field);
  const experts = int(family.experts(config), expertsField(modelType));
  const topK = int(family.topK(config), 'num_experts_per_tok');
  if (topK > experts) throw new Error(`${modelType} config: num_experts_per_tok (${topK}) exceeds the ${experts} experts`);
  const shared = family.sharedInner(config);
  if (modelType !== 'mixtral') int(config.decoder_sparse_step ?? 1, 'decoder_sparse_step');
  return {
    family,
    hidden: l.hiddenSize,
    layers: l.layers,
    experts,
    topK,
    expertInner: int(family.expertInner(config), expertInnerField(modelType)),
    sharedInner: shared === 0 ? 0 : int(shared, 'shared_expert_intermediate_size'),
    normalize: family.normalize(config),
    llama,
  };
}

const expertsField = (modelType: string) => (modelType === 'mixtral' ? 'num_local_experts' : 'num_experts');
const expertInnerField = (modelType: string) => (modelType === 'mixtral' ? 'intermediate_size' : 'moe_intermediate_size');

export function resolveMoeConfig(modelType: string, config: MoeConfig): ResolvedMoe {
  const m = resolveMoeSizes(modelType, config);
  return { ...m, sparse: Array.from({ length: m.layers }, (_, i) => m.family.sparse(config, i)) };
}

/**
 * Every tensor the graph reads, in checkpoint order, each dim with its config field ([out, in] for Linear
 * weights): the Llama-family tensors, with each sparse layer's MLP replaced by its router and experts.
 */
export function* moeExpectedTensors(modelType: string, config: MoeConfig): Generator<ExpectedTensor> {
  const m = resolveMoeSizes(modelType, config);
  const h: Dim = [m.hidden, 'hidden_size'];
  const swiglu = function* (p: string, proj: readonly string[], inner: Dim, because?: string) {
    yield expected(`${p}.${proj[0]}.weight`, [inner, h], because);
    yield expected(`${p}.${proj[1]}.weight`, [inner, h]);
    yield expected(`${p}.${proj[2]}.weight`, [h, inner]);
  };
  for (const t of llamaExpectedTensors(m.llama)) {
    const mlp = /^model\.layers\.(\d+)\.mlp\.(\w+)\.weight$/.exec(t.name);
    if (!mlp || !m.family.sparse(config, Number(mlp[1]))) {
      yield t;
      continue;
    }
    if (mlp[2] !== SWIGLU[0]) continue; // the sparse layer's tensors are yielded once, in place of its gate_proj
    const moe = `model.layers.${mlp[1]}.${m.family.module}`;
    yield expected(`${moe}.gate.weight`, [[m.experts, expertsField(modelType)], h]);
    for (let j = 0; j < m.experts; j++) {
      yield* swiglu(`${moe}.experts.${j}`, m.family.proj, [m.expertInner, expertInnerField(modelType)], expertsField(modelType));
    }
    if (m.sharedInner) {
      yield* swiglu(`${moe}.shared_expert`, SWIGLU, [m.sharedInner, 'shared_expert_intermediate_size'], 'shared_expert_intermediate_size');
      yield expected(`${moe}.shared_expert_gate.weight`, [[1, '1'], h]);
    }
  }
}

export const moeTensorShapes = (modelType: string, config: MoeConfig): Map<string, number[]> => shapesOf(moeExpectedTensors(modelType, config));

/**
 * Builds the ONNX graph of a MixtralForCausalLM, Qwen2MoeForCausalLM or Qwen3MoeForCausalLM (inputs `input_ids`, `attention_mask`,
 * output `logits`), with the routers kept dense and the experts' token weights in its metadata (see the top).
 */
export function buildMoeModel(modelType: string, config: MoeConfig, weights: LlamaWeights): ModelProto {
  const m = resolveMoeConfig(modelType, config);
  const w = (name: string) => weightOf(weights, name);
  const dense: Record<string, string> = {};
  const tokenWeights: Record<string, string> = {};

  const swiglu = (e: Emitter, scope: string, x: string, prefix: string, proj: readonly string[]): string => {
    const lin = (sc: string, input: string, name: string) => e.gemm(`${scope}/${sc}`, input, `${prefix}.${name}.weight`, w(`${prefix}.${name}.weight`));
    const gate = lin(proj[0], x, proj[0]);
    const act = e.op1(scope, 'Mul', [gate, e.op1(scope, 'Sigmoid', [gate])]);
    return lin(proj[2], e.op1(scope, 'Mul', [act, lin(proj[1], x, proj[1])]), proj[2]);
  };
  /** An expert whose output the block scales by g [N, 1]: its projections' calibration weighs token t by g_t². */
  const weighByGate = (g: string, prefix: string, proj: readonly string[]) => {
    for (const p of proj) tokenWeights[`${prefix}.${p}.weight`] = g;
  };

  /** [N, E]: each token's weight g_e for expert e, 0 where e is not among its top k. */
  const route = (e: Emitter, scope: string, x: string, mp: string): string => {
    dense[`${mp}.gate.weight`] = 'MoE router (kept dense: it chooses the experts)';
    const probs = e.op1(scope, 'Softmax', [e.gemm(`${scope}/gate`, x, `${mp}.gate.weight`, w(`${mp}.gate.weight`))], { axis: -1 });
    const [topK, idx] = e.op(scope, 'TopK', [probs, e.ints(scope, [m.topK])], { axis: -1 }, 2);
    const top = m.normalize ? e.op1(scope, 'Div', [topK, e.op1(scope, 'ReduceSum', [topK, e.ints(scope, [-1])], { keepdims: 1 })]) : topK;
    const zeros = e.op1(scope, 'ConstantOfShape', [e.op1(scope, 'Shape', [probs])]); // float 0 by default
    return e.op1(scope, 'ScatterElements', [zeros, idx, top], { axis: 1 });
  };

  const moe = (e: Emitter, x: string, i: number): string => {
    const p = `model.layers.${i}`;
    if (!m.sparse[i]) return swiglu(e, `/model/layers.${i}/mlp`, x, `${p}.mlp`, SWIGLU);
    const scope = `/model/layers.${i}/${m.family.module}`;
    const mp = `${p}.${m.family.module}`;
    const routing = route(e, scope, x, mp);
    let y = '';
    for (let j = 0; j < m.experts; j++) {
      const es = `${scope}/experts.${j}`;
      const g = e.op1(es, 'Slice', [routing, e.ints(es, [j]), e.ints(es, [j + 1]), e.ints(es, [1])]); // [N, 1]
      weighByGate(g, `${mp}.experts.${j}`, m.family.proj);
      const out = e.op1(es, 'Mul', [swiglu(e, es, x, `${mp}.experts.${j}`, m.family.proj), g]);
      y = y ? e.op1(scope, 'Add', [y, out]) : out;
    }
    if (m.sharedInner) {
      const ss = `${scope}/shared_expert`;
      dense[`${mp}.shared_expert_gate.weight`] = 'the shared expert\'s gate (kept dense, like the router)';
      const sg = e.op1(ss, 'Sigmoid', [e.gemm(`${scope}/shared_expert_gate`, x, `${mp}.shared_expert_gate.weight`, w(`${mp}.shared_expert_gate.weight`))]);
      weighByGate(sg, `${mp}.shared_expert`, SWIGLU);
      y = e.op1(scope, 'Add', [y, e.op1(ss, 'Mul', [swiglu(e, ss, x, `${mp}.shared_expert`, SWIGLU), sg])]);
    }
    return y;
  };

  const model = buildLlamaModel(m.llama, weights, { layout: 'out_in', name: modelType, mlp: moe, tensorShapes: moeTensorShapes(modelType, config) });
  model.docString = `${modelType} built by PruneKit from a Hugging Face config (${m.sparse.length} layers, ${m.experts} experts, top ${m.topK}, dense routing)`;
  const meta = model.metadataProps ?? [];
  for (const p of meta) if (p.key === 'prunekit.builder') p.value = modelType;
  model.metadataProps = meta;
  meta.push(
    { key: DENSE_WEIGHTS_KEY, value: JSON.stringify(dense) },
    { key: TOKEN_WEIGHTS_KEY, value: JSON.stringify(tokenWeights) },
  );
  return model;
}
