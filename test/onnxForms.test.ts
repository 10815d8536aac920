// ONNX checkpoints in the forms the hubs ship, each built here from the stories260K fixture with the project's own
// proto code: dynamo-style exports (no scopes in node names, weights [out, in] reached through a Transpose),
// quantized graphs (MatMulNBits, MatMulInteger, QDQ), transformers.js / onnx-community repository folders, Optimum's
// merged decoders (the layers inside the two branches of an If on use_cache_branch), a block repeated in a Loop. Each is pruned or refused as README "ONNX forms" says, and a
// pruned form must give the plain fixture's result where the math is the same.

import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { openCheckpoint } from '../src/backend/formats/checkpoint';
import { openOnnxCheckpoint, writeOnnxCheckpoint } from '../src/backend/formats/onnxCheckpoint';
import { AttributeType, DataType, decodeModel, encodeModel, GraphProto, ModelProto, NodeProto, TensorProto } from '../src/backend/onnx/proto';
import { discoverLayers, PrunableLayer } from '../src/backend/pipeline/layers';
import { configModelPath } from '../src/extension/config/discovery';
import { modelFileOf } from '../src/extension/config/inspectCache';
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

/** int8 per-tensor symmetric quantization of a float initializer: the INT8 tensor and its FLOAT scale. */
function int8(w: TensorProto, name: string): { q: TensorProto; scale: TensorProto } {
  const v = floats(w);
  const s = Math.max(...v.map(Math.abs)) / 127;
  const q = Int8Array.from(v, (x) => Math.round(x / s));
  return {
    q: { name, dims: w.dims, dataType: DataType.INT8, rawData: new Uint8Array(q.buffer) },
    scale: { name: `${name}_scale`, dims: [], dataType: DataType.FLOAT, rawData: new Uint8Array(Float32Array.of(s).buffer) },
  };
}

/**
 * The fixture with the MatMuls whose node names match `which` quantized as `form`: int8 QDQ (DequantizeLinear of an
 * INT8 initializer → MatMul, a valid graph), MatMulInteger reading the INT8 weight, or MatMulNBits (4-bit, weight
 * bytes not filled in: the graph is only discovered, never run).
 */
function quantized(model: ModelProto, form: 'qdq' | 'MatMulInteger' | 'MatMulNBits', which: RegExp): ModelProto {
  const inits = new Map(model.graph.initializer.map((t) => [t.name, t]));
  const added: TensorProto[] = [];
  const node: NodeProto[] = [];
  for (const n of model.graph.node) {
    const w = n.opType === 'MatMul' ? inits.get(n.input[1]) : undefined;
    if (!w || w.dims.length !== 2 || !which.test(n.name)) { node.push(n); continue; }
    const { q, scale } = int8(w, `${w.name}_int8`);
    added.push(q, scale);
    if (form === 'qdq') {
      node.push({ name: `${n.name}_dq`, opType: 'DequantizeLinear', domain: '', input: [q.name, scale.name], output: [`${q.name}_dq`], attribute: [] });
      node.push({ ...n, input: [n.input[0], `${q.name}_dq`] });
    } else if (form === 'MatMulInteger') {
      node.push({ ...n, name: n.name.replace(/MatMul$/, 'MatMulInteger'), opType: 'MatMulInteger', input: [n.input[0], q.name] });
    } else {
      node.push({ ...n, name: n.name.replace(/MatMul$/, 'MatMulNBits'), opType: 'MatMulNBits', domain: 'com.microsoft', input: [n.input[0], q.name, scale.name] });
    }
  }
  const used = new Set(node.flatMap((n) => n.input));
  const initializer = [...model.graph.initializer.filter((t) => used.has(t.name)), ...added];
  return { ...model, opsetImport: [...model.opsetImport, { domain: 'com.microsoft', version: 1n }], graph: { ...model.graph, node, initializer } };
}

describe('quantized graphs', () => {
  const blocks = /\/layers\.\d+\//;
  for (const form of ['MatMulNBits', 'MatMulInteger', 'qdq'] as const) {
    test(`${form} in every block: the run refuses, naming the op and a node, and says to prune the float model`, async () => {
      const dir = save(quantized(fixture(), form, blocks), `q-${form}`);
      const run = await quickRun({ checkpoint: dir, output: path.join(work, `q-${form}-out`) }, text, work);
      const op = form === 'qdq' ? 'DequantizeLinear → MatMul' : form;
      assert.ok(run.error, 'the run refused');
      assert.match(run.error.message, new RegExp(`35 ${op} \\(e\\.g\\. node /model/layers\\.0/self_attn/q_proj/`));
      assert.match(run.error.message, /prune the float .* model, then quantize the pruned one/);
      assert.equal(run.pruned.size, 0);
      const d = discoverLayers(quantized(fixture(), form, blocks));
      assert.equal(d.layers.length, 0);
      assert.equal(d.warnings.length, 5, 'each block warned about');
      assert.ok(!d.notes.some((n) => /blockPattern/.test(n)), 'no advice to set blockPattern');
    });
  }

  test('one block int8 QDQ: inspect warns about that block, and the run refuses rather than report a partial sparsity', async () => {
    const model = quantized(fixture(), 'qdq', /\/layers\.2\//);
    const d = discoverLayers(model);
    assert.equal(d.layers.length, 28);
    assert.deepEqual(d.quantized.map((q) => q.block), [2, 2, 2, 2, 2, 2, 2]);
    assert.deepEqual(d.warnings, [
      'block layers.2 has no prunable layer, so it stays dense: its linear layers are quantized: 7 DequantizeLinear → MatMul (e.g. node /model/layers.2/self_attn/q_proj/MatMul)',
    ]);
    const run = await quickRun({ checkpoint: save(model, 'q-one-block'), output: path.join(work, 'q-one-block-out') }, text, work);
    assert.match(run.error?.message ?? '', /quantized linear layers found: 7 DequantizeLinear → MatMul/);
    assert.equal(run.pruned.size, 0);
  });

  test('only the LM head quantized: the blocks are pruned and the run warns that the quantized layer stays', async () => {
    const model = quantized(fixture(), 'qdq', /lm_head/);
    const run = await quickRun({ checkpoint: save(model, 'q-head'), output: path.join(work, 'q-head-out'), method: 'magnitude', calibration: null }, text, work);
    assert.ifError(run.error);
    assert.equal(run.pruned.size, 35);
    const warnings = run.events.filter((e) => e.type === 'warning.raised' && e.code === 'block-dense');
    assert.equal(warnings.length, 1);
    assert.match(JSON.stringify(warnings[0]), /1 DequantizeLinear → MatMul \(e\.g\. node \/lm_head\/MatMul\)/);
  });
});

describe('repository folders (transformers.js / onnx-community layout)', () => {
  const repo = path.join(work, 'repo');
  let plain: QuickRun;
  before(async () => {
    // onnx/model.onnx with its external data; onnx/model_fp16.onnx (here the same bytes: only its name matters to
    // the variant choice); onnx/model_quantized.onnx (int8 QDQ); config and tokenizer at the root.
    await writeOnnxCheckpoint(openOnnxCheckpoint(fixtureDir), path.join(work, 'repo-ext'), new Map(), { externalData: 'always' });
    mkdirSync(path.join(repo, 'onnx'), { recursive: true });
    for (const f of ['model.onnx', 'model.onnx_data']) renameSync(path.join(work, 'repo-ext', f), path.join(repo, 'onnx', f));
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'config.json']) copyFileSync(path.join(fixtureDir, f), path.join(repo, f));
    copyFileSync(path.join(fixtureDir, 'model.onnx'), path.join(repo, 'onnx', 'model_fp16.onnx'));
    writeFileSync(path.join(repo, 'onnx', 'model_quantized.onnx'), encodeModel(quantized(fixture(), 'qdq', /\/layers\.\d+\//)));
    plain = await quickRun({ checkpoint: fixtureDir, output: path.join(work, 'repo-plain-out') }, text, work);
    assert.ifError(plain.error);
  });

  test('several float variants: opening asks for one, naming them; a quantized variant is refused with what to do', () => {
    assert.throws(() => openCheckpoint(repo), /several float ONNX variants \(model, model_fp16\): choose one with --variant/);
    assert.throws(() => openCheckpoint(repo, { variant: 'model_quantized' }), /variant model_quantized of .* is quantized: .*prune a float variant \(model, model_fp16\), then quantize/);
    assert.throws(() => openCheckpoint(repo, { variant: 'model_q9' }), /no variant model_q9 in .*float variants: model, model_fp16; quantized: model_quantized/);
    const ckpt = openCheckpoint(repo, { variant: 'model_fp16' });
    assert.equal(ckpt.path, path.join(repo, 'onnx', 'model_fp16.onnx'));
    assert.equal(ckpt.tokenizerPath, path.join(repo, 'tokenizer.json'));
  });

  test('the chosen variant is pruned into the same layout: root files copied, onnx/model.onnx with its external data', async () => {
    const out = path.join(work, 'repo-out');
    const run = await quickRun({ checkpoint: repo, variant: 'model', output: out }, text, work);
    assert.ifError(run.error);
    assert.deepEqual(readdirSync(out).filter((f) => !['prune-report.json', 'events.ndjson'].includes(f)).sort(), ['config.json', 'onnx', 'tokenizer.json', 'tokenizer_config.json']);
    assert.deepEqual(readdirSync(path.join(out, 'onnx')).sort(), ['model.onnx', 'model.onnx_data']);
    for (let k = 0; k < 2; k++) assert.ok(Math.abs(run.ppl[k] - plain.ppl[k]) <= 1e-6 * plain.ppl[k], `ppl ${run.ppl[k]} vs ${plain.ppl[k]}`);
    // The output opens as a repository again (its only float variant), with every pruned weight as the plain run's.
    const again = openOnnxCheckpoint(out);
    assert.deepEqual(again.repository, { root: out, variant: 'model' });
    assert.ok(again.hasExternalData);
    for (const l of discoverLayers(again.model).layers) assert.deepEqual(again.weightAsFloat32(l.weight), weightOf(path.join(work, 'repo-plain-out'), l.weight), l.name);
  });

  test('the editor inspects the variant a config names, or the only float one', () => {
    const config = path.join(work, 'x.prune.json');
    assert.equal(configModelPath(JSON.stringify({ checkpoint: './repo', variant: 'model_fp16' }), config), path.join(repo, 'onnx', 'model_fp16.onnx'));
    assert.equal(configModelPath(JSON.stringify({ checkpoint: './repo' }), config), repo);
    assert.throws(() => modelFileOf(repo), /several float ONNX variants \(model, model_fp16\): set "variant"/);
    assert.equal(modelFileOf(path.join(repo, 'onnx', 'model.onnx')), path.join(repo, 'onnx', 'model.onnx'));
  });

  test('a repository with one float variant opens it by default; only quantized ones are refused', () => {
    const one = path.join(work, 'repo-one');
    mkdirSync(path.join(one, 'onnx'), { recursive: true });
    copyFileSync(path.join(fixtureDir, 'config.json'), path.join(one, 'config.json'));
    copyFileSync(path.join(repo, 'onnx', 'model_quantized.onnx'), path.join(one, 'onnx', 'model_quantized.onnx'));
    assert.throws(() => openCheckpoint(one), /holds only quantized ONNX variants \(model_quantized\): .*prune the float model, then quantize/);
    copyFileSync(path.join(fixtureDir, 'model.onnx'), path.join(one, 'onnx', 'model_fp16.onnx'));
    assert.equal(openCheckpoint(one).path, path.join(one, 'onnx', 'model_fp16.onnx'));
    assert.equal(modelFileOf(one), path.join(one, 'onnx', 'model_fp16.onnx'));
    assert.ok(!existsSync(path.join(one, 'model.onnx')));
  });
});

/**
 * As Optimum merges a decoder: the graph's nodes moved into both branches of an If on a bool `use_cache_branch` input,
 * reading the same outer-scope initializers; the then (with-past) branch's tensors renamed so the branches differ.
 */
function mergedDecoder(model: ModelProto): ModelProto {
  const g = model.graph;
  const branch = (prefix: string): GraphProto => {
    const own = new Set(g.node.flatMap((n) => n.output));
    const r = (t: string) => (own.has(t) ? prefix + t : t);
    return {
      name: `${prefix || 'no_past'}branch`, initializer: [], input: [], valueInfo: [],
      node: g.node.map((n) => ({ ...n, name: n.name && prefix + n.name, input: n.input.map(r), output: n.output.map(r) })),
      output: g.output.map((o) => ({ ...o, name: r(o.name) })),
    };
  };
  const ifNode: NodeProto = {
    name: 'optimum::if', opType: 'If', domain: '', input: ['use_cache_branch'], output: g.output.map((o) => o.name),
    attribute: [{ name: 'then_branch', type: AttributeType.GRAPH, g: branch('past/') }, { name: 'else_branch', type: AttributeType.GRAPH, g: branch('') }],
  };
  const useCache = { name: 'use_cache_branch', type: { tensorType: { elemType: DataType.BOOL, shape: { dim: [{ dimValue: 1n }] } } } };
  return { ...model, graph: { ...g, node: [ifNode], input: [...g.input, useCache], valueInfo: [] } };
}

describe('merged decoders (If on use_cache_branch)', () => {
  test('layers found in the no-past branch, pruned once: both branches of the output give the pruned plain model\'s logits', async () => {
    const dir = save(mergedDecoder(fixture()), 'merged');
    const ckpt = openCheckpoint(dir);
    assert.deepEqual(discoverLayers(ckpt.model).layers.map((l) => [l.name, l.weight]), discoverLayers(fixture()).layers.map((l) => [l.name, l.weight]));
    const plain = await quickRun({ checkpoint: fixtureDir, output: path.join(work, 'merged-plain-out') }, text, work);
    const run = await quickRun({ checkpoint: dir, output: path.join(work, 'merged-out') }, text, work);
    assert.ifError(plain.error);
    assert.ifError(run.error);
    for (let k = 0; k < 2; k++) assert.ok(Math.abs(run.ppl[k] - plain.ppl[k]) <= 1e-6 * plain.ppl[k], `ppl ${run.ppl[k]} vs ${plain.ppl[k]}`);
    const out = decodeModel(readFileSync(path.join(work, 'merged-out', 'model.onnx')));
    assert.deepEqual(out.graph.node.map((n) => n.opType), ['If'], 'still one If with both branches');
    const ids = (JSON.parse(readFileSync(path.join(fixtures, 'stories260K-reference.json'), 'utf8')) as { cases: { input_ids: number[][] }[] }).cases[0].input_ids;
    const plainFeeds = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.flat(), BigInt), [ids.length, ids[0].length]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(ids.flat().length).fill(1n), [ids.length, ids[0].length]),
    };
    const feeds = (useCache: boolean) => ({ ...plainFeeds, use_cache_branch: new ort.Tensor('bool', [useCache], [1]) });
    const logits = async (file: string, f: Record<string, ort.Tensor>) => {
      const session = await ort.InferenceSession.create(file);
      try {
        return (await session.run(f)).logits.data as Float32Array;
      } finally {
        await session.release();
      }
    };
    const want = await logits(path.join(work, 'merged-plain-out', 'model.onnx'), plainFeeds);
    for (const useCache of [false, true]) assert.deepEqual(await logits(path.join(work, 'merged-out', 'model.onnx'), feeds(useCache)), want, `use_cache_branch ${useCache}`);
  });
});

/**
 * The fixture with block `layers.1` applied `times` times with the same weights (as a weight-shared export writes
 * it): as a Loop on a constant trip count whose body is the block (its own tensors renamed), or `unrolled` into
 * copies of the block at the top level, each renamed, reading the same initializers.
 */
function repeatedBlock(model: ModelProto, times: number, form: 'loop' | 'unrolled'): ModelProto {
  const g = model.graph;
  const inBlock = (n: NodeProto) => n.name.includes('/layers.1/');
  const block = g.node.filter(inBlock);
  const own = new Set(block.flatMap((n) => n.output));
  const stream = '/model/layers.0/Add_1_output_0';
  const out = '/model/layers.1/Add_1_output_0';
  const copy = (prefix: string, from: string, to: string): NodeProto[] => {
    const r = (t: string) => (t === stream ? from : t === out ? to : own.has(t) ? prefix + t : t);
    return block.map((n) => ({ ...n, name: prefix + n.name, input: n.input.map(r), output: n.output.map(r) }));
  };
  let replacement: NodeProto[];
  let initializer = g.initializer;
  if (form === 'unrolled') {
    replacement = Array.from({ length: times }, (_, k) => copy(`it${k}/`, k ? `it${k - 1}/out` : stream, k === times - 1 ? out : `it${k}/out`)).flat();
  } else {
    const hidden = (name: string) => ({ name, type: { tensorType: { elemType: DataType.FLOAT } } });
    const cond = (name: string) => ({ name, type: { tensorType: { elemType: DataType.BOOL, shape: { dim: [] } } } });
    const body: GraphProto = {
      name: 'repeated_block', initializer: [], valueInfo: [],
      input: [{ name: 'iter', type: { tensorType: { elemType: DataType.INT64, shape: { dim: [] } } } }, cond('cond_in'), hidden('body/in')],
      node: [...copy('body/', 'body/in', 'body/out'), { name: 'body/cond', opType: 'Identity', domain: '', input: ['cond_in'], output: ['cond_out'], attribute: [] }],
      output: [cond('cond_out'), hidden('body/out')],
    };
    const trips: TensorProto = { name: 'repeat_trips', dims: [], dataType: DataType.INT64, rawData: new Uint8Array(BigInt64Array.of(BigInt(times)).buffer) };
    const loop: NodeProto = { name: '/model/layers.1/Loop', opType: 'Loop', domain: '', input: ['repeat_trips', '', stream], output: [out], attribute: [{ name: 'body', type: AttributeType.GRAPH, g: body }] };
    replacement = [loop];
    initializer = [...g.initializer, trips];
  }
  const last = g.node.reduce((k, n, i) => (inBlock(n) ? i : k), -1);
  const node = g.node.flatMap((n, i) => (i === last ? replacement : inBlock(n) ? [] : [n]));
  return { ...model, graph: { ...g, node, initializer, valueInfo: [] } };
}

describe('Loop bodies (a block applied twice with the same weights)', () => {
  test('layers in the branches of an If on another input, or in a subgraph nested in a Loop body: listed as left dense, naming the node', () => {
    const merged = mergedDecoder(fixture());
    const onFlag = { ...merged, graph: { ...merged.graph, node: merged.graph.node.map((n) => ({ ...n, input: ['flag'] })), input: merged.graph.input.map((v) => (v.name === 'use_cache_branch' ? { ...v, name: 'flag' } : v)) } };
    const d = discoverLayers(openCheckpoint(save(onFlag, 'if-on-flag')).model);
    assert.equal(d.layers.length, 0);
    const inBranch = d.skipped.filter((s) => /^inside a branch of If optimum::if: how often each of its runs counts is not known/.test(s.reason));
    const plain = discoverLayers(fixture());
    assert.equal(inBranch.length, 2 * (plain.layers.length + plain.skipped.length), 'every layer of both branches, the LM head too');
    // The Loop's body holding the If: the layers are one level deeper.
    const loop = repeatedBlock(fixture(), 2, 'loop');
    const body = (loop.graph.node.find((n) => n.opType === 'Loop') as NodeProto).attribute[0].g as GraphProto;
    const wrapped: NodeProto = { name: 'body/if', opType: 'If', domain: '', input: ['cond_in'], output: ['body/out'], attribute: ['then_branch', 'else_branch'].map((name) => ({
      name, type: AttributeType.GRAPH, g: { name, initializer: [], input: [], valueInfo: [], node: body.node.slice(0, -1).map((n) => ({ ...n, output: n.output.map((t) => (t === 'body/out' ? `${name}/out` : t)) })), output: [{ name: `${name}/out`, type: { tensorType: { elemType: DataType.FLOAT } } }] },
    })) };
    body.node = [wrapped, body.node[body.node.length - 1]];
    const nested = discoverLayers(openCheckpoint(save(loop, 'loop-nested-if')).model);
    assert.ok(nested.skipped.some((s) => s.reason.startsWith('inside If body/if in the body of Loop /model/layers.1/Loop:')));
    assert.ok(!nested.layers.some((l) => l.name.startsWith('layers.1.')));
    assert.match(nested.warnings.join('\n'), /block layers\.1 has no prunable layer/);
  });


  test('its layers are found in the Loop\'s block and pruned once from every iteration\'s inputs; the Loop stays and computes its unrolled form', async () => {
    const dir = save(repeatedBlock(fixture(), 2, 'loop'), 'loop');
    const plain = discoverLayers(fixture());
    const d = discoverLayers(openCheckpoint(dir).model);
    const block1 = plain.layers.filter((l) => l.name.startsWith('layers.1.'));
    assert.equal(block1.length, 7);
    assert.deepEqual(d.layers.map((l) => [l.name, l.weight, l.block]), plain.layers.map((l) => [l.name, l.weight, l.block]));
    for (const l of d.layers.filter((x) => x.name.startsWith('layers.1.'))) assert.match(l.input, /^\/model\/layers\.1\/Loop\/every_iteration\/body\//);
    // Without the exposed inputs (the raw graph), the body's layers are reported, naming the Loop, and left dense.
    const raw = discoverLayers(repeatedBlock(fixture(), 2, 'loop'));
    assert.deepEqual(raw.skipped.filter((s) => /Loop \/model\/layers\.1\/Loop/.test(s.reason)).map((s) => s.name), block1.map((l) => l.name));

    // What calibration reads for a body layer: its input of each iteration, stacked ([2, batch, seq, hidden]).
    const x = (block1[0] as PrunableLayer).input;
    const withOutputs = (m: ModelProto, names: string[]): string => {
      const file = path.join(work, `probe-${names.length}.onnx`);
      writeFileSync(file, encodeModel({ ...m, graph: { ...m.graph, output: [...m.graph.output, ...names.map((name) => ({ name, type: { tensorType: { elemType: DataType.FLOAT } } }))] } }));
      return file;
    };
    const stacked = (await run1(withOutputs(openCheckpoint(dir).model, [`/model/layers.1/Loop/every_iteration/body/${x}`]))).at(-1) as ort.Tensor;
    const each = (await run1(withOutputs(repeatedBlock(fixture(), 2, 'unrolled'), [`it0/${x}`, `it1/${x}`]))).slice(-2);
    assert.deepEqual(stacked.dims, [2, ...each[0].dims]);
    const want = Float32Array.from([...(each[0].data as Float32Array), ...(each[1].data as Float32Array)]);
    (stacked.data as Float32Array).forEach((v, k) => assert.ok(Math.abs(v - want[k]) <= 1e-5 * Math.max(1, Math.abs(want[k])), `X[${k}]: ${v} vs ${want[k]}`));

    const run = await quickRun({ checkpoint: dir, output: path.join(work, 'loop-out') }, text, work);
    assert.ifError(run.error);
    const outFile = path.join(work, 'loop-out', 'model.onnx');
    const pruned = decodeModel(readFileSync(outFile));
    const loops = pruned.graph.node.filter((n) => n.opType === 'Loop');
    assert.deepEqual(loops.map((n) => n.output), [['/model/layers.1/Add_1_output_0']], 'the Loop as it was, its exposed inputs gone');
    for (const l of block1) {
      const w = weightOf(path.join(work, 'loop-out'), l.weight);
      const zeros = w.filter((v) => v === 0).length; // the update may zero a kept weight too, exceptionally
      assert.ok(zeros >= w.length / 2 && zeros <= w.length / 2 + 4, `${l.weight} pruned to 50%: ${zeros} of ${w.length} zeros`);
    }
    // The reference: the output's weights in the unrolled form, where each copy of the block reads them at the top level.
    const prunedInits = new Map(pruned.graph.initializer.map((t) => [t.name, t]));
    const reference = repeatedBlock(fixture(), 2, 'unrolled');
    reference.graph.initializer = reference.graph.initializer.map((t) => prunedInits.get(t.name) ?? t);
    const unrolled = path.join(save(reference, 'loop-unrolled'), 'model.onnx');
    const got = (await run1(outFile))[0].data as Float32Array;
    const ref = (await run1(unrolled))[0].data as Float32Array;
    got.forEach((v, k) => assert.ok(Math.abs(v - ref[k]) <= 1e-5 * Math.max(1, Math.abs(ref[k])), `logit ${k}: ${v} vs ${ref[k]}`));
  });
});

/** Every output of the model in `file` on the fixture's first reference case. */
async function run1(file: string): Promise<ort.Tensor[]> {
  const ids = (JSON.parse(readFileSync(path.join(fixtures, 'stories260K-reference.json'), 'utf8')) as { cases: { input_ids: number[][] }[] }).cases[0].input_ids;
  const session = await ort.InferenceSession.create(file);
  try {
    const out = await session.run({
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.flat(), BigInt), [ids.length, ids[0].length]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(ids.flat().length).fill(1n), [ids.length, ids[0].length]),
    });
    return session.outputNames.map((n) => out[n]);
  } finally {
    await session.release();
  }
}
