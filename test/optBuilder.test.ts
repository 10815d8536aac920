// The OPT front end (src/backend/models/opt.ts through formats/hfCheckpoint.ts). No trained OPT fixture exists,
// so the tests generate small OPT-shaped folders with random weights, check the built graph's logits against an
// independent float64 forward of HF's OPT maths written here, then prune them and read the output back.
//
//   node --import tsx --test test/optBuilder.test.ts

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { Checkpoint, openCheckpoint } from '../src/backend/formats/checkpoint';
import { HfCheckpoint } from '../src/backend/formats/hfCheckpoint';
import { readTensorBytes } from '../src/backend/formats/safetensors';
import { rowPool } from '../src/backend/methods/rowKernels';
import { positionLimit } from '../src/backend/models/inputs';
import { OptConfig, optTensorShapes } from '../src/backend/models/opt';
import { Engine } from '../src/backend/onnx/session';
import { discoverLayers } from '../src/backend/pipeline/layers';
import { runPrune } from '../src/backend/pipeline/run';
import { resolveConfig } from '../src/protocol/config';
import { Event, EventOf } from '../src/protocol/events';
import { checkpointLogits, compareLogits, writeHfFolder } from './helpers/hfFolder';
import { Rng } from './helpers/reference';

const work = mkdtempSync(path.join(os.tmpdir(), 'prunekit-opt-'));
const engine = new Engine({ device: 'cpu', threads: 1 });
after(async () => {
  rmSync(work, { recursive: true, force: true });
  await engine.release();
  await rowPool.close();
});

type Weights = Map<string, Float32Array>;

const sha = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

/** Random weights at scales that keep every part of the network visible in the logits. */
function randomWeights(shapes: Map<string, number[]>, seed: number): { name: string; dims: number[]; data: Float32Array }[] {
  const rng = new Rng(seed);
  return [...shapes].map(([name, dims]) => {
    const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
    const isNorm = /layer_norm\.weight$/.test(name);
    const scale = name.endsWith('.bias') ? 0.1 : /embed/.test(name) ? 0.5 : isNorm ? 0.2 : 1 / Math.sqrt(dims[1] ?? 1);
    for (let i = 0; i < data.length; i++) data[i] = (isNorm ? 1 : 0) + scale * rng.normal();
    return { name, dims, data };
  });
}

/** HF OPTForCausalLM in float64; logits [B, S, V] of the real (mask = 1) positions, NaN elsewhere. */
function referenceForward(config: OptConfig, W: Weights, prefix: string, ids: number[][], mask: number[][]): Float64Array {
  const h = config.hidden_size;
  const H = config.num_attention_heads;
  const D = h / H;
  const V = config.vocab_size;
  const E = config.word_embed_proj_dim ?? h;
  const pre = config.do_layer_norm_before ?? true;
  const d = `${prefix}decoder`;
  const get = (n: string): Float32Array => {
    const t = W.get(n);
    if (!t) throw new Error(`reference: no ${n}`);
    return t;
  };
  const lin = (x: Float64Array, name: string, bias = true): Float64Array => {
    const w = get(`${name}.weight`);
    const out = w.length / x.length;
    const y = new Float64Array(out);
    for (let o = 0; o < out; o++) {
      let s = bias ? get(`${name}.bias`)[o] : 0;
      for (let i = 0; i < x.length; i++) s += w[o * x.length + i] * x[i];
      y[o] = s;
    }
    return y;
  };
  const ln = (x: Float64Array, name: string): Float64Array => {
    const mean = x.reduce((a, b) => a + b, 0) / x.length;
    const v = x.reduce((a, b) => a + (b - mean) ** 2, 0) / x.length;
    const r = 1 / Math.sqrt(v + 1e-5);
    const g = get(`${name}.weight`);
    const b = get(`${name}.bias`);
    return x.map((xi, i) => (xi - mean) * r * g[i] + b[i]);
  };
  const B = ids.length;
  const S = ids[0].length;
  const out = new Float64Array(B * S * V).fill(NaN);
  for (let b = 0; b < B; b++) {
    let cum = 0;
    const pos = mask[b].map((m) => { cum += m; return cum * m - 1 + 2; });
    const emb = get(`${d}.embed_tokens.weight`);
    const posW = get(`${d}.embed_positions.weight`);
    let x: Float64Array<ArrayBufferLike>[] = ids[b].map((t, s) => {
      let e: Float64Array<ArrayBufferLike> = Float64Array.from(emb.subarray(t * E, (t + 1) * E));
      if (E !== h) e = lin(e, `${d}.project_in`, false);
      return e.map((v, c) => v + posW[pos[s] * h + c]);
    });
    for (let l = 0; l < config.num_hidden_layers; l++) {
      const p = `${d}.layers.${l}`;
      const hIn = pre ? x.map((v) => ln(v, `${p}.self_attn_layer_norm`)) : x;
      const q = hIn.map((v) => lin(v, `${p}.self_attn.q_proj`).map((t) => t / Math.sqrt(D)));
      const k = hIn.map((v) => lin(v, `${p}.self_attn.k_proj`));
      const vv = hIn.map((v) => lin(v, `${p}.self_attn.v_proj`));
      x = x.map((res, i) => {
        const ctx = new Float64Array(h);
        const keys = Array.from({ length: i + 1 }, (_, j) => j).filter((j) => mask[b][j] === 1);
        for (let head = 0; head < H; head++) {
          const sc = keys.map((j) => { let s = 0; for (let c = 0; c < D; c++) s += q[i][head * D + c] * k[j][head * D + c]; return s; });
          const m = Math.max(...sc);
          const ex = sc.map((s) => Math.exp(s - m));
          const z = ex.reduce((a, c) => a + c, 0);
          keys.forEach((j, n) => { for (let c = 0; c < D; c++) ctx[head * D + c] += (ex[n] / z) * vv[j][head * D + c]; });
        }
        const y = res.map((r, c) => r + lin(ctx, `${p}.self_attn.out_proj`)[c]);
        return pre ? y : ln(y, `${p}.self_attn_layer_norm`);
      });
      x = x.map((res) => {
        const hh = pre ? ln(res, `${p}.final_layer_norm`) : res;
        const f = lin(lin(hh, `${p}.fc1`).map((t) => Math.max(t, 0)), `${p}.fc2`);
        const y = res.map((r, c) => r + f[c]);
        return pre ? y : ln(y, `${p}.final_layer_norm`);
      });
    }
    const head = config.tie_word_embeddings === false ? get('lm_head.weight') : get(`${d}.embed_tokens.weight`);
    for (let s = 0; s < S; s++) {
      if (!mask[b][s]) continue;
      let y = pre ? ln(x[s], `${d}.final_layer_norm`) : x[s];
      if (E !== h) y = lin(y, `${d}.project_out`, false);
      for (let v = 0; v < V; v++) {
        let acc = 0;
        for (let c = 0; c < E; c++) acc += head[v * E + c] * y[c];
        out[(b * S + s) * V + v] = acc;
      }
    }
  }
  return out;
}

const logitsOf = (ckpt: Checkpoint, ids: number[][], mask: number[][]) => checkpointLogits(engine, ckpt, ids, mask);


/** The checkpoint's stored tensors as float32, by name. */
function storedWeights(ckpt: HfCheckpoint): Weights {
  return new Map([...ckpt.entries.keys()].map((n) => [n, ckpt.weightAsFloat32(n)]));
}

const BASE: OptConfig = {
  model_type: 'opt', vocab_size: 64, hidden_size: 32, num_hidden_layers: 2, ffn_dim: 48, num_attention_heads: 4,
  max_position_embeddings: 40, do_layer_norm_before: true, enable_bias: true, activation_function: 'relu', tie_word_embeddings: true,
};

const VARIANTS: { what: string; config: OptConfig; prefix: string; dtype: string; shards: number }[] = [
  { what: 'pre-norm, tied head, F32 (OPT-125m shape)', config: BASE, prefix: 'model.', dtype: 'F32', shards: 1 },
  {
    what: 'post-norm, project_in/out, untied head, `decoder.` names, BF16 in 2 shards (OPT-350m shape)',
    config: { ...BASE, do_layer_norm_before: false, word_embed_proj_dim: 16, tie_word_embeddings: false }, prefix: '', dtype: 'BF16', shards: 2,
  },
];

const IDS = [Array.from({ length: 12 }, (_, i) => (i * 37 + 5) % 64), Array.from({ length: 12 }, (_, i) => (i * 11 + 3) % 64), Array.from({ length: 12 }, (_, i) => (i * 7 + 1) % 64)];
const MASK = [Array(12).fill(1), [...Array(8).fill(1), 0, 0, 0, 0], [0, 0, 0, ...Array(9).fill(1)]];

describe('OPT from a generated Hugging Face folder', () => {
  const rng = new Rng(5);
  const calib = path.join(work, 'ids.json');
  writeFileSync(calib, JSON.stringify(Array.from({ length: 4096 }, () => Math.floor(rng.uniform() * 64))));

  for (const [k, v] of VARIANTS.entries()) {
    test(`${v.what}: logits match a float64 forward; pruned, re-read and round-tripped`, async () => {
      const dir = path.join(work, `opt-${k}`);
      writeHfFolder(dir, v.config as unknown as Record<string, unknown>, randomWeights(optTensorShapes(v.config, v.prefix), 10 + k), { dtype: v.dtype, shards: v.shards });
      const ckpt = openCheckpoint(dir) as HfCheckpoint;
      const W = storedWeights(ckpt);
      const { worst, scale } = compareLogits(await logitsOf(ckpt, IDS, MASK), referenceForward(v.config, W, v.prefix, IDS, MASK));
      console.log(`OPT ${v.what}: max |Δlogit| ${worst.toExponential(2)} at logit scale ${scale.toFixed(2)}`);
      assert.ok(scale > 1, `logits too small to test anything (${scale})`);
      assert.ok(worst < 1e-4 * scale, `max |Δ| ${worst}`);

      // Discovery: q/k/v/out_proj, fc1, fc2 per block, Gemm [out, in]; project_in/out and the LM head stay dense.
      const d = discoverLayers(ckpt.model);
      assert.deepEqual(d.blocks.map((b) => b.layers), [0, 1].map((i) => ['q_proj', 'k_proj', 'v_proj', 'out_proj'].map((p) => `layers.${i}.self_attn.${p}`).concat([`layers.${i}.fc1`, `layers.${i}.fc2`])));
      assert.ok(d.layers.every((l) => l.op === 'Gemm' && l.layout === 'out_in' && l.weight === `${v.prefix}decoder.${l.name}.weight`));
      assert.deepEqual(d.skipped.map((s) => s.name).sort(), (v.config.word_embed_proj_dim ? ['lm_head', 'model.decoder.project_in', 'model.decoder.project_out'] : ['lm_head']).sort());

      const out = path.join(work, `opt-${k}-pruned`);
      const events: Event[] = [];
      await runPrune(resolveConfig({
        checkpoint: dir, output: out, method: 'sparsegpt', sparsity: 0.5,
        calibration: { path: calib, nsamples: 16, seqlen: 16, seed: 0 }, evaluation: { path: calib, seqlen: 16, maxWindows: 16 },
      }, work), { emit: (e) => events.push(e) });
      const pruned = events.filter((e) => e.type === 'layer.pruned') as EventOf<'layer.pruned'>[];
      assert.equal(pruned.length, 12);
      assert.ok(pruned.every((e) => (e.loss as number) > 0 && e.sparsity >= 0.5));
      const ppl = (events.filter((e) => e.type === 'evaluation.finished') as EventOf<'evaluation.finished'>[]).map((e) => e.perplexity);
      assert.equal(ppl.length, 2);
      assert.ok(ppl.every((p) => Number.isFinite(p) && p > 1));
      assert.deepEqual(readdirSync(out).sort(), [...readdirSync(dir), 'events.ndjson', 'prune-report.json'].sort());

      // Re-read: the output's logits are the float64 forward of its own stored weights; the rest is bit-identical.
      const written = openCheckpoint(out) as HfCheckpoint;
      const W2 = storedWeights(written);
      const again = compareLogits(await logitsOf(written, IDS, MASK), referenceForward(v.config, W2, v.prefix, IDS, MASK));
      assert.ok(again.worst < 1e-4 * again.scale, `pruned: max |Δ| ${again.worst}`);
      const prunedWeights = new Set(pruned.map((e) => `${v.prefix}decoder.${e.layer}.weight`));
      for (const [name, e] of ckpt.entries) {
        const w = written.entries.get(name);
        assert.ok(w && w.dtype === e.dtype && path.basename(w.file) === path.basename(e.file), name);
        if (prunedWeights.has(name)) assert.ok((W2.get(name) as Float32Array).filter((x) => x === 0).length >= (W.get(name) as Float32Array).length / 2, name);
        else assert.deepEqual(readTensorBytes(w), readTensorBytes(e), `${name} bit-identical`);
      }
      // Round trip: written again unchanged, the shards are byte-identical.
      const copy = path.join(work, `opt-${k}-copy`);
      await written.write(copy, new Map());
      for (const h of written.shards) assert.equal(sha(path.join(copy, path.basename(h.file))), sha(h.file), h.file);
    });
  }

  test('unsupported OPT settings fail naming the field', () => {
    const dir = path.join(work, 'opt-gelu');
    writeHfFolder(dir, { ...BASE, activation_function: 'gelu' } as unknown as Record<string, unknown>, randomWeights(optTensorShapes(BASE), 1));
    assert.throws(() => openCheckpoint(dir), /opt-gelu\/config\.json: OPT config: activation_function 'gelu' is not supported/);
  });

  test('the learned position table bounds the windows (a run refuses a longer seqlen, as for GPT-2)', () => {
    const dir = path.join(work, 'opt-positions');
    writeHfFolder(dir, BASE as unknown as Record<string, unknown>, randomWeights(optTensorShapes(BASE), 1));
    assert.equal(positionLimit(openCheckpoint(dir).model), BASE.max_position_embeddings);
  });
});
