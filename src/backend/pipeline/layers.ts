// Discovery: which layers of an ONNX checkpoint can be pruned, and which transformer block each belongs to.
//
// A prunable layer is a MatMul whose second input is a 2-D floating-point initializer (stored [in, out]),
// or a Gemm whose B is one ([in, out], or [out, in] with transB=1). The initializer may reach the node through
// a Cast (fp16 weights widened to float in the graph, as mixed-precision exporters write them) and/or a 2-D
// Transpose (torch's dynamo exporter keeps nn.Linear's [out, in] weight and transposes it in the graph); those
// nodes then belong to the layer's block, so the weight is fed where it is used. A layer is identified by the node that
// consumes the weight (`/model/layers.3/mlp/down_proj/MatMul` → `layers.3.mlp.down_proj`), never by the
// initializer's name (exporters call those `onnx::MatMul_1234`). Embeddings are Gathers, so never layers.
//
// A second, opt-in kind: a depthwise 1-D Conv (weight [C, 1, K] with group = C, as Mamba's causal conv1d). Each
// output channel is a tiny linear layer over its own K-tap input window, so the OBS framework applies per channel
// (methods/depthwise.ts). It is found like the linear layers but left dense unless `includeDepthwiseConv`
// (keepDense.depthwiseConv false in the config): K taps per channel give OBS little to compensate with, and the
// conv is a sliver of the parameters.
//
// A graph builder may say more in the model's metadata (DENSE_WEIGHTS_KEY, TOKEN_WEIGHTS_KEY): weights that stay
// dense whatever the options (an MoE router), and the per-token factor a layer's contribution is scaled by (an
// expert's routing weight), which its calibration statistics weight tokens with (pipeline/segments.ts).
//
// Blocks come from the node names: the first of `layers.N`, `h.N`, `layer.N`, `blocks.N` (a path
// component) that names the most layers, or a caller's `blockPattern` whose first capture group is the
// block index. Layers outside every block (the LM head, or a projection before the first block) and layers
// named lm_head/embed_out are left dense unless `includeLmHead`. Where no pattern names any layer, every
// layer becomes its own block, in topological order, and a note says so.

import type { GraphProto, ModelProto, NodeProto, TensorProto } from '../onnx/proto';
import { AttributeType, DataType } from '../onnx/proto';
import { compileUserRegex, UserRegex } from '../../protocol/userPatterns';
import { describeQuantized, findQuantizedLayers, QUANTIZED_ADVICE, QuantizedLayer } from './quantized';
import { loopInputName, subgraphLinears } from './loopLayers';
import { structuralBlocks } from './structuralBlocks';

/** How the weight initializer is stored. MatMul and Gemm(transB=0): [in, out] = [cols, rows];
 *  Gemm(transB=1): [out, in] = [rows, cols] (already the (rows, cols) row-major layout the methods use);
 *  a depthwise Conv's [C, 1, K] is out_in too (rows = channels, cols = taps). */
export type WeightLayout = 'in_out' | 'out_in';

/** 'linear': a MatMul/Gemm (one Hessian per input tensor); 'depthwiseConv': a 1-D Conv with group = channels
 *  (one K×K Hessian per channel, opt-in). */
export type LayerKind = 'linear' | 'depthwiseConv';

export interface PrunableLayer {
  /** Friendly, unique name: `layers.3.mlp.down_proj`. */
  name: string;
  kind: LayerKind;
  /** The MatMul/Gemm/Conv node's name (may be empty in unnamed graphs). */
  node: string;
  /** Index of that node in `model.graph.node`. */
  nodeIndex: number;
  op: 'MatMul' | 'Gemm' | 'Conv';
  /** The weight initializer's name. */
  weight: string;
  /** out features (channels of a depthwise conv) */
  rows: number;
  /** in features (taps K of a depthwise conv) */
  cols: number;
  layout: WeightLayout;
  /** The initializer's dims as stored ([cols, rows] for in_out, [rows, cols] for out_in, [C, 1, K] for a conv). */
  weightDims: number[];
  /** The weight's stored type (FLOAT16 for a widened fp16 weight). */
  dataType: DataType;
  /** Index in `model.graph.node` of the Cast that widens the weight before the node reads it, if any. */
  castNode?: number;
  /** Index in `model.graph.node` of the 2-D Transpose between the weight and the node, if any. */
  transposeNode?: number;
  /** The activation tensor the layer reads (any rank, last dimension = cols; [batch, C, time] for a conv). */
  input: string;
  /** The tensor it writes. */
  output: string;
  /** Index into `Discovery.blocks`, or null for a layer outside every block (only with includeLmHead). */
  block: number | null;
  /** A tensor of per-token factors g ([tokens] or [tokens, 1], in the order of `input`'s rows) the block scales
   *  this layer's contribution by (an MoE expert's routing weight, 0 where not routed): its calibration
   *  statistics weight token t by g_t², the weight of its output error in the block's. */
  tokenWeight?: string;
}

export interface SkippedLayer extends PrunableLayer {
  /** Why it is left dense. */
  reason: string;
  /** The keepDense flag that, set to false, makes it prunable (absent: it cannot be pruned). */
  keptDenseBy?: 'lmHead' | 'depthwiseConv';
}

export interface Block {
  /** Position in `Discovery.blocks` (0-based, in block order). */
  index: number;
  /** The number captured from the node names (`layers.7` → 7); equals `index` for per-layer blocks. */
  id: number;
  /** `layers.7`, or the layer's name for per-layer blocks. */
  name: string;
  /** Names of the prunable layers in it, in topological order. */
  layers: string[];
}

/** 'structure': from the residual stream (structuralBlocks.ts), for graphs whose names carry no block scope. */
export type BlockSource = 'pattern' | 'custom' | 'structure' | 'per-layer';

export interface Discovery {
  /** Prunable layers in topological order. */
  layers: PrunableLayer[];
  /** Layers found but left dense (LM head, depthwise convs by default, layers outside the blocks, shared or
   *  unsupported weights). */
  skipped: SkippedLayer[];
  blocks: Block[];
  /** Where the blocks came from: a built-in pattern, the caller's blockPattern, or one block per layer. */
  blockSource: BlockSource;
  /** The regular expression used (source text), null for per-layer blocks. */
  pattern: string | null;
  /** Block index (into `blocks`) of every node of `model.graph.node`, -1 for nodes outside every block. */
  nodeBlock: Int32Array;
  /** Human-readable remarks for the run report (fallbacks, skipped layers). */
  notes: string[];
  /** Quantized linear layers (quantized.ts): a run refuses them inside blocks. */
  quantized: QuantizedLayer[];
  /** Blocks that keep linear layers dense against the user's wish (no prunable layer in them), one line each. */
  warnings: string[];
}

export interface DiscoverOptions {
  /** A regular expression matched against node names; its first capture group is the block index. */
  blockPattern?: string | RegExp;
  /** Also prune linear layers outside every block and those named lm_head/embed_out (default false). */
  includeLmHead?: boolean;
  /** Also prune depthwise 1-D convs (default false: they are opt-in). */
  includeDepthwiseConv?: boolean;
  /** Without a block pattern, group layers by the residual stream (default true); false: one block per layer. */
  structuralBlocks?: boolean;
}

/** The built-in block scopes, tried in this order (a tie in layers named goes to the earlier one). */
export const DEFAULT_BLOCK_PATTERNS: readonly RegExp[] = ['layers', 'h', 'layer', 'blocks'].map(
  (word) => new RegExp(`(?:^|[/.])(${word}\\.(\\d+))(?=[/.]|$)`),
);

/** Model metadata a graph builder sets, JSON objects keyed by weight initializer name: weights that stay dense
 *  (→ why, e.g. an MoE router), and the token-weight tensor of a layer (see PrunableLayer.tokenWeight). */
export const DENSE_WEIGHTS_KEY = 'prunekit.dense_weights';
export const TOKEN_WEIGHTS_KEY = 'prunekit.token_weights';

/** A metadata entry's JSON object of strings (empty when absent); a malformed one is an error naming the key. */
function metadataMap(model: ModelProto, key: string): Map<string, string> {
  const text = model.metadataProps?.find((p) => p.key === key)?.value;
  if (text === undefined) return new Map();
  const json: unknown = JSON.parse(text);
  if (typeof json !== 'object' || json === null || Array.isArray(json) || Object.values(json).some((v) => typeof v !== 'string')) {
    throw new Error(`model metadata ${key} must be a JSON object of strings`);
  }
  return new Map(Object.entries(json as Record<string, string>));
}

const FLOAT_TYPES = new Set([DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16, DataType.DOUBLE]);
const LM_HEAD_NAME = /(?:^|[/._])(?:lm_head|embed_out)(?:[/._]|$)/;

/** Nodes of the default ONNX domain. */
export function isDefaultDomain(node: NodeProto): boolean {
  return !node.domain || node.domain === 'ai.onnx';
}

function intAttr(node: NodeProto, name: string, dflt: number): number {
  const a = node.attribute.find((x) => x.name === name);
  return a && a.type === AttributeType.INT && a.i !== undefined ? Number(a.i) : dflt;
}

function floatAttr(node: NodeProto, name: string, dflt: number): number {
  const a = node.attribute.find((x) => x.name === name);
  return a && a.type === AttributeType.FLOAT && a.f !== undefined ? a.f : dflt;
}

/**
 * Node indices in topological order. ONNX requires graphs to be sorted already, and then this returns
 * 0..n-1 unchanged; otherwise a stable sort (each node as early as its inputs allow, ties in file order).
 */
export function topologicalOrder(graph: GraphProto): number[] {
  const n = graph.node.length;
  const producer = new Map<string, number>();
  graph.node.forEach((node, i) => node.output.forEach((t) => t && producer.set(t, i)));
  let sorted = true;
  for (let i = 0; i < n && sorted; i++) {
    for (const t of nodeInputs(graph.node[i])) {
      const p = producer.get(t);
      if (p !== undefined && p >= i) { sorted = false; break; }
    }
  }
  if (sorted) return Array.from({ length: n }, (_, i) => i);
  const indeg = new Int32Array(n);
  const users: number[][] = Array.from({ length: n }, () => []);
  graph.node.forEach((node, i) => {
    for (const t of new Set(nodeInputs(node))) {
      const p = producer.get(t);
      if (p !== undefined && p !== i) { indeg[i]++; users[p].push(i); }
    }
  });
  // A min-heap would be O(n log n); graphs this function ever sorts are small, so a sorted ready list will do.
  const ready: number[] = [];
  for (let i = 0; i < n; i++) if (indeg[i] === 0) ready.push(i);
  const order: number[] = [];
  while (ready.length) {
    ready.sort((a, b) => a - b);
    const i = ready.shift() as number;
    order.push(i);
    for (const u of users[i]) if (--indeg[u] === 0) ready.push(u);
  }
  if (order.length !== n) throw new Error(`the graph has a cycle: ${n - order.length} nodes cannot be ordered`);
  return order;
}

/** A node's inputs, including tensors its subgraphs (If/Loop/Scan bodies) read from the enclosing scope. */
export function nodeInputs(node: NodeProto): string[] {
  const direct = node.input.filter((t) => t !== '');
  const outer = new Set<string>();
  for (const a of node.attribute) {
    for (const g of [a.g, ...(a.graphs ?? [])]) if (g) for (const t of outerReferences(g)) outer.add(t);
  }
  return outer.size ? [...direct, ...[...outer].filter((t) => !direct.includes(t))] : direct;
}

/** Names a (sub)graph reads that it does not define itself. */
function outerReferences(g: GraphProto): Set<string> {
  const defined = new Set<string>([...g.input.map((v) => v.name), ...g.initializer.map((t) => t.name)]);
  const refs = new Set<string>();
  for (const node of g.node) {
    for (const t of nodeInputs(node)) if (!defined.has(t)) refs.add(t);
    for (const t of node.output) defined.add(t);
  }
  for (const o of g.output) if (!defined.has(o.name)) refs.add(o.name);
  return refs;
}

/** The friendly name of a layer node: `/model/layers.3/mlp/down_proj/MatMul` → `layers.3.mlp.down_proj`.
 *  `from` is where the block scope starts in the name (the name is cut there); otherwise the whole scope. */
export function friendlyLayerName(nodeName: string, opType: string, from = 0, keepOp = false): string {
  const parts = nodeName.slice(from).split('/').filter((p) => p !== '');
  const last = parts[parts.length - 1];
  if (!keepOp && parts.length > 1 && last !== undefined && new RegExp(`^${opType}(?:_\\d+)?$`).test(last)) parts.pop();
  return parts.join('.');
}

/** The Cast and Transpose nodes between a layer's weight and its node: they run in the layer's segment. */
export function feedNodes(layer: Pick<PrunableLayer, 'castNode' | 'transposeNode'>): number[] {
  return [layer.castNode, layer.transposeNode].filter((i): i is number => i !== undefined);
}

interface Candidate {
  node: NodeProto;
  nodeIndex: number;
  layer: Omit<PrunableLayer, 'name' | 'block'>;
  /** Why it cannot be pruned at all (independent of the options). */
  unsupported?: string;
  /** `node` is in a subgraph of the top-level node `nodeIndex` (loopLayers.ts). */
  inSubgraph?: boolean;
}

/** The name a candidate's block and layer name come from: its node's, or its weight's without `.weight`. */
function scopeName(c: Candidate, scope: 'node' | 'weight'): string {
  return scope === 'node' ? c.node.name : c.layer.weight.replace(/\.weight$/, '');
}

function tensorKind(t: TensorProto): string {
  return `${DataType[t.dataType] ?? t.dataType} [${t.dims.join(', ')}]`;
}

/** Every MatMul/Gemm reading a 2-D initializer as its weight, and every depthwise 1-D Conv reading a [C, 1, K]
 *  one, with its shape and layout. */
function layerCandidates(graph: GraphProto, order: number[], dense: ReadonlyMap<string, string>, tokenWeights: ReadonlyMap<string, string>): Candidate[] {
  const inits = new Map(graph.initializer.map((t) => [t.name, t]));
  // How many nodes (and graph outputs) read each tensor: a weight read elsewhere too cannot be pruned alone.
  const readers = new Map<string, number>();
  for (const node of graph.node) for (const t of new Set(nodeInputs(node))) readers.set(t, (readers.get(t) ?? 0) + 1);
  for (const o of graph.output) readers.set(o.name, (readers.get(o.name) ?? 0) + 1);
  const producer = new Map<string, number>();
  graph.node.forEach((n, i) => n.output.forEach((t) => t && producer.set(t, i)));
  /** The Cast to a float type or the 2-D Transpose that computes `t` for its only reader. */
  const feeding = (t: string): { op: 'Cast' | 'Transpose'; index: number } | undefined => {
    const c = producer.get(t);
    const n = c === undefined ? undefined : graph.node[c];
    if (!n || !isDefaultDomain(n) || (readers.get(t) ?? 0) !== 1) return undefined;
    if (n.opType === 'Cast' && FLOAT_TYPES.has(intAttr(n, 'to', 0))) return { op: 'Cast', index: c as number };
    const perm = n.attribute.find((a) => a.name === 'perm')?.ints?.map(Number);
    if (n.opType === 'Transpose' && (!perm || (perm.length === 2 && perm[0] === 1 && perm[1] === 0))) return { op: 'Transpose', index: c as number };
    return undefined;
  };
  /** The initializer a node reads as `t`, directly or through at most one Cast and one Transpose (in either order). */
  const weightOf = (t: string): { w: TensorProto; castNode?: number; transposeNode?: number } | undefined => {
    const via: { castNode?: number; transposeNode?: number } = {};
    for (let step = 0; step < 3; step++) {
      const w = inits.get(t);
      if (w) return { w, ...via };
      const f = feeding(t);
      const key = f?.op === 'Cast' ? 'castNode' : 'transposeNode';
      if (!f || via[key] !== undefined) return undefined;
      via[key] = f.index;
      t = graph.node[f.index].input[0];
    }
    return undefined;
  };

  const out: Candidate[] = [];
  for (const i of order) {
    const node = graph.node[i];
    if (!isDefaultDomain(node)) continue;
    if (node.opType === 'Conv') {
      const via = weightOf(node.input[1]);
      const w = via?.transposeNode === undefined ? via?.w : undefined;
      const C = w && w.dims.length === 3 ? Number(w.dims[0]) : 0;
      // Depthwise: one input channel per group and as many groups as channels (so in = out = C).
      if (!w || C < 1 || Number(w.dims[1]) !== 1 || intAttr(node, 'group', 1) !== C) continue;
      let unsupported: string | undefined;
      if (!FLOAT_TYPES.has(w.dataType)) unsupported = `weight ${w.name} is ${tensorKind(w)}, not a floating-point type`;
      else if ((readers.get(w.name) ?? 0) > 1) unsupported = `weight ${w.name} is shared with ${(readers.get(w.name) ?? 0) - 1} other reader(s)`;
      out.push({
        node,
        nodeIndex: i,
        unsupported,
        layer: {
          kind: 'depthwiseConv', node: node.name, nodeIndex: i, op: 'Conv', weight: w.name, rows: C, cols: Number(w.dims[2]),
          layout: 'out_in', weightDims: w.dims.map(Number), dataType: w.dataType, ...(via?.castNode !== undefined ? { castNode: via.castNode } : {}),
          input: node.input[0], output: node.output[0],
        },
      });
      continue;
    }
    for (const sub of subgraphLinears(node, (t) => inits.get(t)?.dims.length === 2)) {
      // A layer in a subgraph: its readers are the body's plus the top level's other than this node.
      const c = linearCandidate(sub.node, i, inits.get(sub.weight) as TensorProto, {}, sub.readers + (readers.get(sub.weight) ?? 1) - 1, dense, tokenWeights);
      const input = loopInputName(node, sub.node.input[0]);
      // Where it sits says more than that the branches share it.
      c.unsupported = sub.unsupported ?? c.unsupported ?? (node.output.includes(input) ? undefined : `inside the body of Loop ${node.name || '(unnamed)'}, whose inputs per iteration this graph does not expose`);
      out.push({ ...c, inSubgraph: true, layer: { ...c.layer, input } });
    }
    if (node.opType !== 'MatMul' && node.opType !== 'Gemm') continue;
    const via = weightOf(node.input[1]);
    if (via && via.w.dims.length === 2) out.push(linearCandidate(node, i, via.w, via, readers.get(via.w.name) ?? 0, dense, tokenWeights));
  }
  return out;
}

/** The linear-layer candidate of the MatMul/Gemm `node` (at top-level index `nodeIndex`) reading weight `w`
 *  (through `via`'s Cast/Transpose nodes), which `readerCount` nodes read in all. */
function linearCandidate(node: NodeProto, nodeIndex: number, w: TensorProto, via: { castNode?: number; transposeNode?: number },
  readerCount: number, dense: ReadonlyMap<string, string>, tokenWeights: ReadonlyMap<string, string>): Candidate {
  const d0 = Number(w.dims[0]);
  const d1 = Number(w.dims[1]);
  // The node reads [in, out] unless Gemm transposes B; a Transpose node in between flips what is stored.
  const transB = node.opType === 'Gemm' && intAttr(node, 'transB', 0) !== 0;
  const layout: WeightLayout = transB !== (via.transposeNode !== undefined) ? 'out_in' : 'in_out';
  let unsupported: string | undefined;
  if (node.opType === 'Gemm') {
    if (intAttr(node, 'transA', 0)) unsupported = 'Gemm with transA=1 (activations transposed)';
    else if (floatAttr(node, 'alpha', 1) !== 1) unsupported = `Gemm with alpha=${floatAttr(node, 'alpha', 1)}`;
  }
  const rows = layout === 'in_out' ? d1 : d0;
  const cols = layout === 'in_out' ? d0 : d1;
  if (!unsupported && !FLOAT_TYPES.has(w.dataType)) unsupported = `weight ${w.name} is ${tensorKind(w)}, not a floating-point type`;
  if (!unsupported && readerCount > 1) unsupported = `weight ${w.name} is shared with ${readerCount - 1} other reader(s)`;
  unsupported ??= dense.get(w.name);
  const tokenWeight = tokenWeights.get(w.name);
  return {
    node,
    nodeIndex,
    unsupported,
    layer: {
      kind: 'linear',
      node: node.name,
      nodeIndex,
      op: node.opType as 'MatMul' | 'Gemm',
      weight: w.name,
      rows,
      cols,
      layout,
      weightDims: [d0, d1],
      dataType: w.dataType,
      ...(via.castNode !== undefined ? { castNode: via.castNode } : {}),
      ...(via.transposeNode !== undefined ? { transposeNode: via.transposeNode } : {}),
      ...(tokenWeight ? { tokenWeight } : {}),
      input: node.input[0],
      output: node.output[0],
    },
  };
}

/** A node-name pattern: the built-in RegExps, or the user's blockPattern compiled to RE2 (linear-time). */
type NamePattern = Pick<UserRegex, 'source' | 'exec'>;

function compilePattern(p: string | RegExp): NamePattern {
  const source = typeof p === 'string' ? p : p.source;
  let re: UserRegex;
  try {
    re = compileUserRegex(source);
  } catch (e) {
    throw new Error(`blockPattern ${JSON.stringify(source.slice(0, 100))} is ${(e as Error).message}`);
  }
  if (re.groups < 1) throw new Error(`blockPattern ${JSON.stringify(source)} has no capture group: its first group must capture the block index`);
  return re;
}

interface BlockMatch { id: number; name: string; start: number }

/** The block a node name belongs to under `re`, or null. Built-in patterns capture (scope, index). */
function matchBlock(re: NamePattern, name: string, builtIn: boolean): BlockMatch | null {
  const m = re.exec(name);
  if (!m) return null;
  const idText = builtIn ? m[2] : m[1];
  if (idText === undefined) return null;
  const id = Number(idText);
  if (!Number.isInteger(id)) {
    throw new Error(`blockPattern ${JSON.stringify(re.source)}: its first capture group must be the block index (an integer), got ${JSON.stringify(idText)} in node ${name}`);
  }
  if (builtIn) {
    const scope = m[1] as string; // the built-in patterns' first group always takes part
    return { id, name: scope, start: m.index + m[0].length - scope.length };
  }
  const text = m[0].replace(/^[/.]+|[/.]+$/g, '');
  return { id, name: text || `block ${id}`, start: m.index + m[0].length - m[0].replace(/^[/.]+/, '').length };
}

/** Finds the prunable linear layers and the blocks of `model`. */
export function discoverLayers(model: ModelProto, options: DiscoverOptions = {}): Discovery {
  const graph = model.graph;
  const order = topologicalOrder(graph);
  const all = layerCandidates(graph, order, metadataMap(model, DENSE_WEIGHTS_KEY), metadataMap(model, TOKEN_WEIGHTS_KEY));
  // Blocks are chosen on the linear layers alone (a conv never decides the pattern).
  const candidates = all.filter((c) => c.layer.kind === 'linear');
  const notes: string[] = [];
  const depthwiseOptIn = (c: Candidate): SkippedLayer['keptDenseBy'] =>
    c.layer.kind === 'depthwiseConv' && !c.unsupported && !options.includeDepthwiseConv ? 'depthwiseConv' : undefined;
  const DEPTHWISE_REASON = 'depthwise conv (left dense by default)';

  const quantizedFound = findQuantizedLayers(graph, order);

  // Choose the block pattern.
  let re: NamePattern | null = null;
  let builtIn = false;
  let blockSource: BlockSource = 'per-layer';
  let nameScope: 'node' | 'weight' = 'node';
  if (options.blockPattern !== undefined && options.blockPattern !== '') {
    re = compilePattern(options.blockPattern);
    blockSource = 'custom';
    const hits = candidates.filter((c) => !c.unsupported && re?.exec(c.node.name)).length;
    if (hits === 0) throw new Error(`blockPattern ${JSON.stringify(re.source)} matches none of the ${candidates.length} linear layers' node names (e.g. ${JSON.stringify(candidates[0]?.node.name ?? '')})`);
  } else {
    // Node names first; where none carries a scope, the weights' names (dynamo exports name them by module path).
    for (const scope of ['node', 'weight'] as const) {
      let best = 0;
      for (const p of DEFAULT_BLOCK_PATTERNS) {
        const hits = candidates.filter((c) => !c.unsupported && p.test(scopeName(c, scope))).length;
        if (hits > best) { best = hits; re = p; }
      }
      if (re) { builtIn = true; blockSource = 'pattern'; nameScope = scope; break; }
    }
  }

  const nodeBlock = new Int32Array(graph.node.length).fill(-1);
  const blocks: Block[] = [];
  const layers: PrunableLayer[] = [];
  const skipped: SkippedLayer[] = [];
  const usedNames = new Set<string>();
  const uniqueName = (base: string, node: NodeProto, weight: string, from: number): string => {
    const first = base || weight || `node_${node.output[0] ?? ''}`;
    let name = first;
    // Two layers in one scope (`…/MatMul`, `…/MatMul_1`): keep the op component to tell them apart.
    if (usedNames.has(name) && node.name) name = friendlyLayerName(node.name, node.opType, from, true);
    for (let k = 2; usedNames.has(name); k++) name = `${first}#${k}`;
    usedNames.add(name);
    return name;
  };

  if (re) {
    // Blocks: every node whose name matches, grouped by the captured index, in index order.
    const matches: (BlockMatch | null)[] = nameScope === 'node' ? graph.node.map((n) => matchBlock(re as NamePattern, n.name, builtIn)) : graph.node.map(() => null);
    if (nameScope === 'weight') for (const c of candidates) matches[c.nodeIndex] = matchBlock(re, scopeName(c, 'weight'), builtIn);
    const ids = [...new Set(matches.filter((m): m is BlockMatch => m !== null).map((m) => m.id))].sort((a, b) => a - b);
    const indexOf = new Map(ids.map((id, k) => [id, k]));
    const nameOf = new Map<number, string>();
    matches.forEach((m, i) => {
      if (!m) return;
      nodeBlock[i] = indexOf.get(m.id) as number;
      if (!nameOf.has(m.id)) nameOf.set(m.id, m.name);
    });
    ids.forEach((id, k) => blocks.push({ index: k, id, name: nameOf.get(id) as string, layers: [] }));
    for (const c of all) {
      const m = matches[c.nodeIndex];
      // A subgraph's node is named in its own scope: where its block scope starts is found in its own name.
      const from = (c.inSubgraph && nameScope === 'node' ? matchBlock(re, c.node.name, builtIn)?.start : m?.start) ?? 0;
      const name = uniqueName(friendlyLayerName(scopeName(c, nameScope), c.node.opType, from), c.node, c.layer.weight, from);
      const block = m ? (indexOf.get(m.id) as number) : null;
      const layer: PrunableLayer = { ...c.layer, name, block };
      let reason = c.unsupported;
      let keptDenseBy = depthwiseOptIn(c);
      if (keptDenseBy) reason = DEPTHWISE_REASON;
      if (!reason && !options.includeLmHead) {
        keptDenseBy = 'lmHead';
        if (LM_HEAD_NAME.test(c.node.name)) reason = 'LM head (left dense by default)';
        else if (block === null) reason = 'outside every block (left dense by default, like the LM head)';
        else keptDenseBy = undefined;
      }
      if (!reason && block === null && feedNodes(c.layer).length) reason = `weight ${c.layer.weight} reaches its node through a Cast or Transpose outside every block (not supported)`;
      if (reason) skipped.push({ ...layer, block, reason, ...(keptDenseBy ? { keptDenseBy } : {}) });
      else {
        layers.push(layer);
        if (block !== null) {
          blocks[block].layers.push(name);
          for (const f of feedNodes(c.layer)) nodeBlock[f] = block;
        }
      }
    }
  } else {
    // Blocks from the residual stream (structuralBlocks.ts); failing that, one block per layer in topological order.
    const outputs = new Set(graph.output.map((o) => o.name));
    const prunable = (c: Candidate) => !c.unsupported && !depthwiseOptIn(c);
    const linearNodes = [...all.filter(prunable).map((c) => c.nodeIndex), ...quantizedFound.map((q) => q.nodeIndex)];
    const structure = options.structuralBlocks === false ? null : structuralBlocks(graph, order, linearNodes);
    if (structure) blockSource = 'structure';
    const structuralBlock = (c: { nodeIndex: number }): number | null => {
      const k = structure?.get(c.nodeIndex) ?? -1;
      if (k < 0) return null;
      while (blocks.length <= k) blocks.push({ index: blocks.length, id: blocks.length, name: `block.${blocks.length}`, layers: [] });
      return k;
    };
    for (const c of all) {
      const name = uniqueName(friendlyLayerName(c.node.name, c.node.opType), c.node, c.layer.weight, 0);
      let reason = c.unsupported;
      let keptDenseBy = depthwiseOptIn(c);
      if (keptDenseBy) reason = DEPTHWISE_REASON;
      if (!reason && !options.includeLmHead && (LM_HEAD_NAME.test(c.node.name) || outputs.has(c.layer.output))) {
        reason = 'LM head (left dense by default)';
        keptDenseBy = 'lmHead';
      }
      const inStream = structure && !reason ? structuralBlock(c) : null;
      if (structure && !reason && inStream === null && !options.includeLmHead) {
        reason = 'after the last residual block (left dense by default, like the LM head)';
        keptDenseBy = 'lmHead';
      }
      if (reason) {
        skipped.push({ ...c.layer, name, block: null, reason, ...(keptDenseBy ? { keptDenseBy } : {}) });
        continue;
      }
      const k = inStream ?? blocks.length;
      if (inStream === null) blocks.push({ index: k, id: k, name, layers: [] });
      blocks[k].layers.push(name);
      nodeBlock[c.nodeIndex] = k;
      for (const f of feedNodes(c.layer)) nodeBlock[f] = k;
      layers.push({ ...c.layer, name, block: k });
    }
    for (const q of quantizedFound) {
      const k = structure ? structuralBlock(q) : null;
      if (k !== null) nodeBlock[q.nodeIndex] = k;
    }
    if (structure) {
      notes.push(`no block pattern (layers.N, h.N, layer.N, blocks.N) names the linear layers: ${blocks.length} blocks found from the residual stream`);
    } else if (candidates.length) {
      notes.push(`no block pattern (layers.N, h.N, layer.N, blocks.N) names the linear layers: one block per layer (${blocks.length}) in topological order; set blockPattern to group them`);
    }
  }

  const quantized = quantizedFound.map((q) => ({ ...q, block: nodeBlock[q.nodeIndex] >= 0 ? nodeBlock[q.nodeIndex] : null }));
  if (candidates.length === 0) {
    notes.push(quantized.length ? `no float linear layer; quantized: ${describeQuantized(quantized)}. ${QUANTIZED_ADVICE}` : 'no MatMul or Gemm node reads a 2-D initializer: nothing to prune');
  }
  for (const s of skipped) notes.push(`${s.name} (${s.node || s.weight}, ${s.rows}x${s.cols}) left dense: ${s.reason}`);
  const warnings = blocks.filter((b) => b.layers.length === 0).map((b) => {
    const q = quantized.filter((x) => x.block === b.index);
    const why = q.length ? `its linear layers are quantized: ${describeQuantized(q)}` : `its linear layers are left dense: ${skipped.filter((x) => x.block === b.index).map((x) => `${x.name} (${x.reason})`).join('; ') || 'none found'}`;
    return `block ${b.name} has no prunable layer, so it stays dense: ${why}`;
  });
  return { layers, skipped, blocks, blockSource, pattern: re ? re.source : null, nodeBlock, notes, quantized, warnings };
}
