// The GPU path on a real WebGPU device: stories260K pruned on `webgpu` and on `cpu` must agree (per-layer losses
// within 1e-5 relative, identical masks, perplexities within 1e-4 relative, fewer bytes moved, at most 3 × (W + H)
// per layer), and the factor and the sweep keep H, R and Fᵀ on the device. Without a GPU this runs on Mesa 25 lavapipe (`eval "$(../shared/tools/lavapipe.sh)"`
// first; .ci/run does). With CI=true a missing adapter FAILS.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { resolveConfig } from '../src/protocol/config';
import { Event, EventOf, Transfer } from '../src/protocol/events';
import { collectRealLayers, RealLayer } from './helpers/realLayers';
import { openOnnxCheckpoint } from '../src/backend/formats/onnxCheckpoint';
import { rowPool } from '../src/backend/methods/rowKernels';
import { pruneLayer } from '../src/backend/methods';
import { webgpuProblem } from '../src/backend/onnx/adapter';
import { Engine, transferSince } from '../src/backend/onnx/session';
import { runPrune } from '../src/backend/pipeline/run';

const fixtures = path.resolve(__dirname, '..', '..', 'shared', 'fixtures');
const modelDir = path.join(fixtures, 'stories260K-onnx');
const text = path.join(fixtures, 'data', 'tinystories_valid_head.txt');
const work = mkdtempSync(path.join(os.tmpdir(), 'prunekit-webgpu-'));

after(async () => {
  rmSync(work, { recursive: true, force: true });
  await rowPool.close();
});

// Small on purpose (CI's 2 cores run lavapipe's shaders on the CPU): 16 windows of 128 to calibrate, 16 to evaluate.
const small = {
  sparsity: 0.5,
  calibration: { path: text, nsamples: 16, seqlen: 128, seed: 0, skipTokens: 65536 },
  evaluation: { path: text, seqlen: 128, maxWindows: 16 },
};

interface Run { events: Event[]; output: string }

async function prune(method: string, device: 'cpu' | 'webgpu'): Promise<Run> {
  const output = path.join(work, `${method}-${device}`);
  const events: Event[] = [];
  await runPrune(resolveConfig({ checkpoint: modelDir, output, method, device, ...small }, work), { emit: (e) => events.push(e) });
  return { events, output };
}

const of = <T extends Event['type']>(r: Run, type: T) => r.events.filter((e) => e.type === type) as EventOf<T>[];
const total = (t: Transfer | undefined) => (t ? t.toDevice + t.fromDevice : 0);
const relDiff = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);

/** Why WebGPU cannot run here (null when it can), asked once; with CI=true a reason is a failure. */
let asked: Promise<string | null> | undefined;
async function webgpuMissing(): Promise<string | null> {
  const problem = await (asked ??= webgpuProblem());
  if (problem !== null && process.env.CI === 'true') assert.fail(`CI=true and WebGPU cannot run here: ${problem}`);
  return problem;
}
const skipWhy = (problem: string) => `no WebGPU adapter here (outside CI): ${problem}; eval "$(../shared/tools/lavapipe.sh)" first`;

describe('WebGPU against the CPU on stories260K', () => {
  const runs = new Map<string, Run>();
  let problem: string | null = null;
  before(async () => {
    problem = await webgpuMissing();
    if (problem !== null) return;
    for (const method of ['sparsegpt', 'apt']) for (const device of ['cpu', 'webgpu'] as const) runs.set(`${method} ${device}`, await prune(method, device));
  });

  for (const method of ['sparsegpt', 'apt']) {
    test(`${method}: ran on webgpu, named its adapter; per-layer losses within 1e-5, masks identical, perplexity within 1e-4`, (t) => {
      if (problem !== null) {
        t.skip(skipWhy(problem));
        return;
      }
      const cpu = runs.get(`${method} cpu`) as Run;
      const gpu = runs.get(`${method} webgpu`) as Run;
      const started = of(gpu, 'run.started')[0];
      assert.equal(started.device, 'webgpu');
      t.diagnostic(`adapter: ${started.adapter}`);
      const cpuLayers = of(cpu, 'layer.pruned');
      const gpuLayers = of(gpu, 'layer.pruned');
      assert.equal(gpuLayers.length, 35);
      let worst = 0;
      let ratio = 0; // the most bytes moved by a layer, in units of its W + H
      for (const [i, g] of gpuLayers.entries()) {
        const c = cpuLayers[i];
        assert.equal(g.layer, c.layer);
        const d = relDiff(g.loss as number, c.loss as number);
        worst = Math.max(worst, d);
        assert.ok(d <= 1e-5, `${g.layer}: loss ${g.loss} on webgpu vs ${c.loss} on cpu`);
        // One sweep block (cols ≤ 128): the same graph calls, the same bytes. More: H, R and Fᵀ stay on the device.
        const [rows, cols] = g.shape;
        const moved = total(g.transfer);
        if (cols <= 128) assert.deepEqual(g.transfer, c.transfer, `${g.layer}: bytes moved`);
        else assert.ok(moved < total(c.transfer), `${g.layer}: ${moved} bytes moved on webgpu, ${total(c.transfer)} on the cpu`);
        assert.ok(moved >= 4 * rows * cols, `${g.layer}: ${moved} bytes moved, less than its weight`);
        ratio = Math.max(ratio, moved / (4 * (rows * cols + cols * cols)));
        if (g.layer.includes("layers.0")) t.diagnostic(`${g.layer} ${rows}x${cols}: ${JSON.stringify(g.transfer)} = ${(moved / (4 * (rows * cols + cols * cols))).toFixed(2)} × (W + H)`);
      }
      // A block's passes: no activation crosses (each segment's outputs stay on the device for the next), each
      // pass's weights go up once for all its batches, and the running XᵀX sums go up with the first batch and come
      // back after the last. What crosses outside its layers is exactly: the sums (2·ΣH: q/k/v's, o's and gate/up's
      // inputs of 64 columns, down_proj's of 172); the weights, the calibration pass's all but down_proj's (its
      // output is not computed), the propagation's all seven; and per batch the small statistics, Σx² of each of the
      // four inputs and Σy² per token of the six outputs computed. The host path sends every batch's activations,
      // weights and sums again.
      const sumH = 4 * (3 * 64 * 64 + 172 * 172);
      const weights = 4 * (2 * (64 * 64 * 2 + 32 * 64 * 2 + 172 * 64 * 3) - 64 * 172);
      const statistics = (batches: number) => 4 * (batches * (3 * 64 + 172) + 6 * small.calibration.nsamples * small.calibration.seqlen);
      const blocksC = of(cpu, 'block.finished');
      for (const [i, gb] of of(gpu, 'block.finished').entries()) {
        const outsideLayers = (r: Run, t: Transfer | undefined) => total(t) - of(r, 'layer.pruned').filter((e) => e.block === gb.block).reduce((a, e) => a + total(e.transfer), 0);
        const batches = of(gpu, 'calibration.progressed').filter((e) => e.phase === 'hessian' && e.block === gb.block).length;
        assert.ok(batches >= 2, `block ${gb.block}: ${batches} calibration batches`);
        assert.equal(outsideLayers(gpu, gb.transfer), 2 * sumH + weights + statistics(batches), `block ${gb.block}: bytes outside its layers on webgpu`);
        assert.ok(outsideLayers(cpu, blocksC[i].transfer) > 2 * batches * sumH + weights, `block ${gb.block}: bytes outside its layers on the host path`);
      }
      const outC = openOnnxCheckpoint(cpu.output);
      const outG = openOnnxCheckpoint(gpu.output);
      for (const l of started.layers) {
        const wc = outC.weightAsFloat32(l.weight);
        const wg = outG.weightAsFloat32(l.weight);
        for (let k = 0; k < wc.length; k++) if ((wc[k] === 0) !== (wg[k] === 0)) assert.fail(`${l.name}: masks differ at element ${k}`);
      }
      const ppl = (r: Run) => of(r, 'evaluation.finished').map((e) => e.perplexity);
      const [dc, pc] = ppl(cpu);
      const [dg, pg] = ppl(gpu);
      t.diagnostic(`worst layer loss difference ${worst.toExponential(2)}; bytes moved per layer up to ${ratio.toFixed(2)} × (W + H); perplexity cpu ${dc} → ${pc}, webgpu ${dg} → ${pg}`);
      assert.ok(ratio <= 3, `a layer moved ${ratio.toFixed(2)} × (W + H) between host and device (target: at most 3)`);
      assert.ok(relDiff(dg, dc) <= 1e-4 && relDiff(pg, pc) <= 1e-4, `perplexity webgpu ${dg} → ${pg} vs cpu ${dc} → ${pc}`);
    });
  }
});

describe('the factor and the sweep keep H, R and Fᵀ on the device', () => {
  // stories260K's down_proj (64 × 172) in blocks of 32: six blocks, so the host path sends W, R's columns and the
  // finished Fᵀ six times, and its factor's panels up and back at every step.
  const B = 32;
  let layer: RealLayer | undefined;
  let problem: string | null = null;
  const cpu = new Engine({ device: 'cpu', threads: 1 });
  const gpu = new Engine({ device: 'webgpu', threads: 1 });
  before(async () => {
    problem = await webgpuMissing();
    if (problem !== null) return;
    const data = await collectRealLayers(path.join(modelDir, 'model.onnx'), path.join(fixtures, 'data', 'tinystories_train_head_2MiB.txt'), cpu, { nsamples: 8, seqlen: 128, seed: 0, batch: 8 });
    layer = data.layers.find((l) => l.name.includes('mlp/down_proj'));
  });
  after(async () => {
    await cpu.release();
    await gpu.release();
  });

  /** The bytes one layer moves: the factor, the sweep and the loss (the reference given, as the pipeline gives it
   *  for every layer but a block's last). */
  async function layerBytes(engine: Engine, method: 'sparsegpt' | 'apt', l: RealLayer, reference?: number): Promise<{ W: Float32Array; loss: number; bytes: number }> {
    const before = { ...engine.moved };
    const res = await pruneLayer(method, { ...l, W: l.W.slice(), reference }, { pattern: { kind: 'unstructured', sparsity: 0.5 }, blockSize: B }, engine);
    return { W: res.W, loss: res.loss, bytes: total(transferSince(engine.moved, before)) };
  }

  for (const method of ['sparsegpt', 'apt'] as const) {
    test(`${method}: the same weights as on the CPU; H up once, each block's Dᵀ down and E up, Fᵀ down once`, async (t) => {
      if (problem !== null) {
        t.skip(skipWhy(problem));
        return;
      }
      const l = layer as RealLayer;
      assert.equal(l.cols, 172);
      const { rows, cols } = l;
      const reference = 1; // any number: it is only divided by
      const host = await layerBytes(cpu, method, l, reference);
      const device = await layerBytes(gpu, method, l, reference);
      assert.equal(gpu.device, 'webgpu');
      assert.ok(gpu.keepsOnDevice);
      for (let k = 0; k < host.W.length; k++) {
        if ((host.W[k] === 0) !== (device.W[k] === 0)) assert.fail(`masks differ at ${k}`);
        assert.ok(Math.abs(host.W[k] - device.W[k]) <= 1e-5, `weight ${k}: ${device.W[k]} on webgpu vs ${host.W[k]} on cpu`);
      }
      assert.ok(relDiff(device.loss, host.loss) <= 1e-5, `loss ${device.loss} on webgpu vs ${host.loss} on cpu`);
      const w = 4 * rows * cols;
      const h = 4 * cols * cols;
      const blocks = Math.ceil(cols / B);
      t.diagnostic(`layer bytes: ${host.bytes} on the host path (${(host.bytes / (w + h)).toFixed(2)} × (W + H)), ${device.bytes} on the device (${(device.bytes / (w + h)).toFixed(2)} × (W + H)); W ${w}, H ${h}`);
      // H up; the diagonal blocks down; per block Dᵀ down, E up (2 W), G up three times; Fᵀ down (W).
      assert.ok(device.bytes <= 3 * w + h + 4 * cols * B + 3 * blocks * 4 * B * B + 1024, `${device.bytes} bytes on the device`);
      assert.ok(device.bytes <= 3 * (w + h), `${device.bytes} bytes on the device: more than 3 × (W + H)`);
      assert.ok(host.bytes > 2 * device.bytes, `${host.bytes} bytes on the host path`);
      // Without the reference the loss pass sends W in row chunks, with the H the factor left on the device.
      const unreferenced = await layerBytes(gpu, method, l);
      assert.ok(unreferenced.bytes - device.bytes <= w + 1024, `${unreferenced.bytes - device.bytes} bytes for the reference`);
    });
  }
});
