// Layers inside `Loop` bodies (a block applied several times with the same weights, as weight-shared and
// recurrent exports write it). A MatMul/Gemm in the body that reads an outer-scope initializer as its weight runs
// once per iteration; its weight is pruned once, with the Hessian of every iteration's input, Σ_iterations XᵀX:
// the output error summed over all its applications, which is what the pruned Loop computes. The graph the
// pipeline discovers and calibrates (exposeLoopInputs) has each such input as an extra scan output of its Loop
// ([iterations, …X]), so the block's calibration reads all iterations at once; the file written keeps the original
// Loop, whose body reads the pruned weights by name. Deeper layers (inside an If, Scan or a Loop nested in a
// body, or in a branch of a data-dependent If) are found and left dense with a reason naming their node: how
// often each of their runs counts cannot be read from the graph.

import type { DataType, GraphProto, TensorProto, ModelProto, NodeProto } from '../onnx/proto';

/** A MatMul/Gemm inside a subgraph of a top-level node, reading an outer-scope weight. */
export interface SubgraphLinear {
  /** The node in the subgraph. */
  node: NodeProto;
  weight: string;
  /** How many nodes in the top-level node's subgraphs read the weight. */
  readers: number;
  /** Why it cannot be calibrated; absent for a layer directly in a Loop body. */
  unsupported?: string;
}

/** The top-level tensor that exposeLoopInputs gives the Loop `loop` for its body tensor `x`: x of every iteration. */
export function loopInputName(loop: NodeProto, x: string): string {
  return `${loop.name || 'Loop'}/every_iteration/${x}`;
}

function subgraphs(node: NodeProto): GraphProto[] {
  return node.attribute.flatMap((a) => [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]);
}

function isDefault(node: NodeProto): boolean {
  return !node.domain || node.domain === 'ai.onnx';
}

/** The MatMul/Gemm nodes anywhere in `owner`'s subgraphs whose input 1 is a tensor `isWeight` accepts that no
 *  enclosing subgraph defines itself. */
export function subgraphLinears(owner: NodeProto, isWeight: (t: string) => boolean): SubgraphLinear[] {
  const found: SubgraphLinear[] = [];
  const reads = new Map<string, number>();
  const walk = (g: GraphProto, shadowed: ReadonlySet<string>, where: string, direct: boolean): void => {
    const own = new Set([...shadowed, ...g.input.map((v) => v.name), ...g.initializer.map((t) => t.name), ...g.node.flatMap((n) => n.output)]);
    for (const n of g.node) {
      for (const t of n.input) if (!own.has(t)) reads.set(t, (reads.get(t) ?? 0) + 1);
      const w = n.input[1];
      if (isDefault(n) && (n.opType === 'MatMul' || n.opType === 'Gemm') && w && !own.has(w) && isWeight(w)) {
        found.push({ node: n, weight: w, readers: 0, ...(direct ? {} : { unsupported: `inside ${where}: how often each of its runs counts is not known from the graph` }) });
      }
      for (const s of subgraphs(n)) walk(s, own, `${n.opType} ${n.name || '(unnamed)'} in ${where}`, false);
    }
  };
  const name = `${owner.opType} ${owner.name || '(unnamed)'}`;
  for (const s of subgraphs(owner)) walk(s, new Set(), owner.opType === 'If' ? `a branch of ${name}` : `the body of ${name}`, owner.opType === 'Loop');
  for (const f of found) f.readers = reads.get(f.weight) ?? 0;
  return found;
}

/**
 * `model` with every top-level Loop whose body holds linear layers on outer-scope initializers given, per input X
 * of those layers, one more scan output named loopInputName(loop, X): X of every iteration, stacked. The Loop's
 * other outputs and what it computes are unchanged. Returns `model` itself when there is no such Loop.
 */
export function exposeLoopInputs(model: ModelProto): ModelProto {
  const g = model.graph;
  const inits = new Map(g.initializer.map((t) => [t.name, t]));
  let changed = false;
  const node = g.node.map((loop) => {
    if (loop.opType !== 'Loop' || !isDefault(loop)) return loop;
    const body = loop.attribute.find((a) => a.name === 'body')?.g;
    const inputs = new Map(subgraphLinears(loop, (t) => inits.get(t)?.dims.length === 2)
      .filter((l) => !l.unsupported && body?.node.includes(l.node))
      .map((l) => [l.node.input[0], (inits.get(l.weight) as TensorProto).dataType]));
    if (!body || inputs.size === 0) return loop;
    changed = true;
    const xs = [...inputs.keys()];
    const perIteration = (x: string) => `${loopInputName(loop, x)}/iteration`;
    const exposed: GraphProto = {
      ...body,
      node: [...body.node, ...xs.map((x) => ({ name: perIteration(x), opType: 'Identity', domain: '', input: [x], output: [perIteration(x)], attribute: [] }))],
      // Typed, of unknown shape: X's rank is the layer's input's.
      output: [...body.output, ...xs.map((x) => ({ name: perIteration(x), type: { tensorType: { elemType: inputs.get(x) as DataType } } }))],
    };
    return {
      ...loop,
      output: [...loop.output, ...xs.map((x) => loopInputName(loop, x))],
      attribute: loop.attribute.map((a) => (a.name === 'body' ? { ...a, g: exposed } : a)),
    };
  });
  return changed ? { ...model, graph: { ...g, node } } : model;
}
