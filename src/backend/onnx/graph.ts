// A small typed builder for ONNX graphs. The numerics build their kernels with it (GEMMs, Hessian
// accumulation, losses), and the pipeline uses the same types to cut and extend checkpoint graphs.

import { AttributeProto, AttributeType, DataType, ModelProto, NodeProto, TensorProto, ValueInfoProto } from './proto';

/** Default opset for generated kernels: every op we emit is in ai.onnx and supported by the CPU, CUDA and
 *  WebGPU execution providers at this version. */
export const KERNEL_OPSET = 17;

export type Dim = number | string;

/** A named tensor inside a graph under construction. */
export interface Value {
  readonly name: string;
}

/** Plain numbers are INT attributes; wrap floats as `{ f: 1.0 }` (an integral float must still be typed FLOAT). */
export type AttrValue = number | string | number[] | TensorProto | { f: number } | { floats: number[] };

export class GraphBuilder {
  private readonly nodes: NodeProto[] = [];
  private readonly inputs: ValueInfoProto[] = [];
  private readonly outputs: ValueInfoProto[] = [];
  private readonly initializers: TensorProto[] = [];
  private counter = 0;

  constructor(readonly name: string) {}

  input(name: string, elemType: DataType, shape: Dim[] | null): Value {
    this.inputs.push(valueInfo(name, elemType, shape));
    return { name };
  }

  /** A constant baked into the graph (small tensors only: shapes, axes, scalars). */
  constant(values: number[] | bigint[], dims: number[], dataType: DataType = DataType.FLOAT): Value {
    const name = `${this.name}_const${this.counter++}`;
    this.initializers.push(tensorFromValues(name, values, dims, dataType));
    return { name };
  }

  op(opType: string, inputs: (Value | null)[], attrs: Record<string, AttrValue> = {}, nOutputs = 1): Value {
    return this.opN(opType, inputs, attrs, nOutputs)[0];
  }

  opN(opType: string, inputs: (Value | null)[], attrs: Record<string, AttrValue> = {}, nOutputs = 1): Value[] {
    const id = this.counter++;
    const outputs = Array.from({ length: nOutputs }, (_, k) => `${opType}_${id}_out${k}`);
    this.nodes.push({
      name: `${opType}_${id}`,
      opType,
      input: inputs.map((v) => v?.name ?? ''),
      output: outputs,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outputs.map((name) => ({ name }));
  }

  output(value: Value, name: string, elemType: DataType, shape: Dim[] | null): void {
    // Rename through Identity so outputs have stable, caller-chosen names.
    this.nodes.push({ name: `out_${name}`, opType: 'Identity', input: [value.name], output: [name], attribute: [] });
    this.outputs.push(valueInfo(name, elemType, shape));
  }

  build(opset = KERNEL_OPSET): ModelProto {
    return {
      irVersion: 8,
      opsetImport: [{ domain: '', version: opset }],
      producerName: 'prunekit',
      graph: {
        name: this.name,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
        valueInfo: [],
      },
    };
  }
}

/** A value's type; a null shape leaves the rank open. */
export function valueInfo(name: string, elemType: DataType, shape: Dim[] | null): ValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        ...(shape && { shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } }),
      },
    },
  };
}

function attribute(name: string, v: AttrValue): AttributeProto {
  if (typeof v === 'number') return { name, type: AttributeType.INT, i: v };
  if (typeof v === 'string') return { name, type: AttributeType.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: AttributeType.INTS, ints: v };
  if ('f' in v) return { name, type: AttributeType.FLOAT, f: v.f };
  if ('floats' in v) return { name, type: AttributeType.FLOATS, floats: v.floats };
  return { name, type: AttributeType.TENSOR, t: v as TensorProto };
}

export function tensorFromValues(name: string, values: number[] | bigint[], dims: number[], dataType: DataType): TensorProto {
  let raw: Uint8Array;
  switch (dataType) {
    case DataType.FLOAT: raw = new Uint8Array(Float32Array.from(values as number[]).buffer); break;
    case DataType.DOUBLE: raw = new Uint8Array(Float64Array.from(values as number[]).buffer); break;
    case DataType.INT64: raw = new Uint8Array(BigInt64Array.from((values as (number | bigint)[]).map((x) => BigInt(x))).buffer); break;
    case DataType.INT32: raw = new Uint8Array(Int32Array.from(values as number[]).buffer); break;
    default: throw new Error(`tensorFromValues: unsupported data type ${DataType[dataType]}`);
  }
  return { name, dims, dataType, rawData: raw };
}
