// Quantized linear layers: what int4/int8 exports put where a float MatMul was (onnxruntime-genai's MatMulNBits,
// dynamic quantization's MatMulInteger, static quantization's QLinearMatMul or QDQ: DequantizeLinear of an integer
// initializer feeding a MatMul/Gemm). PruneKit's methods update float weights, so these are found and named (never
// skipped in silence): a run refuses a graph whose blocks hold them, with what to do instead.

import type { GraphProto, NodeProto } from '../onnx/proto';
import { isDefaultDomain } from './layers';

export interface QuantizedLayer {
  /** The node computing the product (may be empty in unnamed graphs). */
  node: string;
  nodeIndex: number;
  /** `MatMulNBits`, `MatMulInteger`, `QLinearMatMul`, …, or `DequantizeLinear → MatMul` for QDQ. */
  op: string;
  /** Index into `Discovery.blocks`, or null outside every block. */
  block: number | null;
}

/** Ops that multiply by a quantized weight themselves, with the input index of that weight. */
const QUANTIZED_OPS: Record<string, { domain: string; weight: number }> = {
  MatMulNBits: { domain: 'com.microsoft', weight: 1 },
  MatMulInteger: { domain: '', weight: 1 },
  QLinearMatMul: { domain: '', weight: 3 },
  DynamicQuantizeMatMul: { domain: 'com.microsoft', weight: 1 },
  MatMulIntegerToFloat: { domain: 'com.microsoft', weight: 1 },
};
/** Layout-only ops that may sit between a DequantizeLinear and the MatMul (a transposed or reshaped weight). */
const PASS_THROUGH = new Set(['Transpose', 'Reshape', 'Cast', 'Identity']);

function inDomain(node: NodeProto, domain: string): boolean {
  return domain === '' ? isDefaultDomain(node) : node.domain === domain;
}

/** Every quantized linear layer of `graph`, in `order` (block: null; discoverLayers assigns blocks). */
export function findQuantizedLayers(graph: GraphProto, order: number[]): QuantizedLayer[] {
  const inits = new Set(graph.initializer.map((t) => t.name));
  const producer = new Map<string, number>();
  graph.node.forEach((n, i) => n.output.forEach((t) => t && producer.set(t, i)));
  const isConstant = (t: string): boolean => {
    const p = producer.get(t);
    return p === undefined ? inits.has(t) : graph.node[p].opType === 'Constant';
  };
  /** The DequantizeLinear of an initializer that computes `t` (through layout-only ops), if any. */
  const dequantized = (t: string): boolean => {
    for (let step = 0; step < 4; step++) {
      const p = producer.get(t);
      const n = p === undefined ? undefined : graph.node[p];
      if (!n) return false;
      if (n.opType === 'DequantizeLinear') return isConstant(n.input[0]); // not an activation's Q → DQ pair
      if (!PASS_THROUGH.has(n.opType)) return false;
      t = n.input[0];
    }
    return false;
  };
  const out: QuantizedLayer[] = [];
  for (const i of order) {
    const n = graph.node[i];
    const q = QUANTIZED_OPS[n.opType];
    if (q && inDomain(n, q.domain)) out.push({ node: n.name, nodeIndex: i, op: n.opType, block: null });
    else if ((n.opType === 'MatMul' || n.opType === 'Gemm') && isDefaultDomain(n) && dequantized(n.input[1])) {
      out.push({ node: n.name, nodeIndex: i, op: `DequantizeLinear → ${n.opType}`, block: null });
    }
  }
  return out;
}

/** "3 MatMulNBits (e.g. /model/layers.0/attn/qkv_proj/MatMulNBits), 1 MatMulInteger (…)". */
export function describeQuantized(layers: QuantizedLayer[]): string {
  const byOp = new Map<string, QuantizedLayer[]>();
  for (const l of layers) byOp.set(l.op, [...(byOp.get(l.op) ?? []), l]);
  return [...byOp].map(([op, ls]) => `${ls.length} ${op} (e.g. node ${ls[0].node || `#${ls[0].nodeIndex}`})`).join(', ');
}

export const QUANTIZED_ADVICE = 'PruneKit prunes float weights: prune the float (fp32/fp16/bf16) model, then quantize the pruned one';

/** Why a run must refuse `quantized` (some in a block, or no float layer to prune at all), or null. */
export function quantizedRefusal(quantized: QuantizedLayer[], floatLayers: number): string | null {
  const inBlocks = quantized.filter((q) => q.block !== null);
  if (inBlocks.length === 0 && (quantized.length === 0 || floatLayers > 0)) return null;
  return `quantized linear layers found: ${describeQuantized(inBlocks.length ? inBlocks : quantized)}; ${QUANTIZED_ADVICE}`;
}
