// GPU benchmark (`npm run bench:gpu`): prunes Llama-7B-shaped blocks (hidden 4096, SwiGLU 11008, 32 heads, random
// weights) calibrated on 128 × 2048 random token ids, on each GPU device this machine has (cuda, webgpu on a hardware
// adapter), and prints seconds per phase, host↔device bytes moved per layer and the GPU memory used. Each device runs in
// a child process of this script (`--child DEVICE`), so its memory and its onnxruntime state are its own.
// README ("WebGPU, device choice and data on the device") says how to run it on a GPU host without Node.js;
// docs/BENCHMARKS.md ("GPU") holds its results.

import { fork, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { rowPool } from '../src/backend/methods/rowKernels';
import { buildLlamaModel, LlamaConfig, randomLlamaWeights } from '../src/backend/models/llama';
import { cudaProblem, webgpuAdapterHere, webgpuProblem } from '../src/backend/onnx/adapter';
import { encodeModel } from '../src/backend/onnx/proto';
import { runPrune } from '../src/backend/pipeline/run';
import { mulberry32 } from '../src/backend/random';
import { resolveConfig } from '../src/protocol/config';
import type { Event } from '../src/protocol/events';

const USAGE = `usage: node --import tsx bench/gpu.ts [options]   (npm run bench:gpu -- [options])

  --devices D,...     devices to run (default: cuda and webgpu where they can run, webgpu only on a hardware adapter)
  --methods a,b       methods (default sparsegpt,apt)
  --hidden N          hidden size (default 4096)
  --intermediate N    SwiGLU size (default 11008)
  --heads N           attention heads (default 32)
  --blocks N          decoder blocks (default 1)
  --nsamples N        calibration windows (default 128)
  --seqlen N          tokens per window (default 2048)
  --sparsity S        unstructured sparsity (default 0.5)
  -h, --help          this text

A functional check on a small size: --hidden 256 --intermediate 688 --heads 8 --nsamples 8 --seqlen 128
`;

const OPTIONS = {
  devices: { type: 'string' }, methods: { type: 'string', default: 'sparsegpt,apt' },
  hidden: { type: 'string', default: '4096' }, intermediate: { type: 'string', default: '11008' }, heads: { type: 'string', default: '32' },
  blocks: { type: 'string', default: '1' }, nsamples: { type: 'string', default: '128' }, seqlen: { type: 'string', default: '2048' },
  sparsity: { type: 'string', default: '0.5' }, child: { type: 'string' }, work: { type: 'string' }, help: { type: 'boolean', short: 'h' },
} as const;

type Flags = ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>['values'];

/** Where one run's wall time went, from the gaps between its events (each gap charged to the event that ends it). */
interface Phases { setup: number; calibration: number; hessian: number; solve: number; loss: number; propagation: number; output: number }

interface Result {
  device: string;
  adapter: string | null;
  method: string;
  phases: Phases;
  seconds: number;
  layers: { layer: string; shape: [number, number]; toDevice: number; fromDevice: number }[];
  /** Bytes of each block's graph calls (calibration, its layers, propagation). */
  blocks: { toDevice: number; fromDevice: number }[];
  gpuMemoryMiB: number | null;
  peakRssMiB: number;
}

function positive(flags: Flags, name: keyof typeof OPTIONS): number {
  const v = Number(flags[name]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name}: ${String(flags[name])} is not a positive integer`);
  return v;
}

function llamaConfig(flags: Flags): LlamaConfig {
  return {
    hidden_size: positive(flags, 'hidden'), intermediate_size: positive(flags, 'intermediate'), num_hidden_layers: positive(flags, 'blocks'),
    num_attention_heads: positive(flags, 'heads'), vocab_size: 512, max_position_embeddings: Math.max(4096, positive(flags, 'seqlen')),
    rms_norm_eps: 1e-5, tie_word_embeddings: false,
  };
}

/** The model folder and the calibration ids, written once for every device and method. */
function writeInputs(flags: Flags, work: string): void {
  const config = llamaConfig(flags);
  const modelDir = path.join(work, 'model');
  mkdirSync(modelDir);
  writeFileSync(path.join(modelDir, 'model.onnx'), encodeModel(buildLlamaModel(config, randomLlamaWeights(config, 0))));
  writeFileSync(path.join(modelDir, 'config.json'), JSON.stringify({ model_type: 'llama', ...config }));
  const rand = mulberry32(1);
  const n = positive(flags, 'nsamples') * positive(flags, 'seqlen') + 1;
  writeFileSync(path.join(work, 'ids.json'), JSON.stringify(Array.from({ length: n }, () => Math.floor(rand() * config.vocab_size))));
}

/** The most GPU memory nvidia-smi saw in use while `job` ran (MiB), or null where there is no nvidia-smi. */
async function withGpuMemory<T>(job: () => Promise<T>): Promise<[T, number | null]> {
  let peak: number | null = null;
  const smi = spawn('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits', '-lms', '200'], { stdio: ['ignore', 'pipe', 'ignore'] });
  smi.on('error', () => undefined); // not installed: no number
  smi.stdout.on('data', (b: Buffer) => {
    for (const v of b.toString().split('\n').map(Number).filter((x) => x > 0)) peak = Math.max(peak ?? 0, v);
  });
  try {
    return [await job(), peak];
  } finally {
    smi.kill();
  }
}

function phaseOf(e: Event): keyof Phases | null {
  if (e.type === 'calibration.progressed') return e.phase === 'prefix' ? 'calibration' : e.phase === 'hessian' ? 'hessian' : 'propagation';
  if (e.type === 'layer.pruned') return 'loss'; // the gap before it minus its own seconds (the solve) is the loss
  if (e.type === 'block.finished' || e.type === 'run.finished') return 'output';
  return e.type === 'run.started' || e.type === 'data.loaded' ? 'setup' : null;
}

async function runOne(flags: Flags, work: string, device: string, method: string): Promise<Result> {
  const phases: Phases = { setup: 0, calibration: 0, hessian: 0, solve: 0, loss: 0, propagation: 0, output: 0 };
  const events: Event[] = [];
  const t0 = performance.now();
  let last = t0;
  const config = resolveConfig({
    checkpoint: path.join(work, 'model'), output: path.join(work, `out-${device}-${method}`), method, device, sparsity: Number(flags.sparsity),
    calibration: { path: path.join(work, 'ids.json'), nsamples: positive(flags, 'nsamples'), seqlen: positive(flags, 'seqlen'), seed: 0 },
  }, work);
  const [, gpuMemoryMiB] = await withGpuMemory(() => runPrune(config, {
    emit: (e) => {
      const now = performance.now();
      const phase = phaseOf(e);
      if (phase) phases[phase] += (now - last) / 1000;
      if (e.type === 'layer.pruned') {
        phases.solve += e.seconds;
        phases.loss -= e.seconds;
      }
      last = now;
      events.push(e);
    },
  }));
  const started = events.find((e) => e.type === 'run.started');
  const layers = events.flatMap((e) => (e.type === 'layer.pruned' ? [{ layer: e.layer, shape: e.shape, toDevice: e.transfer?.toDevice ?? 0, fromDevice: e.transfer?.fromDevice ?? 0 }] : []));
  const blocks = events.flatMap((e) => (e.type === 'block.finished' && e.transfer ? [e.transfer] : []));
  rmSync(config.output, { recursive: true, force: true });
  return {
    device: started?.device ?? device, adapter: started?.adapter ?? null, method, phases, seconds: (performance.now() - t0) / 1000, layers, blocks,
    gpuMemoryMiB, peakRssMiB: process.resourceUsage().maxRSS / 1024,
  };
}

/** The GPU devices that can run here; webgpu only on a hardware adapter (a software one measures the CPU). */
async function gpuDevices(): Promise<string[]> {
  const devices: string[] = [];
  if ((await cudaProblem()) === null) devices.push('cuda');
  const adapter = await webgpuAdapterHere();
  if ('hardware' in adapter && adapter.hardware && (await webgpuProblem()) === null) devices.push('webgpu');
  return devices;
}

/** The results of `device` run in a child process of this script (its memory and onnxruntime state its own). */
function child(device: string, work: string): Promise<Result[]> {
  return new Promise((resolve, reject) => {
    const results: Result[] = [];
    const argv = process.argv.slice(2).filter((a, i, all) => a !== '--devices' && all[i - 1] !== '--devices' && !a.startsWith('--devices='));
    const p = fork(__filename, [...argv, '--child', device, '--work', work], { execArgv: process.execArgv });
    p.on('message', (r: Result) => results.push(r));
    p.on('exit', (code) => (code === 0 ? resolve(results) : reject(new Error(`${device}: the child exited with ${code}`))));
  });
}

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);

function table(results: Result[]): string {
  const out = [
    '| device | method | calibration s | Hessian s | solve s | loss s | propagation s | total s | MiB to device / back per layer (max) | max bytes ÷ (W + H) | MiB to device / back per block (max) | GPU MiB | peak RSS MiB |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of results) {
    const p = r.phases;
    const worst = r.layers.reduce((a, l) => (l.toDevice + l.fromDevice > a.toDevice + a.fromDevice ? l : a), r.layers[0]);
    const ratio = Math.max(...r.layers.map((l) => (l.toDevice + l.fromDevice) / (4 * l.shape[1] * (l.shape[0] + l.shape[1]))));
    const block = r.blocks.reduce((a, b) => (b.toDevice + b.fromDevice > a.toDevice + a.fromDevice ? b : a), { toDevice: 0, fromDevice: 0 });
    out.push(`| ${r.device} (${r.adapter ?? '?'}) | ${r.method} | ${[p.calibration, p.hessian, p.solve, p.loss, p.propagation, r.seconds].map((s) => s.toFixed(1)).join(' | ')} | ` +
      `${mib(worst.toDevice)} / ${mib(worst.fromDevice)} (${worst.layer}) | ${ratio.toFixed(1)} | ${mib(block.toDevice)} / ${mib(block.fromDevice)} | ${r.gpuMemoryMiB ?? '—'} | ${r.peakRssMiB.toFixed(0)} |`);
  }
  return out.join('\n');
}

async function main(): Promise<void> {
  const { values: flags } = parseArgs({ options: OPTIONS });
  if (flags.help) return void process.stdout.write(USAGE);
  const methods = (flags.methods ?? '').split(',');
  if (flags.child) {
    for (const method of methods) (process.send as (r: Result) => void)(await runOne(flags, flags.work as string, flags.child, method));
    await rowPool.close();
    return;
  }
  const devices = flags.devices ? flags.devices.split(',') : await gpuDevices();
  if (devices.length === 0) throw new Error('no GPU device can run here (cuda: its provider; webgpu: a hardware adapter); --devices webgpu runs a software one as a functional check');
  const work = mkdtempSync(path.join(os.tmpdir(), 'prunekit-bench-gpu-'));
  try {
    writeInputs(flags, work);
    const results: Result[] = [];
    for (const device of devices) results.push(...(await child(device, work)));
    process.stdout.write(`${new Date().toISOString()}, Node ${process.version}, ${os.cpus().length}× ${os.cpus()[0]?.model.trim() ?? '?'}; ` +
      `hidden ${flags.hidden}, intermediate ${flags.intermediate}, ${flags.blocks} block(s), calibration ${flags.nsamples} × ${flags.seqlen} tokens, sparsity ${flags.sparsity}\n\n${table(results)}\n`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  process.stderr.write(`bench/gpu: ${e.message}\n`);
  process.exitCode = 1;
});
