// ONNX checkpoint reading and writing (src/backend/formats): the stories260K fixture and models generated from it
// (external data in several files with offsets, fp16 weights, a > 2 GiB sparse data file), byte-for-byte checks of
// every tensor, onnxruntime runs of every written model, error cases, and failures/cancels in the middle of a write.
//
//   node --import tsx --test test/onnxCheckpoint.test.ts

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs, { closeSync, copyFileSync, existsSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, mock, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import {
  bf16BytesToFloat32,
  float32ToBf16Bytes,
  float32ToHalfBytes,
  floatBitsToBf16Bits,
  floatBitsToHalfBits,
  halfBitsToFloatBits,
  halfBytesToFloat32,
} from '../src/backend/formats/dtype';
import { CheckpointError, CheckpointErrorCode, DATA_FILE, OnnxCheckpoint, openOnnxCheckpoint, RangeReader, writeOnnxCheckpoint } from '../src/backend/formats/onnxCheckpoint';
import { GraphBuilder } from '../src/backend/onnx/graph';
import { AttributeType, DataType, decodeModel, encodeModel, ModelProto, NodeProto, TensorProto } from '../src/backend/onnx/proto';

const repoRoot = path.resolve(__dirname, '..');
const fixtures = path.resolve(repoRoot, '..', 'shared', 'fixtures');
const FIXTURE = path.join(fixtures, 'stories260K-onnx');
const FIXTURE_MODEL = path.join(FIXTURE, 'model.onnx');
const SIDE = ['config.json', 'tokenizer.json', 'tokenizer_config.json'];

let tmpRoot = '';
let fixtureHashes: Map<string, string>;
let fixtureLogits: Float32Array;

before(async () => {
  tmpRoot = mkdtempSync(path.join(os.tmpdir(), 'prunekit-ckpt-'));
  fixtureHashes = hashTree(FIXTURE);
  fixtureLogits = await logitsOf(FIXTURE_MODEL);
});

after(() => {
  // The input fixture is never modified by anything in this file.
  assert.deepEqual(hashTree(FIXTURE), fixtureHashes, 'fixture files unchanged');
  rmSync(tmpRoot, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------------------
// Helpers

let dirCounter = 0;
function freshDir(label: string): string {
  const d = path.join(tmpRoot, `${label}-${dirCounter++}`);
  mkdirSync(d, { recursive: true });
  return d;
}

/** A path for an output folder that does not exist yet. */
function outPath(label: string): string {
  return path.join(tmpRoot, `${label}-out-${dirCounter++}`);
}

function hashTree(dir: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const f of readdirSync(dir).sort()) {
    const p = path.join(dir, f);
    if (statSync(p).isFile()) m.set(f, createHash('sha256').update(readFileSync(p)).digest('hex'));
  }
  return m;
}

const IDS = Array.from({ length: 16 }, (_, i) => (i === 0 ? 1 : (i * 37 + 11) % 512));

/** Logits of a model file (onnxruntime resolves external data beside it) on a fixed 1×16 input. */
async function logitsOf(modelPath: string): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(modelPath, { executionProviders: ['cpu'], intraOpNumThreads: 1 });
  try {
    const dims = [1, IDS.length];
    const r = await s.run({
      input_ids: new ort.Tensor('int64', BigInt64Array.from(IDS, BigInt), dims),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(IDS.length).fill(1n), dims),
    });
    return r.logits.data as Float32Array;
  } finally {
    await s.release();
  }
}

function fixtureModel(): ModelProto {
  return decodeModel(new Uint8Array(readFileSync(FIXTURE_MODEL)));
}

/** Initializers used as the weight (second input) of a MatMul. */
function matmulWeights(model: ModelProto): string[] {
  const inits = new Set(model.graph.initializer.map((t) => t.name));
  return [...new Set(model.graph.node.filter((n) => n.opType === 'MatMul' && inits.has(n.input[1])).map((n) => n.input[1]))];
}

/** Writes `model` as `<dir>/model.onnx` with the fixture's tokenizer/config files; returns the model path. */
function saveModel(model: ModelProto, dir: string, side = SIDE): string {
  mkdirSync(dir, { recursive: true });
  const p = path.join(dir, 'model.onnx');
  writeFileSync(p, encodeModel(model));
  for (const f of side) copyFileSync(path.join(FIXTURE, f), path.join(dir, f));
  return p;
}

/**
 * Moves inline initializers of at least 1 KiB into external files: `place(t)` names the file (or undefined to keep
 * it inline). Tensors are separated by a few junk bytes, so offsets are real offsets, not just concatenation.
 */
function externalize(model: ModelProto, dir: string, place: (t: TensorProto) => string | undefined): ModelProto {
  const files = new Map<string, Uint8Array[]>();
  const sizes = new Map<string, number>();
  const initializer = model.graph.initializer.map((t) => {
    const file = t.rawData && t.rawData.length >= 1024 ? place(t) : undefined;
    if (!file || !t.rawData) return t;
    const parts = files.get(file) ?? [];
    files.set(file, parts);
    const junk = Uint8Array.from([0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03]);
    parts.push(junk);
    const offset = (sizes.get(file) ?? 0) + junk.length;
    parts.push(t.rawData);
    sizes.set(file, offset + t.rawData.length);
    const { rawData, ...rest } = t;
    return {
      ...rest,
      dataLocation: 1,
      externalData: [
        { key: 'location', value: file },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(rawData.length) },
      ],
    };
  });
  mkdirSync(dir, { recursive: true });
  for (const [file, parts] of files) writeFileSync(path.join(dir, file), Buffer.concat(parts));
  return { ...model, graph: { ...model.graph, initializer } };
}

/** The fixture with every MatMul weight stored as FLOAT16 and Cast to float32 in the graph. */
function fp16Variant(model: ModelProto): ModelProto {
  const weights = new Set(matmulWeights(model));
  const casts: NodeProto[] = [];
  const initializer = model.graph.initializer.map((t) => {
    if (!weights.has(t.name) || !t.rawData) return t;
    const f = new Float32Array(t.rawData.slice().buffer);
    casts.push({ name: `cast_${t.name}`, opType: 'Cast', input: [`${t.name}_fp16`], output: [t.name], attribute: [{ name: 'to', type: AttributeType.INT, i: DataType.FLOAT }] });
    return { name: `${t.name}_fp16`, dims: t.dims, dataType: DataType.FLOAT16, rawData: float32ToHalfBytes(f) };
  });
  return { ...model, graph: { ...model.graph, initializer, node: [...casts, ...model.graph.node] } };
}

/** Every initializer of `b` has the bytes of the one with the same name in `a`, except those in `except`. */
function assertSameTensors(a: OnnxCheckpoint, b: OnnxCheckpoint, except: Set<string> = new Set()): number {
  assert.deepEqual(b.initializerNames().sort(), a.initializerNames().sort(), 'same initializer names');
  let n = 0;
  for (const name of a.initializerNames()) {
    if (except.has(name)) continue;
    const ia = a.info(name);
    const ib = b.info(name);
    assert.deepEqual([ib.dims, ib.dataType], [ia.dims, ia.dataType], `${name}: shape and type`);
    assert.ok(Buffer.from(b.tensorData(name)).equals(Buffer.from(a.tensorData(name))), `${name}: bytes identical`);
    n++;
  }
  return n;
}

function assertBitEqual(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  const g = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const w = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < g.length; i++) if (g[i] !== w[i]) assert.fail(`${what}: element ${i}: ${got[i]} vs ${want[i]}`);
}

/** Asserts `fn` throws/rejects a CheckpointError with `code` whose message names `file`. */
async function assertCheckpointError(fn: () => unknown, code: CheckpointErrorCode, file: string, also?: RegExp): Promise<CheckpointError> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof CheckpointError, `expected a CheckpointError, got ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
  assert.equal(err.code, code, `code (message: ${err.message})`);
  assert.ok(err.message.includes(file), `message names ${file}: ${err.message}`);
  if (also) assert.match(err.message, also);
  return err;
}

/** `outDir` and its `<out>.tmp-*` / `<out>.old-*` siblings that exist (to catch leftover temporary folders). */
function siblings(outDir: string): string[] {
  const base = path.basename(outDir);
  return readdirSync(path.dirname(outDir)).filter((f) => f === base || f.startsWith(`${base}.`));
}

// ---------------------------------------------------------------------------------------------------------

describe('opening an ONNX checkpoint', () => {
  test('the fixture folder: model, side files, initializers, weights', () => {
    const ck = openOnnxCheckpoint(FIXTURE);
    assert.equal(ck.modelPath, FIXTURE_MODEL);
    assert.equal(ck.dir, FIXTURE);
    assert.equal(ck.tokenizerPath, path.join(FIXTURE, 'tokenizer.json'));
    assert.equal(ck.requireTokenizer(), path.join(FIXTURE, 'tokenizer.json'));
    assert.equal(ck.configPath, path.join(FIXTURE, 'config.json'));
    assert.deepEqual([...ck.sideFiles.keys()].sort(), SIDE);
    assert.equal(ck.hasExternalData, false);
    assert.deepEqual(ck.externalFiles, []);

    // The .onnx path itself opens the same model.
    const byFile = openOnnxCheckpoint(FIXTURE_MODEL);
    assert.deepEqual(byFile.initializerNames(), ck.initializerNames());

    const inits = ck.initializers();
    assert.ok(inits.length > 40);
    const embed = ck.info('model.embed_tokens.weight');
    assert.deepEqual([embed.dims, embed.dtype, embed.elements, embed.byteLength, embed.storage.kind], [[512, 64], 'FLOAT', 32768, 131072, 'raw']);
    const weights = matmulWeights(ck.model);
    assert.equal(weights.length, 36, '35 projections + lm_head');
    for (const w of weights) assert.equal(ck.info(w).dims.length, 2);

    // weightAsFloat32 = the raw bytes as float32; tensorData is a copy (mutating it changes nothing).
    const w0 = weights[0];
    const bytes = ck.tensorData(w0);
    const values = ck.weightAsFloat32(w0);
    assert.equal(values.length, ck.info(w0).elements);
    assertBitEqual(values, new Float32Array(bytes.slice().buffer), 'weightAsFloat32 vs raw bytes');
    assert.ok(values.some((v) => v !== 0) && values.every(Number.isFinite));
    bytes.fill(0);
    assertBitEqual(ck.weightAsFloat32(w0), values, 'tensorData returned a copy');

    assert.throws(() => ck.tensorData('nope'), (e: CheckpointError) => e.code === 'no-such-tensor' && e.message.includes(FIXTURE_MODEL));
    const ints = inits.find((i) => i.dataType === DataType.INT64);
    if (ints) {
      assert.throws(() => ck.weightAsFloat32(ints.name), (e: CheckpointError) => e.code === 'unsupported-dtype');
    }
  });

  test('float typed fields (float_data, int32_data for fp16) read like raw_data', () => {
    const dir = freshDir('typed');
    const g = new GraphBuilder('typed');
    const x = g.input('x', DataType.FLOAT, [3]);
    g.output(g.op('Identity', [x]), 'y', DataType.FLOAT, [3]);
    const model = g.build();
    model.graph.initializer.push(
      { name: 'f', dims: [3], dataType: DataType.FLOAT, floatData: [1.5, -2, 3.25] },
      { name: 'h', dims: [2], dataType: DataType.FLOAT16, int32Data: [0x3c00, 0xc000] },
      { name: 'b', dims: [2], dataType: DataType.BFLOAT16, rawData: Uint8Array.from([0x80, 0x3f, 0x40, 0xc0]) },
    );
    saveModel(model, dir, []);
    const ck = openOnnxCheckpoint(dir);
    assert.deepEqual(Array.from(ck.weightAsFloat32('f')), [1.5, -2, 3.25]);
    assert.deepEqual(Array.from(ck.tensorData('f')), Array.from(new Uint8Array(Float32Array.from([1.5, -2, 3.25]).buffer)));
    assert.deepEqual(Array.from(ck.weightAsFloat32('h')), [1, -2]);
    assert.deepEqual(Array.from(ck.weightAsFloat32('b')), [1, -3]);
    assert.equal(ck.info('f').storage.kind, 'typed');
  });
});

describe('writing an ONNX checkpoint', () => {
  test('one MatMul weight replaced by its own values: every tensor bit-identical, logits exactly equal', async () => {
    const src = openOnnxCheckpoint(FIXTURE);
    const name = matmulWeights(src.model)[3];
    const out = outPath('identity');
    const res = await writeOnnxCheckpoint(src, out, new Map([[name, src.weightAsFloat32(name)]]));
    assert.deepEqual(res.replaced, [name]);
    assert.equal(res.dataPath, undefined, 'inline input → inline output');
    assert.deepEqual(readdirSync(out).sort(), ['model.onnx', ...SIDE].sort());
    for (const f of SIDE) assert.ok(readFileSync(path.join(out, f)).equals(readFileSync(path.join(FIXTURE, f))), `${f} copied`);
    assert.deepEqual(siblings(out), [path.basename(out)], 'no temporary folder left');

    const back = openOnnxCheckpoint(out);
    assert.equal(assertSameTensors(src, back), src.initializerNames().length);
    assertBitEqual(await logitsOf(res.modelPath), fixtureLogits, 'logits');
  });

  test('a replaced weight is stored as given, all others bit-identical, and the model runs', async () => {
    const src = openOnnxCheckpoint(FIXTURE);
    const names = matmulWeights(src.model).slice(0, 2);
    const repl = new Map(names.map((n) => {
      const w = src.weightAsFloat32(n);
      for (let i = 0; i < w.length; i += 2) w[i] = 0; // half the weights pruned
      return [n, w] as const;
    }));
    const out = outPath('replaced');
    await writeOnnxCheckpoint(src, out, repl);
    const back = openOnnxCheckpoint(out);
    for (const [n, w] of repl) assertBitEqual(back.weightAsFloat32(n), w, n);
    assert.equal(assertSameTensors(src, back, new Set(names)), src.initializerNames().length - 2);
    const logits = await logitsOf(path.join(out, 'model.onnx'));
    assert.ok(logits.every(Number.isFinite));
    assert.ok(logits.some((v, i) => v !== fixtureLogits[i]), 'pruned weights change the logits');
  });

  test('external data: two data files with offsets read back and rewritten into one model.onnx_data', async (t) => {
    const dir = freshDir('ext-in');
    const original = fixtureModel();
    const weights = new Set(matmulWeights(original));
    // MatMul weights go to weights.data, other large initializers (embedding, norms ≥ 1 KiB) to extra.onnx_data.
    const model = externalize(original, dir, (tensor) => (weights.has(tensor.name) ? 'weights.data' : 'extra.onnx_data'));
    saveModel(model, dir);
    const before = hashTree(dir);
    assertBitEqual(await logitsOf(path.join(dir, 'model.onnx')), fixtureLogits, 'onnxruntime reads the hand-made external data');

    const fixture = openOnnxCheckpoint(FIXTURE);
    const src = openOnnxCheckpoint(dir, { chunkSize: 4096 });
    assert.deepEqual(src.externalFiles, [path.join(dir, 'extra.onnx_data'), path.join(dir, 'weights.data')]);
    const name = [...weights][5];
    const info = src.info(name);
    assert.equal(info.storage.kind, 'external');
    if (info.storage.kind === 'external') assert.ok(info.storage.offset > 0 && info.storage.length === info.byteLength);
    assertSameTensors(fixture, src); // the reader returns the same bytes as the inline original

    const pruned = src.weightAsFloat32(name).map((v, i) => (i % 4 === 0 ? 0 : v));
    const out = outPath('ext');
    const res = await writeOnnxCheckpoint(src, out, new Map([[name, pruned]]), { chunkSize: 4096 });
    assert.equal(res.dataPath, path.join(out, DATA_FILE));
    assert.deepEqual(readdirSync(out).sort(), [DATA_FILE, 'model.onnx', ...SIDE].sort());
    const modelSize = statSync(path.join(out, 'model.onnx')).size;
    assert.ok(res.dataBytes > 1_000_000 && modelSize < statSync(FIXTURE_MODEL).size - 1_000_000, 'the weights are in the data file, not inline');
    const back = openOnnxCheckpoint(out);
    assert.deepEqual(back.externalFiles, [path.join(out, DATA_FILE)]);
    assert.equal(back.info(name).storage.kind, 'external');
    assertBitEqual(back.weightAsFloat32(name), pruned, 'replaced tensor');
    assertSameTensors(src, back, new Set([name]));
    const logits = await logitsOf(res.modelPath);
    assert.ok(logits.every(Number.isFinite));

    // Identity replacement: exactly the input's logits.
    const out2 = outPath('ext-identity');
    await writeOnnxCheckpoint(src, out2, new Map([[name, src.weightAsFloat32(name)]]));
    assertBitEqual(await logitsOf(path.join(out2, 'model.onnx')), fixtureLogits, 'logits');
    assert.deepEqual(hashTree(dir), before, 'input files unchanged');
    t.diagnostic(`model.onnx ${statSync(path.join(out, 'model.onnx')).size} B, ${DATA_FILE} ${res.dataBytes} B`);
  });

  test("externalData 'always' moves an inline model's weights out; 'never' brings them back in", async () => {
    const src = openOnnxCheckpoint(FIXTURE);
    const out = outPath('always');
    const res = await writeOnnxCheckpoint(src, out, new Map(), { externalData: 'always' });
    assert.ok(res.dataPath && res.dataBytes > 1_000_000);
    const ext = openOnnxCheckpoint(out);
    assert.ok(ext.initializers().filter((i) => i.storage.kind === 'external').length >= 36);
    assert.ok(ext.initializers().every((i) => i.storage.kind !== 'external' || (i.byteLength ?? 0) >= 1024));
    assertSameTensors(src, ext);
    assertBitEqual(await logitsOf(res.modelPath), fixtureLogits, 'logits (always)');

    const out2 = outPath('never');
    const res2 = await writeOnnxCheckpoint(ext, out2, new Map(), { externalData: 'never' });
    assert.equal(res2.dataPath, undefined);
    assert.deepEqual(readdirSync(out2).sort(), ['model.onnx', ...SIDE].sort());
    assertSameTensors(src, openOnnxCheckpoint(out2));
    assertBitEqual(await logitsOf(res2.modelPath), fixtureLogits, 'logits (never)');

    // A model over the inline limit goes external by itself (limit lowered to simulate > 2 GB).
    const out3 = outPath('auto-large');
    const res3 = await writeOnnxCheckpoint(src, out3, new Map(), { maxInlineBytes: 1_000_000 });
    assert.ok(res3.dataPath, 'external data chosen for a model over the limit');
    assertBitEqual(await logitsOf(res3.modelPath), fixtureLogits, 'logits (auto, over the limit)');
    await assertCheckpointError(() => writeOnnxCheckpoint(src, outPath('never-large'), new Map(), { externalData: 'never', maxInlineBytes: 1_000_000 }), 'model-too-large', FIXTURE_MODEL);
  });

  test('a generated model with weights over 1 MiB: aligned offsets in the data file, same outputs in onnxruntime', async () => {
    const g = new GraphBuilder('big');
    const x = g.input('x', DataType.FLOAT, [1, 640]);
    let seed = 7;
    const rand = (n: number): number[] => Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) / 8);
    const w1 = g.constant(rand(640 * 512), [640, 512]); // 1.25 MiB
    const b1 = g.constant(rand(512), [512]); // 2 KiB, between the two big ones
    const w2 = g.constant(rand(512 * 640), [512, 640]);
    const h = g.op('Relu', [g.op('Add', [g.op('MatMul', [x, w1]), b1])]);
    g.output(g.op('MatMul', [h, w2]), 'y', DataType.FLOAT, [1, 640]);
    const dir = freshDir('big-gen');
    saveModel(g.build(), dir, []);
    const input = Float32Array.from(rand(640));
    const run = async (p: string): Promise<Float32Array> => {
      const s = await ort.InferenceSession.create(p, { executionProviders: ['cpu'], intraOpNumThreads: 1 });
      try {
        return (await s.run({ x: new ort.Tensor('float32', input, [1, 640]) })).y.data as Float32Array;
      } finally {
        await s.release();
      }
    };
    const src = openOnnxCheckpoint(dir);
    const out = outPath('big-gen');
    const res = await writeOnnxCheckpoint(src, out, new Map(), { externalData: 'always' });
    const back = openOnnxCheckpoint(out);
    const offsets = back.initializers().map((i) => (i.storage.kind === 'external' ? i.storage.offset : -1));
    assert.deepEqual(offsets.slice(0, 2), [0, 640 * 512 * 4], 'the first big tensor at 0, the small one right after it');
    assert.ok(offsets[2] % 65536 === 0 && offsets[2] > offsets[1], `the second big tensor is 64 KiB-aligned (offset ${offsets[2]})`);
    assert.equal(res.dataBytes, offsets[2] + 512 * 640 * 4);
    assertSameTensors(src, back);
    assertBitEqual(await run(res.modelPath), await run(path.join(dir, 'model.onnx')), 'outputs');
  });

  test('fp16 weights: read exactly, written back as fp16 (identity is bit-identical), with and without external data', async () => {
    const dir = freshDir('fp16-in');
    const model = fp16Variant(fixtureModel());
    saveModel(model, dir);
    const inLogits = await logitsOf(path.join(dir, 'model.onnx'));
    const src = openOnnxCheckpoint(dir);
    const halves = src.initializers().filter((i) => i.dataType === DataType.FLOAT16);
    assert.equal(halves.length, 36);
    const name = halves[4].name;
    const values = src.weightAsFloat32(name);
    assertBitEqual(values, halfBytesToFloat32(src.tensorData(name)), 'fp16 → fp32');

    // Identity: bytes and logits unchanged.
    const out = outPath('fp16-identity');
    await writeOnnxCheckpoint(src, out, new Map([[name, values]]));
    const back = openOnnxCheckpoint(out);
    assert.equal(back.info(name).dataType, DataType.FLOAT16, 'still FLOAT16');
    assertSameTensors(src, back);
    assertBitEqual(await logitsOf(path.join(out, 'model.onnx')), inLogits, 'logits (fp16 identity)');

    // A modified weight rounds to fp16 (nearest even) and runs, also with external data.
    const modified = values.map((v, i) => (i % 2 === 0 ? 0 : v * 1.0001));
    const out2 = outPath('fp16-ext');
    const res = await writeOnnxCheckpoint(src, out2, new Map([[name, modified]]), { externalData: 'always' });
    assert.ok(res.dataPath);
    const back2 = openOnnxCheckpoint(out2);
    assert.equal(back2.info(name).storage.kind, 'external');
    assert.ok(Buffer.from(back2.tensorData(name)).equals(Buffer.from(float32ToHalfBytes(modified))), 'stored as fp16 of the replacement');
    assertSameTensors(src, back2, new Set([name]));
    const logits = await logitsOf(res.modelPath);
    assert.ok(logits.every(Number.isFinite));
  });

  test('the output folder: refused when it exists, replaced with overwrite, never the input', async () => {
    const src = openOnnxCheckpoint(FIXTURE);
    const out = outPath('exists');
    mkdirSync(out);
    writeFileSync(path.join(out, 'model.onnx'), 'previous');
    writeFileSync(path.join(out, 'marker.txt'), 'previous');
    await assertCheckpointError(() => writeOnnxCheckpoint(src, out, new Map()), 'output-exists', out, /overwrite/);
    assert.equal(readFileSync(path.join(out, 'marker.txt'), 'utf8'), 'previous', 'untouched');

    const res = await writeOnnxCheckpoint(src, out, new Map(), { overwrite: true });
    assert.deepEqual(readdirSync(out).sort(), ['model.onnx', ...SIDE].sort(), 'previous contents replaced');
    assert.deepEqual(siblings(out), [path.basename(out)], 'no temporary or old folder left');
    assertBitEqual(await logitsOf(res.modelPath), fixtureLogits, 'logits');

    // Overwrite only replaces something that looks like a model folder.
    const notModel = outPath('not-a-model');
    mkdirSync(notModel);
    writeFileSync(path.join(notModel, 'thesis.tex'), 'precious');
    await assertCheckpointError(() => writeOnnxCheckpoint(src, notModel, new Map(), { overwrite: true }), 'output-exists', notModel, /not empty/);
    assert.equal(readFileSync(path.join(notModel, 'thesis.tex'), 'utf8'), 'precious');

    // The input folder (or a folder holding it) is refused even with overwrite.
    const dir = freshDir('self');
    saveModel(fixtureModel(), dir);
    const self = openOnnxCheckpoint(dir);
    const before = hashTree(dir);
    await assertCheckpointError(() => writeOnnxCheckpoint(self, dir, new Map(), { overwrite: true }), 'output-is-input', dir);
    await assertCheckpointError(() => writeOnnxCheckpoint(self, path.dirname(dir), new Map(), { overwrite: true }), 'output-is-input', path.dirname(dir));
    assert.deepEqual(hashTree(dir), before);
  });

  test('bad replacements are refused before anything is written', async () => {
    const src = openOnnxCheckpoint(FIXTURE);
    const out = outPath('bad-repl');
    const name = matmulWeights(src.model)[0];
    await assertCheckpointError(() => writeOnnxCheckpoint(src, out, new Map([[name, new Float32Array(3)]])), 'bad-replacement', FIXTURE_MODEL, new RegExp(name));
    await assertCheckpointError(() => writeOnnxCheckpoint(src, out, new Map([['no.such.weight', new Float32Array(3)]])), 'no-such-tensor', FIXTURE_MODEL);
    assert.deepEqual(siblings(out), []);
  });

  test('a failure in the middle of the write leaves no output and no temporary folder; a previous output survives', async () => {
    const src = openOnnxCheckpoint(FIXTURE);
    const name = matmulWeights(src.model)[0];
    const repl = new Map([[name, src.weightAsFloat32(name)]]);

    // Fail after the third chunk of model.onnx (64 KiB chunks).
    const out = outPath('fail');
    let chunks = 0;
    let sawTmp = false;
    const err = await assertCheckpointError(
      () => writeOnnxCheckpoint(src, out, repl, {
        chunkSize: 65536,
        hooks: {
          afterChunk: (file) => {
            sawTmp ||= file.includes('.tmp-') && existsSync(file);
            if (++chunks === 3) throw new Error('injected disk failure');
          },
        },
      }),
      'write-failed',
      'model.onnx',
      /injected disk failure/,
    );
    assert.ok(sawTmp, 'chunks were being written into the temporary folder');
    assert.ok(err.file?.includes('.tmp-'));
    assert.deepEqual(siblings(out), [], 'neither the output nor a temporary folder exists');

    // Failure in external data, with a previous output and overwrite: the previous output is intact.
    const prev = outPath('fail-prev');
    await writeOnnxCheckpoint(src, prev, new Map());
    const prevHashes = hashTree(prev);
    await assertCheckpointError(
      () => writeOnnxCheckpoint(src, prev, repl, {
        overwrite: true,
        externalData: 'always',
        chunkSize: 65536,
        hooks: { afterChunk: (file) => { if (file.endsWith(DATA_FILE)) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }); } },
      }),
      'no-space',
      DATA_FILE,
      /no space left/,
    );
    assert.deepEqual(hashTree(prev), prevHashes, 'previous output untouched');
    assert.deepEqual(siblings(prev), [path.basename(prev)]);

    // Failure at the last moment (everything written, before the rename).
    await assertCheckpointError(
      () => writeOnnxCheckpoint(src, prev, repl, { overwrite: true, hooks: { beforeCommit: () => { throw new Error('late failure'); } } }),
      'write-failed',
      prev,
      /late failure/,
    );
    assert.deepEqual(hashTree(prev), prevHashes, 'previous output untouched');
    assert.deepEqual(siblings(prev), [path.basename(prev)]);

    // Cancel through an AbortSignal.
    const ac = new AbortController();
    const out3 = outPath('cancel');
    await assertCheckpointError(
      () => writeOnnxCheckpoint(src, out3, repl, { signal: ac.signal, chunkSize: 65536, hooks: { afterChunk: () => ac.abort() } }),
      'cancelled',
      out3,
      /cancelled/,
    );
    assert.deepEqual(siblings(out3), []);

    // Extra files (the pipeline's report) land in the output with the model.
    const out4 = outPath('extra');
    const res = await writeOnnxCheckpoint(src, out4, new Map(), { extraFiles: { 'prune-report.json': '{"ok":true}' } });
    assert.equal(readFileSync(path.join(out4, 'prune-report.json'), 'utf8'), '{"ok":true}');
    assert.ok(res.files.includes('prune-report.json'));
  });
});

describe('errors name the file', () => {
  test('missing model, folder without model.onnx, not an .onnx file', async () => {
    const missing = path.join(tmpRoot, 'does-not-exist');
    await assertCheckpointError(() => openOnnxCheckpoint(missing), 'missing-model', missing);
    await assertCheckpointError(() => openOnnxCheckpoint(path.join(missing, 'model.onnx')), 'missing-model', missing);
    const empty = freshDir('empty');
    await assertCheckpointError(() => openOnnxCheckpoint(empty), 'missing-model', empty, /model\.onnx/);
    await assertCheckpointError(() => openOnnxCheckpoint(path.join(FIXTURE, 'tokenizer.json')), 'missing-model', 'tokenizer.json', /\.onnx/);
  });

  test('truncated, empty and garbage model files', async () => {
    const dir = freshDir('corrupt');
    const bytes = readFileSync(FIXTURE_MODEL);
    for (const [label, content] of [
      ['truncated', bytes.subarray(0, Math.floor(bytes.length / 2))],
      ['truncated-end', bytes.subarray(0, bytes.length - 3)],
      ['empty', Buffer.alloc(0)],
      ['garbage', Buffer.from('this is not a protobuf at all, just some text\n'.repeat(10))],
    ] as const) {
      const f = path.join(dir, `${label}.onnx`);
      writeFileSync(f, content);
      await assertCheckpointError(() => openOnnxCheckpoint(f), 'corrupt-model', f);
    }
  });

  test('missing external data file, range outside it, truncated data file', async () => {
    const dir = freshDir('ext-err');
    const model = externalize(fixtureModel(), dir, () => 'weights.data');
    const modelPath = saveModel(model, dir);
    const data = path.join(dir, 'weights.data');
    openOnnxCheckpoint(dir); // valid as written

    // Offset moved past the end of the file.
    const bad = structuredClone(model);
    const t = bad.graph.initializer.find((i) => i.externalData)!;
    t.externalData!.find((e) => e.key === 'offset')!.value = String(statSync(data).size + 100);
    writeFileSync(modelPath, encodeModel(bad));
    await assertCheckpointError(() => openOnnxCheckpoint(dir), 'external-range', data, new RegExp(`initializer '${t.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}'`));

    // A truncated data file.
    writeFileSync(modelPath, encodeModel(model));
    const full = readFileSync(data);
    writeFileSync(data, full.subarray(0, full.length - 10));
    await assertCheckpointError(() => openOnnxCheckpoint(dir), 'external-range', data, /outside/);

    // The data file is gone.
    rmSync(data);
    const err = await assertCheckpointError(() => openOnnxCheckpoint(dir), 'missing-external-data', data);
    assert.ok(err.message.includes(modelPath), 'and the model that references it');

    // Location outside the model folder.
    const escape = structuredClone(model);
    escape.graph.initializer.find((i) => i.externalData)!.externalData!.find((e) => e.key === 'location')!.value = '../../etc/passwd';
    writeFileSync(modelPath, encodeModel(escape));
    await assertCheckpointError(() => openOnnxCheckpoint(dir), 'corrupt-model', modelPath, /outside the model's folder/);
  });

  test('missing tokenizer: a separate check naming the folder and how to pass a path', async () => {
    const dir = freshDir('no-tok');
    saveModel(fixtureModel(), dir, ['config.json']);
    const ck = openOnnxCheckpoint(dir);
    assert.equal(ck.tokenizerPath, undefined);
    await assertCheckpointError(() => ck.requireTokenizer(), 'missing-tokenizer', dir, /tokenizer\.json.*path/);
    // An explicit tokenizer path (file or folder) is used, and copied into a written output.
    const withTok = openOnnxCheckpoint(dir, { tokenizer: FIXTURE });
    assert.equal(withTok.requireTokenizer(), path.join(FIXTURE, 'tokenizer.json'));
    const out = outPath('tok');
    await writeOnnxCheckpoint(withTok, out);
    assert.deepEqual(readdirSync(out).sort(), ['config.json', 'model.onnx', 'tokenizer.json', 'tokenizer_config.json']);
    const wrong = path.join(tmpRoot, 'nowhere', 'tokenizer.json');
    await assertCheckpointError(() => openOnnxCheckpoint(dir, { tokenizer: wrong }), 'missing-tokenizer', wrong);
  });
});

describe('range reads (files over 2 GiB)', () => {
  test('RangeReader reads any range in bounded chunks and refuses ranges outside the file', async () => {
    const f = path.join(freshDir('rr'), 'bytes.bin');
    const content = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7 + 3) & 0xff);
    writeFileSync(f, content);
    const r = RangeReader.open(f, 7);
    try {
      assert.equal(r.size, 1000);
      assert.deepEqual(r.read(13, 100), content.subarray(13, 113));
      assert.equal(r.stats.reads, Math.ceil(100 / 7));
      const pieces = Array.from(r.chunks(5, 50), (c) => Array.from(c)); // copy each chunk before the next (one reused buffer)
      assert.ok(pieces.every((p) => p.length <= 7));
      assert.deepEqual(pieces.flat(), Array.from(content.subarray(5, 55)));
      assert.deepEqual(r.read(1000, 0), new Uint8Array(0));
      await assertCheckpointError(() => r.read(990, 11), 'external-range', f);
      await assertCheckpointError(() => r.read(-1, 1), 'external-range', f);
    } finally {
      r.close();
    }
  });

  test('tensors are read by ranges across many chunks, never with readFileSync', () => {
    const dir = freshDir('no-readfile');
    saveModel(externalize(fixtureModel(), dir, () => 'model.onnx_data'), dir);
    const fixture = openOnnxCheckpoint(FIXTURE);
    const spy = mock.method(fs, 'readFileSync');
    try {
      const ck = openOnnxCheckpoint(dir, { chunkSize: 1000 });
      const name = 'model.embed_tokens.weight'; // 131,072 bytes: 132 chunks
      assert.equal(ck.info(name).storage.kind, 'external');
      assertBitEqual(ck.weightAsFloat32(name), fixture.weightAsFloat32(name), name);
      for (const n of ck.initializerNames()) ck.tensorData(n);
      assert.equal(spy.mock.callCount(), 0, 'readFileSync was never called');
    } finally {
      spy.mock.restore();
    }
  });

  test('a tensor past 2 GiB in a sparse 2.25 GiB data file: read by range, and the written copy holds only tensors', async (t) => {
    const dir = freshDir('big');
    const data = path.join(dir, 'model.onnx_data');
    const original = fixtureModel();
    const name = 'model.embed_tokens.weight';
    const fixture = openOnnxCheckpoint(FIXTURE);
    const bytes = fixture.tensorData(name);
    const offset = 2 ** 31 + 12345; // beyond what one read(2) or a Node Buffer from readFileSync can cover
    const fd = openSync(data, 'w');
    try {
      ftruncateSync(fd, 2.25 * 2 ** 30);
      writeSync(fd, bytes, 0, bytes.length, offset);
    } finally {
      closeSync(fd);
    }
    if (statSync(data).blocks * 512 > 64 * 2 ** 20) {
      rmSync(dir, { recursive: true, force: true });
      t.skip('this filesystem does not keep sparse files sparse');
      return;
    }
    const model: ModelProto = {
      ...original,
      graph: {
        ...original.graph,
        initializer: original.graph.initializer.map((x) => {
          if (x.name !== name) return x;
          const rest: TensorProto = { ...x };
          delete rest.rawData;
          return {
            ...rest,
            dataLocation: 1,
            externalData: [
              { key: 'location', value: 'model.onnx_data' },
              { key: 'offset', value: String(offset) },
              { key: 'length', value: String(bytes.length) },
            ],
          };
        }),
      },
    };
    saveModel(model, dir);
    assert.throws(() => readFileSync(data), /ERR_FS_FILE_TOO_LARGE|larger than 2 GiB|File size/i, 'Node cannot read this file in one piece');

    const ck = openOnnxCheckpoint(dir, { chunkSize: 8192 });
    const info = ck.info(name);
    assert.deepEqual(info.storage, { kind: 'external', file: data, offset, length: bytes.length });
    assert.ok(Buffer.from(ck.tensorData(name)).equals(Buffer.from(bytes)));

    const out = outPath('big');
    const res = await writeOnnxCheckpoint(ck, out, new Map(), { chunkSize: 8192 });
    assert.equal(res.dataBytes, bytes.length, 'only the referenced range was copied');
    assert.equal(statSync(path.join(out, DATA_FILE)).size, bytes.length);
    assertSameTensors(fixture, openOnnxCheckpoint(out));
    assertBitEqual(await logitsOf(res.modelPath), fixtureLogits, 'logits');
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('float16 and bfloat16 conversions', () => {
  test('fp16 → fp32 → fp16 returns every one of the 65,536 bit patterns; fp16 → fp32 matches onnxruntime', async () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const f = halfBytesToFloat32(new Uint8Array(all.buffer));
    const back = new Uint16Array(float32ToHalfBytes(f).buffer);
    for (let h = 0; h < 65536; h++) if (back[h] !== h) assert.fail(`fp16 0x${h.toString(16)} came back as 0x${back[h].toString(16)}`);
    // Spot values.
    assert.equal(halfBitsToFloatBits(0x3c00), 0x3f800000);
    assert.equal(f[0x0001], 2 ** -24);
    assert.equal(f[0x03ff], 1023 * 2 ** -24);
    assert.equal(f[0x7bff], 65504);
    assert.equal(f[0xfc00], -Infinity);
    assert.ok(Object.is(f[0x8000], -0));

    const ortOut = await castWithOrt(new ort.Tensor('float16', all, [65536]), DataType.FLOAT);
    const ours = new Uint32Array(f.buffer);
    const theirs = new Uint32Array((ortOut.data as Float32Array).buffer);
    for (let h = 0; h < 65536; h++) {
      const nan = Number.isNaN(f[h]);
      if (nan ? !Number.isNaN((ortOut.data as Float32Array)[h]) : ours[h] !== theirs[h]) assert.fail(`fp16 0x${h.toString(16)}: ${f[h]} vs onnxruntime ${(ortOut.data as Float32Array)[h]}`);
    }
  });

  test('fp32 → fp16 rounds to nearest even like onnxruntime (ties, subnormals, overflow)', async () => {
    const vals: number[] = [0, -0, 1, -1, 65504, 65519.99, 65520, 1e6, -1e6, Infinity, -Infinity, 2 ** -24, 2 ** -25, 2 ** -25 * 1.0000001, 2 ** -26, 3 * 2 ** -25, 5.960464477539063e-8, 6.1e-5, 1e-40];
    // Exact ties and neighbours around every 1024th fp16 value.
    for (let h = 0; h < 0x7c00; h += 97) {
      const a = halfBitsToFloatBits(h);
      const b = halfBitsToFloatBits(h + 1);
      const fa = new Float32Array(new Uint32Array([a, b]).buffer);
      const mid = (fa[0] + fa[1]) / 2;
      vals.push(mid, -mid, Math.fround(mid * (1 + 2 ** -20)), Math.fround(mid * (1 - 2 ** -20)));
    }
    let seed = 12345;
    for (let i = 0; i < 5000; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      vals.push((seed / 2 ** 32 - 0.5) * 2 ** ((i % 40) - 25));
    }
    const x = Float32Array.from(vals);
    const ours = new Uint16Array(float32ToHalfBytes(x).buffer);
    const theirs = (await castWithOrt(new ort.Tensor('float32', x, [x.length]), DataType.FLOAT16)).data as Uint16Array;
    for (let i = 0; i < x.length; i++) {
      if (ours[i] !== theirs[i]) assert.fail(`${x[i]}: ours 0x${ours[i].toString(16)}, onnxruntime 0x${theirs[i].toString(16)}`);
    }
    assert.equal(floatBitsToHalfBits(0x7fc00000) & 0x7e00, 0x7e00, 'NaN stays a quiet NaN');
  });

  test('bfloat16: exact widening, round-to-nearest-even narrowing', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const f = bf16BytesToFloat32(new Uint8Array(all.buffer));
    const back = new Uint16Array(float32ToBf16Bytes(f).buffer);
    for (let h = 0; h < 65536; h++) if (back[h] !== h) assert.fail(`bf16 0x${h.toString(16)} came back as 0x${back[h].toString(16)}`);
    assert.equal(floatBitsToBf16Bits(0x3f808000), 0x3f80, 'tie to even (down)');
    assert.equal(floatBitsToBf16Bits(0x3f818000), 0x3f82, 'tie to even (up)');
    assert.equal(floatBitsToBf16Bits(0x3f808001), 0x3f81, 'above the tie');
    assert.equal(floatBitsToBf16Bits(0x7f7fffff), 0x7f80, 'overflow to inf');
  });
});

async function castWithOrt(x: ort.Tensor, to: DataType): Promise<ort.Tensor> {
  const g = new GraphBuilder('cast');
  const input = g.input('x', x.type === 'float16' ? DataType.FLOAT16 : DataType.FLOAT, [x.dims[0]]);
  g.output(g.op('Cast', [input], { to }), 'y', to, [x.dims[0]]);
  const s = await ort.InferenceSession.create(encodeModel(g.build()), { executionProviders: ['cpu'], intraOpNumThreads: 1 });
  try {
    return (await s.run({ x })).y;
  } finally {
    await s.release();
  }
}
