// Segmentation: the graph cut into a prefix, one subgraph per block and a suffix, by dataflow, so the
// pipeline can run the blocks one at a time (SparseGPT's sequential protocol). segmentGraph.ts turns a segment
// into a runnable model (and its calibration variant).
//
// Which segment a node belongs to:
//  - a node named inside block i (see layers.ts) belongs to block i;
//  - a Constant node belongs to no segment: every segment that reads it gets its own copy (they are cheap,
//    and cloning them keeps hundreds of scalars off the segment boundaries);
//  - any other node outside the blocks is placed by dataflow: if it depends only on graph inputs,
//    initializers and other such nodes (position ids, rotary tables, the causal mask, the embedding), in the
//    prefix, which runs once; otherwise in the earliest segment that reads it (so the final norm and the
//    LM head land in the suffix, and glue between blocks in the block that consumes it).
// Then every tensor a segment reads from an earlier one is an input of it and an output of its producer;
// the exporter shares tensors across blocks (block 0 computes rotary tensors that blocks 1..n read), so a
// block's inputs are whatever it reads, not just the residual stream. Dead nodes are dropped.

import { DataType, ModelProto, NodeProto } from '../onnx/proto';
import { Discovery, isDefaultDomain, nodeInputs, PrunableLayer, topologicalOrder } from './layers';
import { inferElemTypes, inferTypesWithOrt } from './types';

export type SegmentKind = 'prefix' | 'block' | 'suffix';

export interface Segment {
  /** Position in `SegmentPlan.segments` (run order). */
  index: number;
  kind: SegmentKind;
  /** Index into `Discovery.blocks` for blocks, null for the prefix and the suffix. */
  block: number | null;
  /** `prefix`, the block's name (`layers.3`), or `suffix`. */
  name: string;
  /** Its nodes, as indices into `model.graph.node`, in topological order (Constant copies not included). */
  nodes: number[];
  /** Activation tensors it reads: graph inputs and tensors computed by earlier segments. */
  inputs: string[];
  /** Initializer names of its prunable layers: graph inputs of the segment's model, fed by the pipeline. */
  weights: string[];
  /** Tensors it computes that later segments read, then graph outputs it computes. */
  outputs: string[];
  /** Its prunable layers (layers outside the blocks, with includeLmHead, belong to the prefix/suffix). */
  layers: PrunableLayer[];
}

export interface BoundaryTensor {
  name: string;
  elemType: DataType;
  /** Segment index that computes it; -1 for graph inputs (the pipeline feeds them). */
  producer: number;
  /** Segment indices that read it, ascending. The pipeline may drop it after the last one. */
  consumers: number[];
  /** A graph output of the whole model. */
  graphOutput: boolean;
}

export interface SegmentPlan {
  model: ModelProto;
  discovery: Discovery;
  /** Prefix (when it has nodes), blocks in order, suffix (when it has nodes). */
  segments: Segment[];
  /** Every tensor that crosses a segment boundary, and every graph input and output. */
  tensors: Map<string, BoundaryTensor>;
  /** The default-domain opset of the model. */
  opset: number;
}

export interface PlanOptions {
  /** 'rules' (default): type boundary tensors with the built-in op rules and ask onnxruntime only for the
   *  rest; 'ort': ask onnxruntime for all of them. */
  typeInference?: 'rules' | 'ort';
}

export function isConstantNode(node: NodeProto): boolean {
  return node.opType === 'Constant' && isDefaultDomain(node) && node.input.length === 0;
}

export function modelOpset(model: ModelProto): number {
  const o = model.opsetImport.find((x) => x.domain === '' || x.domain === 'ai.onnx');
  return o ? Number(o.version) : 1;
}

/** Cuts `model` into segments (see the file comment). Needs onnxruntime only for tensors the rules cannot type. */
export async function planSegments(model: ModelProto, discovery: Discovery, options: PlanOptions = {}): Promise<SegmentPlan> {
  const g = model.graph;
  const nodes = g.node;
  const order = topologicalOrder(g);
  const B = discovery.blocks.length;
  const SUFFIX = B + 1;
  const segOfBlock = (b: number): number => b + 1;

  const producer = new Map<string, number>();
  nodes.forEach((node, i) => node.output.forEach((t) => t && producer.set(t, i)));
  const isConst = nodes.map(isConstantNode);
  const inits = new Map(g.initializer.map((t) => [t.name, t]));
  const graphInputs = new Map(g.input.map((v) => [v.name, v]));
  const graphOutputs = new Map(g.output.map((v) => [v.name, v]));
  const inputsOf = nodes.map(nodeInputs);

  // Liveness: nodes that reach a graph output.
  const live = new Uint8Array(nodes.length);
  const needed = new Set(graphOutputs.keys());
  for (let k = order.length - 1; k >= 0; k--) {
    const i = order[k];
    if (!nodes[i].output.some((t) => needed.has(t))) continue;
    live[i] = 1;
    for (const t of inputsOf[i]) needed.add(t);
  }

  const consumers = new Map<string, number[]>();
  for (const i of order) {
    if (!live[i]) continue;
    for (const t of new Set(inputsOf[i])) {
      let c = consumers.get(t);
      if (!c) consumers.set(t, (c = []));
      c.push(i);
    }
  }

  // Placement. seg[i] = -1 for Constant and dead nodes.
  const seg = new Int32Array(nodes.length).fill(-1);
  const lo = new Int32Array(nodes.length);
  for (const i of order) {
    if (!live[i] || isConst[i]) continue;
    if (discovery.nodeBlock[i] >= 0) { seg[i] = segOfBlock(discovery.nodeBlock[i]); continue; }
    let l = 0;
    for (const t of inputsOf[i]) {
      const p = producer.get(t);
      if (p === undefined || isConst[p]) continue;
      l = Math.max(l, discovery.nodeBlock[p] >= 0 ? segOfBlock(discovery.nodeBlock[p]) : lo[p]);
    }
    lo[i] = l;
  }
  for (let k = order.length - 1; k >= 0; k--) {
    const i = order[k];
    if (!live[i] || isConst[i] || discovery.nodeBlock[i] >= 0) continue;
    if (lo[i] === 0) { seg[i] = 0; continue; }
    let hi = nodes[i].output.some((t) => graphOutputs.has(t)) ? SUFFIX : Infinity;
    for (const t of nodes[i].output) for (const c of consumers.get(t) ?? []) hi = Math.min(hi, seg[c]);
    if (hi === Infinity) hi = SUFFIX;
    if (hi < lo[i]) {
      throw new Error(`node ${nodes[i].name || nodes[i].opType} reads ${segName(lo[i])} but feeds ${segName(hi)}: the blocks are not sequential in dataflow`);
    }
    seg[i] = hi;
  }
  function segName(s: number): string {
    return s === 0 ? 'the prefix' : s === SUFFIX ? 'the suffix' : `block ${discovery.blocks[s - 1].name}`;
  }

  // Boundaries.
  const segInputs: string[][] = Array.from({ length: B + 2 }, () => []);
  const segOutputs: Set<string>[] = Array.from({ length: B + 2 }, () => new Set());
  const segNodes: number[][] = Array.from({ length: B + 2 }, () => []);
  const boundary = new Map<string, { producer: number; consumers: Set<number> }>();
  const touch = (t: string, p: number): { producer: number; consumers: Set<number> } => {
    let b = boundary.get(t);
    if (!b) boundary.set(t, (b = { producer: p, consumers: new Set() }));
    return b;
  };
  for (const i of order) {
    const s = seg[i];
    if (s < 0) continue;
    segNodes[s].push(i);
    for (const t of inputsOf[i]) {
      const p = producer.get(t);
      if (p === undefined) {
        if (inits.has(t)) continue;
        if (!graphInputs.has(t)) throw new Error(`node ${nodes[i].name || nodes[i].opType} reads ${t}, which no node, input or initializer defines`);
        const b = touch(t, -1);
        if (!b.consumers.has(s)) { b.consumers.add(s); segInputs[s].push(t); }
        continue;
      }
      if (isConst[p] || seg[p] === s) continue;
      if (seg[p] > s) {
        throw new Error(`node ${nodes[i].name || nodes[i].opType} (${segName(s)}) reads ${t} from ${segName(seg[p])}, which comes later: the block pattern does not follow the dataflow`);
      }
      const b = touch(t, seg[p]);
      if (!b.consumers.has(s)) { b.consumers.add(s); segInputs[s].push(t); }
      segOutputs[seg[p]].add(t);
    }
  }
  const constOutputs: string[] = [];
  for (const name of graphOutputs.keys()) {
    const p = producer.get(name);
    if (p === undefined) {
      throw new Error(`graph output ${name} is ${graphInputs.has(name) ? 'a graph input' : inits.has(name) ? 'an initializer' : 'not computed by any node'}: not supported`);
    }
    if (isConst[p]) { constOutputs.push(name); continue; }
    touch(name, seg[p]);
    segOutputs[seg[p]].add(name);
  }
  if (constOutputs.length) {
    // A constant graph output: the suffix copies the Constant and outputs it.
    for (const name of constOutputs) { touch(name, SUFFIX); segOutputs[SUFFIX].add(name); }
  }

  // Layers by segment.
  const layersOf: PrunableLayer[][] = Array.from({ length: B + 2 }, () => []);
  for (const layer of discovery.layers) {
    const s = seg[layer.nodeIndex];
    if (s < 0) throw new Error(`layer ${layer.name} (${layer.node}) does not contribute to any graph output`);
    layersOf[s].push(layer);
  }

  // Keep the prefix and the suffix only when they compute something.
  const keep = Array.from({ length: B + 2 }, (_, s) => s > 0 && s < SUFFIX ? true : segNodes[s].length > 0 || segOutputs[s].size > 0);
  const newIndex = new Int32Array(B + 2).fill(-1);
  const segments: Segment[] = [];
  for (let s = 0; s < B + 2; s++) {
    if (!keep[s]) continue;
    newIndex[s] = segments.length;
    const kind: SegmentKind = s === 0 ? 'prefix' : s === SUFFIX ? 'suffix' : 'block';
    const outs = [...segOutputs[s]];
    // Boundary tensors first, graph outputs after (in the model's output order).
    const ordered = [...outs.filter((t) => !graphOutputs.has(t)), ...[...graphOutputs.keys()].filter((t) => segOutputs[s].has(t))];
    segments.push({
      index: segments.length,
      kind,
      block: kind === 'block' ? s - 1 : null,
      name: kind === 'block' ? discovery.blocks[s - 1].name : kind,
      nodes: segNodes[s],
      inputs: segInputs[s],
      weights: layersOf[s].map((l) => l.weight),
      outputs: ordered,
      layers: layersOf[s],
    });
  }

  // Types of the boundary tensors.
  const names = [...boundary.keys()];
  const types = new Map<string, DataType>();
  const rules = options.typeInference === 'ort' ? new Map<string, DataType>() : inferElemTypes(model);
  for (const t of names) {
    const declared = graphInputs.get(t)?.type?.tensorType?.elemType;
    const r = declared || rules.get(t);
    if (r) types.set(t, r);
  }
  const unknown = names.filter((t) => !types.has(t));
  if (unknown.length) for (const [t, ty] of await inferTypesWithOrt(model, unknown)) types.set(t, ty);

  const tensors = new Map<string, BoundaryTensor>();
  for (const [name, b] of boundary) {
    tensors.set(name, {
      name,
      elemType: types.get(name) as DataType,
      producer: b.producer < 0 ? -1 : newIndex[b.producer],
      consumers: [...b.consumers].map((c) => newIndex[c]).sort((a, c) => a - c),
      graphOutput: graphOutputs.has(name),
    });
  }
  return { model, discovery, segments, tensors, opset: modelOpset(model) };
}

/** Index of the last segment that reads `tensor` (the pipeline can free it after that one), -1 if none. */
export function lastUse(plan: SegmentPlan, tensor: string): number {
  const c = plan.tensors.get(tensor)?.consumers ?? [];
  return c.length ? c[c.length - 1] : -1;
}
