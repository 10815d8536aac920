// The Hugging Face model families the checkpoint front end builds ONNX graphs for: config.json's model_type →
// the family's builder (in the HF [out, in] weight layout, weights referenced where they are stored) and the
// tensors it reads. Any other model_type is refused with the list of supported ones.

import { onnxTypeOf } from '../formats/safetensors';
import type { ModelProto } from '../onnx/proto';
import { buildLlamaModel, LlamaConfig, llamaTensorShapes, LLAMA_VARIANTS, LlamaWeights } from './llama';
import { buildGpt2Model, Gpt2Config, gpt2Prefix, gpt2TensorShapes } from './gpt2';
import { buildNeoxModel, NeoxConfig, neoxTensorShapes } from './gptNeox';
import { buildMoeModel, MoeConfig, moeTensorShapes } from './moe';
import { buildMambaModel, MambaConfig, mambaTensorShapes } from './mamba';
import { buildOptModel, OptConfig, optTensorShapes } from './opt';

export interface HfFamily {
  /** The builder's name (`llama` serves the Llama-like families of LLAMA_VARIANTS). */
  builder: string;
  /** Every tensor the graph reads, with its dims as stored ([out, in] for Linear weights, [in, out] for GPT-2's
   *  Conv1D); `stored` = the checkpoint's tensor names → their safetensors dtypes. */
  tensorShapes(config: Record<string, unknown>, stored: ReadonlyMap<string, string>): Map<string, number[]>;
  /** The graph; `weights` hold every tensor of tensorShapes (typically references into the checkpoint files). */
  build(config: Record<string, unknown>, weights: LlamaWeights, stored: ReadonlyMap<string, string>): ModelProto;
}

const LLAMA: HfFamily = {
  builder: 'llama',
  tensorShapes: (config) => llamaTensorShapes(config as unknown as LlamaConfig),
  build: (config, weights, stored) => {
    const embedDtype = stored.get('model.embed_tokens.weight');
    return buildLlamaModel(config as unknown as LlamaConfig, weights, { layout: 'out_in', embedType: embedDtype ? onnxTypeOf(embedDtype) : undefined });
  },
};

/** A family whose tensor names start with a prefix read off the stored names (`prefixOf`). */
function prefixedFamily<C>(
  builder: string,
  prefixOf: (stored: ReadonlyMap<string, string>) => string,
  shapes: (config: C, prefix: string) => Map<string, number[]>,
  build: (config: C, weights: LlamaWeights, prefix: string) => ModelProto,
): HfFamily {
  return {
    builder,
    tensorShapes: (config, stored) => shapes(config as unknown as C, prefixOf(stored)),
    build: (config, weights, stored) => build(config as unknown as C, weights, prefixOf(stored)),
  };
}

/** OPT checkpoints saved from OPTModel (facebook/opt-*) name tensors `decoder.…`, those from OPTForCausalLM `model.decoder.…`. */
const optPrefix = (stored: ReadonlyMap<string, string>): string => (stored.has('decoder.embed_tokens.weight') ? '' : 'model.');
const OPT = prefixedFamily<OptConfig>('opt', optPrefix, optTensorShapes, buildOptModel);
const GPT2 = prefixedFamily<Gpt2Config>('gpt2', gpt2Prefix, gpt2TensorShapes, buildGpt2Model);
const noPrefix = (): string => '';
const MAMBA = prefixedFamily<MambaConfig>('mamba', noPrefix, mambaTensorShapes, (c, w) => buildMambaModel(c, w));
const GPT_NEOX = prefixedFamily<NeoxConfig>('gpt_neox', noPrefix, neoxTensorShapes, buildNeoxModel);
/** Mixtral, Qwen2-MoE and Qwen3-MoE: Llama-family (Mistral, Qwen2, Qwen3) attention, routed experts (models/moe.ts). */
const moeFamily = (modelType: string): HfFamily =>
  prefixedFamily<MoeConfig>(modelType, noPrefix, (c) => moeTensorShapes(modelType, c), (c, w) => buildMoeModel(modelType, c, w));

const FAMILIES: ReadonlyMap<string, HfFamily> = new Map([
  ...Object.keys(LLAMA_VARIANTS).map((t): [string, HfFamily] => [t, LLAMA]),
  ['opt', OPT],
  ['mamba', MAMBA],
  ['gpt2', GPT2],
  ['gpt_neox', GPT_NEOX],
  ['mixtral', moeFamily('mixtral')],
  ['qwen2_moe', moeFamily('qwen2_moe')],
  ['qwen3_moe', moeFamily('qwen3_moe')],
]);

export const SUPPORTED_MODEL_TYPES: readonly string[] = [...FAMILIES.keys()];

/** The family of a config's model_type; `file` names the config in the error for any other. */
export function hfFamily(modelType: unknown, file: string): HfFamily {
  const family = typeof modelType === 'string' ? FAMILIES.get(modelType) : undefined;
  if (!family) {
    const what = typeof modelType === 'string' ? `model_type '${modelType}'` : `no model_type (${JSON.stringify(modelType ?? null)})`;
    throw new Error(`${file}: ${what} is not supported; supported model types: ${SUPPORTED_MODEL_TYPES.join(', ')}`);
  }
  return family;
}
