// The Hugging Face model families the checkpoint front end builds ONNX graphs for: config.json's model_type →
// the family's builder (in the HF [out, in] weight layout, weights referenced where they are stored) and the
// tensors it reads. Any other model_type is refused with the list of supported ones. A family yields its tensors
// lazily with the config field behind each dim, so the checkpoint checks the config against the stored shapes
// (models/expected.ts) before anything is sized from config numbers.

import { onnxTypeOf } from '../formats/safetensors';
import type { ModelProto } from '../onnx/proto';
import type { ExpectedTensor } from './expected';
import { buildGpt2Model, Gpt2Config, gpt2ExpectedTensors, gpt2Prefix } from './gpt2';
import { buildNeoxModel, NeoxConfig, neoxExpectedTensors } from './gptNeox';
import { buildLlamaModel, LlamaConfig, llamaExpectedTensors, LLAMA_VARIANTS, LlamaWeights } from './llama';
import { buildMambaModel, MambaConfig, mambaExpectedTensors } from './mamba';
import { buildMoeModel, MoeConfig, moeExpectedTensors } from './moe';
import { buildOptModel, OptConfig, optExpectedTensors } from './opt';

export interface HfFamily {
  /** The builder's name (`llama` serves the Llama-like families of LLAMA_VARIANTS). */
  builder: string;
  /** Every tensor the graph reads, in order, with its dims ([out, in] for Linear weights) and the config field
   *  behind each; `stored` = the checkpoint's tensor names → their safetensors dtypes. Lazy: the checker stops at
   *  the first stored disagreement, so nothing is sized from config numbers before they are checked. */
  expectedTensors(config: Record<string, unknown>, stored: ReadonlyMap<string, string>): Iterable<ExpectedTensor>;
  /** The graph; `weights` hold every tensor of expectedTensors (typically references into the checkpoint files). */
  build(config: Record<string, unknown>, weights: LlamaWeights, stored: ReadonlyMap<string, string>): ModelProto;
}

const LLAMA: HfFamily = {
  builder: 'llama',
  expectedTensors: (config) => llamaExpectedTensors(config as unknown as LlamaConfig),
  build: (config, weights, stored) => {
    const embedDtype = stored.get('model.embed_tokens.weight');
    return buildLlamaModel(config as unknown as LlamaConfig, weights, { layout: 'out_in', embedType: embedDtype ? onnxTypeOf(embedDtype) : undefined });
  },
};

/** A family whose tensor names start with a prefix read off the stored names (`prefixOf`). */
function prefixedFamily<C>(
  builder: string,
  prefixOf: (stored: ReadonlyMap<string, string>) => string,
  tensors: (config: C, prefix: string) => Iterable<ExpectedTensor>,
  build: (config: C, weights: LlamaWeights, prefix: string) => ModelProto,
): HfFamily {
  return {
    builder,
    expectedTensors: (config, stored) => tensors(config as unknown as C, prefixOf(stored)),
    build: (config, weights, stored) => build(config as unknown as C, weights, prefixOf(stored)),
  };
}

/** OPT checkpoints saved from OPTModel (facebook/opt-*) name tensors `decoder.…`, those from OPTForCausalLM `model.decoder.…`. */
const optPrefix = (stored: ReadonlyMap<string, string>): string => (stored.has('decoder.embed_tokens.weight') ? '' : 'model.');
const OPT = prefixedFamily<OptConfig>('opt', optPrefix, optExpectedTensors, buildOptModel);
const GPT2 = prefixedFamily<Gpt2Config>('gpt2', gpt2Prefix, gpt2ExpectedTensors, buildGpt2Model);
const noPrefix = (): string => '';
const MAMBA = prefixedFamily<MambaConfig>('mamba', noPrefix, (c) => mambaExpectedTensors(c), (c, w) => buildMambaModel(c, w));
const GPT_NEOX = prefixedFamily<NeoxConfig>('gpt_neox', noPrefix, (c) => neoxExpectedTensors(c), buildNeoxModel);
/** Mixtral, Qwen2-MoE and Qwen3-MoE: Llama-family (Mistral, Qwen2, Qwen3) attention, routed experts (models/moe.ts). */
const moeFamily = (modelType: string): HfFamily =>
  prefixedFamily<MoeConfig>(modelType, noPrefix, (c) => moeExpectedTensors(modelType, c), (c, w) => buildMoeModel(modelType, c, w));

/** A Map, so that a model_type such as "__proto__" or "constructor" finds no built-in object member. */
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
    const what = typeof modelType === 'string' ? `model_type '${modelType.slice(0, 100)}'` : `no model_type (${JSON.stringify(modelType ?? null).slice(0, 100)})`;
    throw new Error(`${file}: ${what} is not supported; supported model types: ${SUPPORTED_MODEL_TYPES.join(', ')}`);
  }
  return family;
}
