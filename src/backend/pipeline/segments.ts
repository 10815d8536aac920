// Segmentation: the graph cut into a prefix, one subgraph per block and a suffix, by dataflow, so the
// pipeline can run the blocks one at a time (SparseGPT's sequential protocol).
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
//
// Each segment becomes a standalone ModelProto: the weights of its prunable layers are graph INPUTS (so
// the pipeline feeds dense or pruned weights), every other initializer it reads stays an initializer
// (the same TensorProto objects as the checkpoint's: nothing is copied). A calibration variant also
// outputs, per distinct layer input X (reshaped to [tokens, cols]), XᵀX and Σ_tokens x² per column, so
// activations never leave onnxruntime; for a depthwise conv, per channel, the same sums over its K-tap input
// windows (one K×K XᵀX per channel).

import { GraphBuilder, Value } from '../onnx/graph';
import { DataType, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto } from '../onnx/proto';
import { Discovery, isDefaultDomain, LayerKind, nodeInputs, PrunableLayer, topologicalOrder } from './layers';
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

/** A runnable segment: its model and what to feed and fetch. */
export interface SegmentGraph {
  model: ModelProto;
  /** Activation inputs to feed (graph inputs and earlier segments' outputs), in declared order. */
  inputs: string[];
  /** Weight inputs to feed (initializer names; shape `weightDims`, layout as stored), in declared order. */
  weights: string[];
  /** Declared outputs. */
  outputs: string[];
}

export interface CalibrationStat {
  /** calibrationKey of its layers: the input tensor X of linear layers, `conv:<name>` for a depthwise conv. */
  key: string;
  kind: LayerKind;
  /** The layer input tensor X (any rank, last dimension = cols; [batch, C, time] for a conv). */
  input: string;
  /** Columns of each Hessian: in features, or the taps K of a conv. */
  cols: number;
  /** Hessians: 1, or the C channels of a depthwise conv (one per channel). */
  groups: number;
  /** The layers reading X (q/k/v share one, gate/up share one). */
  layers: string[];
  /** Output name of XᵀX summed over all tokens of the batch: FLOAT [cols, cols], or [C, K, K] for a conv. */
  xtx: string;
  /** Output name of Σ_tokens x_j²: FLOAT [cols], or [C, K]. */
  colSq: string;
  /** With a token scale (PrunableLayer.tokenWeight; both sums above are then weighted by its square): the output
   *  name of the number of tokens whose scale is positive (FLOAT scalar), e.g. those routed to an MoE expert. */
  routed?: string;
}

/** Which calibration sums a layer reads: linear layers reading one tensor share them; a conv has its own (its
 *  windows depend on its pads, strides and dilations). */
export function calibrationKey(layer: PrunableLayer): string {
  if (layer.kind !== 'linear') return `conv:${layer.name}`;
  return layer.tokenWeight ? `${layer.input}·${layer.tokenWeight}` : layer.input;
}

export interface SegmentModelOptions {
  /** Maps each initializer the segment keeps (norm weights, the embedding, a dense LM head…) before it is put
   *  in the model, e.g. to load external data into raw_data: sessions created from bytes cannot resolve it. */
  mapInitializer?: (t: TensorProto) => TensorProto;
}

export interface CalibrationGraph extends SegmentGraph {
  stats: CalibrationStat[];
}

function isConstantNode(node: NodeProto): boolean {
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

// ---------------------------------------------------------------------------------------------------------
// Segment models

function typed(name: string, elemType: DataType): ValueInfoProto {
  return { name, type: { tensorType: { elemType } } };
}

function weightInfo(t: TensorProto): ValueInfoProto {
  return { name: t.name, type: { tensorType: { elemType: t.dataType, shape: { dim: t.dims.map((d) => ({ dimValue: d })) } } } };
}

/**
 * A standalone model computing `outputs` from the segment's nodes (plus `extra` nodes and initializers),
 * with dead nodes dropped and only the inputs the live nodes read.
 */
function buildSegmentGraph(
  plan: SegmentPlan,
  segment: Segment,
  outputs: ValueInfoProto[],
  extraNodes: NodeProto[] = [],
  extraInits: TensorProto[] = [],
  mapInitializer: (t: TensorProto) => TensorProto = (t) => t,
): SegmentGraph {
  const g = plan.model.graph;
  const all = [...segment.nodes.map((i) => g.node[i]), ...extraNodes];
  const needed = new Set(outputs.map((o) => o.name));
  const keepNode = new Uint8Array(all.length);
  for (let k = all.length - 1; k >= 0; k--) {
    if (!all[k].output.some((t) => needed.has(t))) continue;
    keepNode[k] = 1;
    for (const t of nodeInputs(all[k])) needed.add(t);
  }
  const kept = all.filter((_, k) => keepNode[k]);
  const produced = new Set(kept.flatMap((n) => n.output));

  const producerNode = new Map<string, NodeProto>();
  for (const node of g.node) if (isConstantNode(node)) for (const t of node.output) producerNode.set(t, node);
  const inits = new Map([...g.initializer, ...extraInits].map((t) => [t.name, t]));
  const weightSet = new Set(segment.weights);
  const graphInputs = new Map(g.input.map((v) => [v.name, v]));

  const constants: NodeProto[] = [];
  const initializers: TensorProto[] = [];
  const inputs: string[] = [];
  const weights: string[] = [];
  const seen = new Set<string>();
  const visit = (t: string): void => {
    if (produced.has(t) || seen.has(t)) return;
    seen.add(t);
    const c = producerNode.get(t);
    if (c) { constants.push(c); return; }
    const init = inits.get(t);
    if (init) {
      if (weightSet.has(t)) weights.push(t);
      else initializers.push(extraInits.includes(init) ? init : mapInitializer(init));
      return;
    }
    if (!plan.tensors.has(t)) throw new Error(`segment ${segment.name}: tensor ${t} is neither computed in it nor a boundary tensor`);
    inputs.push(t);
  };
  for (const node of kept) for (const t of nodeInputs(node)) visit(t);
  for (const o of outputs) visit(o.name);

  const inputInfos: ValueInfoProto[] = [
    ...inputs.map((t) => graphInputs.get(t) ?? typed(t, (plan.tensors.get(t) as BoundaryTensor).elemType)),
    ...weights.map((t) => weightInfo(inits.get(t) as TensorProto)),
  ];
  const used = new Set([...needed, ...produced]);
  const graph: GraphProto = {
    name: `${g.name || 'model'}:${segment.name}`,
    node: [...constants, ...kept],
    initializer: initializers,
    input: inputInfos,
    output: outputs,
    valueInfo: g.valueInfo.filter((v) => used.has(v.name) && !inputs.includes(v.name) && !outputs.some((o) => o.name === v.name)),
  };
  const m = plan.model;
  const model: ModelProto = {
    irVersion: m.irVersion,
    opsetImport: m.opsetImport,
    producerName: 'prunekit',
    graph,
  };
  // Local functions (and other model-level fields we do not model) travel along: nodes may call them.
  if (m.unknown) model.unknown = m.unknown;
  return { model, inputs, weights, outputs: outputs.map((o) => o.name) };
}

function outputInfo(plan: SegmentPlan, name: string): ValueInfoProto {
  const declared = plan.model.graph.output.find((o) => o.name === name);
  return declared ?? typed(name, (plan.tensors.get(name) as BoundaryTensor).elemType);
}

function segmentOf(plan: SegmentPlan, s: Segment | number): Segment {
  return typeof s === 'number' ? plan.segments[s] : s;
}

/** The segment as a standalone model: activation inputs + layer weights in, `segment.outputs` out. */
export function segmentModel(plan: SegmentPlan, s: Segment | number, options: SegmentModelOptions = {}): SegmentGraph {
  const segment = segmentOf(plan, s);
  return buildSegmentGraph(plan, segment, segment.outputs.map((t) => outputInfo(plan, t)), [], [], options.mapInitializer);
}

/**
 * The calibration variant of a segment: for each distinct input X of its linear layers, outputs XᵀX (FLOAT
 * [cols, cols]) and Σ x² per column (FLOAT [cols]) summed over every token of the batch; for each depthwise
 * conv, per channel c, the same over its input windows u_c[t] = the K inputs output t reads (FLOAT [C, K, K] and
 * [C, K]). Only the nodes
 * those need are kept (so, e.g., the last layer's weight is not an input); with `keepOutputs`, the
 * segment's own outputs too. H = (2/N)·Σ_batches XᵀX with N the number of sequences (see CalibrationSums).
 * Layers with a token scale g (an MoE expert's routing weight) get Σ_t g_t²·x_t·x_tᵀ and Σ_t g_t²·x_t², keyed by
 * (X, g), and the count of tokens with g_t > 0.
 */
export function calibrationModel(plan: SegmentPlan, s: Segment | number, options: SegmentModelOptions & { keepOutputs?: boolean } = {}): CalibrationGraph {
  const segment = segmentOf(plan, s);
  if (segment.layers.length === 0) throw new Error(`segment ${segment.name} has no prunable layers to calibrate`);
  const byKey = new Map<string, PrunableLayer[]>();
  for (const l of segment.layers) {
    let a = byKey.get(calibrationKey(l));
    if (!a) byKey.set(calibrationKey(l), (a = []));
    a.push(l);
  }
  const b = new GraphBuilder(`prunekit_calib_${segment.index}`);
  const stats: CalibrationStat[] = [];
  const reduceSum = (x: Value, axis: number): Value => plan.opset >= 13
    ? b.op('ReduceSum', [x, b.constant([BigInt(axis)], [1], DataType.INT64)], { keepdims: 0 })
    : b.op('ReduceSum', [x], { axes: [axis], keepdims: 0 });
  /** Window convs: their attributes become the conv's own once the graph is built. */
  const windowConvs = new Map<string, NodeProto>();
  let k = 0;
  for (const [key, layers] of byKey) {
    const first = layers[0];
    const cols = first.cols;
    const bad = layers.find((l) => l.cols !== cols);
    if (bad) throw new Error(`layers ${first.name} and ${bad.name} read ${first.input} with ${cols} and ${bad.cols} columns`);
    // MatMul, Gemm and Conv take both operands in one type: X has its weight's type (the Cast's, for a widened weight).
    const cast = first.castNode === undefined ? undefined : plan.model.graph.node[first.castNode];
    const to = cast?.attribute.find((a) => a.name === 'to')?.i;
    const elem = to === undefined ? first.dataType : (Number(to) as DataType);
    let x: Value = { name: first.input };
    if (elem !== DataType.FLOAT) x = b.op('Cast', [x], { to: DataType.FLOAT });
    const stat: CalibrationStat = {
      key, kind: first.kind, input: first.input, cols, groups: first.kind === 'linear' ? 1 : first.rows,
      layers: layers.map((l) => l.name), xtx: `prunekit::xtx::${k}`, colSq: `prunekit::colsq::${k}`,
    };
    if (first.kind === 'linear') {
      const x2 = b.op('Reshape', [x, b.constant([-1n, BigInt(cols)], [2], DataType.INT64)]);
      let xw = x2; // x2 with row t scaled by g_t²: Σ_t g_t²·x_t·x_tᵀ = (g² ⊙ X)ᵀX
      if (first.tokenWeight) {
        const w = b.op('Reshape', [b.op('Cast', [{ name: first.tokenWeight }], { to: DataType.FLOAT }), b.constant([-1n, 1n], [2], DataType.INT64)]);
        xw = b.op('Mul', [x2, b.op('Mul', [w, w])]);
        stat.routed = `prunekit::routed::${k}`;
        const positive = b.op('Cast', [b.op('Greater', [w, b.constant([0], [], DataType.FLOAT)])], { to: DataType.FLOAT });
        b.output(b.op('ReduceSum', [positive], { keepdims: 0 }), stat.routed, DataType.FLOAT, []); // no axes: every element
      }
      const xtx = plan.opset >= 11 ? b.op('Gemm', [xw, x2], { transA: 1 }) : b.op('MatMul', [b.op('Transpose', [xw], { perm: [1, 0] }), x2]);
      b.output(xtx, stat.xtx, DataType.FLOAT, [cols, cols]);
      b.output(reduceSum(b.op('Mul', [xw, x2]), 0), stat.colSq, DataType.FLOAT, [cols]);
    } else {
      // Unfold with the conv itself: the same Conv (pads, strides, dilations) with one-hot kernels, K per channel,
      // gives channel c·K + j = the input x_c at tap j of every output position; ×1 and +0 are exact.
      const C = first.rows;
      const eye = new Array<number>(C * cols * cols).fill(0);
      for (let c = 0; c < C; c++) for (let j = 0; j < cols; j++) eye[(c * cols + j) * cols + j] = 1;
      const windows = b.op('Conv', [x, b.constant(eye, [C * cols, 1, cols])]); // [B, C·K, T_out]
      windowConvs.set(windows.name, plan.model.graph.node[first.nodeIndex]);
      const perTap = b.op('Reshape', [windows, b.constant([0n, BigInt(C), BigInt(cols), -1n], [4], DataType.INT64)]); // [B, C, K, T]
      const u = b.op('Reshape', [b.op('Transpose', [perTap], { perm: [1, 0, 3, 2] }), b.constant([BigInt(C), -1n, BigInt(cols)], [3], DataType.INT64)]); // [C, N, K]
      b.output(b.op('MatMul', [b.op('Transpose', [u], { perm: [0, 2, 1] }), u]), stat.xtx, DataType.FLOAT, [C, cols, cols]);
      b.output(reduceSum(b.op('Mul', [u, u]), 1), stat.colSq, DataType.FLOAT, [C, cols]);
    }
    stats.push(stat);
    k++;
  }
  const built = b.build(plan.opset).graph;
  for (const node of built.node) {
    const conv = windowConvs.get(node.output[0]);
    if (conv) node.attribute = conv.attribute; // group = C and kernel_shape = [K] fit the one-hot kernels too
  }
  // GraphBuilder names its nodes and tensors `<op>_<n>`: prefix them so they cannot clash with the model's.
  const prefix = `prunekit::calib${segment.index}::`;
  const ours = new Set([...built.node.flatMap((n) => n.output), ...built.initializer.map((t) => t.name)]);
  for (const o of built.output) ours.delete(o.name);
  const rename = (t: string): string => (ours.has(t) ? prefix + t : t);
  const extraNodes = built.node.map((n) => ({ ...n, name: prefix + n.name, input: n.input.map(rename), output: n.output.map(rename) }));
  const extraInits = built.initializer.map((t) => ({ ...t, name: rename(t.name) }));
  const outputs = [
    ...(options.keepOutputs ? segment.outputs.map((t) => outputInfo(plan, t)) : []),
    ...built.output,
  ];
  return { ...buildSegmentGraph(plan, segment, outputs, extraNodes, extraInits, options.mapInitializer), stats };
}

// ---------------------------------------------------------------------------------------------------------
// Helpers for the driver

/** Index of the last segment that reads `tensor` (the pipeline can free it after that one), -1 if none. */
export function lastUse(plan: SegmentPlan, tensor: string): number {
  const c = plan.tensors.get(tensor)?.consumers ?? [];
  return c.length ? c[c.length - 1] : -1;
}

/**
 * Running sums of a calibration variant's outputs over micro-batches, scaled as HessianAccumulator does:
 * H = (2/N)·Σ_tokens xᵀx and colNorm2 = (1/N)·Σ_tokens x² (Wanda's scaler_row), N = sequences seen.
 */
export class CalibrationSums {
  readonly xtx: Float32Array;
  readonly colSq: Float64Array;
  sequences = 0;
  /** Tokens with a positive token weight (the `routed` output), when the statistic has a token weight. */
  routedTokens?: number;
  /** hessian() has scaled xtx in place. */
  private scaled = false;

  /** groups > 1: that many independent (cols, cols) Hessians, one after the other (a depthwise conv's channels). */
  constructor(readonly cols: number, readonly groups = 1) {
    this.xtx = new Float32Array(groups * cols * cols);
    this.colSq = new Float64Array(groups * cols);
  }

  /** Adds one batch's XᵀX and Σx² (from the calibration variant) for `sequences` sequences, and its `routed` count. */
  add(xtx: Float32Array, colSq: Float32Array, sequences: number, routed?: number): void {
    if (routed !== undefined) this.routedTokens = (this.routedTokens ?? 0) + routed;
    if (xtx.length !== this.xtx.length || colSq.length !== this.colSq.length) throw new Error(`calibration sums: expected ${this.groups} × ${this.cols} columns`);
    if (this.scaled) throw new Error('calibration sums: add() after hessian()');
    for (let i = 0; i < xtx.length; i++) this.xtx[i] += xtx[i];
    for (let j = 0; j < this.colSq.length; j++) this.colSq[j] += colSq[j];
    this.sequences += sequences;
  }

  /** (groups, cols, cols) H = (2/N)·Σ XᵀX. The first call scales the sums in place (H can be cols² × 4 bytes: no copy);
   *  later calls return the same array, so layers sharing an input share one H (methods never modify it). */
  hessian(): Float32Array {
    if (!this.scaled) {
      const a = 2 / this.sequences;
      for (let i = 0; i < this.xtx.length; i++) this.xtx[i] *= a;
      this.scaled = true;
    }
    return this.xtx;
  }

  /** (groups, cols) (1/N)·Σ_tokens x_j². */
  colNorm2(): Float32Array {
    return Float32Array.from(this.colSq, (v) => v / this.sequences);
  }
}
