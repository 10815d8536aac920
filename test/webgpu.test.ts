// The GPU path on a real WebGPU device: stories260K pruned on `webgpu` and on `cpu` must agree (per-layer losses
// within 1e-5 relative, identical masks, perplexities within 1e-4 relative, the same bytes moved per layer). Without
// a GPU this runs on Mesa 25 lavapipe (`eval "$(../shared/tools/lavapipe.sh)"` first; .ci/run does). With CI=true a
// missing adapter FAILS.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { resolveConfig } from '../src/protocol/config';
import { Event, EventOf } from '../src/protocol/events';
import { openOnnxCheckpoint } from '../src/backend/formats/onnxCheckpoint';
import { rowPool } from '../src/backend/methods/rowKernels';
import { webgpuProblem } from '../src/backend/onnx/adapter';
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
const relDiff = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);

describe('WebGPU against the CPU on stories260K', () => {
  const runs = new Map<string, Run>();
  let problem: string | null = null;
  before(async () => {
    problem = await webgpuProblem();
    if (problem !== null && process.env.CI === 'true') assert.fail(`CI=true and WebGPU cannot run here: ${problem}`);
    if (problem !== null) return;
    for (const method of ['sparsegpt', 'apt']) for (const device of ['cpu', 'webgpu'] as const) runs.set(`${method} ${device}`, await prune(method, device));
  });

  for (const method of ['sparsegpt', 'apt']) {
    test(`${method}: ran on webgpu, named its adapter; per-layer losses within 1e-5, masks identical, perplexity within 1e-4`, (t) => {
      if (problem !== null) {
        t.skip(`no WebGPU adapter here (outside CI): ${problem}; eval "$(../shared/tools/lavapipe.sh)" first`);
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
        // The same graph calls on both devices: the same bytes, which on webgpu crossed host↔device.
        assert.deepEqual(g.transfer, c.transfer, `${g.layer}: bytes moved`);
        const [rows, cols] = g.shape;
        const moved = (g.transfer?.toDevice ?? 0) + (g.transfer?.fromDevice ?? 0);
        assert.ok(moved >= 4 * rows * cols, `${g.layer}: ${moved} bytes moved, less than its weight`);
        ratio = Math.max(ratio, moved / (4 * (rows * cols + cols * cols)));
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
      t.diagnostic(`worst layer loss difference ${worst.toExponential(2)}; bytes moved per layer up to ${ratio.toFixed(1)} × (W + H); perplexity cpu ${dc} → ${pc}, webgpu ${dg} → ${pg}`);
      assert.ok(relDiff(dg, dc) <= 1e-4 && relDiff(pg, pc) <= 1e-4, `perplexity webgpu ${dg} → ${pg} vs cpu ${dc} → ${pc}`);
    });
  }
});
