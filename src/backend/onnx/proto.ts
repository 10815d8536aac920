// Why hand-written: onnx-proto (npm) is protobufjs 6 code for an older ONNX schema, and protobufjs skips fields its
// schema does not know, so a round trip would drop them; this codec keeps them verbatim, and tensor bytes as views.
// The subset of onnx.proto that PruneKit reads and writes, as typed objects plus one schema-driven codec.
// Fields we do not model are kept as raw bytes (`unknown`) and written back verbatim, so a decode/encode
// round trip never drops metadata, functions or training info from a user's checkpoint.
// Field numbers follow onnx/onnx.proto (IR version 10).

import { Int64, Reader, Writer, WIRE_I32, WIRE_I64, WIRE_LEN, WIRE_VARINT } from './wire';

export enum DataType {
  UNDEFINED = 0, FLOAT = 1, UINT8 = 2, INT8 = 3, UINT16 = 4, INT16 = 5, INT32 = 6, INT64 = 7, STRING = 8,
  BOOL = 9, FLOAT16 = 10, DOUBLE = 11, UINT32 = 12, UINT64 = 13, BFLOAT16 = 16,
}

export enum AttributeType {
  UNDEFINED = 0, FLOAT = 1, INT = 2, STRING = 3, TENSOR = 4, GRAPH = 5, FLOATS = 6, INTS = 7, STRINGS = 8,
  TENSORS = 9, GRAPHS = 10,
}

interface Preserved {
  /** Raw bytes of fields this codec does not model, re-emitted unchanged on encode. */
  unknown?: Uint8Array[];
}

export interface StringStringEntry extends Preserved { key: string; value: string }

export interface TensorProto extends Preserved {
  name: string;
  dims: Int64[];
  dataType: DataType;
  rawData?: Uint8Array;
  floatData?: number[];
  int32Data?: number[];
  int64Data?: Int64[];
  doubleData?: number[];
  uint64Data?: Int64[];
  stringData?: Uint8Array[];
  externalData?: StringStringEntry[];
  /** 1 = EXTERNAL */
  dataLocation?: number;
  docString?: string;
}

export interface AttributeProto extends Preserved {
  name: string;
  type: AttributeType;
  f?: number;
  i?: Int64;
  s?: Uint8Array;
  t?: TensorProto;
  g?: GraphProto;
  floats?: number[];
  ints?: Int64[];
  strings?: Uint8Array[];
  tensors?: TensorProto[];
  graphs?: GraphProto[];
  docString?: string;
}

export interface NodeProto extends Preserved {
  input: string[];
  output: string[];
  name: string;
  opType: string;
  domain?: string;
  attribute: AttributeProto[];
  docString?: string;
}

export interface Dimension extends Preserved { dimValue?: Int64; dimParam?: string }
export interface TensorShapeProto extends Preserved { dim: Dimension[] }
export interface TensorTypeProto extends Preserved { elemType: DataType; shape?: TensorShapeProto }
export interface TypeProto extends Preserved { tensorType?: TensorTypeProto; denotation?: string }
export interface ValueInfoProto extends Preserved { name: string; type?: TypeProto; docString?: string }

export interface GraphProto extends Preserved {
  node: NodeProto[];
  name: string;
  initializer: TensorProto[];
  input: ValueInfoProto[];
  output: ValueInfoProto[];
  valueInfo: ValueInfoProto[];
  docString?: string;
}

export interface OperatorSetId extends Preserved { domain: string; version: Int64 }

export interface ModelProto extends Preserved {
  irVersion: Int64;
  opsetImport: OperatorSetId[];
  producerName?: string;
  producerVersion?: string;
  domain?: string;
  modelVersion?: Int64;
  docString?: string;
  graph: GraphProto;
  metadataProps?: StringStringEntry[];
}

// ---------------------------------------------------------------------------------------------------------
// Schema: field number -> (property, kind). `repeated` fields become arrays; `packed` ones are written packed.

type Kind = 'int' | 'string' | 'bytes' | 'float' | 'double' | { msg: string };
interface Field { no: number; key: string; kind: Kind; repeated?: boolean; packed?: boolean }

const SCHEMA: Record<string, Field[]> = {
  StringStringEntry: [
    { no: 1, key: 'key', kind: 'string' },
    { no: 2, key: 'value', kind: 'string' },
  ],
  TensorProto: [
    { no: 1, key: 'dims', kind: 'int', repeated: true },
    { no: 2, key: 'dataType', kind: 'int' },
    { no: 4, key: 'floatData', kind: 'float', repeated: true, packed: true },
    { no: 5, key: 'int32Data', kind: 'int', repeated: true, packed: true },
    { no: 6, key: 'stringData', kind: 'bytes', repeated: true },
    { no: 7, key: 'int64Data', kind: 'int', repeated: true, packed: true },
    { no: 8, key: 'name', kind: 'string' },
    { no: 9, key: 'rawData', kind: 'bytes' },
    { no: 10, key: 'doubleData', kind: 'double', repeated: true, packed: true },
    { no: 11, key: 'uint64Data', kind: 'int', repeated: true, packed: true },
    { no: 12, key: 'docString', kind: 'string' },
    { no: 13, key: 'externalData', kind: { msg: 'StringStringEntry' }, repeated: true },
    { no: 14, key: 'dataLocation', kind: 'int' },
  ],
  AttributeProto: [
    { no: 1, key: 'name', kind: 'string' },
    { no: 2, key: 'f', kind: 'float' },
    { no: 3, key: 'i', kind: 'int' },
    { no: 4, key: 's', kind: 'bytes' },
    { no: 5, key: 't', kind: { msg: 'TensorProto' } },
    { no: 6, key: 'g', kind: { msg: 'GraphProto' } },
    { no: 7, key: 'floats', kind: 'float', repeated: true },
    { no: 8, key: 'ints', kind: 'int', repeated: true },
    { no: 9, key: 'strings', kind: 'bytes', repeated: true },
    { no: 10, key: 'tensors', kind: { msg: 'TensorProto' }, repeated: true },
    { no: 11, key: 'graphs', kind: { msg: 'GraphProto' }, repeated: true },
    { no: 13, key: 'docString', kind: 'string' },
    { no: 20, key: 'type', kind: 'int' },
  ],
  NodeProto: [
    { no: 1, key: 'input', kind: 'string', repeated: true },
    { no: 2, key: 'output', kind: 'string', repeated: true },
    { no: 3, key: 'name', kind: 'string' },
    { no: 4, key: 'opType', kind: 'string' },
    { no: 5, key: 'attribute', kind: { msg: 'AttributeProto' }, repeated: true },
    { no: 6, key: 'docString', kind: 'string' },
    { no: 7, key: 'domain', kind: 'string' },
  ],
  Dimension: [
    { no: 1, key: 'dimValue', kind: 'int' },
    { no: 2, key: 'dimParam', kind: 'string' },
  ],
  TensorShapeProto: [{ no: 1, key: 'dim', kind: { msg: 'Dimension' }, repeated: true }],
  TensorTypeProto: [
    { no: 1, key: 'elemType', kind: 'int' },
    { no: 2, key: 'shape', kind: { msg: 'TensorShapeProto' } },
  ],
  TypeProto: [
    { no: 1, key: 'tensorType', kind: { msg: 'TensorTypeProto' } },
    { no: 6, key: 'denotation', kind: 'string' },
  ],
  ValueInfoProto: [
    { no: 1, key: 'name', kind: 'string' },
    { no: 2, key: 'type', kind: { msg: 'TypeProto' } },
    { no: 3, key: 'docString', kind: 'string' },
  ],
  GraphProto: [
    { no: 1, key: 'node', kind: { msg: 'NodeProto' }, repeated: true },
    { no: 2, key: 'name', kind: 'string' },
    { no: 5, key: 'initializer', kind: { msg: 'TensorProto' }, repeated: true },
    { no: 10, key: 'docString', kind: 'string' },
    { no: 11, key: 'input', kind: { msg: 'ValueInfoProto' }, repeated: true },
    { no: 12, key: 'output', kind: { msg: 'ValueInfoProto' }, repeated: true },
    { no: 13, key: 'valueInfo', kind: { msg: 'ValueInfoProto' }, repeated: true },
  ],
  OperatorSetId: [
    { no: 1, key: 'domain', kind: 'string' },
    { no: 2, key: 'version', kind: 'int' },
  ],
  ModelProto: [
    { no: 1, key: 'irVersion', kind: 'int' },
    { no: 2, key: 'producerName', kind: 'string' },
    { no: 3, key: 'producerVersion', kind: 'string' },
    { no: 4, key: 'domain', kind: 'string' },
    { no: 5, key: 'modelVersion', kind: 'int' },
    { no: 6, key: 'docString', kind: 'string' },
    { no: 7, key: 'graph', kind: { msg: 'GraphProto' } },
    { no: 8, key: 'opsetImport', kind: { msg: 'OperatorSetId' }, repeated: true },
    { no: 14, key: 'metadataProps', kind: { msg: 'StringStringEntry' }, repeated: true },
  ],
};

/** Defaults so decoded objects always carry the properties their interfaces require. */
const DEFAULTS: Record<string, () => Record<string, unknown>> = {
  TensorProto: () => ({ name: '', dims: [], dataType: 0 }),
  AttributeProto: () => ({ name: '', type: 0 }),
  NodeProto: () => ({ input: [], output: [], name: '', opType: '', attribute: [] }),
  TensorShapeProto: () => ({ dim: [] }),
  TensorTypeProto: () => ({ elemType: 0 }),
  ValueInfoProto: () => ({ name: '' }),
  GraphProto: () => ({ node: [], name: '', initializer: [], input: [], output: [], valueInfo: [] }),
  OperatorSetId: () => ({ domain: '', version: 0 }),
  ModelProto: () => ({ irVersion: 0, opsetImport: [], graph: undefined }),
  StringStringEntry: () => ({ key: '', value: '' }),
};

const BY_NUMBER: Record<string, Map<number, Field>> = Object.fromEntries(
  Object.entries(SCHEMA).map(([name, fields]) => [name, new Map(fields.map((f) => [f.no, f]))]),
);

const utf8 = new TextDecoder();
const utf8enc = new TextEncoder();

function decodeMessage(type: string, r: Reader): Record<string, unknown> {
  const obj: Record<string, unknown> = DEFAULTS[type]?.() ?? {};
  const fields = BY_NUMBER[type];
  while (!r.done()) {
    const tagStart = r.pos;
    const tag = r.uint32();
    const no = tag >>> 3;
    const wire = tag & 7;
    const f = fields.get(no);
    if (!f) {
      r.skip(wire);
      ((obj.unknown ??= []) as Uint8Array[]).push(r.buf.subarray(tagStart, r.pos));
      continue;
    }
    const push = (v: unknown): void => {
      if (f.repeated) ((obj[f.key] ??= []) as unknown[]).push(v);
      else obj[f.key] = v;
    };
    // Repeated scalars may arrive packed (one length-delimited run) or one per tag.
    if (wire === WIRE_LEN && (f.kind === 'int' || f.kind === 'float' || f.kind === 'double')) {
      const body = r.bytes();
      const sub = new Reader(body);
      while (!sub.done()) push(f.kind === 'int' ? sub.varint() : f.kind === 'float' ? sub.float32() : sub.float64());
      continue;
    }
    switch (f.kind) {
      case 'int': expectWire(wire, WIRE_VARINT, type, f); push(r.varint()); break;
      case 'float': expectWire(wire, WIRE_I32, type, f); push(r.float32()); break;
      case 'double': expectWire(wire, WIRE_I64, type, f); push(r.float64()); break;
      case 'string': expectWire(wire, WIRE_LEN, type, f); push(utf8.decode(r.bytes())); break;
      case 'bytes': expectWire(wire, WIRE_LEN, type, f); push(r.bytes()); break;
      default: {
        expectWire(wire, WIRE_LEN, type, f);
        const body = r.bytes();
        push(decodeMessage(f.kind.msg, new Reader(body)));
      }
    }
  }
  return obj;
}

function expectWire(got: number, want: number, type: string, f: Field): void {
  if (got !== want) throw new Error(`${type}.${f.key}: wire type ${got}, expected ${want}`);
}

function encodeMessage(type: string, obj: Record<string, unknown>, w: Writer): void {
  for (const f of SCHEMA[type]) {
    const v = obj[f.key];
    if (v === undefined || v === null) continue;
    const values = f.repeated ? (v as unknown[]) : [v];
    if (f.repeated && values.length === 0) continue;
    // An empty singular string means "not set" in ONNX; omitting it keeps re-encoded files byte-compact.
    if (!f.repeated && f.kind === 'string' && v === '') continue;
    if (f.packed) {
      const inner = new Writer();
      for (const x of values) {
        if (f.kind === 'float') inner.float32(x as number);
        else if (f.kind === 'double') inner.float64(x as number);
        else inner.varint(x as Int64);
      }
      w.lenDelimited(f.no, inner.finish());
      continue;
    }
    for (const x of values) {
      switch (f.kind) {
        case 'int': w.tag(f.no, WIRE_VARINT); w.varint(x as Int64); break;
        case 'float': w.tag(f.no, WIRE_I32); w.float32(x as number); break;
        case 'double': w.tag(f.no, WIRE_I64); w.float64(x as number); break;
        case 'string': w.lenDelimited(f.no, utf8enc.encode(x as string)); break;
        case 'bytes': w.lenDelimited(f.no, x as Uint8Array); break;
        default: {
          const inner = new Writer();
          encodeMessage(f.kind.msg, x as Record<string, unknown>, inner);
          w.tag(f.no, WIRE_LEN);
          w.varint(inner.length);
          for (const part of inner.parts()) w.raw(part);
        }
      }
    }
  }
  for (const raw of (obj.unknown as Uint8Array[] | undefined) ?? []) w.raw(raw);
}

/** Decodes a serialized ModelProto. Byte fields (raw_data) are views into `buf`, not copies. */
export function decodeModel(buf: Uint8Array): ModelProto {
  const m = decodeMessage('ModelProto', new Reader(buf)) as unknown as ModelProto;
  if (!m.graph) throw new Error('not an ONNX model: no graph');
  return m;
}

/** Serializes a model as a list of byte chunks (write them in order; avoids one >2 GB buffer). */
export function encodeModelParts(model: ModelProto): Uint8Array[] {
  const w = new Writer();
  encodeMessage('ModelProto', model as unknown as Record<string, unknown>, w);
  return w.parts();
}

export function encodeModel(model: ModelProto): Uint8Array {
  const w = new Writer();
  encodeMessage('ModelProto', model as unknown as Record<string, unknown>, w);
  return w.finish();
}
