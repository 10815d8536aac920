// Where tensors live in a ModelProto and how their bytes are stored: graph initializers, tensor-valued node
// attributes (Constant's `value`), and the same inside subgraphs (If/Loop/Scan bodies). Any of them may keep its
// data in raw_data, in a typed field (float_data, int32_data, ...), or in an external file.

import { AttributeProto, DataType, GraphProto, ModelProto, NodeProto, StringStringEntry, TensorProto } from '../onnx/proto';
import { byteLengthOf, dataTypeName } from './dtype';

/** TensorProto.DataLocation.EXTERNAL */
export const DATA_LOCATION_EXTERNAL = 1;

export function dimsOf(t: TensorProto): number[] {
  return t.dims.map((d) => Number(d));
}

export function elementCount(t: TensorProto): number {
  return dimsOf(t).reduce((a, b) => a * b, 1);
}

export function isExternal(t: TensorProto): boolean {
  return t.dataLocation === DATA_LOCATION_EXTERNAL || (t.externalData?.length ?? 0) > 0;
}

/** The external_data entry `key`, if present. */
export function externalEntry(t: TensorProto, key: string): string | undefined {
  return t.externalData?.find((e: StringStringEntry) => e.key === key)?.value;
}

/**
 * Calls `fn` for every TensorProto in the model: each graph's initializers, then its node attributes, recursing into
 * subgraphs. `where` describes the tensor for messages; `initializer` tells graph initializers from attributes.
 */
export function forEachTensor(model: ModelProto, fn: (t: TensorProto, where: string, initializer: boolean) => void): void {
  const graph = (g: GraphProto, scope: string): void => {
    for (const t of g.initializer) fn(t, `${scope}initializer '${t.name}'`, true);
    for (const n of g.node) {
      for (const a of n.attribute) {
        const at = `${scope}node '${n.name || n.opType}' attribute '${a.name}'`;
        if (a.t) fn(a.t, at, false);
        a.tensors?.forEach((t, i) => fn(t, `${at}[${i}]`, false));
        if (a.g) graph(a.g, `${at} > `);
        a.graphs?.forEach((sg, i) => graph(sg, `${at}[${i}] > `));
      }
    }
  };
  graph(model.graph, '');
}

/**
 * A copy of `model` in which every TensorProto is replaced by `fn(t)`. Graphs, nodes and attributes on the way to a
 * tensor are shallow-copied; everything else (and tensors `fn` returns unchanged) is shared with the input, which
 * is never mutated.
 */
export function mapTensors(model: ModelProto, fn: (t: TensorProto) => TensorProto): ModelProto {
  const graph = (g: GraphProto): GraphProto => ({ ...g, initializer: g.initializer.map(fn), node: g.node.map(node) });
  const hasTensors = (a: AttributeProto): boolean => !!(a.t || a.tensors?.length || a.g || a.graphs?.length);
  const node = (n: NodeProto): NodeProto =>
    n.attribute.some(hasTensors)
      ? {
          ...n,
          attribute: n.attribute.map((a) =>
            hasTensors(a)
              ? {
                  ...a,
                  ...(a.t ? { t: fn(a.t) } : {}),
                  ...(a.tensors ? { tensors: a.tensors.map(fn) } : {}),
                  ...(a.g ? { g: graph(a.g) } : {}),
                  ...(a.graphs ? { graphs: a.graphs.map(graph) } : {}),
                }
              : a,
          ),
        }
      : n;
  return { ...model, graph: graph(model.graph) };
}

/**
 * The little-endian raw bytes of a tensor stored inline (raw_data or a typed field), or undefined when it has none.
 * raw_data is returned as the decoder's view (no copy); typed fields are converted. Throws for STRING tensors and
 * typed-field layouts ONNX does not define.
 */
export function inlineBytes(t: TensorProto): Uint8Array | undefined {
  if (t.rawData) return t.rawData;
  const n = elementCount(t);
  const type: number = t.dataType;
  const fail = (): never => {
    throw new RangeError(`tensor '${t.name}' (${dataTypeName(type)}) has no raw_data and no typed data this reader understands`);
  };
  if (type === DataType.STRING) fail();
  const typed = (): Uint8Array | undefined => {
    switch (type) {
      case DataType.FLOAT:
      case 14 /* COMPLEX64 */:
        return t.floatData && bytesOf(Float32Array.from(t.floatData));
      case DataType.DOUBLE:
      case 15 /* COMPLEX128 */:
        return t.doubleData && bytesOf(Float64Array.from(t.doubleData));
      case DataType.INT64:
        return t.int64Data && bytesOf(BigInt64Array.from(t.int64Data, (v) => BigInt(v)));
      case DataType.UINT32:
        return t.uint64Data && bytesOf(Uint32Array.from(t.uint64Data, (v) => Number(v)));
      case DataType.UINT64:
        return t.uint64Data && bytesOf(BigUint64Array.from(t.uint64Data, (v) => BigInt.asUintN(64, BigInt(v))));
      case DataType.INT32:
        return t.int32Data && bytesOf(Int32Array.from(t.int32Data));
      case DataType.INT16:
        return t.int32Data && bytesOf(Int16Array.from(t.int32Data));
      case DataType.UINT16:
      case DataType.FLOAT16:
      case DataType.BFLOAT16:
        // 16-bit floats are stored as their bit patterns in int32_data.
        return t.int32Data && bytesOf(Uint16Array.from(t.int32Data));
      case DataType.INT8:
        return t.int32Data && bytesOf(Int8Array.from(t.int32Data));
      case DataType.UINT8:
      case DataType.BOOL:
      case 17: case 18: case 19: case 20: // FLOAT8 variants: bit patterns in int32_data
        return t.int32Data && Uint8Array.from(t.int32Data);
      default:
        return undefined;
    }
  };
  const bytes = typed();
  if (bytes) return bytes;
  if (n === 0) return new Uint8Array(0);
  if (byteLengthOf(type, n) === undefined || (type >= 21 && type <= 23)) fail();
  return undefined;
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
