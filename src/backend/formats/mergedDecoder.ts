// Optimum's merged decoders (`decoder_model_merged.onnx`): one graph whose layers sit inside the two branches of an
// `If` on the `use_cache_branch` input (then: with past key/values, else: without), both reading the same outer-scope
// weight initializers. PruneKit discovers and calibrates on the no-past branch, inlined in place of the If: the
// weights keep their names, so pruning them once and writing the merged file prunes what both branches use.

import type { ModelProto, NodeProto } from '../onnx/proto';
import { isDefaultDomain } from '../pipeline/layers';

/** The input Optimum's merged decoders branch on. */
export const USE_CACHE_BRANCH = 'use_cache_branch';

/**
 * `model` with its top-level `If` on use_cache_branch replaced by the else (no-past) branch's nodes, initializers and
 * value_info, each branch output passed to the If's output (by an Identity where the names differ); null when the graph has no such If.
 */
export function noPastGraph(model: ModelProto): ModelProto | null {
  const g = model.graph;
  const k = g.node.findIndex((n) => n.opType === 'If' && isDefaultDomain(n) && n.input[0] === USE_CACHE_BRANCH);
  if (k < 0) return null;
  const ifNode = g.node[k];
  const branch = ifNode.attribute.find((a) => a.name === 'else_branch')?.g;
  if (!branch) throw new Error(`If node ${ifNode.name || `#${k}`} on ${USE_CACHE_BRANCH} has no else_branch`);
  if (branch.output.length !== ifNode.output.length) {
    throw new Error(`If node ${ifNode.name || `#${k}`}: its else_branch has ${branch.output.length} outputs, the node ${ifNode.output.length}`);
  }
  // A branch output named as the If's output (a scope of its own may reuse it) needs no Identity.
  const outputs: NodeProto[] = branch.output.flatMap((o, i) => o.name === ifNode.output[i] ? [] : [{
    name: `${ifNode.name || 'If'}/no_past_output_${i}`, opType: 'Identity', domain: '', input: [o.name], output: [ifNode.output[i]], attribute: [],
  }]);
  return {
    ...model,
    graph: {
      ...g,
      node: [...g.node.slice(0, k), ...branch.node, ...outputs, ...g.node.slice(k + 1)],
      initializer: [...g.initializer, ...branch.initializer],
      valueInfo: [...g.valueInfo, ...branch.valueInfo],
    },
  };
}
