// Feeds for a causal LM graph, derived from its declared inputs: input_ids, attention_mask, position_ids,
// empty past_key_values.* (decoders exported with a KV cache) and optimum's use_cache_branch. Any other
// input is an error that names it, rather than a guess.

import * as ort from 'onnxruntime-node';
import { DataType, ModelProto, ValueInfoProto } from '../onnx/proto';

/** Model metadata a graph builder sets when windows have a hard length limit: the rows of a learned position
 *  table (GPT-2's wpe), past which the graph cannot run. */
export const POSITION_LIMIT_KEY = 'prunekit.position_limit';

/** The model's POSITION_LIMIT_KEY, or null. */
export function positionLimit(model: ModelProto): number | null {
  const v = model.metadataProps?.find((p) => p.key === POSITION_LIMIT_KEY)?.value;
  return v === undefined ? null : Number(v);
}

export interface InputSpec {
  name: string;
  elemType: DataType;
  /** Dimensions: numbers, or symbolic names. */
  dims: (number | string)[];
}

export function inputSpecs(inputs: ValueInfoProto[], initializerNames: Set<string>): InputSpec[] {
  return inputs
    .filter((v) => !initializerNames.has(v.name)) // IR < 4 lists initializers among the inputs
    .map((v) => ({
      name: v.name,
      elemType: v.type?.tensorType?.elemType ?? DataType.UNDEFINED,
      dims: (v.type?.tensorType?.shape?.dim ?? []).map((d) => (d.dimValue !== undefined ? Number(d.dimValue) : d.dimParam ?? '?')),
    }));
}

/**
 * The vocabulary size: rows of the embedding table a Gather reads with `input_ids` (possibly through a Cast), or
 * undefined when the graph does not show it. Token ids are checked against it before onnxruntime sees them.
 */
export function vocabularySize(model: ModelProto): { size: number; embedding: string } | undefined {
  const initializers = new Map(model.graph.initializer.map((t) => [t.name, t]));
  const idNames = new Set(['input_ids']);
  for (const n of model.graph.node) if (n.opType === 'Cast' && idNames.has(n.input[0])) idNames.add(n.output[0]);
  for (const n of model.graph.node) {
    const table = initializers.get(n.input[0]);
    if (n.opType === 'Gather' && idNames.has(n.input[1]) && table && table.dims.length === 2) return { size: Number(table.dims[0]), embedding: table.name };
  }
  return undefined;
}

function int64(values: number[], dims: number[]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(values.map((v) => BigInt(v))), dims);
}

/** Feeds for `windows` (equal lengths) run as one batch, no padding. */
export function causalLmFeeds(specs: InputSpec[], windows: Int32Array[], modelFile: string): Record<string, ort.Tensor> {
  const b = windows.length;
  const L = windows[0].length;
  const feeds: Record<string, ort.Tensor> = {};
  for (const s of specs) {
    if (s.name === 'input_ids') {
      const ids: number[] = [];
      for (const w of windows) for (const t of w) ids.push(t);
      feeds[s.name] = int64(ids, [b, L]);
    } else if (s.name === 'attention_mask') {
      feeds[s.name] = int64(new Array(b * L).fill(1), [b, L]);
    } else if (s.name === 'position_ids') {
      const pos: number[] = [];
      for (let i = 0; i < b; i++) for (let t = 0; t < L; t++) pos.push(t);
      feeds[s.name] = int64(pos, [b, L]);
    } else if (s.name.startsWith('past_key_values') || s.name.startsWith('past_key') || s.name.startsWith('past_value')) {
      // [batch, kv_heads, past_len = 0, head_dim]: the symbolic dims are batch and past length.
      const dims = s.dims.map((d, i) => (typeof d === 'number' ? d : i === 0 ? b : 0));
      const type = s.elemType === DataType.FLOAT16 ? 'float16' : 'float32';
      feeds[s.name] = new ort.Tensor(type, type === 'float16' ? new Uint16Array(0) : new Float32Array(0), dims);
    } else if (s.name === 'use_cache_branch') {
      feeds[s.name] = new ort.Tensor('bool', [false], [1]);
    } else {
      throw new Error(`${modelFile}: model input '${s.name}' is not one PruneKit knows how to feed (input_ids, attention_mask, position_ids, past_key_values.*, use_cache_branch)`);
    }
  }
  if (!feeds.input_ids) throw new Error(`${modelFile}: the model has no 'input_ids' input`);
  return feeds;
}
