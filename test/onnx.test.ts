// The ONNX layer (src/backend/onnx): the protobuf codec on a real checkpoint and on hand-made edge cases,
// GraphBuilder graphs run through Engine.kernel, and the Engine's device selection.

import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../src/backend/onnx/graph';
import { AttributeType, DataType, decodeModel, encodeModel, ModelProto } from '../src/backend/onnx/proto';
import { DeviceRequest, Engine, f32 } from '../src/backend/onnx/session';

const repoRoot = path.resolve(__dirname, '..');
const fixtures = path.resolve(repoRoot, '..', 'shared', 'fixtures');
const MODEL = path.join(fixtures, 'stories260K-onnx', 'model.onnx');
const REFERENCE = path.join(fixtures, 'stories260K-reference.json');

const engines: Engine[] = [];
function engine(device: DeviceRequest): Engine {
  const e = new Engine({ device, threads: 1 });
  engines.push(e);
  return e;
}
after(async () => {
  for (const e of engines) await e.release();
});

/** The file's bytes as a plain Uint8Array (a Buffer's subarrays are Buffers, which deepEqual tells apart). */
function readBytes(file: string): Uint8Array {
  const b = readFileSync(file);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function concat(...parts: (Uint8Array | number[])[]): Uint8Array {
  const arrays = parts.map((p) => (p instanceof Uint8Array ? p : Uint8Array.from(p)));
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let off = 0;
  for (const a of arrays) {
    out.set(a, off);
    off += a.length;
  }
  return out;
}

function indexOfBytes(hay: Uint8Array, needle: number[]): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** Runs a serialized model on CPU with int64 [batch, seq] ids and mask; returns the logits. */
async function runLm(bytes: Uint8Array, ids: number[][], mask: number[][]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'], intraOpNumThreads: 1 });
  try {
    const dims = [ids.length, ids[0].length];
    const r = await session.run({
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.flat(), BigInt), dims),
      attention_mask: new ort.Tensor('int64', BigInt64Array.from(mask.flat(), BigInt), dims),
    });
    return r.logits.data as Float32Array;
  } finally {
    await session.release();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Codec

describe('ONNX protobuf codec', () => {
  test('stories260K: decode → encode → decode is structurally identical, and the re-encoded model still runs', async (t) => {
    const original = readBytes(MODEL);
    const m1 = decodeModel(original);
    // Sanity: this is the model the fixture README describes.
    assert.equal(m1.opsetImport[0].version, 14);
    assert.deepEqual(m1.graph.input.map((i) => i.name), ['input_ids', 'attention_mask']);
    assert.deepEqual(m1.graph.output.map((o) => o.name), ['logits']);
    assert.ok(m1.graph.node.length > 100 && m1.graph.initializer.length > 10);
    const embed = m1.graph.initializer.find((i) => i.name === 'model.embed_tokens.weight');
    assert.ok(embed && embed.rawData, 'embedding initializer with raw data');
    assert.deepEqual(embed.dims, [512, 64]);
    assert.equal(embed.rawData.length, 512 * 64 * 4);

    const bytes1 = encodeModel(m1);
    const m2 = decodeModel(bytes1);
    assert.deepStrictEqual(m2, m1);
    // Encoding is deterministic: a second round gives the same bytes.
    const bytes2 = encodeModel(m2);
    assert.deepStrictEqual(bytes2, bytes1);
    t.diagnostic(`original ${original.length} bytes, re-encoded ${bytes1.length} bytes (packing and explicit defaults may differ)`);

    // The re-encoded model is a valid ONNX model: the same logits as the original and as PyTorch.
    const ref = JSON.parse(readFileSync(REFERENCE, 'utf8')) as { cases: { input_ids: number[][]; attention_mask: number[][]; logits: number[][][] }[] };
    for (const c of ref.cases) {
      const a = await runLm(original, c.input_ids, c.attention_mask);
      const b = await runLm(bytes1, c.input_ids, c.attention_mask);
      const want = c.logits.flat(2);
      assert.equal(b.length, want.length);
      let vsOriginal = 0;
      let vsTorch = 0;
      const seq = c.input_ids[0].length;
      for (let i = 0; i < b.length; i++) {
        vsOriginal = Math.max(vsOriginal, Math.abs(a[i] - b[i]));
        const tok = Math.floor(i / 512);
        if (c.attention_mask[Math.floor(tok / seq)][tok % seq]) vsTorch = Math.max(vsTorch, Math.abs(b[i] - want[i]));
      }
      t.diagnostic(`${c.input_ids.length}x${seq}: max |Δlogit| re-encoded vs original ${vsOriginal}, vs PyTorch ${vsTorch.toExponential(2)}`);
      assert.ok(vsOriginal <= 1e-6, `re-encoded model differs from the original by ${vsOriginal}`);
      assert.ok(vsTorch < 1e-3, `re-encoded model vs PyTorch logits: ${vsTorch}`);
    }
  });

  test('int64 values beyond 2^53 round-trip exactly (attributes, tensor data, dims)', async () => {
    const INT64_MAX = 2n ** 63n - 1n;
    const INT64_MIN = -(2n ** 63n);
    const model: ModelProto = {
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'g',
        node: [{
          name: 'n', opType: 'Identity', input: ['x'], output: ['y'],
          attribute: [
            { name: 'big', type: AttributeType.INT, i: INT64_MAX },
            { name: 'small', type: AttributeType.INT, i: INT64_MIN },
            { name: 'neg', type: AttributeType.INT, i: -1 },
            { name: 'many', type: AttributeType.INTS, ints: [0, -1, 2 ** 53 - 1, 2n ** 53n, -(2n ** 53n), INT64_MAX, INT64_MIN, 2n ** 62n + 3n] },
          ],
        }],
        initializer: [{ name: 't', dims: [2n ** 40n * 3n, 1], dataType: DataType.INT64, int64Data: [INT64_MAX, -5, INT64_MIN, 2 ** 50] }],
        input: [],
        output: [],
        valueInfo: [],
      },
    };
    const bytes = encodeModel(model);
    // INT64_MAX as a protobuf varint (AttributeProto.i is field 3: tag 0x18) is 8×0xff then 0x7f; −1 is ten bytes.
    assert.ok(indexOfBytes(bytes, [0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]) >= 0, 'INT64_MAX wire bytes');
    assert.ok(indexOfBytes(bytes, [0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]) >= 0, '−1 wire bytes (10-byte two\'s complement)');
    assert.ok(indexOfBytes(bytes, [0x18, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]) >= 0, 'INT64_MIN wire bytes');
    const back = decodeModel(bytes);
    const attrs = back.graph.node[0].attribute;
    assert.equal(attrs[0].i, INT64_MAX);
    assert.equal(attrs[1].i, INT64_MIN);
    assert.equal(attrs[2].i, -1, 'small values decode as numbers');
    assert.deepEqual(attrs[3].ints, [0, -1, 2 ** 53 - 1, 2n ** 53n, -(2n ** 53n), INT64_MAX, INT64_MIN, 2n ** 62n + 3n]);
    assert.equal(typeof attrs[3].ints?.[2], 'number', '2^53 − 1 is still a safe number');
    assert.equal(typeof attrs[3].ints?.[3], 'bigint', '2^53 is not');
    assert.deepEqual(back.graph.initializer[0].int64Data, [INT64_MAX, -5, INT64_MIN, 2 ** 50]);
    assert.deepEqual(back.graph.initializer[0].dims, [2 ** 40 * 3, 1], 'dims below 2^53 decode as numbers');
    assert.deepStrictEqual(encodeModel(back), bytes);
  });

  test('an INT64_MAX attribute means "to the end" in onnxruntime (opset-9 Slice)', async () => {
    // Slice-1..9 takes starts/ends as INTS attributes; exporters write INT64_MAX for "to the end".
    const g = new GraphBuilder('slice9');
    const x = g.input('x', DataType.FLOAT, [6]);
    g.output(g.op('Slice', [x], { starts: [2], ends: [0], axes: [0] }), 'y', DataType.FLOAT, [4]);
    const model = g.build(9);
    const ends = model.graph.node[0].attribute.find((a) => a.name === 'ends');
    assert.ok(ends);
    ends.ints = [2n ** 63n - 1n];
    const roundTripped = decodeModel(encodeModel(model));
    assert.deepEqual(roundTripped.graph.node[0].attribute.find((a) => a.name === 'ends')?.ints, [2n ** 63n - 1n]);
    const k = await engine('cpu').kernel(roundTripped);
    const r = await k.run({ x: f32(Float32Array.from([0, 1, 2, 3, 4, 5]), [6]) });
    assert.deepEqual(Array.from(r.y.data as Float32Array), [2, 3, 4, 5]);
  });

  test('unknown fields are preserved: top-level bytes appended to a real model, and nested ones', () => {
    const original = readBytes(MODEL);
    // Fields the codec does not model, one per wire type: ModelProto.training_info (20, LEN), a varint (99),
    // a fixed32 (100) and a fixed64 (101).
    const extra = [
      [0xa2, 0x01, 0x03, 0x0a, 0x01, 0x41], // 20: LEN, 3 bytes
      [0x98, 0x06, 0xac, 0x02], // 99: varint 300
      [0xa5, 0x06, 1, 2, 3, 4], // 100: fixed32
      [0xa9, 0x06, 1, 2, 3, 4, 5, 6, 7, 8], // 101: fixed64
    ];
    const m = decodeModel(concat(original, ...extra));
    assert.deepEqual(m.unknown?.map((u) => Array.from(u)), extra);
    const bytes = encodeModel(m);
    for (const e of extra) assert.ok(indexOfBytes(bytes, e) >= 0, `unknown field ${e} written back`);
    assert.deepStrictEqual(decodeModel(bytes), m);

    // Nested, hand-encoded: ModelProto { ir_version: 8, graph { node { op_type: "Relu", <field 15: varint 42> },
    // <GraphProto field 15 (sparse_initializer), LEN 2: 0x08 0x01> } }.
    const node = [0x22, 0x04, ...Buffer.from('Relu'), 0x78, 0x2a];
    const graph = [0x0a, node.length, ...node, 0x7a, 0x02, 0x08, 0x01];
    const raw = Uint8Array.from([0x08, 0x08, 0x3a, graph.length, ...graph]);
    const n = decodeModel(raw);
    assert.equal(n.irVersion, 8);
    assert.equal(n.graph.node[0].opType, 'Relu');
    assert.deepEqual(n.graph.node[0].unknown?.map((u) => Array.from(u)), [[0x78, 0x2a]]);
    assert.deepEqual(n.graph.unknown?.map((u) => Array.from(u)), [[0x7a, 0x02, 0x08, 0x01]]);
    const again = decodeModel(encodeModel(n));
    assert.deepStrictEqual(again, n);
  });

  test('truncated input is rejected, not silently accepted', () => {
    const original = readBytes(MODEL);
    assert.throws(() => decodeModel(original.subarray(0, original.length - 7)));
  });
});

// ---------------------------------------------------------------------------------------------------------
// GraphBuilder + Engine.kernel

describe('GraphBuilder graphs on onnxruntime', () => {
  test('Gemm/Relu/ReduceSum/TopK with float, int and constant inputs give the right numbers', async () => {
    const g = new GraphBuilder('mix');
    const a = g.input('a', DataType.FLOAT, ['m', 'k']);
    const b = g.input('b', DataType.FLOAT, ['n', 'k']);
    const c = g.input('c', DataType.FLOAT, ['m', 'n']);
    // y = relu(0.5·a·bᵀ − 2·c)
    const y = g.op('Relu', [g.op('Gemm', [a, b, c], { transB: 1, alpha: { f: 0.5 }, beta: { f: -2 } })]);
    g.output(y, 'y', DataType.FLOAT, ['m', 'n']);
    // s = Σ_rows y + [10, 20, ...] broadcast constant (length n fixed at 3 here)
    const s = g.op('Add', [g.op('ReduceSum', [y, g.constant([0n], [1], DataType.INT64)], { keepdims: 0 }), g.constant([10, 20, 30], [3])]);
    g.output(s, 's', DataType.FLOAT, [3]);
    // top-2 of each row of y: two outputs, values and int64 indices
    const [vals, idx] = g.opN('TopK', [y, g.constant([2n], [1], DataType.INT64)], { axis: -1 }, 2);
    g.output(vals, 'top', DataType.FLOAT, ['m', 2]);
    g.output(idx, 'topIdx', DataType.INT64, ['m', 2]);
    const model = g.build();

    const e = engine('cpu');
    const k = await e.kernel(model);
    for (const m of [2, 5]) {
      const kk = 4;
      const n = 3;
      const A = Float32Array.from({ length: m * kk }, (_, i) => ((i * 7) % 11) - 5);
      const B = Float32Array.from({ length: n * kk }, (_, i) => ((i * 5) % 7) - 3);
      const C = Float32Array.from({ length: m * n }, (_, i) => ((i * 3) % 5) - 2);
      const r = await k.run({ a: f32(A, [m, kk]), b: f32(B, [n, kk]), c: f32(C, [m, n]) });
      const Y: number[] = [];
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let dot = 0;
          for (let p = 0; p < kk; p++) dot += A[i * kk + p] * B[j * kk + p];
          Y.push(Math.max(0, 0.5 * dot - 2 * C[i * n + j]));
        }
      }
      assert.deepEqual(r.y.dims, [m, n]);
      assert.deepEqual(Array.from(r.y.data as Float32Array), Y);
      const S = [0, 1, 2].map((j) => [...Array(m).keys()].reduce((acc, i) => acc + Y[i * n + j], 0) + 10 * (j + 1));
      assert.deepEqual(Array.from(r.s.data as Float32Array), S);
      for (let i = 0; i < m; i++) {
        const row = Y.slice(i * n, i * n + n);
        const top = Array.from(r.top.data as Float32Array).slice(i * 2, i * 2 + 2);
        const ids = Array.from(r.topIdx.data as BigInt64Array).slice(i * 2, i * 2 + 2).map(Number);
        assert.deepEqual(top, [...row].sort((x, z) => z - x).slice(0, 2));
        assert.deepEqual(ids.map((j) => row[j]), top);
      }
    }
    // Symbolic shapes: one cached session serves both sizes, and an equal graph hits the cache.
    assert.equal(await e.kernel(model), k);
    assert.equal(k.device, 'cpu');
  });
});

// ---------------------------------------------------------------------------------------------------------
// Devices

/** Independent of session.ts: does this machine have the CUDA provider libraries or a GPU device node? */
function machineHasGpuPath(): boolean {
  const pkg = path.dirname(require.resolve('onnxruntime-node/package.json'));
  const cudaLib = path.join(pkg, 'bin', 'napi-v6', process.platform, process.arch, 'libonnxruntime_providers_cuda.so');
  const dri = existsSync('/dev/dri') && readdirSync('/dev/dri').some((f) => f.startsWith('renderD'));
  return existsSync(cudaLib) || existsSync('/dev/nvidia0') || dri || process.platform !== 'linux';
}

const negGraph = (): ModelProto => {
  const g = new GraphBuilder('neg');
  const x = g.input('x', DataType.FLOAT, ['n']);
  g.output(g.op('Neg', [x]), 'y', DataType.FLOAT, ['n']);
  return g.build();
};

describe('Engine devices', () => {
  test('an unknown device name is refused up front', () => {
    for (const bad of ['bogus', 'gpu', 'cuda:x', 'CPU', '']) {
      assert.throws(() => new Engine({ device: bad as DeviceRequest, threads: 0 }), /is not one of auto, cpu, cuda, cuda:N, webgpu/, bad);
    }
  });

  test("'cpu' reports cpu", async () => {
    const e = engine('cpu');
    assert.equal(e.device, undefined, 'unknown before the first kernel');
    const k = await e.kernel(negGraph());
    assert.equal(e.device, 'cpu');
    assert.equal(k.device, 'cpu');
    assert.deepEqual(e.fallbacks, []);
    const r = await k.run({ x: f32(Float32Array.from([1, -2.5]), [2]) });
    assert.deepEqual(Array.from(r.y.data as Float32Array), [-1, 2.5]);
  });

  test("'auto' falls back to cpu here and says why", async (t) => {
    const e = engine('auto');
    const k = await e.kernel(negGraph());
    t.diagnostic(`auto → ${e.device}; fallbacks: ${JSON.stringify(e.fallbacks)}`);
    assert.equal(k.device, e.device);
    if (!machineHasGpuPath()) assert.equal(e.device, 'cpu', 'no CUDA provider libraries and no GPU device on this machine');
    if (e.device === 'cpu') {
      // One reason per device tried before cpu, each naming it.
      assert.equal(e.fallbacks.length, 2, JSON.stringify(e.fallbacks));
      assert.match(e.fallbacks[0], /^cuda/);
      assert.match(e.fallbacks[1], /^webgpu/);
      for (const f of e.fallbacks) assert.ok(f.length > 'webgpu: '.length, 'a reason, not just a name');
    }
    const r = await k.run({ x: f32(Float32Array.from([3]), [1]) });
    assert.deepEqual(Array.from(r.y.data as Float32Array), [-3]);
  });

  test("'cuda' without the CUDA provider throws an error naming the device and the cause", async (t) => {
    const pkg = path.dirname(require.resolve('onnxruntime-node/package.json'));
    const cudaLib = path.join(pkg, 'bin', 'napi-v6', process.platform, process.arch, 'libonnxruntime_providers_cuda.so');
    if (existsSync(cudaLib)) {
      t.skip('the CUDA provider is installed here');
      return;
    }
    for (const device of ['cuda', 'cuda:1'] as const) {
      const e = engine(device);
      await assert.rejects(e.kernel(negGraph()), (err: unknown) => {
        assert.ok(err instanceof Error);
        t.diagnostic(`${device}: ${err.message}`);
        assert.match(err.message, /^no onnxruntime device could run the graph: /);
        assert.match(err.message, device === 'cuda' ? /cuda:0: / : /cuda:1: /);
        assert.match(err.message, /Cuda|CUDA|cuda/);
        assert.match(err.message, /README, "GPU/, 'points to the install instructions');
        return true;
      });
      assert.equal(e.device, undefined, 'nothing resolved');
      assert.deepEqual(e.fallbacks, [], 'an explicit device does not fall back');
    }
  });
});
