// Blocks from the graph's structure, for exports whose node names carry no module scope (torch's dynamo exporter,
// stripped or renamed graphs): the residual stream cut at its Adds, then sub-blocks joined into transformer blocks.
//
// A residual Add is an Add (or onnxruntime's fused Skip…Normalization) whose inputs are x and f(x): one input is an
// ancestor of the other, and a linear layer lies on a path between them. Each layer belongs to the sub-block of the
// first residual Add it feeds (the attention half, the MLP half, or both for a parallel residual). A block starts at
// each sub-block that holds attention (a Softmax, or a fused attention op) and takes the sub-blocks without attention
// after it, so Llama's layers.N = attention + MLP; a graph without attention (Mamba) has one block per sub-block.
// Only the layers (and the Cast/Transpose feeding their weights) are placed: segmentPlan.ts places every other node
// by dataflow, so each norm lands in the block whose layers read it.

import type { GraphProto, NodeProto } from '../onnx/proto';
import { isDefaultDomain, nodeInputs } from './layers';

const ATTENTION_OPS = new Set(['Softmax', 'Attention', 'MultiHeadAttention', 'GroupQueryAttention', 'PackedAttention', 'SparseAttention']);
const SKIP_NORMS = new Set(['SkipLayerNormalization', 'SkipSimplifiedLayerNormalization']);

interface Graph {
  nodes: NodeProto[];
  /** Position of each node in topological order. */
  pos: Int32Array;
  producer: Map<string, number>;
  users: number[][];
  isLayer: Uint8Array;
}

/** The two summed inputs of a residual-Add candidate, or null. */
function summands(node: NodeProto): [string, string] | null {
  if (node.opType === 'Add' && isDefaultDomain(node) && node.input.length === 2) return [node.input[0], node.input[1]];
  if (SKIP_NORMS.has(node.opType) && node.domain === 'com.microsoft' && node.input.length >= 2) return [node.input[0], node.input[1]];
  return null;
}

/** Nodes reachable from `from` (forward) with topological position at most `limit`. */
function descendants(g: Graph, from: number, limit: number): Set<number> {
  const seen = new Set<number>([from]);
  const stack = [from];
  while (stack.length) {
    for (const u of g.users[stack.pop() as number]) {
      if (g.pos[u] <= limit && !seen.has(u)) { seen.add(u); stack.push(u); }
    }
  }
  return seen;
}

/** Nodes that reach `to` (backward) with topological position at least `limit`. */
function ancestors(g: Graph, to: number, limit: number): Set<number> {
  const seen = new Set<number>([to]);
  const stack = [to];
  while (stack.length) {
    for (const t of nodeInputs(g.nodes[stack.pop() as number])) {
      const p = g.producer.get(t);
      if (p !== undefined && g.pos[p] >= limit && !seen.has(p)) { seen.add(p); stack.push(p); }
    }
  }
  return seen;
}

/** The nodes strictly between a residual Add's skip input and its branch input, when it is one; else null. */
function residualBranch(g: Graph, add: number): Set<number> | null {
  const pair = summands(g.nodes[add]);
  if (!pair) return null;
  const [a, b] = pair.map((t) => g.producer.get(t));
  if (a === undefined || b === undefined || a === b) return null;
  const [skip, branch] = g.pos[a] < g.pos[b] ? [a, b] : [b, a];
  const down = descendants(g, skip, g.pos[branch]);
  if (!down.has(branch)) return null;
  const between = new Set([...ancestors(g, branch, g.pos[skip])].filter((i) => down.has(i) && i !== skip));
  return [...between].some((i) => g.isLayer[i]) ? between : null;
}

/**
 * Block index (0-based, in stream order) of each node in `layerNodes`, or null when the graph shows no residual
 * stream. Layers after the last residual Add (the LM head) get no block (-1).
 */
export function structuralBlocks(graph: GraphProto, order: number[], layerNodes: number[]): Map<number, number> | null {
  const nodes = graph.node;
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => n.output.forEach((t) => t && producer.set(t, i)));
  const users: number[][] = nodes.map(() => []);
  nodes.forEach((n, i) => {
    for (const t of new Set(nodeInputs(n))) {
      const p = producer.get(t);
      if (p !== undefined) users[p].push(i);
    }
  });
  const pos = new Int32Array(nodes.length);
  order.forEach((i, k) => { pos[i] = k; });
  const isLayer = new Uint8Array(nodes.length);
  for (const i of layerNodes) isLayer[i] = 1;
  const g: Graph = { nodes, pos, producer, users, isLayer };

  // Residual Adds in stream order, each with whether its branch holds attention.
  const adds: { node: number; attention: boolean }[] = [];
  for (const i of order) {
    const branch = residualBranch(g, i);
    if (branch) adds.push({ node: i, attention: [...branch].some((k) => ATTENTION_OPS.has(nodes[k].opType)) });
  }
  if (adds.length === 0) return null;

  // Sub-block k → block: a new block at each attention sub-block (or at every one, with no attention anywhere).
  const anyAttention = adds.some((a) => a.attention);
  const blockOfAdd = new Map<number, number>();
  let block = -1;
  for (const a of adds) {
    if (block < 0 || a.attention || !anyAttention) block++;
    blockOfAdd.set(a.node, block);
  }
  // Each node's first residual Add downstream (in stream order), by a reverse topological pass.
  const INF = Number.MAX_SAFE_INTEGER;
  const firstAdd = new Float64Array(nodes.length).fill(INF);
  const addRank = new Map(adds.map((a, k) => [a.node, k]));
  for (let k = order.length - 1; k >= 0; k--) {
    const i = order[k];
    const own = addRank.get(i);
    let best = own ?? INF;
    if (own === undefined) for (const u of users[i]) best = Math.min(best, firstAdd[u]);
    firstAdd[i] = best;
  }
  const out = new Map<number, number>();
  for (const i of layerNodes) {
    const r = firstAdd[i];
    out.set(i, r === INF ? -1 : (blockOfAdd.get(adds[r].node) as number));
  }
  return out;
}
