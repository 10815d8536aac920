// The weights a graph builder reads: values (LlamaTensor) or references to stored bytes (TensorRef), by Hugging
// Face tensor name, and the check of a checkpoint's tensors against the shapes a config implies.

import { DataType, TensorProto } from '../onnx/proto';

/** A weight: row-major float32 values and their dims (HF layout: Linear weights are [out, in]). */
export interface LlamaTensor {
  data: Float32Array;
  dims: number[];
}

/** A weight whose bytes live elsewhere: the builder uses `initializer` (renamed to the HF tensor name) as is.
 *  It must be FLOAT with these dims (typically external data pointing into a checkpoint file). */
export interface TensorRef {
  dims: number[];
  initializer: TensorProto;
}

/** Weights by Hugging Face tensor name (`model.layers.0.self_attn.q_proj.weight`, …). */
export type LlamaWeights = ReadonlyMap<string, LlamaTensor | TensorRef> | Readonly<Record<string, LlamaTensor | TensorRef>>;

export function isTensorRef(t: LlamaTensor | TensorRef): t is TensorRef {
  return 'initializer' in t;
}

function lookup(weights: LlamaWeights, name: string): LlamaTensor | TensorRef | undefined {
  const map = weights as ReadonlyMap<string, LlamaTensor | TensorRef>;
  if (typeof map.get === 'function') return map.get(name);
  return Object.prototype.hasOwnProperty.call(weights, name) ? (weights as Readonly<Record<string, LlamaTensor | TensorRef>>)[name] : undefined;
}

/** Checks every tensor `shapes` names against `weights` (present, dims, value count); throws listing the problems. */
export function checkWeights(family: string, shapes: ReadonlyMap<string, number[]>, weights: LlamaWeights): void {
  const problems: string[] = [];
  for (const [name, dims] of shapes) {
    const t = lookup(weights, name);
    if (!t) { problems.push(`${name} is missing`); continue; }
    const count = dims.reduce((a, b) => a * b, 1);
    if (t.dims.length !== dims.length || t.dims.some((d, k) => d !== dims[k])) problems.push(`${name} is [${t.dims.join(', ')}], expected [${dims.join(', ')}]`);
    else if (!isTensorRef(t) && t.data.length !== count) problems.push(`${name} holds ${t.data.length} values, its dims [${dims.join(', ')}] say ${count}`);
    else if (isTensorRef(t) && t.initializer.dataType !== DataType.FLOAT) problems.push(`${name} is referenced as ${DataType[t.initializer.dataType]}, the graph computes in FLOAT`);
  }
  if (problems.length) {
    const shown = problems.slice(0, 8).join('; ');
    throw new Error(`${family} weights do not match the config: ${shown}${problems.length > 8 ? `; and ${problems.length - 8} more` : ''}`);
  }
}

/** A weight by name (after checkWeights). */
export function weightOf(weights: LlamaWeights, name: string): LlamaTensor | TensorRef {
  const t = lookup(weights, name);
  if (!t) throw new Error(`weight ${name} is missing`);
  return t;
}
