// Segment models: each segment of a SegmentPlan as a standalone ModelProto. The weights of its prunable layers
// are graph INPUTS (so the pipeline feeds dense or pruned weights), every other initializer it reads stays an
// initializer (the same TensorProto objects as the checkpoint's: nothing is copied). A calibration variant also
// outputs, per distinct layer input X (reshaped to [tokens, cols]), XᵀX and Σ_tokens x² per column, so
// activations never leave onnxruntime; for a depthwise conv, per channel, the same sums over its K-tap input
// windows (one K×K XᵀX per channel).

import { GraphBuilder, Value, valueInfo } from '../onnx/graph';
import { DataType, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto } from '../onnx/proto';
import { LayerKind, nodeInputs, PrunableLayer } from './layers';
import { BoundaryTensor, isConstantNode, Segment, SegmentPlan } from './segmentPlan';

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
  /** Input name of the running sum this batch's XᵀX is added to (the shape of `xtx`). */
  sumIn: string;
  /** Output name of sumIn + XᵀX summed over all tokens of the batch: FLOAT [cols, cols], or [C, K, K] for a conv.
   *  Pre-allocated on sumIn's own memory, the graph accumulates in place (runCalibration). */
  xtx: string;
  /** Output name of Σ_tokens x_j²: FLOAT [cols], or [C, K]. */
  colSq: string;
  /** With a token scale (PrunableLayer.tokenWeight; both sums above are then weighted by its square): the output
   *  name of the number of tokens whose scale is positive (FLOAT scalar), e.g. those routed to an MoE expert. */
  routed?: string;
  /** Per layer name, the output of Σ_out y² per token (FLOAT [tokens]) of the layer's own output y = W·x, for the
   *  layers whose output the calibration pass computes anyway (it feeds a later layer's X) as a plain fp32 MatMul
   *  or Gemm without a bias:
   *  (1/N)·Σ_tokens ‖W x‖² = 0.5·tr(W H Wᵀ), the reference of the relative loss, without a pass over H. */
  outSq: Record<string, string>;
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

/** How many times the largest Hessian of a segment one calibration pass may hold (see calibrationGroups). */
export const HESSIAN_GROUP_FACTOR = 2;

/** Bytes of a layer's calibration sums in one pass: the float32 running sum of XᵀX, which the graph adds each
 *  batch's XᵀX to in place (that one lasts a run: runCalibration). */
function hessianBytes(l: PrunableLayer): number {
  return (l.kind === 'linear' ? 1 : l.rows) * l.cols * l.cols * 4;
}

/** Bytes of the calibration sums of `layers` (those sharing a key count once). */
export function calibrationBytes(layers: readonly PrunableLayer[]): number {
  const keyBytes = new Map(layers.map((l) => [calibrationKey(l), hessianBytes(l)]));
  return [...keyBytes.values()].reduce((a, b) => a + b, 0);
}

/**
 * The segment's layers cut into calibration passes, in layer order, each holding the Hessians of at most
 * HESSIAN_GROUP_FACTOR × the segment's largest (a pass of one key may hold just that one): an MoE block's
 * 8–128 expert Hessians are never all alive at once (Mixtral-8x7B: 7 GB a block), while a dense block fits in
 * one pass. Each key's sums are the same whichever pass computes them: a pass runs the same dense block on the
 * same inputs.
 */
export function calibrationGroups(layers: readonly PrunableLayer[], factor = HESSIAN_GROUP_FACTOR): PrunableLayer[][] {
  const keyBytes = new Map<string, number>();
  for (const l of layers) keyBytes.set(calibrationKey(l), hessianBytes(l));
  const limit = factor * Math.max(0, ...keyBytes.values());
  const groups: PrunableLayer[][] = [];
  const groupOf = new Map<string, PrunableLayer[]>();
  let bytes = Infinity;
  for (const l of layers) {
    const key = calibrationKey(l);
    let g = groupOf.get(key);
    if (!g) {
      const b = keyBytes.get(key) as number;
      if (bytes + b > limit) { groups.push([]); bytes = 0; }
      g = groups[groups.length - 1];
      bytes += b;
      groupOf.set(key, g);
    }
    g.push(l);
  }
  return groups;
}

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
  extraInputs: ValueInfoProto[] = [],
): SegmentGraph {
  const g = plan.model.graph;
  const all = [...segment.nodes.map((i) => g.node[i]), ...extraNodes];
  const { kept, needed } = liveNodes(all, outputs.map((o) => o.name));
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
  const seen = new Set<string>(extraInputs.map((v) => v.name));
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
    ...extraInputs,
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

/** The nodes (in order) needed to compute `targets`, and every tensor they read or that is a target. */
function liveNodes(nodes: NodeProto[], targets: string[]): { kept: NodeProto[]; needed: Set<string> } {
  const needed = new Set(targets);
  const keep = new Uint8Array(nodes.length);
  for (let k = nodes.length - 1; k >= 0; k--) {
    if (!nodes[k].output.some((t) => needed.has(t))) continue;
    keep[k] = 1;
    for (const t of nodeInputs(nodes[k])) needed.add(t);
  }
  return { kept: nodes.filter((_, k) => keep[k]), needed };
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

export interface CalibrationModelOptions extends SegmentModelOptions {
  /** Also output the segment's own outputs. */
  keepOutputs?: boolean;
  /** Calibrate only these of the segment's layers (a pass of calibrationGroups); default all. */
  layers?: readonly PrunableLayer[];
}

/**
 * The calibration variant of a segment: for each distinct input X of its linear layers, outputs a running sum
 * plus XᵀX (FLOAT [cols, cols]; the sum is an input, see CalibrationStat.sumIn) and Σ x² per column (FLOAT [cols])
 * over every token of the batch; for each depthwise conv, per channel c, the same over its input windows u_c[t] =
 * the K inputs output t reads (FLOAT [C, K, K] and [C, K]). Only the nodes
 * those need are kept (so, e.g., the last layer's weight is not an input); with `keepOutputs`, the
 * segment's own outputs too. H = (2/N)·Σ_batches XᵀX with N the number of sequences (see CalibrationSums).
 * Layers with a token scale g (an MoE expert's routing weight) get Σ_t g_t²·x_t·x_tᵀ and Σ_t g_t²·x_t², keyed by
 * (X, g), and the count of tokens with g_t > 0.
 */
export function calibrationModel(plan: SegmentPlan, s: Segment | number, options: CalibrationModelOptions = {}): CalibrationGraph {
  const segment = segmentOf(plan, s);
  const layers = options.layers ?? segment.layers;
  if (layers.length === 0) throw new Error(`segment ${segment.name} has no prunable layers to calibrate`);
  const byKey = new Map<string, PrunableLayer[]>();
  for (const l of layers) {
    let a = byKey.get(calibrationKey(l));
    if (!a) byKey.set(calibrationKey(l), (a = []));
    a.push(l);
  }
  const b = new GraphBuilder(`prunekit_calib_${segment.index}`);
  const stats: CalibrationStat[] = [];
  const sumInputs: ValueInfoProto[] = [];
  const reduceSum = (x: Value, axis: number): Value => plan.opset >= 13
    ? b.op('ReduceSum', [x, b.constant([BigInt(axis)], [1], DataType.INT64)], { keepdims: 0 })
    : b.op('ReduceSum', [x], { axes: [axis], keepdims: 0 });
  /** Window convs: their attributes become the conv's own once the graph is built. */
  const windowConvs = new Map<string, NodeProto>();
  // What the pass computes anyway: the nodes behind every X (and token scale) it reads.
  const computed = new Set(liveNodes(segment.nodes.map((i) => plan.model.graph.node[i]),
    [...byKey.values()].flatMap(([l]) => (l.tokenWeight ? [l.input, l.tokenWeight] : [l.input]))).kept.flatMap((n) => n.output));
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
    const groups = first.kind === 'linear' ? 1 : first.rows;
    const stat: CalibrationStat = {
      key, kind: first.kind, input: first.input, cols, groups, layers: layers.map((l) => l.name),
      sumIn: `prunekit::xtxsum::${k}`, xtx: `prunekit::xtx::${k}`, colSq: `prunekit::colsq::${k}`, outSq: {},
    };
    const sumShape = first.kind === 'linear' ? [cols, cols] : [groups, cols, cols];
    sumInputs.push(valueInfo(stat.sumIn, DataType.FLOAT, sumShape));
    const sum: Value = { name: stat.sumIn };
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
      // The batch's XᵀX, then added to the running sum in float32: the rounding of an addition outside the graph,
      // so the sums are those of earlier releases (Gemm's C input would round inside the product instead).
      const xtx = plan.opset >= 11 ? b.op('Gemm', [xw, x2], { transA: 1 }) : b.op('MatMul', [b.op('Transpose', [xw], { perm: [1, 0] }), x2]);
      b.output(b.op('Add', [xtx, sum]), stat.xtx, DataType.FLOAT, sumShape);
      b.output(reduceSum(b.op('Mul', [xw, x2]), 0), stat.colSq, DataType.FLOAT, [cols]);
      layers.forEach((l, j) => {
        const plain = l.op === 'MatMul' || !plan.model.graph.node[l.nodeIndex].input[2]; // y = x·W, no bias (a Gemm without C)
        if (!plain || l.tokenWeight || elem !== DataType.FLOAT || !computed.has(l.output)) return;
        // Per token (a sum over the layer's rows only, in fp32); the tokens are summed in float64 (CalibrationSums).
        const y = b.op('Reshape', [{ name: l.output }, b.constant([-1n, BigInt(l.rows)], [2], DataType.INT64)]);
        stat.outSq[l.name] = `prunekit::outsq::${k}::${j}`;
        b.output(reduceSum(b.op('Mul', [y, y]), 1), stat.outSq[l.name], DataType.FLOAT, ['tokens']);
      });
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
      b.output(b.op('Add', [b.op('MatMul', [b.op('Transpose', [u], { perm: [0, 2, 1] }), u]), sum]), stat.xtx, DataType.FLOAT, sumShape);
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
  return { ...buildSegmentGraph(plan, segment, outputs, extraNodes, extraInits, options.mapInitializer, sumInputs), stats };
}
