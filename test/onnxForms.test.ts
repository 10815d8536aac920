// ONNX checkpoints in the forms the hubs ship, each built here from the stories260K fixture with the project's own
// proto code: dynamo-style exports (no scopes in node names, weights [out, in] reached through a Transpose),
// quantized graphs (MatMulNBits, MatMulInteger, QDQ). Each is pruned or refused as README "ONNX forms" says, and a
// pruned form must give the plain fixture's result where the math is the same.

import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openOnnxCheckpoint } from '../src/backend/formats/onnxCheckpoint';
import { AttributeType, DataType, decodeModel, encodeModel, ModelProto, NodeProto, TensorProto } from '../src/backend/onnx/proto';
import { discoverLayers } from '../src/backend/pipeline/layers';
import { quickRun, QuickRun } from './helpers/quickRun';

const fixtures = path.resolve(__dirname, '..', '..', 'shared', 'fixtures');
const fixtureDir = path.join(fixtures, 'stories260K-onnx');
const text = path.join(fixtures, 'data', 'tinystories_valid_head.txt');
const work = mkdtempSync(path.join(tmpdir(), 'prunekit-forms-'));
after(() => rmSync(work, { recursive: true, force: true }));

function fixture(): ModelProto {
  return decodeModel(readFileSync(path.join(fixtureDir, 'model.onnx')));
}

/** `model` as a checkpoint folder with the fixture's tokenizer and config beside it. */
function save(model: ModelProto, name: string): string {
  const dir = path.join(work, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'model.onnx'), encodeModel(model));
  for (const f of ['tokenizer.json', 'config.json']) copyFileSync(path.join(fixtureDir, f), path.join(dir, f));
  return dir;
}

function floats(t: TensorProto): Float32Array {
  assert.equal(t.dataType, DataType.FLOAT);
  return new Float32Array(new Uint8Array(t.rawData as Uint8Array).buffer);
}

function transposed(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c];
  return out;
}

/** The module path torch gives a MatMul's weight: `/model/layers.0/self_attn/q_proj/MatMul` → `model.layers.0.self_attn.q_proj.weight`. */
function modulePath(nodeName: string): string {
  return `${nodeName.split('/').filter((p) => p && !/^MatMul/.test(p)).join('.')}.weight`;
}

/**
 * As torch's dynamo exporter writes it: node names without scopes (`node_MatMul_12`), each [in, out] MatMul weight
 * stored as nn.Linear's [out, in] and transposed in the graph; with `moduleNames`, the weights named by module path.
 */
function dynamoStyle(model: ModelProto, moduleNames: boolean): ModelProto {
  const inits = new Map(model.graph.initializer.map((t) => [t.name, t]));
  const replaced = new Map<string, TensorProto>();
  const node: NodeProto[] = [];
  model.graph.node.forEach((n, i) => {
    const w = n.opType === 'MatMul' ? inits.get(n.input[1]) : undefined;
    const renamed = { ...n, name: `node_${n.opType}_${i}` };
    if (!w || w.dims.length !== 2) { node.push(renamed); return; }
    const [cols, rows] = w.dims.map(Number);
    const name = moduleNames ? modulePath(n.name) : w.name;
    const wt = floats(w);
    replaced.set(w.name, { ...w, name, dims: [rows, cols], rawData: new Uint8Array(transposed(wt, cols, rows).buffer) });
    node.push({ name: `node_Transpose_${i}`, opType: 'Transpose', domain: '', input: [name], output: [`${name}_T`], attribute: [{ name: 'perm', type: AttributeType.INTS, ints: [1n, 0n] }] });
    node.push({ ...renamed, input: [n.input[0], `${name}_T`] });
  });
  const initializer = model.graph.initializer.map((t) => replaced.get(t.name) ?? t);
  return { ...model, graph: { ...model.graph, node, initializer } };
}

function weightOf(dir: string, name: string): Float32Array {
  const ckpt = openOnnxCheckpoint(dir);
  return ckpt.weightAsFloat32(name);
}

describe('dynamo-style exports', () => {
  let plain: QuickRun;
  before(async () => {
    plain = await quickRun({ checkpoint: fixtureDir, output: path.join(work, 'plain-out') }, text, work);
    assert.ifError(plain.error);
  });

  test('weights through a Transpose, no scopes anywhere: the residual stream gives the scoped blocks and the same pruned model', async () => {
    const model = dynamoStyle(fixture(), false);
    const d = discoverLayers(model);
    assert.equal(d.blockSource, 'structure');
    const scoped = discoverLayers(fixture());
    const weights = (x: typeof d) => x.blocks.map((b) => b.layers.map((n) => x.layers.find((l) => l.name === n)?.weight));
    assert.deepEqual(weights(d), weights(scoped), 'same layers in the same blocks');
    assert.ok(d.layers.every((l) => l.layout === 'out_in' && l.transposeNode !== undefined));
    const dir = save(model, 'dynamo-stripped');
    const run = await quickRun({ checkpoint: dir, output: path.join(work, 'dynamo-stripped-out') }, text, work);
    assert.ifError(run.error);
    console.log(`stories260K 50% APT, structural blocks vs scoped: ppl ${run.ppl.map((p) => p.toFixed(4)).join(' → ')} vs ${plain.ppl.map((p) => p.toFixed(4)).join(' → ')}`);
    assert.equal(run.ppl.length, 2);
    for (let k = 0; k < 2; k++) assert.ok(Math.abs(run.ppl[k] - plain.ppl[k]) <= 1e-6 * plain.ppl[k], `ppl ${run.ppl[k]} vs ${plain.ppl[k]}`);
    // The written weight is the plain run's pruned weight, stored [out, in].
    const q = scoped.layers[0];
    const mine = weightOf(path.join(work, 'dynamo-stripped-out'), q.weight);
    assert.deepEqual(mine, transposed(weightOf(path.join(work, 'plain-out'), q.weight), q.cols, q.rows));
  });

  test('weights named by module path: blocks and layer names from the weight names', async () => {
    const model = dynamoStyle(fixture(), true);
    const d = discoverLayers(model);
    assert.equal(d.blockSource, 'pattern');
    assert.deepEqual(d.blocks.map((b) => b.name), ['layers.0', 'layers.1', 'layers.2', 'layers.3', 'layers.4']);
    assert.deepEqual(d.blocks[1].layers, ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'].map((x) => `layers.1.${x}`));
    const dir = save(model, 'dynamo-named');
    const run = await quickRun({ checkpoint: dir, output: path.join(work, 'dynamo-named-out') }, text, work);
    assert.ifError(run.error);
    for (let k = 0; k < 2; k++) assert.ok(Math.abs(run.ppl[k] - plain.ppl[k]) <= 1e-6 * plain.ppl[k], `ppl ${run.ppl[k]} vs ${plain.ppl[k]}`);
    assert.deepEqual([...run.pruned.keys()], [...plain.pruned.keys()]);
  });
});
