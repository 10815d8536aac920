// Mamba checkpoints (src/backend/models/mamba.ts through the Hugging Face front end): the stories-mamba fixture's
// graph against the PyTorch reference (logits, dense perplexity), all four methods at 50% and 2:4 (pattern on every
// targeted weight, every other byte of the folder identical, the output re-read), and the same model saved as an
// ONNX file (a Scan per block, weights inlined) pruned through the generic ONNX path to the same per-layer losses.
//
//   node --import tsx --test test/mambaCheckpoint.test.ts

import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { evaluationWindows, loadTokenizer, readTokens } from '../src/backend/data/tokens';
import { perplexity } from '../src/backend/eval/perplexity';
import { Checkpoint, openCheckpoint } from '../src/backend/formats/checkpoint';
import { openHfCheckpoint } from '../src/backend/formats/hfCheckpoint';
import { readSafetensorsHeader, readTensorBytes, readTensorFloat32 } from '../src/backend/formats/safetensors';
import { rowPool } from '../src/backend/methods/rowKernels';
import { inputSpecs } from '../src/backend/models/inputs';
import { buildMambaModel, MambaConfig, mambaTensorShapes, resolveMambaConfig } from '../src/backend/models/mamba';
import { Engine } from '../src/backend/onnx/session';
import { encodeModel } from '../src/backend/onnx/proto';
import { discoverLayers, nodeInputs } from '../src/backend/pipeline/layers';
import { EventOf } from '../src/protocol/events';
import { checkpointLogits, writeHfFolder } from './helpers/hfFolder';
import { mambaReferenceForward } from './helpers/mambaReference';
import { maxAbsDiff, Rng } from './helpers/reference';
import { readSafetensorsF32 } from './helpers/safetensors';
import { QuickRun, quickRun } from './helpers/quickRun';

const repoRoot = path.resolve(__dirname, '..');
const fixtures = path.resolve(repoRoot, '..', 'shared', 'fixtures');
const mambaDir = path.join(fixtures, 'stories-mamba-hf');
const text = path.join(fixtures, 'data', 'tinystories_valid_head.txt');
const work = mkdtempSync(path.join(os.tmpdir(), 'prunekit-mamba-'));
const engine = new Engine({ device: 'cpu', threads: 1 });

interface Reference {
  cases: { input_ids: number[][]; attention_mask: number[][]; logits: number[][][] }[];
  perplexity: { seqlen256: { ppl: number } };
}
const reference = JSON.parse(readFileSync(path.join(fixtures, 'stories-mamba-reference.json'), 'utf8')) as Reference;

const MIXER_LAYERS = ['in_proj', 'x_proj', 'dt_proj', 'out_proj'];
const LAYER_NAMES = [0, 1, 2, 3].flatMap((i) => MIXER_LAYERS.map((p) => `layers.${i}.mixer.${p}`));

after(async () => {
  rmSync(work, { recursive: true, force: true });
  await engine.release();
  await rowPool.close();
});

const logitsOf = (ckpt: Checkpoint, ids: number[][], mask: number[][]) => checkpointLogits(engine, ckpt, ids, mask);

/** SparseGPT 50% on the short protocol unless `extra` says otherwise; the run must not fail. */
async function prune(checkpoint: string, output: string, extra: Record<string, unknown> = {}): Promise<QuickRun> {
  const r = await quickRun({ checkpoint, output, method: 'sparsegpt', ...extra }, text, work);
  assert.equal(r.error, undefined, r.error?.message);
  const failed = r.events.find((e) => e.type === 'run.failed');
  assert.equal(failed, undefined, JSON.stringify(failed));
  return r;
}

// ---------------------------------------------------------------------------------------------------------

describe('stories-mamba: the Hugging Face folder', () => {
  test('config: time_step_rank auto, intermediate size, tensor list; bad fields are named', () => {
    const config = JSON.parse(readFileSync(path.join(mambaDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const c = resolveMambaConfig(config as never);
    assert.deepEqual([c.hiddenSize, c.inner, c.stateSize, c.dtRank, c.convKernel, c.layers, c.tied, c.bias, c.convBias], [128, 256, 16, 8, 4, 4, true, false, true]);
    assert.equal(resolveMambaConfig({ ...config, time_step_rank: 'auto', hidden_size: 130, intermediate_size: undefined } as never).dtRank, 9);
    const header = readSafetensorsHeader(path.join(mambaDir, 'model.safetensors'));
    const shapes = mambaTensorShapes(config as never);
    assert.deepEqual([...shapes.keys()].sort(), [...header.tensors.keys()].sort());
    for (const [name, dims] of shapes) assert.deepEqual(header.tensors.get(name)?.shape, dims, name);
    const untied = mambaTensorShapes({ ...config, tie_word_embeddings: false, use_bias: true, use_conv_bias: false } as never);
    assert.deepEqual(untied.get('lm_head.weight'), [512, 128]);
    assert.deepEqual(untied.get('backbone.layers.0.mixer.in_proj.bias'), [512]);
    assert.ok(!untied.has('backbone.layers.0.mixer.conv1d.bias'));
    assert.throws(() => resolveMambaConfig({ ...config, state_size: 0 } as never), /Mamba config: state_size must be a positive integer, got 0/);
    assert.throws(() => resolveMambaConfig({ ...config, hidden_act: 'gelu' } as never), /hidden_act 'gelu' is not supported/);
    assert.throws(() => resolveMambaConfig({ ...config, intermediate_size: 300 } as never), /intermediate_size 300 is not expand · hidden_size = 256/);
  });

  test('weights referenced in model.safetensors; 16 prunable Gemms (conv1d, A_log, D dense); logits match PyTorch to 1e-4', async () => {
    const ckpt = openCheckpoint(mambaDir);
    assert.equal(ckpt.format, 'huggingface');
    const header = readSafetensorsHeader(path.join(mambaDir, 'model.safetensors'));
    assert.deepEqual(ckpt.model.graph.initializer.map((t) => t.name).sort(), [...header.tensors.keys()].sort());
    for (const t of ckpt.model.graph.initializer) assert.equal(t.rawData, undefined, `${t.name} is referenced, not copied`);
    assert.equal(ckpt.model.graph.node.filter((n) => n.opType === 'Scan').length, 4);

    const d = discoverLayers(ckpt.model);
    assert.deepEqual(d.layers.map((l) => l.name), LAYER_NAMES);
    assert.deepEqual(d.blocks.map((b) => b.name), ['layers.0', 'layers.1', 'layers.2', 'layers.3']);
    for (const l of d.layers) {
      assert.deepEqual([l.op, l.layout], ['Gemm', 'out_in']);
      assert.equal(l.weight, `backbone.${l.name}.weight`);
      assert.deepEqual(l.weightDims, header.tensors.get(l.weight)?.shape);
    }
    // conv1d is found as an opt-in depthwise conv (test/depthwiseConv.test.ts prunes it with keepDense.depthwiseConv
    // false); the tied head reads the embedding, so no flag makes it prunable.
    assert.deepEqual(d.skipped.map((s) => [s.name, s.keptDenseBy ?? null]), [...[0, 1, 2, 3].map((i) => [`layers.${i}.mixer.conv1d`, 'depthwiseConv']), ['lm_head', null]]);

    const errors: string[] = [];
    for (const c of reference.cases) {
      const worst = maxAbsDiff(await logitsOf(ckpt, c.input_ids, c.attention_mask), c.logits.flat(2));
      errors.push(`${c.input_ids.length}x${c.input_ids[0].length}: ${worst.toExponential(2)}`);
      assert.ok(worst <= 1e-4, `max |Δlogit| ${worst}`);
    }
    console.log(`stories-mamba (HF folder): max |Δlogit| vs PyTorch ${errors.join(', ')}`);
  });

  test(`dense perplexity at seqlen 256 matches the reference ${reference.perplexity.seqlen256.ppl} (4 decimals)`, async () => {
    const ckpt = openCheckpoint(mambaDir);
    const ids = readTokens(text, loadTokenizer(path.join(mambaDir, 'tokenizer.json'))).subarray(0, 65536);
    const specs = inputSpecs(ckpt.model.graph.input, new Set(ckpt.model.graph.initializer.map((t) => t.name)));
    const session = await engine.modelSession(ckpt.sessionSource());
    const t0 = performance.now();
    const res = await perplexity(session, specs, evaluationWindows(ids, 256), { batch: 8 });
    const seconds = (performance.now() - t0) / 1000;
    await session.release();
    const ref = reference.perplexity.seqlen256.ppl;
    console.log(`stories-mamba (HF folder): dense perplexity ${res.ppl.toFixed(4)} (reference ${ref}), ${Math.round(65536 / seconds)} tokens/s`);
    assert.equal(res.windows, 256);
    assert.ok(Math.abs(res.ppl - ref) <= 1e-4, `ppl ${res.ppl} vs ${ref}`);
  });
});

// ---------------------------------------------------------------------------------------------------------

describe('Mamba from generated folders: biases, untied head, no conv bias, time_step_rank auto, any length', () => {
  const variants = [
    { what: 'use_bias, untied lm_head, no conv bias, time_step_rank auto (3), expand 1.5, conv 3', config: { hidden_size: 40, state_size: 4, expand: 1.5, conv_kernel: 3, time_step_rank: 'auto', num_hidden_layers: 2, use_bias: true, use_conv_bias: false, tie_word_embeddings: false } },
    { what: 'defaults (tied, conv bias), dt bias past softplus threshold 20 on some channels', config: { hidden_size: 32, state_size: 8, time_step_rank: 5, num_hidden_layers: 1 }, dtBias: 25 },
  ];
  for (const v of variants) {
    test(`${v.what}: logits match the float64 forward (right padding); left padding leaves real tokens unchanged`, async () => {
      const config = { model_type: 'mamba', vocab_size: 50, layer_norm_epsilon: 1e-5, ...v.config } as Record<string, unknown>;
      const c = resolveMambaConfig(config as never);
      const rng = new Rng(7);
      const tensors = [...mambaTensorShapes(c)].map(([name, dims]) => {
        const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
        const fan = dims.length > 1 ? dims[dims.length - 1] : 1;
        for (let i = 0; i < data.length; i++) {
          if (name.endsWith('A_log')) data[i] = Math.log(1 + (i % c.stateSize)) + 0.1 * rng.normal();
          else if (name.endsWith('.D') || name.endsWith('norm.weight') || name.endsWith('norm_f.weight')) data[i] = 1 + 0.2 * rng.normal();
          else if (name.endsWith('dt_proj.bias')) data[i] = v.dtBias !== undefined && i % 3 === 0 ? v.dtBias : -3 + rng.normal();
          else if (name.includes('embeddings') || name.startsWith('lm_head')) data[i] = rng.normal();
          else data[i] = (name.endsWith('.bias') ? 0.1 : 1 / Math.sqrt(fan)) * rng.normal();
        }
        return { name, dims, data };
      });
      const dir = path.join(work, `generated-${variants.indexOf(v)}`);
      const stored = writeHfFolder(dir, config, tensors);
      const ckpt = openCheckpoint(dir);
      assert.deepEqual(discoverLayers(ckpt.model).layers.map((l) => l.name), Array.from({ length: c.layers }, (_, i) => MIXER_LAYERS.map((p) => `layers.${i}.mixer.${p}`)).flat());
      const ref = { vocab: c.vocabSize, hidden: c.hiddenSize, state: c.stateSize, inner: c.inner, kernel: c.convKernel, dtRank: c.dtRank, layers: c.layers, eps: c.eps, bias: c.bias, convBias: c.convBias, tied: c.tied };
      const ids = [[1, 5, 9, 44, 3, 17, 8, 8, 21, 49, 2, 30, 12, 6], [1, 7, 7, 40, 33, 2, 19, 4, 0, 0, 0, 0, 0, 0]];
      const mask = [ids[0].map(() => 1), ids[1].map((_, t) => (t < 8 ? 1 : 0))];
      const want = mambaReferenceForward(ref, stored, ids, mask).flat(2);
      const got = await logitsOf(ckpt, ids, mask);
      const scale = want.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
      const worst = maxAbsDiff(got, want);
      console.log(`generated Mamba (${v.what}): max |Δlogit| vs float64 ${worst.toExponential(2)} (logits up to ${scale.toFixed(2)})`);
      assert.ok(worst <= 1e-4 * Math.max(1, scale), `max |Δlogit| ${worst}`);
      // Left padding: 3 pad tokens before row 0's first 11 tokens give its logits there.
      const left = [[0, 0, 0, ...ids[0].slice(0, 11)]];
      const leftLogits = await logitsOf(ckpt, left, [[0, 0, 0, ...Array<number>(11).fill(1)]]);
      const V = c.vocabSize;
      assert.ok(maxAbsDiff(leftLogits.subarray(3 * V), got.subarray(0, 11 * V)) <= 1e-4 * Math.max(1, scale));
      // One token and a length past the training windows both run.
      assert.equal((await logitsOf(ckpt, [[1]], [[1]])).length, V);
      const long = Array.from({ length: 600 }, (_, t) => (t * 7) % V);
      assert.equal((await logitsOf(ckpt, [long], [long.map(() => 1)])).length, 600 * V);
    });
  }
});

// ---------------------------------------------------------------------------------------------------------

const header = readSafetensorsHeader(path.join(mambaDir, 'model.safetensors'));

/** Checks a pruned output folder: the targeted weights have the pattern (and the sparsity the event reports),
 *  every other tensor and every other file is byte for byte the input's. */
function checkOutput(out: string, pruned: Map<string, EventOf<'layer.pruned'>>, pattern: 'unstructured' | '2:4'): void {
  const files = readdirSync(out).filter((f) => f !== 'events.ndjson' && f !== 'prune-report.json').sort();
  assert.deepEqual(files, readdirSync(mambaDir).sort());
  for (const f of files.filter((x) => x !== 'model.safetensors')) assert.deepEqual(readFileSync(path.join(out, f)), readFileSync(path.join(mambaDir, f)), f);
  const b = readSafetensorsHeader(path.join(out, 'model.safetensors'));
  assert.deepEqual(b.headerBytes, header.headerBytes);
  let targeted = 0;
  for (const [name, e] of header.tensors) {
    const layer = name.replace(/^backbone\./, '').replace(/\.weight$/, '');
    const got = b.tensors.get(name) as typeof e;
    const ev = pruned.get(layer);
    if (!ev) {
      assert.deepEqual(readTensorBytes(got), readTensorBytes(e), `${name} bit-identical`);
      continue;
    }
    targeted++;
    const v = readTensorFloat32(got);
    const [rows, cols] = e.shape;
    let zeros = 0;
    for (let i = 0; i < v.length; i++) if (v[i] === 0) zeros++;
    assert.equal(zeros / v.length, ev.sparsity, `${layer}: the written zeros are the reported sparsity`);
    if (pattern === '2:4') {
      for (let r = 0; r < rows; r++) {
        for (let g = 0; g < cols; g += 4) {
          let z = 0;
          for (let k = 0; k < 4; k++) if (v[r * cols + g + k] === 0) z++;
          assert.ok(z >= 2, `${layer}: row ${r}, columns ${g}..${g + 3} hold ${z} zeros`);
        }
      }
    } else {
      assert.ok(zeros >= Math.floor(v.length / 2), `${layer}: ${zeros} zeros of ${v.length}`);
    }
  }
  assert.equal(targeted, 16);
}

describe('stories-mamba: four methods at 50% and 2:4', () => {
  const results = new Map<string, { ppl: number[]; losses: Map<string, number> }>();
  for (const method of ['magnitude', 'wanda', 'sparsegpt', 'apt']) {
    for (const pattern of ['unstructured', '2:4'] as const) {
      test(`${method} ${pattern === '2:4' ? '2:4' : '50%'}: the pattern on every targeted weight, everything else bit-identical, the output re-reads`, async () => {
        const out = path.join(work, `hf-${method}-${pattern.replace(':', 'of')}`);
        const r = await prune(mambaDir, out, { method, sparsity: 0.5, pattern });
        assert.deepEqual([...r.pruned.keys()], LAYER_NAMES);
        checkOutput(out, r.pruned, pattern);
        assert.equal(r.ppl.length, 2);
        assert.ok(r.ppl[1] > r.ppl[0] && Number.isFinite(r.ppl[1]), `dense ${r.ppl[0]} → pruned ${r.ppl[1]}`);
        results.set(`${method} ${pattern}`, { ppl: r.ppl, losses: new Map([...r.pruned].map(([k, e]) => [k, e.loss as number])) });
        // The written folder opens again, and its graph computes the pruned model's perplexity.
        const again = openHfCheckpoint(out);
        const ids = readTokens(text, loadTokenizer(path.join(out, 'tokenizer.json')));
        const specs = inputSpecs(again.model.graph.input, new Set(again.model.graph.initializer.map((t) => t.name)));
        const session = await engine.modelSession(again.sessionSource());
        const res = await perplexity(session, specs, evaluationWindows(ids, 128, 16), { batch: 8 });
        await session.release();
        assert.ok(Math.abs(res.ppl / r.ppl[1] - 1) < 1e-6, `re-read ${res.ppl} vs reported ${r.ppl[1]}`);
      });
    }
  }
  after(() => {
    if (!results.size) return;
    const rows = [...results].map(([k, v]) => `${k}: ppl ${v.ppl.map((p) => p.toFixed(4)).join(' → ')}`);
    console.log(`stories-mamba pruned (calibration 16×128, evaluation 16×128):\n  ${rows.join('\n  ')}`);
  });
});

// ---------------------------------------------------------------------------------------------------------

/** The model as a plain ONNX file, weights inlined, tokenizer beside it: built with the fused scan, whose body reads
 *  A from the enclosing graph (an implicit input of the Scan node, as exporters' Loop/Scan bodies capture weights). */
function saveAsOnnx(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const config = JSON.parse(readFileSync(path.join(mambaDir, 'config.json'), 'utf8')) as MambaConfig;
  const model = buildMambaModel(config, readSafetensorsF32(path.join(mambaDir, 'model.safetensors')), { scan: 'fused' });
  const file = path.join(dir, 'model.onnx');
  writeFileSync(file, encodeModel(model));
  copyFileSync(path.join(mambaDir, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  return file;
}

describe('stories-mamba as an ONNX file (Scan nodes, module-scoped names) through the generic ONNX path', () => {
  let hf: Awaited<ReturnType<typeof prune>>;
  let onnx: Awaited<ReturnType<typeof prune>>;
  let onnxFile = '';
  before(async () => {
    onnxFile = saveAsOnnx(path.join(work, 'mamba-onnx'));
    hf = await prune(mambaDir, path.join(work, 'hf-sparsegpt-form'));
    onnx = await prune(onnxFile, path.join(work, 'onnx-sparsegpt-form'));
  });

  test('opens as ONNX with the same layers and logits; each Scan body reads A from the enclosing graph', async () => {
    const ckpt = openCheckpoint(onnxFile);
    assert.equal(ckpt.format, 'onnx');
    const scans = ckpt.model.graph.node.filter((n) => n.opType === 'Scan');
    assert.equal(scans.length, 4);
    for (const [i, scan] of scans.entries()) {
      assert.match(scan.name, new RegExp(`^/backbone/layers\\.${i}/mixer/`));
      const implicit = nodeInputs(scan).filter((t) => !scan.input.includes(t));
      assert.deepEqual(implicit, [`/backbone/layers.${i}/mixer/Neg_output_0`], 'A = −exp(A_log), captured by the body');
    }
    assert.deepEqual(discoverLayers(ckpt.model).layers.map((l) => l.name), LAYER_NAMES);
    const c = reference.cases[1];
    assert.ok(maxAbsDiff(await logitsOf(ckpt, c.input_ids, c.attention_mask), c.logits.flat(2)) <= 1e-4);
  });

  test('same per-layer losses (1e-3 relative) and perplexities as the folder form; the pruned weights agree', () => {
    assert.deepEqual([...onnx.pruned.keys()], [...hf.pruned.keys()]);
    let worst = 0;
    for (const [name, e] of hf.pruned) {
      const ref = onnx.pruned.get(name)?.loss as number;
      assert.ok((e.loss as number) > 0);
      worst = Math.max(worst, Math.abs((e.loss as number) / ref - 1));
    }
    console.log(`stories-mamba HF folder vs ONNX file: worst per-layer loss ratio −1 = ${worst.toExponential(2)}; ppl HF ${hf.ppl.map((p) => p.toFixed(4)).join(' → ')}, ONNX ${onnx.ppl.map((p) => p.toFixed(4)).join(' → ')}`);
    assert.ok(worst < 1e-3, `worst relative loss difference ${worst}`);
    for (let i = 0; i < 2; i++) assert.ok(Math.abs(hf.ppl[i] / onnx.ppl[i] - 1) < 1e-3, `${hf.ppl[i]} vs ${onnx.ppl[i]}`);
    const written = openCheckpoint(path.join(work, 'onnx-sparsegpt-form'));
    const folder = openCheckpoint(path.join(work, 'hf-sparsegpt-form'));
    assert.equal(written.format, 'onnx');
    assert.equal(written.model.graph.node.filter((n) => n.opType === 'Scan').length, 4);
    for (const name of LAYER_NAMES) {
      const w = written.weightAsFloat32(`backbone.${name}.weight`);
      const zeros = w.filter((x) => x === 0).length;
      assert.equal(zeros / w.length, onnx.pruned.get(name)?.sparsity, name);
      assert.ok(maxAbsDiff(w, folder.weightAsFloat32(`backbone.${name}.weight`)) <= 1e-5, `${name}: ONNX-file and folder results agree`);
    }
  });
});
