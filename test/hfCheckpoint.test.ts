// Hugging Face checkpoints (src/backend/formats/safetensors.ts, hfCheckpoint.ts, checkpoint.ts): the safetensors
// header validation (every malformed case names the file and the tensor), range reads past 2 GiB, the graph built
// from the Llama fixtures' folders (weights referenced in place, logits and dense perplexity against the PyTorch
// reference), pruning the HF and the ONNX form of stories260K alike, and generated bf16 and sharded folders
// written back bit for bit.
//
//   node --import tsx --test test/hfCheckpoint.test.ts

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { evaluationWindows, loadTokenizer, readTokens } from '../src/backend/data/tokens';
import { perplexity } from '../src/backend/eval/perplexity';
import { Checkpoint, openCheckpoint } from '../src/backend/formats/checkpoint';
import { bf16BytesToFloat32, float32ToBf16Bytes } from '../src/backend/formats/dtype';
import { CheckpointError } from '../src/backend/formats/errors';
import { HfCheckpoint, isHfFolder, openHfCheckpoint, WIDENED_LOCATION, writeHfCheckpoint } from '../src/backend/formats/hfCheckpoint';
import { encodeSafetensors, MAX_HEADER_BYTES, readSafetensorsHeader, readTensorBytes, readTensorFloat32 } from '../src/backend/formats/safetensors';
import { rowPool } from '../src/backend/methods/rowKernels';
import { buildLlamaModel, LlamaConfig, LlamaTensor, randomLlamaWeights } from '../src/backend/models/llama';
import { inputSpecs } from '../src/backend/models/inputs';
import { Engine } from '../src/backend/onnx/session';
import { discoverLayers } from '../src/backend/pipeline/layers';
import { runPrune } from '../src/backend/pipeline/run';
import { resolveConfig } from '../src/protocol/config';
import { Event, EventOf } from '../src/protocol/events';
import { checkpointLogits, compareLogits, int64, writeHfFolder } from './helpers/hfFolder';
import { referenceForward } from './helpers/llamaReference';
import { maxAbsDiff, Rng } from './helpers/reference';
import { readSafetensorsF32 } from './helpers/safetensors';

const repoRoot = path.resolve(__dirname, '..');
const fixtures = path.resolve(repoRoot, '..', 'shared', 'fixtures');
const text = path.join(fixtures, 'data', 'tinystories_valid_head.txt');
const work = mkdtempSync(path.join(os.tmpdir(), 'prunekit-hf-'));
const engine = new Engine({ device: 'cpu', threads: 1 });

after(async () => {
  rmSync(work, { recursive: true, force: true });
  await engine.release();
  await rowPool.close();
});

function sha(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

function hashDir(dir: string): Map<string, string> {
  return new Map(readdirSync(dir).sort().map((f) => [f, sha(path.join(dir, f))]));
}

const logitsOf = (ckpt: Checkpoint, ids: number[][], mask: number[][]) => checkpointLogits(engine, ckpt, ids, mask);

// ---------------------------------------------------------------------------------------------------------

describe('safetensors', () => {
  const dir = path.join(work, 'st');
  before(() => mkdirSync(dir));

  const f32 = Float32Array.from([1.5, -2.25, 3e-8, 65504, -0, 7]);
  const good = () => encodeSafetensors([
    { name: 'a', dtype: 'F32', shape: [2, 3], data: new Uint8Array(f32.buffer.slice(0)) },
    { name: 'b', dtype: 'BF16', shape: [3], data: float32ToBf16Bytes(Float32Array.from([1, -0.5, 3.140625])) },
    { name: 'c', dtype: 'I64', shape: [], data: new Uint8Array(8) },
  ], { format: 'pt' });

  test('encode → read: header padded to 8 bytes, entries, metadata, values exact', () => {
    const file = path.join(dir, 'good.safetensors');
    writeFileSync(file, good());
    const h = readSafetensorsHeader(file);
    assert.equal(h.headerBytes.length % 8, 0);
    assert.equal(h.dataStart, 8 + h.headerBytes.length);
    assert.deepEqual([...h.tensors.keys()], ['a', 'b', 'c']);
    assert.deepEqual(h.metadata, { format: 'pt' });
    const a = h.tensors.get('a');
    assert.ok(a);
    assert.deepEqual([a.dtype, a.shape, a.offset, a.length], ['F32', [2, 3], h.dataStart, 24]);
    assert.deepEqual(readTensorFloat32(a), f32);
    assert.deepEqual(Array.from(readTensorFloat32(h.tensors.get('b') as never)), [1, -0.5, 3.140625]);
    assert.throws(() => readTensorFloat32(h.tensors.get('c') as never), /tensor 'c' in .*good\.safetensors is I64/);
  });

  /** A file with a hand-written header (and `data` bytes after it). */
  const raw = (name: string, header: unknown, dataBytes: number, lengthOverride?: bigint): string => {
    const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
    const file = path.join(dir, name);
    writeFileSync(file, Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
    return file;
  };
  const t = (dtype: string, shape: number[], b: number, e: number) => ({ dtype, shape, data_offsets: [b, e] });

  const cases: { what: string; make: () => string; error: RegExp }[] = [
    { what: 'shorter than 8 bytes', make: () => { const f = path.join(dir, 'tiny.safetensors'); writeFileSync(f, Buffer.alloc(5)); return f; }, error: /tiny\.safetensors.*5 bytes, too short/ },
    { what: 'header length over the 100 MB limit', make: () => raw('huge.safetensors', {}, 0, BigInt(MAX_HEADER_BYTES + 1)), error: /huge\.safetensors.*exceeds the format's limit/ },
    { what: 'header running past the end', make: () => raw('past.safetensors', {}, 0, 4096n), error: /past\.safetensors.*header length 4096 runs past the end/ },
    { what: 'header not JSON', make: () => raw('json.safetensors', '{"a": ', 0), error: /json\.safetensors.*not valid UTF-8 JSON/ },
    { what: 'header not an object', make: () => raw('arr.safetensors', '[1, 2]', 0), error: /arr\.safetensors.*not a JSON object/ },
    { what: 'unknown dtype', make: () => raw('dtype.safetensors', { w: t('F33', [2], 0, 8) }, 8), error: /dtype\.safetensors.*tensor 'w': unknown dtype "F33"/ },
    { what: 'bad shape', make: () => raw('shape.safetensors', { w: t('F32', [2, -1], 0, 8) }, 8), error: /shape\.safetensors.*tensor 'w': shape \[2,-1\]/ },
    { what: 'offsets not matching shape × dtype', make: () => raw('size.safetensors', { w: t('F16', [3], 0, 8) }, 8), error: /size\.safetensors.*tensor 'w'.*hold 8 bytes; shape \[3\] of F16 needs 6/ },
    { what: 'offsets past the end of the data', make: () => raw('end.safetensors', { w: t('F32', [4], 0, 16) }, 8), error: /end\.safetensors.*tensor 'w'.*run past the end of the data \(8 bytes/ },
    { what: 'reversed offsets', make: () => raw('rev.safetensors', { w: t('F32', [0], 8, 0) }, 8), error: /rev\.safetensors.*tensor 'w': data_offsets \[8,0\] is not/ },
    { what: 'overlapping tensors', make: () => raw('overlap.safetensors', { u: t('F32', [2], 0, 8), w: t('F32', [2], 4, 12) }, 12), error: /overlap\.safetensors.*tensor 'w'.*overlap the previous tensor/ },
    { what: 'a hole between tensors', make: () => raw('hole.safetensors', { u: t('F32', [1], 0, 4), w: t('F32', [1], 8, 12) }, 12), error: /hole\.safetensors.*tensor 'w': a hole of 4 unindexed bytes/ },
    { what: 'trailing unindexed bytes', make: () => raw('tail.safetensors', { w: t('F32', [1], 0, 4) }, 12), error: /tail\.safetensors.*8 bytes after the last tensor/ },
    { what: 'non-string metadata', make: () => raw('meta.safetensors', { __metadata__: { a: 1 } }, 0), error: /meta\.safetensors.*__metadata__ must map strings to strings/ },
  ];
  for (const c of cases) {
    test(`malformed: ${c.what} → a clear error naming the file`, () => {
      const file = c.make();
      assert.throws(() => readSafetensorsHeader(file), (e: Error) => {
        assert.ok(e instanceof CheckpointError, e.message);
        assert.equal(e.code, 'corrupt-model');
        assert.equal(e.file, file);
        assert.match(e.message, c.error);
        return true;
      });
    });
  }

  test('a 2.5 GiB (sparse) file: the header and a tensor past 2 GiB are read by ranges', () => {
    const big = 2.5 * 1024 ** 3;
    const tailValues = Float32Array.from([0.25, -8, 42]);
    const headerJson = JSON.stringify({ zeros: t('U8', [big - 12], 0, big - 12), tail: t('F32', [3], big - 12, big) }).padEnd(128, ' ');
    const file = path.join(dir, 'big.safetensors');
    const fd = openSync(file, 'w');
    try {
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(headerJson.length));
      writeSync(fd, len, 0, 8, 0);
      writeSync(fd, Buffer.from(headerJson), 0, headerJson.length, 8);
      ftruncateSync(fd, 8 + headerJson.length + big);
      writeSync(fd, Buffer.from(tailValues.buffer), 0, 12, 8 + headerJson.length + big - 12);
    } finally {
      closeSync(fd);
    }
    assert.ok(statSync(file).size > 2 ** 31);
    const h = readSafetensorsHeader(file);
    const tail = h.tensors.get('tail');
    assert.ok(tail && tail.offset > 2 ** 31);
    assert.deepEqual(readTensorFloat32(tail), tailValues);
    rmSync(file);
  });
});

// ---------------------------------------------------------------------------------------------------------

interface Case { input_ids: number[][]; attention_mask: number[][]; logits: number[][][] }
interface Reference { cases: Case[]; perplexity: { seqlen256: { ppl: number } } }

/** The Llama-family HF folders of the fixtures README that have a reference (as test/llamaBuilder.test.ts finds them). */
function llamaFixtures(): { name: string; dir: string; reference: Reference; onnx: string | null }[] {
  const readme = readFileSync(path.join(fixtures, 'README.md'), 'utf8');
  const out = [];
  for (const m of readme.matchAll(/^\|\s*`([\w.-]+)-hf\/`\s*\|/gm)) {
    const dir = path.join(fixtures, `${m[1]}-hf`);
    const ref = path.join(fixtures, `${m[1]}-reference.json`);
    if (!existsSync(ref) || (JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as { model_type?: string }).model_type !== 'llama') continue;
    const onnx = path.join(fixtures, `${m[1]}-onnx`);
    out.push({ name: m[1], dir, reference: JSON.parse(readFileSync(ref, 'utf8')) as Reference, onnx: existsSync(onnx) ? onnx : null });
  }
  return out;
}

describe('Hugging Face Llama fixtures', () => {
  const found = llamaFixtures();
  const hashes = new Map(found.map((f) => [f.dir, hashDir(f.dir)]));
  after(() => {
    for (const f of found) assert.deepEqual(hashDir(f.dir), hashes.get(f.dir), `${f.dir} unchanged`);
  });

  test('both Llama fixtures are found', () => {
    assert.deepEqual(found.map((f) => f.name).sort(), ['stories-llama-1M', 'stories260K']);
  });

  for (const fx of found) {
    test(`${fx.name}: every weight references its bytes in model.safetensors; logits match the PyTorch reference to 1e-4`, async () => {
      assert.ok(isHfFolder(fx.dir));
      const ckpt = openCheckpoint(fx.dir);
      assert.equal(ckpt.format, 'huggingface');
      assert.equal(ckpt.storageDtype, 'float32');
      const header = readSafetensorsHeader(path.join(fx.dir, 'model.safetensors'));
      // Tied: no lm_head.weight; every tensor of the file is an initializer of the same name, pointing at its bytes.
      assert.deepEqual(ckpt.model.graph.initializer.map((t) => t.name).sort(), [...header.tensors.keys()].sort());
      for (const t of ckpt.model.graph.initializer) {
        const e = header.tensors.get(t.name);
        assert.ok(e);
        assert.equal(t.rawData, undefined, `${t.name} is not copied`);
        const ext = Object.fromEntries((t.externalData ?? []).map((x) => [x.key, x.value]));
        assert.deepEqual(ext, { location: 'model.safetensors', offset: String(e.offset), length: String(e.length) }, t.name);
        assert.deepEqual(ckpt.tensorData(t.name), readTensorBytes(e));
      }
      // Discovery: 7 Gemm(transB=1) layers per block, [out, in] weights named as in the checkpoint; the tied head stays dense.
      const d = discoverLayers(ckpt.model);
      const config = JSON.parse(readFileSync(path.join(fx.dir, 'config.json'), 'utf8')) as LlamaConfig;
      assert.equal(d.layers.length, 7 * config.num_hidden_layers);
      for (const l of d.layers) {
        assert.deepEqual([l.op, l.layout], ['Gemm', 'out_in']);
        assert.equal(l.weight, `model.${l.name}.weight`);
        assert.deepEqual(l.weightDims, header.tensors.get(l.weight)?.shape);
      }
      assert.deepEqual(d.skipped.map((s) => s.name), ['lm_head']);

      const errors: string[] = [];
      for (const c of fx.reference.cases) {
        const got = await logitsOf(ckpt, c.input_ids, c.attention_mask);
        const worst = maxAbsDiff(got, c.logits.flat(2));
        errors.push(`${c.input_ids.length}x${c.input_ids[0].length}: ${worst.toExponential(2)}`);
        assert.ok(worst <= 1e-4, `${fx.name}: max |Δlogit| ${worst}`);
      }
      console.log(`${fx.name} (HF folder): max |Δlogit| vs PyTorch ${errors.join(', ')}`);
    });

    test(`${fx.name}: dense perplexity at seqlen 256 matches the reference ${fx.reference.perplexity.seqlen256.ppl} to 1e-3`, async () => {
      const ckpt = openCheckpoint(fx.dir);
      const ids = readTokens(text, loadTokenizer(path.join(fx.dir, 'tokenizer.json'))).subarray(0, 65536);
      const specs = inputSpecs(ckpt.model.graph.input, new Set(ckpt.model.graph.initializer.map((t) => t.name)));
      const session = await engine.modelSession(ckpt.sessionSource());
      const res = await perplexity(session, specs, evaluationWindows(ids, 256), { batch: 8 });
      await session.release();
      const ref = fx.reference.perplexity.seqlen256.ppl;
      console.log(`${fx.name} (HF folder): dense perplexity ${res.ppl.toFixed(4)} (reference ${ref})`);
      assert.equal(res.windows, 256);
      assert.ok(Math.abs(res.ppl / ref - 1) < 1e-3, `ppl ${res.ppl} vs ${ref}`);
    });
  }

  /** The Mamba fixture's files with model_type rwkv (a family PruneKit does not build). */
  const unsupportedFolder = (): string => {
    const dir = path.join(work, 'rwkv-hf');
    if (existsSync(dir)) return dir;
    mkdirSync(dir);
    const mamba = path.join(fixtures, 'stories-mamba-hf');
    const config = JSON.parse(readFileSync(path.join(mamba, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, model_type: 'rwkv' }));
    for (const f of ['model.safetensors', 'tokenizer.json']) symlinkSync(path.join(mamba, f), path.join(dir, f));
    return dir;
  };

  test('CLI: prune --json on an unsupported model_type ends with run.failed checkpoint-invalid naming it and config.json', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src', 'backend', 'cli', 'main.ts'), 'prune', unsupportedFolder(), '--json', '--method', 'magnitude', '--out', path.join(work, 'rwkv-out')], { cwd: repoRoot, encoding: 'utf8' });
    assert.equal(r.status, 1, r.stderr);
    const last = JSON.parse(r.stdout.trim().split('\n').pop() as string) as EventOf<'run.failed'>;
    assert.equal(last.type, 'run.failed');
    assert.equal(last.code, 'checkpoint-invalid');
    assert.match(last.message, /model_type 'rwkv' is not supported; supported model types: llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3_text, phi3, opt, mamba/);
    assert.match(last.file ?? '', /rwkv-hf\/config\.json$/);
    assert.ok(!existsSync(path.join(work, 'rwkv-out')));
  });

  test('any other model_type: an error naming it and the supported ones', () => {
    assert.throws(() => openCheckpoint(unsupportedFolder()), (e: Error) => {
      assert.ok(e instanceof CheckpointError);
      assert.equal(e.code, 'unsupported-model');
      assert.match(e.message, /rwkv-hf\/config\.json: model_type 'rwkv' is not supported; supported model types: llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3_text, phi3, opt, mamba/);
      return true;
    });
  });
});

// ---------------------------------------------------------------------------------------------------------

/** One run's per-layer losses and perplexities. */
async function prune(checkpoint: string, output: string, extra: Record<string, unknown> = {}): Promise<{ events: Event[]; losses: Map<string, number>; ppl: number[] }> {
  const events: Event[] = [];
  const raw: Record<string, unknown> = {
    checkpoint, output, method: 'sparsegpt', sparsity: 0.5,
    calibration: { path: text, nsamples: 16, seqlen: 128, seed: 0, skipTokens: 65536 },
    evaluation: { path: text, seqlen: 128, maxWindows: 32 },
    ...extra,
  };
  if (raw.calibration === null) delete raw.calibration;
  const config = resolveConfig(raw, work);
  await runPrune(config, { emit: (e) => events.push(e) });
  const losses = new Map((events.filter((e) => e.type === 'layer.pruned') as EventOf<'layer.pruned'>[]).map((e) => [e.layer, e.loss as number]));
  const ppl = (events.filter((e) => e.type === 'evaluation.finished') as EventOf<'evaluation.finished'>[]).map((e) => e.perplexity);
  return { events, losses, ppl };
}

describe('pruning the HF and the ONNX form of stories260K', () => {
  const hfDir = path.join(fixtures, 'stories260K-hf');
  const onnxDir = path.join(fixtures, 'stories260K-onnx');
  const hfOut = path.join(work, 'hf-sparsegpt');
  let hf: Awaited<ReturnType<typeof prune>>;
  let onnx: Awaited<ReturnType<typeof prune>>;
  before(async () => {
    hf = await prune(hfDir, hfOut);
    onnx = await prune(onnxDir, path.join(work, 'onnx-sparsegpt'));
  });

  test('same layers, same per-layer losses (1e-3 relative), same dense and pruned perplexity', () => {
    assert.deepEqual([...hf.losses.keys()], [...onnx.losses.keys()]);
    assert.equal(hf.losses.size, 35);
    let worst = 0;
    for (const [name, loss] of hf.losses) {
      const ref = onnx.losses.get(name) as number;
      assert.ok(loss > 0);
      worst = Math.max(worst, Math.abs(loss / ref - 1));
    }
    // The relative losses' references come by different roads: the calibration forward's Σ‖W x‖² for the layers a Gemm
    // (HF) or MatMul (ONNX) computes, the sweep's factor for each block's down_proj (Wᵀ a copy for HF, the stored
    // weight for ONNX).
    const relLosses = (r: typeof hf) => new Map((r.events.filter((e) => e.type === 'layer.pruned') as EventOf<'layer.pruned'>[]).map((e) => [e.layer, e.relLoss as number]));
    const [hfRel, onnxRel] = [relLosses(hf), relLosses(onnx)];
    for (const [name, rel] of hfRel) {
      const ref = onnxRel.get(name) as number;
      assert.ok(rel > 0 && rel < 1 && Math.abs(rel / ref - 1) < 1e-3, `${name}: relLoss ${rel} (HF) vs ${ref} (ONNX)`);
    }
    console.log(`stories260K HF vs ONNX: worst per-layer loss ratio −1 = ${worst.toExponential(2)}; ppl HF ${hf.ppl.map((p) => p.toFixed(4)).join(' → ')}, ONNX ${onnx.ppl.map((p) => p.toFixed(4)).join(' → ')}`);
    assert.ok(worst < 1e-3, `worst relative loss difference ${worst}`);
    assert.equal(hf.ppl.length, 2);
    for (let i = 0; i < 2; i++) assert.ok(Math.abs(hf.ppl[i] / onnx.ppl[i] - 1) < 1e-3, `${hf.ppl[i]} vs ${onnx.ppl[i]}`);
    assert.ok(hf.ppl[1] > hf.ppl[0]);
    const started = hf.events.find((e) => e.type === 'run.started') as EventOf<'run.started'>;
    assert.equal(started.model.file, hfDir);
  });

  test('the output: same files, header bytes and untouched tensors bit-identical, pruned ones 50% zeros; report and log', () => {
    const files = readdirSync(hfOut).sort();
    assert.deepEqual(files, [...readdirSync(hfDir), 'events.ndjson', 'prune-report.json'].sort());
    for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer.model', 'tokenizer_config.json']) {
      assert.equal(sha(path.join(hfOut, f)), sha(path.join(hfDir, f)), f);
    }
    const a = readSafetensorsHeader(path.join(hfDir, 'model.safetensors'));
    const b = readSafetensorsHeader(path.join(hfOut, 'model.safetensors'));
    assert.deepEqual(b.headerBytes, a.headerBytes);
    assert.equal(b.size, a.size);
    let pruned = 0;
    for (const [name, e] of a.tensors) {
      const out = b.tensors.get(name) as typeof e;
      if (hf.losses.has(name.replace(/^model\./, '').replace(/\.weight$/, ''))) {
        const v = readTensorFloat32(out);
        const zeros = v.filter((x) => x === 0).length;
        assert.ok(zeros >= v.length / 2, `${name}: ${zeros} zeros of ${v.length}`);
        pruned++;
      } else {
        assert.deepEqual(readTensorBytes(out), readTensorBytes(e), `${name} bit-identical`);
      }
    }
    assert.equal(pruned, 35);
    const report = JSON.parse(readFileSync(path.join(hfOut, 'prune-report.json'), 'utf8')) as { layers: unknown[]; totals: { prunedPerplexity: number } };
    assert.equal(report.layers.length, 35);
    assert.equal(report.totals.prunedPerplexity, hf.ppl[1]);
    const log = readFileSync(path.join(hfOut, 'events.ndjson'), 'utf8').trim().split('\n');
    assert.equal(JSON.parse(log[log.length - 1]).type, 'run.finished');
    assert.ok(!readdirSync(work).some((f) => f.includes('.tmp-')), 'no temporary folder left');
  });

  test('the output re-reads (its logits are the pruned model’s) and round-trips byte for byte', async () => {
    const out = openHfCheckpoint(hfOut);
    const W = readSafetensorsF32(path.join(hfOut, 'model.safetensors'));
    const config = JSON.parse(readFileSync(path.join(hfOut, 'config.json'), 'utf8')) as LlamaConfig;
    const reference = buildLlamaModel(config, W); // the exporter-style graph from the written values
    const ids = [[1, 403, 407, 261, 378, 410, 259, 269, 500, 264, 300, 25, 90, 7]];
    const mask = [ids[0].map(() => 1)];
    const refSession = await engine.kernel(reference);
    const want = (await refSession.run({ input_ids: int64(ids), attention_mask: int64(mask) })).logits.data as Float32Array;
    assert.ok(maxAbsDiff(await logitsOf(out, ids, mask), want) < 1e-4);
    const again = path.join(work, 'hf-roundtrip');
    await out.write(again, new Map());
    const model = (d: string) => new Map([...hashDir(d)].filter(([f]) => f !== 'events.ndjson' && f !== 'prune-report.json'));
    assert.deepEqual(hashDir(again), model(hfOut), 'written again without changes: every checkpoint file identical');
    await assert.rejects(out.write(again, new Map()), /already exists/);
    await assert.rejects(out.write(hfOut, new Map(), { overwrite: true }), /would replace the input/);
  });
});

// ---------------------------------------------------------------------------------------------------------

describe('generated bf16 and sharded folders', () => {
  const src = path.join(fixtures, 'stories260K-hf');
  const config = JSON.parse(readFileSync(path.join(src, 'config.json'), 'utf8')) as Record<string, unknown>;
  const weights = readSafetensorsF32(path.join(src, 'model.safetensors'));
  const tensors = [...weights].map(([name, t]) => ({ name, dims: t.dims, data: t.data }));
  const copy = ['tokenizer.json', 'tokenizer_config.json'].map((f) => path.join(src, f));

  for (const [dtype, shards] of [['BF16', 3], ['F32', 2], ['F16', 1]] as const) {
    test(`${dtype} in ${shards} shard(s): graph = float32 graph of the stored values; pruned output keeps names, keys and dtypes`, async () => {
      const dir = path.join(work, `gen-${dtype}-${shards}`);
      const stored = writeHfFolder(dir, { ...config, torch_dtype: dtype === 'BF16' ? 'bfloat16' : 'float32' }, tensors, { dtype, shards, copy });
      const ckpt = openCheckpoint(dir) as HfCheckpoint;
      assert.equal(ckpt.storageDtype, { BF16: 'bfloat16', F16: 'float16', F32: 'float32' }[dtype]);
      assert.equal(ckpt.shards.length, shards);
      for (const t of ckpt.model.graph.initializer) {
        const loc = t.externalData?.find((x) => x.key === 'location')?.value;
        assert.equal(loc, dtype === 'F32' ? path.basename(ckpt.source(t.name).file) : WIDENED_LOCATION, t.name);
        assert.deepEqual(ckpt.weightAsFloat32(t.name), stored.get(t.name), t.name);
      }
      // The same model built from the stored (rounded) values in float32: the widening is exact.
      const asF32 = new Map<string, LlamaTensor>([...stored].map(([n, v]) => [n, { data: v, dims: (weights.get(n) as LlamaTensor).dims }]));
      const ref = await engine.kernel(buildLlamaModel(config as unknown as LlamaConfig, asF32));
      const ids = [[1, 403, 407, 261, 378, 410, 259, 269], [1, 25, 90, 7, 300, 264, 0, 0]];
      const mask = [[1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0, 0]];
      const want = (await ref.run({ input_ids: int64(ids), attention_mask: int64(mask) })).logits.data as Float32Array;
      assert.ok(maxAbsDiff(await logitsOf(ckpt, ids, mask), want) < 1e-4);

      // Magnitude needs no calibration: prune every layer, write back in the same dtype.
      const out = path.join(work, `gen-${dtype}-${shards}-out`);
      const run = await prune(dir, out, { method: 'magnitude', calibration: null, evaluation: { path: text, seqlen: 128, maxWindows: 4 } });
      assert.equal(run.losses.size, 35);
      assert.deepEqual(readdirSync(out).sort(), [...readdirSync(dir), 'events.ndjson', 'prune-report.json'].sort());
      if (shards > 1) {
        const index = (d: string) => JSON.parse(readFileSync(path.join(d, 'model.safetensors.index.json'), 'utf8')) as { metadata: { total_size: number }; weight_map: Record<string, string> };
        assert.deepEqual(index(out), index(dir));
      }
      const written = openHfCheckpoint(out);
      for (const [k, h] of ckpt.shards.entries()) {
        const w = written.shards[k];
        assert.equal(path.basename(w.file), path.basename(h.file));
        assert.deepEqual(w.headerBytes, h.headerBytes, 'same keys, dtypes and offsets');
        for (const [name, e] of h.tensors) {
          const before = readTensorBytes(e);
          const after = readTensorBytes(w.tensors.get(name) as typeof e);
          if (!run.losses.has(name.replace(/^model\./, '').replace(/\.weight$/, ''))) {
            assert.deepEqual(after, before, `${name} bit-identical`);
            continue;
          }
          // Pruned: each value is either zero or the original bit pattern (magnitude keeps weights as they are).
          const el = dtype === 'F32' ? 4 : 2;
          let zeros = 0;
          for (let i = 0; i < after.length; i += el) {
            const a = after.subarray(i, i + el);
            if (a.every((x) => x === 0)) zeros++;
            else assert.deepEqual(a, before.subarray(i, i + el), `${name}[${i / el}]`);
          }
          assert.ok(zeros >= after.length / el / 2, `${name}: ${zeros} zeros of ${after.length / el}`);
        }
      }
      if (dtype === 'BF16') {
        // bf16 bytes decode to the float32 the graph used.
        const e = written.source('model.layers.0.mlp.down_proj.weight');
        assert.deepEqual(bf16BytesToFloat32(readTensorBytes(e)), written.weightAsFloat32(e.name));
      }
    });
  }

  test('a failure or a cancel in the middle of a write leaves no output and no temporary folder', async () => {
    const ckpt = openHfCheckpoint(src);
    const out = path.join(work, 'interrupted');
    const leftovers = () => readdirSync(work).filter((f) => f.startsWith('interrupted'));
    await assert.rejects(
      writeHfCheckpoint(ckpt, out, new Map(), { chunkSize: 65536, hooks: { afterChunk: (_f, n) => { if (n > 200_000) throw new Error('disk on fire'); } } }),
      (e: Error) => e instanceof CheckpointError && e.code === 'write-failed' && /interrupted.*model\.safetensors: disk on fire/.test(e.message),
    );
    assert.deepEqual(leftovers(), []);
    const abort = new AbortController();
    await assert.rejects(
      writeHfCheckpoint(ckpt, out, new Map(), { chunkSize: 65536, signal: abort.signal, hooks: { afterChunk: () => abort.abort() } }),
      (e: Error) => e instanceof CheckpointError && e.code === 'cancelled',
    );
    assert.deepEqual(leftovers(), []);
  });

  test('index problems name the index and the tensor', () => {
    const dir = path.join(work, 'bad-index');
    writeHfFolder(dir, config, tensors, { shards: 2 });
    const indexFile = path.join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(readFileSync(indexFile, 'utf8')) as { weight_map: Record<string, string> };
    const name = 'model.norm.weight';
    const other = Object.values(index.weight_map).find((f) => f !== index.weight_map[name]) as string;
    writeFileSync(indexFile, JSON.stringify({ weight_map: { ...index.weight_map, [name]: other } }));
    assert.throws(() => openCheckpoint(dir), /model\.safetensors\.index\.json: tensor 'model\.norm\.weight' of .* is mapped to model-0000/);
    writeFileSync(indexFile, JSON.stringify({ weight_map: { ...index.weight_map, extra: 'model-00003-of-00003.safetensors' } }));
    assert.throws(() => openCheckpoint(dir), (e: Error) => e instanceof CheckpointError && e.code === 'missing-external-data' && /model-00003-of-00003\.safetensors .*does not exist/.test(e.message));
    rmSync(indexFile);
    assert.ok(isHfFolder(dir));
    assert.throws(() => openCheckpoint(dir), (e: Error) => e instanceof CheckpointError && e.code === 'missing-model' && /no model\.safetensors and no model\.safetensors\.index\.json in .*bad-index/.test(e.message));
  });
});

// ---------------------------------------------------------------------------------------------------------

describe('Llama family from generated folders: qwen2, mistral, rope_scaling', () => {
  const small = { hidden_size: 48, intermediate_size: 80, num_hidden_layers: 2, num_attention_heads: 6, num_key_value_heads: 2, vocab_size: 96, max_position_embeddings: 64, rms_norm_eps: 1e-6, initializer_range: 0.15 };
  const variants: { what: string; config: LlamaConfig }[] = [
    { what: 'qwen2 (q/k/v biases, no o_proj bias, theta 1e6, untied, sliding window off)', config: { ...small, model_type: 'qwen2', rope_theta: 1e6, tie_word_embeddings: false, sliding_window: 32, use_sliding_window: false } },
    { what: 'mistral (GQA, tied, no sliding window)', config: { ...small, model_type: 'mistral', rope_theta: 1e4, tie_word_embeddings: true, sliding_window: null } },
    { what: 'llama (rope_scaling linear ×4, attention and MLP biases)', config: { ...small, model_type: 'llama', rope_theta: 500, rope_scaling: { type: 'linear', factor: 4 }, attention_bias: true, mlp_bias: true } },
  ];
  const S = 12;
  const ids = [Array.from({ length: S }, (_, i) => (i * 37 + 5) % 96), Array.from({ length: S }, (_, i) => (i * 11 + 3) % 96)];
  const mask = [Array(S).fill(1), [0, 0, 0, ...Array(S - 3).fill(1)]];

  for (const [k, v] of variants.entries()) {
    test(`${v.what}: logits match the float64 forward`, async () => {
      const W = randomLlamaWeights(v.config, k);
      const rng = new Rng(20 + k);
      for (const [name, t] of W) {
        if (name.endsWith('.bias')) t.data.forEach((_, i) => { t.data[i] = 0.1 * rng.normal(); });
        if (name.endsWith('norm.weight')) t.data.forEach((_, i) => { t.data[i] = 1 + 0.3 * rng.normal(); });
      }
      const dir = path.join(work, `family-${k}`);
      writeHfFolder(dir, v.config as unknown as Record<string, unknown>, [...W].map(([name, t]) => ({ name, dims: t.dims, data: t.data })));
      const ckpt = openCheckpoint(dir) as HfCheckpoint;
      if (v.config.model_type === 'qwen2') {
        assert.ok(ckpt.entries.has('model.layers.0.self_attn.q_proj.bias') && !ckpt.entries.has('model.layers.0.self_attn.o_proj.bias'));
      }
      const { worst, scale } = compareLogits(await logitsOf(ckpt, ids, mask), referenceForward(v.config, W, ids, mask));
      console.log(`${v.config.model_type}: max |Δlogit| ${worst.toExponential(2)} at logit scale ${scale.toFixed(2)}`);
      assert.ok(scale > 0.5, `logits too small to test anything (${scale})`);
      assert.ok(worst < 1e-4 * scale, `max |Δ| ${worst}`);
    });
  }
});
