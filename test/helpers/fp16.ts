// fp16 checkpoints for the tests, made from an fp32 one with the project's own codec (onnx/proto, formats/dtype).
//
// A *fully fp16* graph, the way exporters write one (torch.onnx under .half(), onnxconverter-common's
// float16 converter): every FLOAT tensor becomes FLOAT16 — initializers, tensor attributes (Constant values,
// ConstantOfShape fills), `Cast(to=FLOAT)`, graph inputs/outputs and value_info — so weights, activations
// and logits are fp16. Finite values beyond fp16's range are clamped to ±65504 rather than rounded to ±inf
// (exporters do the same: torch.finfo(float16).min as the mask value), so `mask · min` never makes NaN.
// onnxruntime's CPU provider has fp16 kernels for the MatMuls, elementwise ops and Softmax; for the few ops
// without one it inserts Casts around the node itself (its InsertCastTransformer), so the graph loads as is.
//
// A *mixed* graph (fp16 storage, fp32 compute): every FLOAT initializer stored as FLOAT16 under its own name and
// widened by a `Cast(to=FLOAT)` node (named `Cast_fp16_<k>`, outside any block scope, as converters name them)
// whose output the former readers take; everything else stays fp32.

import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { bytesToFloat32, float32ToHalfBytes } from '../../src/backend/formats/dtype';
import { openOnnxCheckpoint, SIDE_FILES } from '../../src/backend/formats/onnxCheckpoint';
import { mapTensors } from '../../src/backend/formats/tensors';
import { AttributeType, DataType, encodeModel, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto } from '../../src/backend/onnx/proto';

const HALF_MAX = 65504;

function halfTensor(t: TensorProto, values: Float32Array): TensorProto {
  const clamped = values.map((v) => (Number.isFinite(v) ? Math.max(-HALF_MAX, Math.min(HALF_MAX, v)) : v));
  const half: TensorProto = { ...t, dataType: DataType.FLOAT16, rawData: float32ToHalfBytes(clamped) };
  delete half.floatData;
  return half;
}

function halfValueInfo(v: ValueInfoProto): ValueInfoProto {
  const tt = v.type?.tensorType;
  return tt?.elemType === DataType.FLOAT ? { ...v, type: { ...v.type, tensorType: { ...tt, elemType: DataType.FLOAT16 } } } : v;
}

/** `model` with every FLOAT tensor, type and Cast made FLOAT16 (inline data only: the fixtures have no external data). */
export function toFloat16Model(model: ModelProto): ModelProto {
  const withHalfTensors = mapTensors(model, (t) => {
    if (t.dataType !== DataType.FLOAT) return t;
    if (t.dataLocation === 1) throw new Error(`toFloat16Model: ${t.name} has external data (not supported by this helper)`);
    return halfTensor(t, t.rawData ? bytesToFloat32(DataType.FLOAT, t.rawData) : Float32Array.from(t.floatData ?? []));
  });
  const graph = (g: GraphProto): GraphProto => ({
    ...g,
    input: g.input.map(halfValueInfo),
    output: g.output.map(halfValueInfo),
    valueInfo: g.valueInfo.map(halfValueInfo),
    node: g.node.map((n) => {
      for (const a of n.attribute) {
        if (a.name === 'value_float' || a.name === 'value_floats') throw new Error(`toFloat16Model: ${n.name}: ${a.name} constants are not supported by this helper`);
        if (a.g || a.graphs?.length) throw new Error(`toFloat16Model: ${n.name}: subgraphs are not supported by this helper`);
      }
      if (n.opType !== 'Cast') return n;
      return {
        ...n,
        attribute: n.attribute.map((a) => (a.name === 'to' && a.type === AttributeType.INT && Number(a.i) === DataType.FLOAT ? { ...a, i: DataType.FLOAT16 } : a)),
      };
    }),
  });
  return { ...withHalfTensors, graph: graph(withHalfTensors.graph) };
}

/** `model` with its FLOAT initializers stored as FLOAT16 and widened back to FLOAT by a Cast before use. */
export function toMixedFloat16Model(model: ModelProto): ModelProto {
  const g = model.graph;
  const widened = new Map<string, string>();
  const casts: NodeProto[] = [];
  const initializer = g.initializer.map((t) => {
    if (t.dataType !== DataType.FLOAT) return t;
    if (t.dataLocation === 1) throw new Error(`toMixedFloat16Model: ${t.name} has external data (not supported by this helper)`);
    widened.set(t.name, `${t.name}::fp32`);
    casts.push({ name: `Cast_fp16_${casts.length}`, opType: 'Cast', input: [t.name], output: [`${t.name}::fp32`], attribute: [{ name: 'to', type: AttributeType.INT, i: DataType.FLOAT }] });
    return halfTensor(t, t.rawData ? bytesToFloat32(DataType.FLOAT, t.rawData) : Float32Array.from(t.floatData ?? []));
  });
  for (const n of g.node) if (n.attribute.some((a) => a.g || a.graphs?.length)) throw new Error(`toMixedFloat16Model: ${n.name}: subgraphs are not supported by this helper`);
  const node = g.node.map((n) => (n.input.some((t) => widened.has(t)) ? { ...n, input: n.input.map((t) => widened.get(t) ?? t) } : n));
  return { ...model, graph: { ...g, initializer, node: [...casts, ...node] } };
}

/**
 * Writes the fully fp16 (or mixed) version of the checkpoint `src` (a folder or .onnx) into the new folder `dir`
 * (model.onnx and the tokenizer/config files beside it); returns the model path.
 */
export function writeFloat16Checkpoint(src: string, dir: string, shape: 'fp16' | 'mixed' = 'fp16'): string {
  const ckpt = openOnnxCheckpoint(src);
  if (ckpt.hasExternalData) throw new Error(`writeFloat16Checkpoint: ${ckpt.modelPath} has external data (not supported by this helper)`);
  mkdirSync(dir, { recursive: true });
  const out = path.join(dir, 'model.onnx');
  writeFileSync(out, encodeModel(shape === 'fp16' ? toFloat16Model(ckpt.model) : toMixedFloat16Model(ckpt.model)));
  for (const name of SIDE_FILES) {
    const f = path.join(ckpt.dir, name);
    if (existsSync(f)) copyFileSync(f, path.join(dir, name));
  }
  return out;
}
