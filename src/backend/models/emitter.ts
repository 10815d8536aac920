// Graph emission shared by every builder: ONNX nodes with exporter-style scoped names (so layer discovery and
// segmentation treat a built graph like an exported one), weights as initializers, and the causal-LM model
// wrapper with the metadata the Hugging Face front end reads back.

import { KERNEL_OPSET, tensorFromValues, valueInfo } from '../onnx/graph';
import { AttributeProto, AttributeType, DataType, ModelProto, NodeProto, TensorProto } from '../onnx/proto';
import { POSITION_LIMIT_KEY } from './inputs';
import { checkWeights, isTensorRef, LlamaTensor, LlamaWeights, TensorRef, weightOf } from './weights';

function attr(name: string, v: number | number[] | { f: number } | TensorProto): AttributeProto {
  if (typeof v === 'number') return { name, type: AttributeType.INT, i: v };
  if (Array.isArray(v)) return { name, type: AttributeType.INTS, ints: v };
  if ('f' in v) return { name, type: AttributeType.FLOAT, f: v.f };
  return { name, type: AttributeType.TENSOR, t: v };
}

export class Emitter {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  private readonly used = new Set<string>();

  /** Emits `op` named `<scope>/<op>` (`_1`, `_2`… when taken) with outputs `<name>_output_<k>`. */
  op(scope: string, opType: string, inputs: string[], attrs: Record<string, number | number[] | { f: number } | TensorProto> = {}, nOutputs = 1): string[] {
    let name = `${scope}/${opType}`;
    for (let k = 1; this.used.has(name); k++) name = `${scope}/${opType}_${k}`;
    this.used.add(name);
    const output = Array.from({ length: nOutputs }, (_, k) => `${name}_output_${k}`);
    this.nodes.push({ name, opType, input: inputs, output, attribute: Object.entries(attrs).map(([k, v]) => attr(k, v)) });
    return output;
  }

  op1(scope: string, opType: string, inputs: string[], attrs: Record<string, number | number[] | { f: number } | TensorProto> = {}): string {
    return this.op(scope, opType, inputs, attrs)[0];
  }

  /** A Constant node (small values only). */
  constant(scope: string, values: number[] | bigint[], dims: number[], dataType: DataType): string {
    return this.op1(scope, 'Constant', [], { value: tensorFromValues('', values, dims, dataType) });
  }

  ints(scope: string, values: number[]): string {
    return this.constant(scope, values, [values.length], DataType.INT64);
  }

  scalar(scope: string, value: number): string {
    return this.constant(scope, [value], [], DataType.FLOAT);
  }

  initializer(name: string, data: Float32Array, dims: number[]): string {
    this.initializers.push({
      name,
      dims,
      dataType: DataType.FLOAT,
      rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    });
    return name;
  }

  /** An initializer named `name` holding `t`: its values (copied by reference), or the referenced TensorProto. */
  weight(name: string, t: LlamaTensor | TensorRef): string {
    if (isTensorRef(t)) {
      this.initializers.push({ ...t.initializer, name, dims: t.dims.slice() });
      return name;
    }
    return this.initializer(name, t.data, t.dims);
  }

  /** y = x · Wᵀ (+ b) for an HF Linear weight `hfName` [out, in] referenced as stored: Gemm(transB=1) on 2-D x. */
  gemm(scope: string, x: string, hfName: string, w: LlamaTensor | TensorRef, bias?: { name: string; t: LlamaTensor | TensorRef }): string {
    const inputs = [x, this.weight(hfName, w)];
    if (bias) inputs.push(this.weight(bias.name, bias.t));
    return this.op1(scope, 'Gemm', inputs, { transB: 1 });
  }
}

/** [rows, cols] row-major → [cols, rows], in 64×64 tiles (cache-friendly for 4096×11008 weights), four source rows at
 *  a time (each read of a column then fills four adjacent outputs: about 1.4× the one-row loop); into `out` when given. */
export function transpose(data: Float32Array, rows: number, cols: number, out: Float32Array = new Float32Array(rows * cols)): Float32Array {
  transposeBits(data, rows, cols, out);
  return out;
}

/** transpose() into `out`, copying bits (NaN payloads too); says whether every value is finite, which it learns on
 *  the way (an all-ones exponent plus one exponent unit carries into the sign bit, which the OR keeps). */
export function transposeBits(data: Float32Array, rows: number, cols: number, out: Float32Array): boolean {
  if (out.length !== rows * cols) throw new RangeError(`transpose: ${out.length} outputs for ${rows}×${cols}`);
  const a = new Int32Array(data.buffer, data.byteOffset, data.length);
  const o = new Int32Array(out.buffer, out.byteOffset, out.length);
  const T = 64;
  let m = 0;
  for (let r0 = 0; r0 < rows; r0 += T) {
    const r1 = Math.min(r0 + T, rows);
    for (let c0 = 0; c0 < cols; c0 += T) {
      const c1 = Math.min(c0 + T, cols);
      let r = r0;
      for (; r + 4 <= r1; r += 4) {
        const s0 = r * cols, s1 = s0 + cols, s2 = s1 + cols, s3 = s2 + cols;
        for (let c = c0; c < c1; c++) {
          const d = c * rows + r;
          const x0 = a[s0 + c], x1 = a[s1 + c], x2 = a[s2 + c], x3 = a[s3 + c];
          o[d] = x0;
          o[d + 1] = x1;
          o[d + 2] = x2;
          o[d + 3] = x3;
          m |= ((x0 & 0x7f800000) + 0x00800000) | ((x1 & 0x7f800000) + 0x00800000) | ((x2 & 0x7f800000) + 0x00800000) | ((x3 & 0x7f800000) + 0x00800000);
        }
      }
      for (; r < r1; r++) {
        const src = r * cols;
        for (let c = c0; c < c1; c++) {
          const x = a[src + c];
          o[c * rows + r] = x;
          m |= (x & 0x7f800000) + 0x00800000;
        }
      }
    }
  }
  return m >= 0;
}

/** A family builder's start: `weights` checked against the family's `shapes` (throwing, naming each missing or
 *  misshapen tensor), an emitter, the weight lookup `w`, and `linear`: the layer `name` (`name.weight` [out, in],
 *  `name.bias` when `bias`) applied to `x` as a Gemm on the weight as stored. */
export function familyBuilder(family: string, shapes: ReadonlyMap<string, number[]>, weights: LlamaWeights) {
  checkWeights(family, shapes, weights);
  const e = new Emitter();
  const w = (name: string): LlamaTensor | TensorRef => weightOf(weights, name);
  const linear = (scope: string, x: string, name: string, bias: boolean): string =>
    e.gemm(scope, x, `${name}.weight`, w(`${name}.weight`), bias ? { name: `${name}.bias`, t: w(`${name}.bias`) } : undefined);
  return { e, w, linear };
}

/** The float32 lowest value: masked attention scores (exp underflows to exactly 0, never NaN). */
export const FLOAT32_LOWEST = -3.4028234663852886e38;

/** What every causal-LM builder hands back: the emitter's nodes and initializers with inputs input_ids and
 *  attention_mask [batch, seq] (int64), output logits [batch, seq, vocab], and the metadata the Hugging Face
 *  front end reads back. `docString` names the architecture and its sizes; the graph is named after the builder. */
export function causalLmModel(e: Emitter, builder: string, docString: string, m: {
  vocabSize: number;
  weightLayout: 'out_in' | 'in_out';
  tied: boolean;
  /** The rows of a learned position table: the longest window the graph runs (POSITION_LIMIT_KEY). */
  positionLimit?: number;
  graphName?: string;
  opset?: number;
}): ModelProto {
  return {
    irVersion: 8,
    opsetImport: [{ domain: '', version: m.opset ?? KERNEL_OPSET }],
    producerName: 'prunekit',
    docString: `${docString}, built by PruneKit from a Hugging Face config`,
    graph: {
      name: m.graphName ?? builder,
      node: e.nodes,
      initializer: e.initializers,
      input: [
        valueInfo('input_ids', DataType.INT64, ['batch_size', 'sequence_length']),
        valueInfo('attention_mask', DataType.INT64, ['batch_size', 'sequence_length']),
      ],
      output: [valueInfo('logits', DataType.FLOAT, ['batch_size', 'sequence_length', m.vocabSize])],
      valueInfo: [],
    },
    metadataProps: [
      { key: 'prunekit.builder', value: builder },
      { key: 'prunekit.weight_layout', value: m.weightLayout },
      { key: 'prunekit.tied_lm_head', value: String(m.tied) },
      ...(m.positionLimit ? [{ key: POSITION_LIMIT_KEY, value: String(m.positionLimit) }] : []),
    ],
  };
}
