// The pipeline's graph side (src/backend/pipeline): layer discovery and block-wise segmentation on the
// fixture checkpoints. Running prefix → blocks → suffix must reproduce the whole model; the calibration
// variant must give each layer input's XᵀX; a weight fed to one block must change only what depends on it.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { DataType, decodeModel, ModelProto, TensorProto } from '../src/backend/onnx/proto';
import { Engine } from '../src/backend/onnx/session';
import { discoverLayers, Discovery, DiscoverOptions, PrunableLayer } from '../src/backend/pipeline/layers';
import { calibrationModel, CalibrationSums, emptySums, planSegments, runCalibration, segmentModel, SegmentPlan } from '../src/backend/pipeline/segments';
import { maxAbsDiff } from './helpers/reference';

const repoRoot = path.resolve(__dirname, '..');
const fixtures = path.resolve(repoRoot, '..', 'shared', 'fixtures');
const MODELS = {
  stories260K: { file: path.join(fixtures, 'stories260K-onnx', 'model.onnx'), ref: path.join(fixtures, 'stories260K-reference.json') },
  'stories-llama-1M': { file: path.join(fixtures, 'stories-llama-1M-onnx', 'model.onnx'), ref: path.join(fixtures, 'stories-llama-1M-reference.json') },
};

interface Case { input_ids: number[][]; attention_mask: number[][] }
function cases(ref: string): Case[] {
  return (JSON.parse(readFileSync(ref, 'utf8')) as { cases: Case[] }).cases;
}

const engine = new Engine({ device: 'cpu', threads: 1 });
after(() => engine.release());

function load(file: string): ModelProto {
  return decodeModel(readFileSync(file));
}

function int64(rows: number[][]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(rows.flat(), BigInt), [rows.length, rows[0].length]);
}

function modelFeeds(c: Case): Record<string, ort.Tensor> {
  return { input_ids: int64(c.input_ids), attention_mask: int64(c.attention_mask) };
}

/** An initializer's values as a fresh (aligned) Float32Array. */
function floats(t: TensorProto): Float32Array {
  assert.equal(t.dataType, DataType.FLOAT);
  if (t.rawData) return new Float32Array(new Uint8Array(t.rawData).buffer);
  return Float32Array.from(t.floatData ?? []);
}

function initializer(model: ModelProto, name: string): TensorProto {
  const t = model.graph.initializer.find((x) => x.name === name);
  assert.ok(t, `initializer ${name}`);
  return t;
}

/** The whole model, with `extra` tensors as additional (untyped: onnxruntime infers them) outputs. */
async function runFull(model: ModelProto, feeds: Record<string, ort.Tensor>, extra: string[] = []): Promise<Record<string, ort.Tensor>> {
  const have = new Set(model.graph.output.map((o) => o.name));
  const m: ModelProto = { ...model, graph: { ...model.graph, output: [...model.graph.output, ...extra.filter((t) => !have.has(t)).map((name) => ({ name }))] } };
  return (await engine.kernel(m)).run(feeds);
}

/** prefix → blocks → suffix; weights from the checkpoint unless overridden. Returns every segment output. */
async function runSegments(plan: SegmentPlan, feeds: Record<string, ort.Tensor>, override = new Map<string, Float32Array>()): Promise<Map<string, ort.Tensor>> {
  const cache = new Map<string, ort.Tensor>(Object.entries(feeds));
  for (const seg of plan.segments) {
    const sg = segmentModel(plan, seg);
    const f: Record<string, ort.Tensor> = {};
    for (const t of sg.inputs) {
      const v = cache.get(t);
      assert.ok(v, `segment ${seg.name}: input ${t} not computed yet`);
      f[t] = v;
    }
    for (const w of sg.weights) {
      const init = initializer(plan.model, w);
      f[w] = new ort.Tensor('float32', override.get(w) ?? floats(init), init.dims.map(Number));
    }
    const out = await (await engine.kernel(sg.model)).run(f);
    for (const t of sg.outputs) cache.set(t, out[t]);
  }
  return cache;
}

/** max |a − b| relative to b's scale (max(1, max |b|)): fp32 round-off grows with the magnitude of the values. */
function scaledDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 1;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  return maxAbsDiff(a, b) / scale;
}

/** Worst error of XᵀX (relative to sqrt(H_ii·H_jj), the largest |H_ij| can be) and of Σx² (relative)
 *  against float64 sums over the rows of X (tokens, cols). */
function statsError(X: Float32Array, n: number, xtx: Float32Array, colSq: Float64Array): number {
  const tokens = X.length / n;
  const ref = new Float64Array(n * n);
  const sq = new Float64Array(n);
  for (let r = 0; r < tokens; r++) {
    for (let i = 0; i < n; i++) {
      const xi = X[r * n + i];
      sq[i] += xi * xi;
      for (let j = 0; j < n; j++) ref[i * n + j] += xi * X[r * n + j];
    }
  }
  let worst = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) worst = Math.max(worst, Math.abs(xtx[i * n + j] - ref[i * n + j]) / Math.sqrt(ref[i * n + i] * ref[j * n + j]));
    worst = Math.max(worst, Math.abs(colSq[i] - sq[i]) / sq[i]);
  }
  return worst;
}

/** Σ_tokens ‖x_t·B‖² in float64: B the stored (cols, rows) weight of a MatMul, X (tokens, cols). */
function outputSquares(X: Float32Array, B: Float32Array, cols: number, rows: number): number {
  let s = 0;
  const y = new Float64Array(rows);
  for (let t = 0; t < X.length / cols; t++) {
    y.fill(0);
    for (let j = 0; j < cols; j++) for (let r = 0; r < rows; r++) y[r] += X[t * cols + j] * B[j * rows + r];
    for (let r = 0; r < rows; r++) s += y[r] * y[r];
  }
  return s;
}

async function plan(model: ModelProto, opts: DiscoverOptions = {}): Promise<{ d: Discovery; p: SegmentPlan }> {
  const d = discoverLayers(model, opts);
  return { d, p: await planSegments(model, d) };
}

/** Renames node scopes (`/model/layers.3/…` → f(…)) so the built-in block patterns no longer apply. */
function renamed(model: ModelProto, f: (name: string, i: number) => string): ModelProto {
  return { ...model, graph: { ...model.graph, node: model.graph.node.map((n, i) => ({ ...n, name: f(n.name, i) })) } };
}

// ---------------------------------------------------------------------------------------------------------

describe('layer discovery', () => {
  const expectShapes = (dim: number, kv: number, ffn: number): Record<string, [number, number]> => ({
    'self_attn.q_proj': [dim, dim], 'self_attn.k_proj': [kv, dim], 'self_attn.v_proj': [kv, dim], 'self_attn.o_proj': [dim, dim],
    'mlp.gate_proj': [ffn, dim], 'mlp.up_proj': [ffn, dim], 'mlp.down_proj': [dim, ffn],
  });

  for (const [name, blocks, dim, kv, ffn] of [['stories260K', 5, 64, 32, 172], ['stories-llama-1M', 6, 128, 64, 344]] as const) {
    test(`${name}: ${blocks * 7} layers in ${blocks} blocks with their shapes; lm_head left dense`, () => {
      const model = load(MODELS[name].file);
      const d = discoverLayers(model);
      assert.equal(d.blockSource, 'pattern');
      assert.equal(d.layers.length, blocks * 7);
      assert.deepEqual(d.blocks.map((b) => b.name), Array.from({ length: blocks }, (_, i) => `layers.${i}`));
      const shapes = expectShapes(dim, kv, ffn);
      for (const b of d.blocks) {
        assert.deepEqual(b.layers, Object.keys(shapes).map((k) => `${b.name}.${k}`));
        for (const [k, [rows, cols]] of Object.entries(shapes)) {
          const l = d.layers.find((x) => x.name === `${b.name}.${k}`);
          assert.ok(l);
          assert.equal(l.node, `/model/${b.name}/${k.replace('.', '/')}/MatMul`);
          assert.deepEqual([l.rows, l.cols, l.layout, l.op, l.dataType, l.block], [rows, cols, 'in_out', 'MatMul', DataType.FLOAT, b.index]);
          assert.deepEqual(l.weightDims, [cols, rows]);
          assert.deepEqual(initializer(model, l.weight).dims.map(Number), [cols, rows]);
        }
      }
      assert.deepEqual(d.skipped.map((s) => [s.name, s.rows, s.cols]), [['lm_head', 512, dim]]);
      assert.match(d.skipped[0].reason, /LM head/);
      assert.equal(d.nodeBlock.filter((b) => b >= 0).length, model.graph.node.filter((n) => /\/layers\.\d+\//.test(n.name)).length);
    });
  }

  test('includeLmHead: lm_head becomes a layer outside the blocks, in the suffix', async () => {
    const model = load(MODELS.stories260K.file);
    const { d, p } = await plan(model, { includeLmHead: true });
    assert.equal(d.layers.length, 36);
    const head = d.layers[35];
    assert.deepEqual([head.name, head.block, head.rows, head.cols], ['lm_head', null, 512, 64]);
    const suffix = p.segments[p.segments.length - 1];
    assert.equal(suffix.kind, 'suffix');
    assert.deepEqual(suffix.layers.map((l) => l.name), ['lm_head']);
    assert.deepEqual(segmentModel(p, suffix).weights, [head.weight]);
  });

  test('Gemm layers: transB picks the weight layout', () => {
    const model = load(MODELS.stories260K.file);
    // Turn layers.0 q_proj into Gemm(transB=1) on a transposed [out, in] copy and k_proj into Gemm(transB=0).
    const g = model.graph;
    const q = g.node.findIndex((n) => n.name === '/model/layers.0/self_attn/q_proj/MatMul');
    const k = g.node.findIndex((n) => n.name === '/model/layers.0/self_attn/k_proj/MatMul');
    const qW = initializer(model, g.node[q].input[1]);
    const node = [...g.node];
    node[q] = { ...node[q], opType: 'Gemm', name: '/model/layers.0/self_attn/q_proj/Gemm', attribute: [{ name: 'transB', type: 2, i: 1 }] };
    node[k] = { ...node[k], opType: 'Gemm', name: '/model/layers.0/self_attn/k_proj/Gemm', attribute: [] };
    const initializers = g.initializer.map((t) => (t === qW ? { ...t, dims: [t.dims[1], t.dims[0]] } : t));
    const d = discoverLayers({ ...model, graph: { ...g, node, initializer: initializers } });
    const ql = d.layers.find((l) => l.name === 'layers.0.self_attn.q_proj');
    const kl = d.layers.find((l) => l.name === 'layers.0.self_attn.k_proj');
    assert.deepEqual([ql?.op, ql?.layout, ql?.rows, ql?.cols, ql?.weightDims], ['Gemm', 'out_in', 64, 64, [64, 64]]);
    assert.deepEqual([kl?.op, kl?.layout, kl?.rows, kl?.cols, kl?.weightDims], ['Gemm', 'in_out', 32, 64, [64, 32]]);
  });

  test('the calibration pass gives the loss\'s reference of a Gemm without a bias, not of one with', async () => {
    const model = load(MODELS.stories260K.file);
    // layers.0: k_proj becomes Gemm(transB=0) (y = x·W as before), v_proj Gemm with a zero bias C.
    const g = model.graph;
    const at = (name: string) => g.node.findIndex((n) => n.name === `/model/layers.0/self_attn/${name}/MatMul`);
    const node = [...g.node];
    const bias: TensorProto = { name: 'v_bias', dataType: DataType.FLOAT, dims: [32], floatData: new Array(32).fill(0) };
    const k = at('k_proj');
    const v = at('v_proj');
    node[k] = { ...node[k], opType: 'Gemm', name: '/model/layers.0/self_attn/k_proj/Gemm', attribute: [] };
    node[v] = { ...node[v], opType: 'Gemm', name: '/model/layers.0/self_attn/v_proj/Gemm', attribute: [], input: [...node[v].input, bias.name] };
    const { d, p } = await plan({ ...model, graph: { ...g, node, initializer: [...g.initializer, bias] } });
    assert.deepEqual(['k_proj', 'v_proj'].map((n) => d.layers.find((l) => l.name === `layers.0.self_attn.${n}`)?.op), ['Gemm', 'Gemm']);
    const cg = calibrationModel(p, p.segments.find((s) => s.kind === 'block' && s.layers.some((l) => l.name.startsWith('layers.0.'))) as SegmentPlan['segments'][number]);
    const withOutput = cg.stats.flatMap((st) => Object.keys(st.outSq));
    assert.ok(withOutput.includes('layers.0.self_attn.q_proj') && withOutput.includes('layers.0.self_attn.k_proj'), withOutput.join(' '));
    assert.ok(!withOutput.includes('layers.0.self_attn.v_proj'), 'a Gemm with a bias: Σ‖y‖² is not ½·tr(W H Wᵀ)');
  });
});

describe('segmentation', () => {
  test('stories260K: prefix, 5 blocks, suffix; boundaries by dataflow; weights are inputs', async () => {
    const model = load(MODELS.stories260K.file);
    const { p } = await plan(model);
    assert.deepEqual(p.segments.map((s) => s.name), ['prefix', 'layers.0', 'layers.1', 'layers.2', 'layers.3', 'layers.4', 'suffix']);
    const [prefix, b0, b1] = p.segments;
    // The prefix computes the embedding, the mask and the rotary tables; block 0 reads them.
    for (const t of ['/model/embed_tokens/Gather_output_0', '/model/And_output_0', '/model/rotary_emb/Cos_output_0', '/model/rotary_emb/Sin_output_0']) {
      assert.ok(prefix.outputs.includes(t) && b0.inputs.includes(t), t);
    }
    // Block 1 reads block 0's residual, the prefix's mask and rotary tensors computed inside block 0.
    for (const t of ['/model/layers.0/Add_1_output_0', '/model/And_output_0', '/model/layers.0/self_attn/Unsqueeze_6_output_0']) {
      assert.ok(b1.inputs.includes(t), t);
    }
    assert.equal(p.tensors.get('/model/And_output_0')?.elemType, DataType.BOOL);
    assert.deepEqual(p.tensors.get('/model/And_output_0')?.consumers, [1, 2, 3, 4, 5]);
    // No Constant output crosses a boundary: they are cloned into their readers.
    const constOut = new Set(model.graph.node.filter((n) => n.opType === 'Constant').flatMap((n) => n.output));
    for (const s of p.segments) for (const t of s.inputs) assert.ok(!constOut.has(t), `${s.name} reads constant ${t}`);
    // Every node is in exactly one segment, except Constants.
    const placed = p.segments.flatMap((s) => s.nodes);
    assert.equal(new Set(placed).size, placed.length);
    assert.equal(placed.length, model.graph.node.filter((n) => n.opType !== 'Constant').length);
    // Block models: the 7 weights are graph inputs, not initializers; the suffix outputs the logits.
    for (const s of p.segments.slice(1, 6)) {
      const sg = segmentModel(p, s);
      assert.equal(sg.weights.length, 7);
      const inits = new Set(sg.model.graph.initializer.map((t) => t.name));
      for (const w of sg.weights) assert.ok(!inits.has(w) && sg.model.graph.input.some((i) => i.name === w));
    }
    assert.deepEqual(p.segments[6].outputs, ['logits']);
    assert.deepEqual(p.segments[6].inputs, ['/model/layers.4/Add_1_output_0']);
  });

  test('boundary types: the built-in rules agree with onnxruntime', async () => {
    for (const { file } of Object.values(MODELS)) {
      const model = load(file);
      const d = discoverLayers(model);
      const byRules = await planSegments(model, d);
      const byOrt = await planSegments(model, d, { typeInference: 'ort' });
      assert.deepEqual([...byRules.tensors].map(([n, t]) => [n, t.elemType]), [...byOrt.tensors].map(([n, t]) => [n, t.elemType]));
    }
  });

  for (const name of ['stories260K', 'stories-llama-1M'] as const) {
    test(`${name}: prefix → blocks → suffix reproduces the model's logits`, async (t) => {
      const model = load(MODELS[name].file);
      const { p } = await plan(model);
      for (const c of cases(MODELS[name].ref)) {
        const feeds = modelFeeds(c);
        const want = (await runFull(model, feeds)).logits.data as Float32Array;
        const got = (await runSegments(p, feeds)).get('logits')?.data as Float32Array;
        const diff = maxAbsDiff(got, want);
        const scale = maxAbsDiff(want, new Float32Array(want.length));
        t.diagnostic(`${c.input_ids.length}x${c.input_ids[0].length}: max |Δlogit| ${diff.toExponential(2)} (max |logit| ${scale.toFixed(2)})`);
        // Not bit-exact: fed weights cannot be pre-packed by onnxruntime's MatMul as initializers are, so
        // the GEMMs sum in another order (the whole model with its weights fed as inputs differs from the
        // checkpoint by the same 7.6e-6 on stories-llama-1M, with graph optimizations off). fp32 round-off
        // scales with the logits' magnitude: 1e-5 relative to it.
        assert.ok(diff <= 1e-5 * Math.max(1, scale), `logits differ by ${diff} (max |logit| ${scale})`);
      }
    });
  }

  test('calibration variant: XᵀX and Σx² of every layer input equal float64 sums of the activations', async (t) => {
    const model = load(MODELS.stories260K.file);
    const { d, p } = await plan(model);
    const layerInputs = [...new Set(d.layers.map((l) => l.input))];
    let worst = 0;
    let worstOut = 0;
    for (const c of cases(MODELS.stories260K.ref)) {
      const feeds = modelFeeds(c);
      const full = await runFull(model, feeds, layerInputs);
      const cache = await runSegments(p, feeds);
      for (const seg of p.segments.filter((s) => s.kind === 'block')) {
        const cg = calibrationModel(p, seg);
        assert.equal(cg.stats.length, 4); // q/k/v, o, gate/up, down
        // Only what the statistics need: the last layer (down_proj) is not computed, so its weight is no input.
        const down = seg.layers.find((l) => l.name.endsWith('down_proj'));
        assert.ok(down && !cg.weights.includes(down.weight));
        assert.deepEqual(cg.outputs, cg.stats.flatMap((s) => [s.xtx, s.colSq, ...Object.values(s.outSq)]));
        // Σ‖y‖² per token for every layer whose output the pass computes anyway: all but down_proj.
        assert.deepEqual(cg.stats.flatMap((s) => Object.keys(s.outSq)).sort(), seg.layers.filter((l) => l !== down).map((l) => l.name).sort());
        const f: Record<string, ort.Tensor> = {};
        for (const n of cg.inputs) f[n] = cache.get(n) as ort.Tensor;
        for (const w of cg.weights) { const i = initializer(model, w); f[w] = new ort.Tensor('float32', floats(i), i.dims.map(Number)); }
        const sums = emptySums(cg);
        await runCalibration(await engine.kernel(cg.model), cg, f, sums, c.input_ids.length);
        for (const s of cg.stats) {
          const X = full[s.input].data as Float32Array;
          assert.equal(X.length / s.cols, c.input_ids.length * c.input_ids[0].length);
          const got = sums.get(s.key) as CalibrationSums;
          worst = Math.max(worst, statsError(X, s.cols, got.xtx, got.colSq));
          for (const name of Object.keys(s.outSq)) {
            const l = seg.layers.find((x) => x.name === name) as PrunableLayer;
            const out = (got.reference(name) as number) * c.input_ids.length;
            const want = outputSquares(X, floats(initializer(model, l.weight)), l.cols, l.rows);
            worstOut = Math.max(worstOut, Math.abs(out - want) / want);
          }
        }
      }
    }
    // keepOutputs: the block's own outputs too (one pass for statistics and next-block inputs).
    const b0 = p.segments[1];
    const keep = calibrationModel(p, b0, { keepOutputs: true });
    assert.deepEqual(keep.outputs.slice(0, b0.outputs.length), b0.outputs);
    assert.deepEqual(keep.weights, b0.weights);
    t.diagnostic(`worst relative error of XᵀX and Σx² vs float64: ${worst.toExponential(2)}; of Σ‖y‖²: ${worstOut.toExponential(2)}`);
    assert.ok(worst < 1e-5, `calibration statistics off by ${worst}`);
    assert.ok(worstOut < 1e-5, `output sums of squares off by ${worstOut}`);
  });

  test('calibration runs add XᵀX in place: after two batches the sums\' own arrays hold XᵀX of all their tokens', async () => {
    const model = load(MODELS.stories260K.file);
    const { d, p } = await plan(model);
    const seg = p.segments.filter((s) => s.kind === 'block')[1];
    const cg = calibrationModel(p, seg);
    const kernel = await engine.kernel(cg.model);
    const sums = emptySums(cg);
    const running = new Map([...sums].map(([k, s]) => [k, s.xtx]));
    const X = new Map<string, Float32Array[]>();
    const batches = cases(MODELS.stories260K.ref).slice(0, 2);
    for (const c of batches) {
      const feeds = modelFeeds(c);
      const full = await runFull(model, feeds, [...new Set(d.layers.map((l) => l.input))]);
      const cache = await runSegments(p, feeds);
      const f: Record<string, ort.Tensor> = {};
      for (const n of cg.inputs) f[n] = cache.get(n) as ort.Tensor;
      for (const w of cg.weights) { const i = initializer(model, w); f[w] = new ort.Tensor('float32', floats(i), i.dims.map(Number)); }
      await runCalibration(kernel, cg, f, sums, c.input_ids.length);
      for (const st of cg.stats) X.set(st.key, [...(X.get(st.key) ?? []), full[st.input].data as Float32Array]);
    }
    for (const st of cg.stats) {
      const got = sums.get(st.key) as CalibrationSums;
      assert.equal(got.xtx, running.get(st.key)); // nothing but the graph wrote into it
      assert.equal(got.sequences, batches.reduce((a, c) => a + c.input_ids.length, 0));
      const all = X.get(st.key) as Float32Array[];
      const joined = new Float32Array(all.reduce((a, x) => a + x.length, 0));
      all.reduce((at, x) => (joined.set(x, at), at + x.length), 0);
      const err = statsError(joined, st.cols, got.xtx, got.colSq);
      assert.ok(err < 1e-5, `${st.key}: two batches' sums off by ${err}`);
    }
  });

  test('CalibrationSums scales as HessianAccumulator: H = (2/N)·ΣXᵀX, colNorm2 = (1/N)·Σx²', () => {
    const s = new CalibrationSums(2);
    s.add(Float32Array.from([1, 2, 2, 4]), Float32Array.from([1, 4]), 2);
    s.add(Float32Array.from([3, 0, 0, 1]), Float32Array.from([3, 1]), 2);
    assert.deepEqual([...s.hessian()], [2, 1, 1, 2.5]);
    assert.deepEqual([...s.colNorm2()], [1, 1.25]);
    // The relative loss's reference (1/N)·Σ‖W x‖² = 0.5·tr(W H Wᵀ): the sums above are those of the rows (1, 2) and
    // (1, 0), (1, 0), (1, 0), (0, 1); with W = [1 1] their per-token ‖y‖² are 9 and 1, 1, 1, 1: 13/4 = 0.5·[1 1]·H·[1 1]ᵀ.
    assert.equal(s.reference('w'), undefined);
    s.addOutput('w', Float32Array.from([9]));
    s.addOutput('w', Float32Array.from([1, 1, 1, 1]));
    assert.equal(s.reference('w'), 13 / 4);
    assert.equal(s.reference('w'), 0.5 * (2 + 1 + 1 + 2.5));
  });

  test('a weight fed to one block changes that block and what follows, nothing before', async (t) => {
    const model = load(MODELS.stories260K.file);
    const { d, p } = await plan(model);
    const o2 = d.layers.find((l) => l.name === 'layers.2.self_attn.o_proj');
    assert.ok(o2);
    const zero = new Float32Array(o2.rows * o2.cols);
    // The reference: the whole model with that initializer zeroed.
    const zeroed: ModelProto = {
      ...model,
      graph: { ...model.graph, initializer: model.graph.initializer.map((x) => (x.name === o2.weight ? { ...x, rawData: new Uint8Array(zero.buffer) } : x)) },
    };
    const blockOut = p.segments.filter((s) => s.kind === 'block').map((s) => s.outputs);
    const c = cases(MODELS.stories260K.ref)[1];
    const feeds = modelFeeds(c);
    const dense = await runSegments(p, feeds);
    const pruned = await runSegments(p, feeds, new Map([[o2.weight, zero]]));
    const want = await runFull(zeroed, feeds, blockOut.flat());
    for (const [b, outs] of blockOut.entries()) {
      for (const name of outs) {
        const a = pruned.get(name)?.data as Float32Array;
        if (b < 2) {
          assert.deepEqual(a, dense.get(name)?.data, `block ${b} output ${name} changed`);
          continue;
        }
        const diff = scaledDiff(a, want[name].data as Float32Array);
        assert.ok(diff <= 1e-5, `block ${b} output ${name}: ${diff} (relative) from the zeroed model`);
      }
    }
    const logitsDiff = scaledDiff(pruned.get('logits')?.data as Float32Array, want.logits.data as Float32Array);
    const changed = maxAbsDiff(pruned.get('logits')?.data as Float32Array, dense.get('logits')?.data as Float32Array);
    t.diagnostic(`logits vs zeroed model ${logitsDiff.toExponential(2)} (relative); max |Δ| vs dense ${changed.toFixed(3)}`);
    assert.ok(logitsDiff <= 1e-5);
    assert.ok(changed > 0.01, 'zeroing o_proj did not change the logits');
    // Block 2's residual output changed, block 1's did not.
    assert.ok(maxAbsDiff(pruned.get('/model/layers.2/Add_1_output_0')?.data as Float32Array, dense.get('/model/layers.2/Add_1_output_0')?.data as Float32Array) > 0);
  });
});

describe('block patterns', () => {
  test('no pattern in the node names and no residual grouping: one block per layer in topological order, with a note', async () => {
    const model = renamed(load(MODELS.stories260K.file), (_, i) => `node_${i}`);
    const { d, p } = await plan(model, { structuralBlocks: false });
    assert.equal(d.blockSource, 'per-layer');
    assert.equal(d.layers.length, 35);
    assert.equal(d.blocks.length, 35);
    assert.ok(d.blocks.every((b, i) => b.layers.length === 1 && b.layers[0] === d.layers[i].name));
    assert.ok(d.layers.every((l, i) => i === 0 || l.nodeIndex > d.layers[i - 1].nodeIndex));
    // The LM head feeds the graph output: left dense.
    assert.equal(d.skipped.length, 1);
    assert.match(d.skipped[0].reason, /LM head/);
    assert.ok(d.notes.some((n) => /one block per layer/.test(n)), d.notes.join('\n'));
    const c = cases(MODELS.stories260K.ref)[0];
    const full = await runFull(model, modelFeeds(c), d.layers.map((l) => l.input));
    const cache = await runSegments(p, modelFeeds(c));
    assert.ok(scaledDiff(cache.get('logits')?.data as Float32Array, full.logits.data as Float32Array) <= 1e-5);
    // Calibration per layer: here most layer inputs come from an earlier segment, not from inside the block.
    let worst = 0;
    for (const seg of p.segments.filter((s) => s.kind === 'block')) {
      const cg = calibrationModel(p, seg);
      assert.equal(cg.stats.length, 1);
      const f: Record<string, ort.Tensor> = {};
      for (const n of cg.inputs) f[n] = cache.get(n) as ort.Tensor;
      for (const w of cg.weights) { const i = initializer(model, w); f[w] = new ort.Tensor('float32', floats(i), i.dims.map(Number)); }
      const sums = emptySums(cg);
      await runCalibration(await engine.kernel(cg.model), cg, f, sums, 1);
      const st = cg.stats[0];
      const got = sums.get(st.key) as CalibrationSums;
      worst = Math.max(worst, statsError(full[st.input].data as Float32Array, st.cols, got.xtx, got.colSq));
    }
    assert.ok(worst < 1e-5, `per-layer calibration statistics off by ${worst}`);
  });

  test('a custom blockPattern groups by its first capture group', async () => {
    const model = renamed(load(MODELS.stories260K.file), (n) => n.replace(/\/layers\.(\d+)\//, '/decoder_stage$1/'));
    assert.equal(discoverLayers(model).blockSource, 'structure');
    const { d, p } = await plan(model, { blockPattern: 'decoder_stage(\\d+)/' });
    assert.equal(d.blockSource, 'custom');
    assert.deepEqual(d.blocks.map((b) => [b.id, b.name, b.layers.length]), [0, 1, 2, 3, 4].map((i) => [i, `decoder_stage${i}`, 7]));
    assert.equal(d.layers[8].name, 'decoder_stage1.self_attn.k_proj');
    assert.deepEqual(p.segments.map((s) => s.kind), ['prefix', 'block', 'block', 'block', 'block', 'block', 'suffix']);
    const c = cases(MODELS.stories260K.ref)[0];
    const want = (await runFull(model, modelFeeds(c))).logits.data as Float32Array;
    const got = (await runSegments(p, modelFeeds(c))).get('logits')?.data as Float32Array;
    assert.ok(scaledDiff(got, want) <= 1e-5);

    assert.throws(() => discoverLayers(model, { blockPattern: 'decoder_stage\\d+' }), /no capture group/);
    assert.throws(() => discoverLayers(model, { blockPattern: 'encoder(\\d+)' }), /matches none/);
    assert.throws(() => discoverLayers(model, { blockPattern: '(' }), /not a valid regular expression/);
    assert.throws(() => discoverLayers(model, { blockPattern: '(decoder)_stage' }), /block index/);
  });
});
