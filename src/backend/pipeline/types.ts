// Element types of the tensors inside a graph, which a segment needs to declare its inputs (exported
// checkpoints rarely carry value_info: the fixtures have none).
//
// First a forward pass over the nodes with the type rules of the ops exported LLMs use (most ops output
// the type of their first input; the exceptions are listed). What it cannot type (unknown ops, control
// flow) onnxruntime types instead: a weight-free copy of the graph (initializers turned into typed inputs,
// the wanted tensors as untyped outputs) is loaded, not run, and its output metadata read back.

import * as ort from 'onnxruntime-node';
import { AttributeProto, AttributeType, DataType, encodeModel, ModelProto, NodeProto, ValueInfoProto } from '../onnx/proto';
import { isDefaultDomain, topologicalOrder } from './layers';

type T = DataType | undefined;

const BOOL_OPS = new Set(['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'And', 'Or', 'Xor', 'Not', 'IsNaN', 'IsInf']);
const INT64_OPS = new Set(['Shape', 'Size', 'NonZero', 'ArgMax', 'ArgMin', 'NonMaxSuppression']);
/** ai.onnx ops whose outputs are not simply typed from their inputs and that this pass does not model. */
const UNTYPED_OPS = new Set(['If', 'Loop', 'Scan', 'SequenceConstruct', 'SequenceEmpty', 'SequenceAt', 'SplitToSequence', 'ConcatFromSequence',
  'SequenceInsert', 'SequenceErase', 'SequenceLength', 'Optional', 'OptionalGetElement', 'OptionalHasElement', 'StringNormalizer',
  'RegexFullMatch', 'StringConcat', 'StringSplit', 'TfIdfVectorizer', 'ImageDecoder', 'HammingWindow', 'HannWindow', 'BlackmanWindow']);
/** com.microsoft ops (onnxruntime's fused LLM ops) whose outputs all take the first input's type. */
const MS_SAME_AS_FIRST = new Set(['Attention', 'MultiHeadAttention', 'GroupQueryAttention', 'PackedAttention', 'PackedMultiHeadAttention',
  'SparseAttention', 'DecoderMaskedMultiHeadAttention', 'RotaryEmbedding', 'MatMulNBits', 'FusedMatMul', 'FastGelu', 'BiasGelu', 'Gelu',
  'QuickGelu', 'BiasAdd', 'BiasSoftmax', 'GroupNorm', 'SkipGroupNorm', 'BiasSplitGelu', 'NhwcConv', 'Inverse', 'MoE']);

function attr(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute.find((a) => a.name === name);
}

function intAttr(node: NodeProto, name: string): number | undefined {
  const a = attr(node, name);
  return a && a.type === AttributeType.INT && a.i !== undefined ? Number(a.i) : undefined;
}

/** Output element types of one node (undefined where unknown), given a lookup of its inputs' types. */
export function nodeOutputTypes(node: NodeProto, input: (k: number) => T): T[] {
  const n = node.output.length;
  const all = (t: T): T[] => Array.from({ length: n }, () => t);
  const firstTyped = (): T => {
    for (let k = 0; k < node.input.length; k++) if (node.input[k] !== '' && input(k) !== undefined) return input(k);
    return undefined;
  };
  const op = node.opType;
  if (isDefaultDomain(node)) {
    switch (op) {
      case 'Constant': {
        const a = node.attribute[0];
        if (!a) return all(undefined);
        if (a.name === 'value' && a.t) return [a.t.dataType];
        if (a.name === 'value_float' || a.name === 'value_floats') return [DataType.FLOAT];
        if (a.name === 'value_int' || a.name === 'value_ints') return [DataType.INT64];
        if (a.name === 'value_string' || a.name === 'value_strings') return [DataType.STRING];
        return [undefined];
      }
      case 'ConstantOfShape': return [attr(node, 'value')?.t?.dataType ?? DataType.FLOAT];
      case 'Cast': return [intAttr(node, 'to')];
      case 'CastLike': return [input(1)];
      case 'Where': return [input(1) ?? input(2)];
      case 'OneHot': return [input(2)];
      case 'TopK': return [input(0), DataType.INT64];
      case 'Unique': return [input(0), DataType.INT64, DataType.INT64, DataType.INT64].slice(0, n);
      case 'MaxPool': return [input(0), DataType.INT64].slice(0, n);
      case 'Dropout': return [input(0), DataType.BOOL].slice(0, n);
      case 'LayerNormalization':
      case 'SimplifiedLayerNormalization': {
        const stash = intAttr(node, 'stash_type') ?? DataType.FLOAT;
        return [input(0), stash, stash].slice(0, n);
      }
      case 'QuantizeLinear': return [input(2) ?? intAttr(node, 'output_dtype') ?? DataType.UINT8];
      case 'DequantizeLinear': return [input(1)];
      case 'DynamicQuantizeLinear': return [DataType.UINT8, DataType.FLOAT, DataType.UINT8];
      case 'MatMulInteger':
      case 'ConvInteger': return [DataType.INT32];
      case 'QLinearMatMul': return [input(7)];
      case 'QLinearConv': return [input(7)];
      case 'EyeLike':
      case 'RandomNormalLike':
      case 'RandomUniformLike':
      case 'Bernoulli': return [intAttr(node, 'dtype') ?? input(0)];
      case 'RandomNormal':
      case 'RandomUniform': return [intAttr(node, 'dtype') ?? DataType.FLOAT];
      case 'Multinomial': return [intAttr(node, 'dtype') ?? DataType.INT32];
      default:
        if (BOOL_OPS.has(op)) return all(DataType.BOOL);
        if (INT64_OPS.has(op)) return all(DataType.INT64);
        if (UNTYPED_OPS.has(op)) return all(undefined);
        return all(firstTyped());
    }
  }
  if (node.domain === 'com.microsoft') {
    if (op === 'SkipLayerNormalization' || op === 'SkipSimplifiedLayerNormalization') {
      return [input(0), DataType.FLOAT, DataType.FLOAT, input(0)].slice(0, n);
    }
    if (op === 'GatherBlockQuantized') return [input(2)];
    if (MS_SAME_AS_FIRST.has(op)) return all(input(0));
  }
  return all(undefined);
}

/** Element types of every tensor the rules can type: graph inputs, initializers, value_info, node outputs. */
export function inferElemTypes(model: ModelProto): Map<string, DataType> {
  const g = model.graph;
  const types = new Map<string, DataType>();
  const declare = (v: ValueInfoProto): void => {
    const t = v.type?.tensorType?.elemType;
    if (t) types.set(v.name, t);
  };
  g.input.forEach(declare);
  for (const t of g.initializer) types.set(t.name, t.dataType);
  for (const i of topologicalOrder(g)) {
    const node = g.node[i];
    const outs = nodeOutputTypes(node, (k) => types.get(node.input[k] ?? ''));
    node.output.forEach((name, k) => {
      const t = outs[k];
      if (name && t) types.set(name, t);
    });
  }
  // Declared types win over the rules (they are what the exporter and onnxruntime agree on).
  g.valueInfo.forEach(declare);
  g.output.forEach(declare);
  return types;
}

const ORT_TYPES: Record<string, DataType> = {
  float32: DataType.FLOAT, uint8: DataType.UINT8, int8: DataType.INT8, uint16: DataType.UINT16, int16: DataType.INT16,
  int32: DataType.INT32, int64: DataType.INT64, string: DataType.STRING, bool: DataType.BOOL, float16: DataType.FLOAT16,
  float64: DataType.DOUBLE, uint32: DataType.UINT32, uint64: DataType.UINT64, bfloat16: DataType.BFLOAT16,
};

/**
 * Types `names` with onnxruntime's own type inference: loads (never runs) the graph with its initializers
 * turned into typed inputs, so no weight data is read or copied, and the wanted tensors as untyped outputs.
 */
export async function inferTypesWithOrt(model: ModelProto, names: string[]): Promise<Map<string, DataType>> {
  const g = model.graph;
  const inputs = new Set(g.input.map((v) => v.name));
  const skeleton: ModelProto = {
    ...model,
    graph: {
      ...g,
      initializer: [],
      input: [
        ...g.input,
        ...g.initializer.filter((t) => !inputs.has(t.name)).map((t) => ({
          name: t.name,
          type: { tensorType: { elemType: t.dataType, shape: { dim: t.dims.map((d) => ({ dimValue: d })) } } },
        })),
      ],
      output: names.map((name) => ({ name })),
    },
  };
  const session = await ort.InferenceSession.create(encodeModel(skeleton), {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'disabled',
    logSeverityLevel: 3,
  });
  try {
    const out = new Map<string, DataType>();
    for (const m of session.outputMetadata) {
      if (!m.isTensor) throw new Error(`tensor ${m.name} is not a tensor (a sequence or map): it cannot cross a segment boundary`);
      const t = ORT_TYPES[m.type];
      if (t === undefined) throw new Error(`tensor ${m.name}: onnxruntime type ${m.type} is not supported`);
      out.set(m.name, t);
    }
    return out;
  } finally {
    await session.release();
  }
}
