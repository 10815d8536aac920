// The Hugging Face model families the checkpoint front end builds ONNX graphs for: config.json's model_type →
// the family's builder (in the HF [out, in] weight layout, weights referenced where they are stored) and the
// tensors it reads. Any other model_type is refused with the list of supported ones.

import { onnxTypeOf } from '../formats/safetensors';
import type { ModelProto } from '../onnx/proto';
import { buildLlamaModel, LlamaConfig, llamaTensorShapes, LLAMA_VARIANTS, LlamaWeights } from './llama';
import { buildMambaModel, MambaConfig, mambaTensorShapes } from './mamba';
import { buildOptModel, OptConfig, optTensorShapes } from './opt';

export interface HfFamily {
  /** The builder's name (`llama` serves the Llama-like families of LLAMA_VARIANTS). */
  builder: string;
  /** Every tensor the graph reads, with its dims ([out, in] for Linear weights); `stored` = the checkpoint's
   *  tensor names → their safetensors dtypes. */
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

/** OPT checkpoints saved from OPTModel (facebook/opt-*) name tensors `decoder.…`, those from OPTForCausalLM `model.decoder.…`. */
const optPrefix = (stored: ReadonlyMap<string, string>): string => (stored.has('decoder.embed_tokens.weight') ? '' : 'model.');

const OPT: HfFamily = {
  builder: 'opt',
  tensorShapes: (config, stored) => optTensorShapes(config as unknown as OptConfig, optPrefix(stored)),
  build: (config, weights, stored) => buildOptModel(config as unknown as OptConfig, weights, optPrefix(stored)),
};

const MAMBA: HfFamily = {
  builder: 'mamba',
  tensorShapes: (config) => mambaTensorShapes(config as unknown as MambaConfig),
  build: (config, weights) => buildMambaModel(config as unknown as MambaConfig, weights),
};

const FAMILIES: Readonly<Record<string, HfFamily>> = {
  ...Object.fromEntries(Object.keys(LLAMA_VARIANTS).map((t) => [t, LLAMA])),
  opt: OPT,
  mamba: MAMBA,
};

export const SUPPORTED_MODEL_TYPES: readonly string[] = Object.keys(FAMILIES);

/** The family of a config's model_type; `file` names the config in the error for any other. */
export function hfFamily(modelType: unknown, file: string): HfFamily {
  const family = typeof modelType === 'string' ? FAMILIES[modelType] : undefined;
  if (!family) {
    const what = typeof modelType === 'string' ? `model_type '${modelType}'` : `no model_type (${JSON.stringify(modelType ?? null)})`;
    throw new Error(`${file}: ${what} is not supported; supported model types: ${SUPPORTED_MODEL_TYPES.join(', ')}`);
  }
  return family;
}
