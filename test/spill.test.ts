// Bounded memory: each pruned weight is spilled (in its stored type) to a scratch file beside the
// output as it is made, the writers read it back only when they write that tensor, and the file is gone after
// the run however it ends. Real runs on the stories260K fixtures (ONNX fp32 and fp16, Hugging Face F32). And
// what the pipeline drops (calibration copies, activations past their last reader) is collected, not left to pile up.

import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { resolveConfig } from '../src/protocol/config';
import { Event, EventOf } from '../src/protocol/events';
import { removeTemporaries, spillFileOf, temporaryFolderOf } from '../src/backend/formats/atomicFolder';
import { openCheckpoint } from '../src/backend/formats/checkpoint';
import { bytesToFloat32, float32ToBytes, float32ToHalfBytes } from '../src/backend/formats/dtype';
import { openHfCheckpoint, writeHfCheckpoint } from '../src/backend/formats/hfCheckpoint';
import { openOnnxCheckpoint, writeOnnxCheckpoint, DATA_FILE } from '../src/backend/formats/onnxCheckpoint';
import { readTensorBytes } from '../src/backend/formats/safetensors';
import { replacementBytes, SpillFile, TensorSource } from '../src/backend/formats/tensorSource';
import { dropped } from '../src/backend/fullCollection';
import { rowPool } from '../src/backend/methods/rowKernels';
import { DataType } from '../src/backend/onnx/proto';
import { RunCancelledError, runPrune } from '../src/backend/pipeline/run';
import { writeFloat16Checkpoint } from './helpers/fp16';
import { fixturesDir } from './helpers/realLayers';

const onnxDir = path.join(fixturesDir, 'stories260K-onnx');
const hfDir = path.join(fixturesDir, 'stories260K-hf');
const text = path.join(fixturesDir, 'data', 'tinystories_valid_head.txt');
const work = mkdtempSync(path.join(os.tmpdir(), 'prunekit-spill-'));

after(async () => {
  rmSync(work, { recursive: true, force: true });
  await rowPool.close();
});

describe('SpillFile and replacement sources', () => {
  test('created on the first add; each source reads back exactly its bytes; remove deletes it and later reads fail', () => {
    const file = path.join(work, 'unit', 'nested', 'w.spill');
    const spill = new SpillFile(file);
    assert.equal(existsSync(file), false, 'nothing on disk before the first tensor');
    const a = Float32Array.from([1, -2.5, 0, 3.25]);
    const b = Float32Array.from([0.1, 0, -65504, 1e-8, 7]);
    const sa = spill.add(DataType.FLOAT, a.length, float32ToBytes(DataType.FLOAT, a));
    const sb = spill.add(DataType.FLOAT16, b.length, float32ToHalfBytes(b));
    assert.equal(statSync(file).size, 16 + 10);
    assert.equal(spill.bytes, 26);
    assert.deepEqual(bytesToFloat32(DataType.FLOAT, sa.bytes()), a);
    assert.deepEqual(sb.bytes(), float32ToHalfBytes(b));
    assert.equal(sb.elements, 5);
    // In its own type the bytes pass through; in another type they are converted (fp16 → fp32 exact).
    assert.deepEqual(replacementBytes(sb, DataType.FLOAT16), float32ToHalfBytes(b));
    assert.deepEqual(replacementBytes(sb, DataType.FLOAT), float32ToBytes(DataType.FLOAT, bytesToFloat32(DataType.FLOAT16, float32ToHalfBytes(b))));
    assert.throws(() => spill.add(DataType.FLOAT, 3, new Uint8Array(8)), /8 bytes for 3 elements of FLOAT/);
    spill.remove();
    spill.remove();
    assert.equal(existsSync(file), false);
    assert.throws(() => sa.bytes(), /ENOENT|cannot|no such/i);
    assert.throws(() => spill.add(DataType.FLOAT, 1, new Uint8Array(4)), /already removed/);
  });

  test('addLater: written in the background in order at reserved offsets, read back after flushed(); a failed write fails flushed() and the next add', async () => {
    const file = path.join(work, 'unit', 'later.spill');
    const spill = new SpillFile(file);
    const a = Float32Array.from({ length: 100_000 }, (_, i) => i * 0.5 - 7);
    const b = Float32Array.from([0.1, 0, -65504, 1e-8, 7]);
    const sa = spill.addLater(DataType.FLOAT, a.length, new Uint8Array(a.buffer));
    const sb = spill.addLater(DataType.FLOAT16, b.length, float32ToHalfBytes(b));
    const sc = spill.add(DataType.FLOAT, 1, float32ToBytes(DataType.FLOAT, Float32Array.of(3)));
    assert.equal(spill.bytes, 400_000 + 10 + 4, 'offsets are reserved when added');
    await spill.flushed();
    assert.equal(statSync(file).size, 400_014);
    assert.deepEqual(bytesToFloat32(DataType.FLOAT, sa.bytes()), a);
    assert.deepEqual(sb.bytes(), float32ToHalfBytes(b));
    assert.deepEqual(bytesToFloat32(DataType.FLOAT, sc.bytes()), Float32Array.of(3));
    assert.throws(() => spill.addLater(DataType.FLOAT, 3, new Uint8Array(8)), /8 bytes for 3 elements of FLOAT/);
    // A write the OS refuses (EBADF: the descriptor swapped for a read-only one): the error is the spill's, kept for
    // flushed() and the next add.
    const handle = spill as unknown as { fd: number };
    closeSync(handle.fd);
    handle.fd = openSync(file, 'r');
    spill.addLater(DataType.FLOAT, 1, new Uint8Array(4));
    await assert.rejects(spill.flushed(), (e: Error) => e.message.includes(file));
    assert.throws(() => spill.addLater(DataType.FLOAT, 1, new Uint8Array(4)), (e: Error) => e.message.includes(file));
    spill.remove();
    assert.equal(existsSync(file), false);
  });

  test("removeTemporaries (the CLI's hard exit) deletes the temporary folder and the spill file beside an output", () => {
    const out = path.join(work, 'hard-exit', 'out');
    mkdirSync(temporaryFolderOf(out), { recursive: true });
    writeFileSync(path.join(temporaryFolderOf(out), 'model.onnx'), 'x');
    writeFileSync(spillFileOf(out), 'y');
    removeTemporaries(out);
    assert.deepEqual(readdirSync(path.dirname(out)), []);
  });
});

/** A spilled source that records when it is read. */
function watched(spill: SpillFile, type: DataType, values: Float32Array, log: string[], name: string): TensorSource {
  const s = spill.add(type, values.length, float32ToBytes(type, values));
  return { dataType: s.dataType, elements: s.elements, bytes: () => (log.push(`read ${name}`), s.bytes()) };
}

describe('the writers read each replacement only when they write it', () => {
  test('ONNX (external data): reads interleave with the data file chunks, each source once; values land exactly', async () => {
    const src = openOnnxCheckpoint(onnxDir);
    const names = src.model.graph.initializer.filter((t) => t.dims.length === 2 && t.name.includes('layers')).map((t) => t.name).slice(0, 4);
    const spill = new SpillFile(path.join(work, 'lazy-onnx.spill'));
    const log: string[] = [];
    const want = new Map(names.map((n) => [n, src.weightAsFloat32(n).map((v, i) => (i % 3 === 0 ? 0 : v))]));
    const repl = new Map(names.map((n) => [n, watched(spill, DataType.FLOAT, want.get(n) as Float32Array, log, n)]));
    assert.equal(log.length, 0, 'nothing read while the sources are made');
    const out = path.join(work, 'lazy-onnx');
    await writeOnnxCheckpoint(src, out, repl, { externalData: 'always', chunkSize: 4096, hooks: { afterChunk: (f) => { if (f.endsWith(DATA_FILE)) log.push('chunk'); } } });
    spill.remove();
    const reads = log.filter((e) => e.startsWith('read'));
    assert.deepEqual(reads.sort(), names.map((n) => `read ${n}`).sort(), 'each source read exactly once');
    // Not all read up front: data chunks were written before the later reads.
    const firstRead = log.findIndex((e) => e.startsWith('read'));
    const lastRead = log.length - 1 - [...log].reverse().findIndex((e) => e.startsWith('read'));
    assert.ok(log.slice(firstRead, lastRead).includes('chunk'), 'reads are spread over the write');
    const written = openOnnxCheckpoint(out);
    for (const n of names) assert.deepEqual(written.weightAsFloat32(n), want.get(n), n);
    for (const t of src.model.graph.initializer.filter((x) => !names.includes(x.name))) assert.deepEqual(written.tensorData(t.name), src.tensorData(t.name), t.name);
  });

  test('Hugging Face: the same, into the safetensors shard', async () => {
    const src = openHfCheckpoint(hfDir);
    const names = ['model.layers.0.self_attn.q_proj.weight', 'model.layers.2.mlp.up_proj.weight', 'model.layers.4.mlp.down_proj.weight'];
    const spill = new SpillFile(path.join(work, 'lazy-hf.spill'));
    const log: string[] = [];
    const want = new Map(names.map((n) => [n, src.weightAsFloat32(n).map((v, i) => (i % 2 === 0 ? 0 : v))]));
    const repl = new Map(names.map((n) => [n, watched(spill, src.storedType(n), want.get(n) as Float32Array, log, n)]));
    const out = path.join(work, 'lazy-hf');
    await writeHfCheckpoint(src, out, repl, { chunkSize: 4096, hooks: { afterChunk: () => { log.push('chunk'); } } });
    spill.remove();
    assert.deepEqual(log.filter((e) => e.startsWith('read')), names.map((n) => `read ${n}`), 'once each, in file order');
    assert.ok(log.indexOf(`read ${names[0]}`) > 0 && log.slice(log.indexOf(`read ${names[0]}`), log.indexOf(`read ${names[2]}`)).includes('chunk'));
    const written = openHfCheckpoint(out);
    for (const [name, e] of src.entries) {
      const got = readTensorBytes(written.source(name));
      if (want.has(name)) assert.deepEqual(bytesToFloat32(DataType.FLOAT, got), want.get(name), name);
      else assert.deepEqual(got, readTensorBytes(e), `${name} bit-identical`);
    }
  });
});

interface Run {
  events: Event[];
  spillSizes: number[];
}

/** runPrune, recording the spill file's size at every block.finished. */
async function prune(checkpoint: string, output: string, extra: { method?: string; signal?: AbortSignal; onEvent?: (e: Event) => void } = {}): Promise<Run> {
  const config = resolveConfig({
    checkpoint, output, method: extra.method ?? 'sparsegpt', pattern: 'unstructured', sparsity: 0.5,
    calibration: { path: text, nsamples: 8, seqlen: 128, seed: 0, skipTokens: 0 }, evaluation: { path: text, seqlen: 128, maxWindows: 2 },
  }, work);
  const run: Run = { events: [], spillSizes: [] };
  await runPrune(config, {
    signal: extra.signal,
    emit: (e) => {
      run.events.push(e);
      if (e.type === 'block.finished') run.spillSizes.push(existsSync(spillFileOf(output)) ? statSync(spillFileOf(output)).size : -1);
      extra.onEvent?.(e);
    },
  });
  return run;
}

describe('pipeline runs spill their pruned weights and leave no scratch file', () => {
  // Magnitude keeps every kept weight as it was: each written tensor is checked value by value against its own
  // input tensor (a source reading another tensor's range would show).
  const cases: { name: string; input: () => string; bytesPer: number; method: string }[] = [
    { name: 'ONNX fp32, SparseGPT', input: () => onnxDir, bytesPer: 4, method: 'sparsegpt' },
    { name: 'ONNX fp16 (spilled as fp16), magnitude', input: () => writeFloat16Checkpoint(onnxDir, path.join(work, 'in-fp16'), 'fp16'), bytesPer: 2, method: 'magnitude' },
    { name: 'Hugging Face F32, magnitude', input: () => hfDir, bytesPer: 4, method: 'magnitude' },
  ];
  for (const c of cases) {
    test(`${c.name}: the spill grows by each block's weights in their stored type, is gone after the run; the output holds exactly the reported pattern`, async () => {
      const input = c.input();
      const out = path.join(work, `run-${c.name.replace(/\W+/g, '-')}`);
      const run = await prune(input, out, { method: c.method });
      const pruned = run.events.filter((e) => e.type === 'layer.pruned') as EventOf<'layer.pruned'>[];
      const blocks = run.events.filter((e) => e.type === 'block.finished') as EventOf<'block.finished'>[];
      assert.ok(blocks.length >= 2);
      // At each block's end the file holds the weights pruned so far, in the stored type.
      let bytes = 0;
      for (const [i, b] of blocks.entries()) {
        for (const l of pruned.filter((p) => p.block === b.block)) bytes += l.shape[0] * l.shape[1] * c.bytesPer;
        assert.equal(run.spillSizes[i], bytes, `after block ${b.block}`);
      }
      assert.equal(existsSync(spillFileOf(out)), false, 'spill file removed');
      assert.deepEqual(readdirSync(path.dirname(out)).filter((f) => f.startsWith(path.basename(out) + '.')), [], 'nothing beside the output');
      // Every pruned tensor of the output has the zeros layer.pruned reported; every other tensor is the input's.
      const src = openCheckpoint(input);
      const written = openCheckpoint(out);
      const started = run.events.find((e) => e.type === 'run.started') as EventOf<'run.started'>;
      const weightOf = new Map(started.layers.map((l) => [l.name, l.weight]));
      const prunedWeights = new Set(pruned.map((l) => weightOf.get(l.layer)));
      for (const l of pruned) {
        const w = written.weightAsFloat32(weightOf.get(l.layer) as string);
        const zeros = w.reduce((n, v) => n + (v === 0 ? 1 : 0), 0);
        assert.equal(zeros, Math.round(l.sparsity * w.length), l.layer);
        if (c.method === 'magnitude') {
          const dense = src.weightAsFloat32(weightOf.get(l.layer) as string);
          for (let i = 0; i < w.length; i++) if (w[i] !== 0) assert.equal(w[i], dense[i], `${l.layer}[${i}]`);
        }
      }
      for (const t of src.model.graph.initializer) {
        if (!prunedWeights.has(t.name)) assert.deepEqual(written.tensorData(t.name), src.tensorData(t.name), `${t.name} bit-identical`);
      }
      const fin = run.events.find((e) => e.type === 'run.finished') as EventOf<'run.finished'>;
      assert.ok(Number.isFinite(fin.totals.prunedPerplexity), 'the pruned model (read from the written output) evaluates');
    });
  }

  test('a cancel in the middle of the run removes the spill file (and writes no output)', async () => {
    const out = path.join(work, 'cancelled');
    const abort = new AbortController();
    let sawSpill = false;
    await assert.rejects(
      prune(onnxDir, out, { signal: abort.signal, onEvent: (e) => { if (e.type === 'block.finished' && e.block === 1) { sawSpill = existsSync(spillFileOf(out)); abort.abort(); } } }),
      (e: unknown) => e instanceof RunCancelledError,
    );
    assert.ok(sawSpill, 'the spill file existed while the run was going');
    assert.equal(existsSync(spillFileOf(out)), false);
    assert.equal(existsSync(out), false);
    assert.equal(existsSync(temporaryFolderOf(out)), false);
  });
});

describe('memory the pipeline lets go', () => {
  test('dropped(): once 256 MiB of dropped buffers add up, a full collection frees them', () => {
    const MiB = 2 ** 20;
    const before = process.memoryUsage().arrayBuffers;
    let big: Float32Array | undefined = new Float32Array((300 * MiB) / 4);
    big[0] = 1; // touched, so it is resident
    assert.ok(process.memoryUsage().arrayBuffers >= before + 300 * MiB);
    big = undefined;
    dropped(300 * MiB);
    const after = process.memoryUsage().arrayBuffers;
    assert.ok(after < before + 16 * MiB, `${((after - before) / MiB).toFixed(0)} MiB still held after dropped()`);
  });
});
