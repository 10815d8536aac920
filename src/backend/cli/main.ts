// `prunekit`: the pruning backend's command line. The extension spawns this same bundle with --json.

import './noTelemetry'; // first: before onnxruntime loads
import { mkdirSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { isMainThread } from 'node:worker_threads';
import { ConfigError, parseConfigText, resolveConfig } from '../../protocol/config';
import { Event, formatEvent, makeEvent } from '../../protocol/events';
import { configSizeProblem } from '../../protocol/limits';
import { expertGroup } from '../../protocol/pruning';
import { mulberry32 } from '../random';
import { openCheckpoint } from '../formats/checkpoint';
import { removeTemporaries } from '../formats/atomicFolder';
import { cancelOnRequest } from './cancelOnRequest';
import { CheckpointError } from '../formats/onnxCheckpoint';
import { buildLlamaModel, randomLlamaWeights } from '../models/llama';
import { encodeModel } from '../onnx/proto';
import { discoverLayers } from '../pipeline/layers';
import { RunCancelledError, RunError, runPrune } from '../pipeline/run';
import { failureEvent, readUserFile } from './failures';
import { inputSpecs } from '../models/inputs';
import { sweepCommand } from '../sweep/command';
import { fileCalibrationStore, fileDenseStore } from '../sweep/shared';

const USAGE = `usage: prunekit <command> [options]

commands:
  prune <checkpoint>   prune a checkpoint: ONNX (a .onnx file or a folder holding model.onnx) or a Hugging Face
                       folder (config.json + safetensors; llama, mistral, qwen2, opt, mamba), written back in its own format
  inspect <checkpoint> list its blocks, prunable layers (with shapes) and model inputs
  demo                 generate a small random Llama-shaped ONNX model and prune it with APT (takes the prune options)
  sweep <config>       run every point of the config's "sweep" (methods × sparsities × …), each into its own folder

sweep options:
  --executor E         local (one point after another, here; a re-run skips finished points) | slurm (one sbatch --array job)
  --dry-run            print the points (and the Slurm batch script) without running anything
  --detach             slurm: submit and return (a later prunekit sweep --cancel, or the extension, follows it)
  --cancel             slurm: scancel the sweep's job array and wait for its tasks to end

prune options (flags override the config file):
  --config FILE        a *.prune.json config
  --method M           apt | sparsegpt | wanda | magnitude (default apt)
  --sparsity S         unstructured sparsity (default 0.5)
  --pattern P          unstructured | N:M, e.g. 2:4
  --calibration FILE   calibration text (.txt, .jsonl) or token ids (.json)
  --nsamples N         calibration windows (default 128)
  --seqlen N           tokens per window (default min(2048, model max positions))
  --seed N             window sampling seed (default 0)
  --skip-tokens N      tokens at the start of the calibration data never drawn from
  --eval FILE          also measure dense and pruned perplexity on this text
  --eval-seqlen N      evaluation window (default: the calibration seqlen)
  --max-windows N      evaluate at most N windows
  --out DIR            output folder (default beside the input)
  --variant V          in a repository folder (onnx/model.onnx, onnx/model_fp16.onnx, …): the float variant to prune
  --overwrite          replace an existing output folder
  --no-token-cache     tokenize the texts again and keep no ids (default: ids cached in .prunekit-cache/ beside each text)
  --sweep DIR          (set by a sweep's batch script) reuse what the sweep in DIR shares: its dense perplexity and
                       the first block's calibration sums
  --json               NDJSON events on stdout (logs on stderr)
common options:
  --debug              add the stack trace to error messages (for a bug report)
  --device auto|cpu|cuda[:N]|webgpu   where onnxruntime runs the graphs (default auto)
  --threads N          onnxruntime intra-op threads (default: one per core)
  -h, --help           this text
`;

const OPTIONS = {
  config: { type: 'string' },
  method: { type: 'string' },
  sparsity: { type: 'string' },
  pattern: { type: 'string' },
  calibration: { type: 'string' },
  nsamples: { type: 'string' },
  seqlen: { type: 'string' },
  seed: { type: 'string' },
  'skip-tokens': { type: 'string' },
  eval: { type: 'string' },
  'eval-seqlen': { type: 'string' },
  'max-windows': { type: 'string' },
  out: { type: 'string' },
  variant: { type: 'string' },
  overwrite: { type: 'boolean' },
  'no-token-cache': { type: 'boolean' },
  json: { type: 'boolean' },
  debug: { type: 'boolean' },
  device: { type: 'string' },
  threads: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  sweep: { type: 'string' },
  executor: { type: 'string' },
  'dry-run': { type: 'boolean' },
  detach: { type: 'boolean' },
  cancel: { type: 'boolean' },
} as const;

type Flags = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
const abs = (p: string | undefined) => (p === undefined ? undefined : path.resolve(p));

/** The text of a config file, refused by size before it is read (a bomb never reaches the parser). */
function readConfigFile(file: string): string {
  const tooBig = configSizeProblem(statSync(file).size);
  if (tooBig) throw new ConfigError([{ ...tooBig, message: `${file}: ${tooBig.message}` }], 'limit-exceeded');
  return readUserFile(file);
}

/** The config: the file's (paths relative to it), then the flags on top (made absolute against the cwd, so they
 *  mix with the file's). resolveConfig resolves the file's paths against its folder, on any platform's paths
 *  (drive letters, UNC, either slash). */
function buildConfig(checkpoint: string | undefined, f: Flags) {
  let raw: Record<string, unknown> = {};
  let baseDir = process.cwd();
  if (f.config) {
    raw = parseConfigText(readConfigFile(path.resolve(f.config))) as Record<string, unknown>;
    baseDir = path.dirname(path.resolve(f.config));
    if (raw.sweep !== undefined) throw new ConfigError([{ path: '$.sweep', message: `${f.config} is a sweep: run it with prunekit sweep ${f.config}` }]);
  }
  const set = (obj: Record<string, unknown>, key: string, v: unknown) => {
    if (v !== undefined) obj[key] = v;
  };
  if (checkpoint) raw.checkpoint = path.resolve(checkpoint);
  set(raw, 'method', f.method);
  set(raw, 'sparsity', num(f.sparsity));
  set(raw, 'pattern', f.pattern);
  set(raw, 'output', abs(f.out));
  set(raw, 'variant', f.variant);
  set(raw, 'overwrite', f.overwrite);
  if (f['no-token-cache']) raw.tokenCache = false;
  set(raw, 'device', f.device);
  set(raw, 'threads', num(f.threads));
  if (f.calibration || f.nsamples || f.seqlen || f.seed || f['skip-tokens']) {
    const c = { ...((raw.calibration as Record<string, unknown> | undefined) ?? {}) };
    set(c, 'path', abs(f.calibration));
    set(c, 'nsamples', num(f.nsamples));
    set(c, 'seqlen', num(f.seqlen));
    set(c, 'seed', num(f.seed));
    set(c, 'skipTokens', num(f['skip-tokens']));
    raw.calibration = c;
  }
  if (f.eval || f['eval-seqlen'] || f['max-windows']) {
    const e = { ...((raw.evaluation as Record<string, unknown> | false | undefined) || {}) };
    set(e, 'path', abs(f.eval));
    set(e, 'seqlen', num(f['eval-seqlen']));
    set(e, 'maxWindows', num(f['max-windows']));
    raw.evaluation = e;
  }
  return resolveConfig(raw, baseDir);
}

/** Human-readable progress: one line per pruned layer with an ETA, and the summary. */
function textPrinter(): (e: Event) => void {
  let total = 0;
  let done = 0;
  let started = 0;
  const out = (s: string) => process.stdout.write(s + '\n');
  const fmt = (x: number | null) => (x === null ? '—' : x.toExponential(3));
  return (e) => {
    switch (e.type) {
      case 'run.started':
        total = e.layers.filter((l) => l.target).length;
        started = performance.now();
        out(`model ${e.model.file} (${e.blocks.length} blocks, ${e.layers.length} prunable layers) on ${e.device}`);
        break;
      case 'data.loaded':
        out(`${e.role}: ${e.windows} windows of ${e.seqlen} tokens from ${e.file}${e.source === 'cache' ? ` (token ids from ${e.cacheFile})` : ''}`);
        break;
      case 'evaluation.finished':
        out(`${e.model} perplexity ${e.perplexity.toFixed(4)} (${e.windows} windows of ${e.seqlen})`);
        break;
      case 'layer.pruned': {
        done++;
        const elapsed = (performance.now() - started) / 1000;
        const eta = done < total ? ` ETA ${Math.round((elapsed / done) * (total - done))}s` : '';
        out(`[${String(done).padStart(String(total).length)}/${total}] ${e.layer.padEnd(28)} ${`${e.shape[0]}x${e.shape[1]}`.padEnd(11)} ${e.method} ${e.pattern} loss ${fmt(e.loss)} rel ${fmt(e.relLoss)} sparsity ${e.sparsity.toFixed(3)} ${e.seconds.toFixed(2)}s${eta}`);
        break;
      }
      case 'warning.raised':
        process.stderr.write(`warning: ${e.message}\n`);
        break;
      case 'run.finished':
        out(`done in ${e.totals.seconds.toFixed(1)} s: ${e.totals.layers} layers, sparsity ${e.totals.sparsity.toFixed(3)}, summed loss ${fmt(e.totals.loss)}` +
          (e.totals.prunedPerplexity !== null ? `, perplexity ${e.totals.densePerplexity?.toFixed(4)} → ${e.totals.prunedPerplexity.toFixed(4)}` : '') + `\noutput: ${e.output}`);
        break;
      case 'run.failed':
        process.stderr.write(`prunekit: ${e.message}${e.hint ? `\n  ${e.hint}` : ''}\n`);
        break;
      case 'run.cancelled':
        process.stderr.write(`prunekit: cancelled${e.lastLayer ? ` after ${e.lastLayer}` : ''}; no output was written\n`);
        break;
      default:
    }
  };
}

/** Where events go: NDJSON on stdout (--json), or lines for a person. */
function emitter(json: boolean | undefined): (e: Event) => void {
  return json ? (e: Event) => process.stdout.write(formatEvent(e) + '\n') : textPrinter();
}

async function prune(checkpoint: string | undefined, f: Flags): Promise<number> {
  const emit = emitter(f.json);
  const controller = new AbortController();
  let signal: 'SIGINT' | 'SIGTERM' | null = null;
  let output: string | undefined;
  const onSignal = (s: 'SIGINT' | 'SIGTERM') => {
    if (signal) {
      // A second signal: stop now, but still leave no half-written output behind (the writer's temporary
      // folder and the run's spill file beside it; a previous output is never touched before the final rename).
      if (output) removeTemporaries(output);
      process.exit(130);
    }
    signal = s;
    controller.abort();
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  // The extension's cancel (every platform; Windows has no SIGTERM): a line on stdin, read when it is a pipe.
  const stopWatching = f.json && !process.stdin.isTTY ? cancelOnRequest(process.stdin, () => controller.abort()) : () => {};
  const t0 = performance.now();
  let model = checkpoint;
  try {
    const config = buildConfig(checkpoint, f);
    output = config.output;
    model = config.checkpoint;
    const sweep = f.sweep ? path.resolve(f.sweep) : null;
    await runPrune(config, { emit, signal: controller.signal, ...(sweep ? { denseStore: fileDenseStore(sweep), calibrationStore: fileCalibrationStore(sweep) } : {}) });
    return 0;
  } catch (e) {
    if (e instanceof RunCancelledError || (e instanceof CheckpointError && e.code === 'cancelled') || controller.signal.aborted) {
      emit(makeEvent('run.cancelled', { signal, lastLayer: e instanceof RunCancelledError ? e.lastLayer : null, seconds: (performance.now() - t0) / 1000 }));
      return 130;
    }
    emit(failureEvent(e, { checkpoint: model, debug: f.debug }));
    return 1;
  } finally {
    stopWatching();
  }
}

/** `prunekit sweep <config>`: SIGINT/SIGTERM (or a `cancel` line under --json) stop a local sweep's running point. */
async function sweep(configFile: string, f: Flags): Promise<number> {
  const file = path.resolve(configFile);
  const raw = parseConfigText(readConfigFile(file)) as Record<string, unknown>;
  if (f.device !== undefined) raw.device = f.device;
  if (f.threads !== undefined) raw.threads = num(f.threads);
  const controller = new AbortController();
  const stop = () => (controller.signal.aborted ? process.exit(130) : controller.abort());
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const stopWatching = f.json && !process.stdin.isTTY ? cancelOnRequest(process.stdin, () => controller.abort()) : () => {};
  try {
    return await sweepCommand(file, raw, { executor: f.executor, dryRun: f['dry-run'], detach: f.detach, cancel: f.cancel, json: f.json, signal: controller.signal });
  } finally {
    stopWatching();
  }
}

async function inspect(checkpoint: string, f: Flags): Promise<number> {
  const ckpt = openCheckpoint(checkpoint, { variant: f.variant });
  const d = discoverLayers(ckpt.model);
  const inputs = inputSpecs(ckpt.model.graph.input, new Set(ckpt.model.graph.initializer.map((t) => t.name)));
  const info = {
    model: ckpt.path,
    format: ckpt.format,
    tokenizer: ckpt.tokenizerPath ?? null,
    inputs: inputs.map((i) => ({ name: i.name, dims: i.dims })),
    blockPattern: d.pattern,
    blocks: d.blocks.map((b) => ({ index: b.index, name: b.name, layers: b.layers })),
    layers: d.layers.map((l) => ({ name: l.name, node: l.node, block: l.block, op: l.op, weight: l.weight, shape: [l.rows, l.cols] })),
    // keptDenseBy: the keepDense flag that makes the layer prunable when false (an opt-in layer: the LM head, a
    // depthwise conv); absent for layers that cannot be pruned.
    skipped: d.skipped.map((l) => ({
      name: l.name, node: l.node, block: l.block, op: l.op, weight: l.weight, shape: [l.rows, l.cols], reason: l.reason,
      ...(l.keptDenseBy ? { keptDenseBy: l.keptDenseBy } : {}),
    })),
    notes: d.notes,
    quantized: d.quantized,
    warnings: d.warnings,
  };
  if (f.json) {
    process.stdout.write(JSON.stringify(info) + '\n');
    return 0;
  }
  console.log(`model: ${info.model}\ntokenizer: ${info.tokenizer ?? '(none found)'}\ninputs: ${info.inputs.map((i) => `${i.name}[${i.dims.join(',')}]`).join(', ')}`);
  const byName = new Map(d.layers.map((l) => [l.name, l]));
  for (const b of d.blocks) {
    console.log(`block ${b.name}`);
    // An MoE block's experts: one line per projection (`experts.*.up_proj  64 experts × 1408x2048`).
    const counts = new Map<string, number>();
    for (const name of b.layers) {
      const g = expertGroup(name)?.group;
      if (g) counts.set(g, (counts.get(g) ?? 0) + 1);
    }
    const shown = new Set<string>();
    for (const name of b.layers) {
      const l = byName.get(name);
      const g = expertGroup(name)?.group;
      if (!l || (g && shown.has(g))) continue;
      if (g) shown.add(g);
      console.log(`  ${(g ?? l.name).padEnd(32)} ${g ? `${counts.get(g)} experts × ` : ''}${l.rows}x${l.cols}`);
    }
  }
  for (const s of info.skipped) console.log(`left dense: ${s.name} ${s.shape.join('x')} ${s.op} (${s.reason})${s.keptDenseBy ? ` [opt-in: keepDense.${s.keptDenseBy} false prunes it]` : ''}`);
  for (const n of d.notes) console.log(`note: ${n}`);
  for (const w of d.warnings) console.log(`warning: ${w}`);
  return 0;
}

/**
 * The demo: a small Llama-shaped ONNX model with random weights (4 blocks, hidden 256, SwiGLU 688, vocab
 * 512) and random calibration tokens, written to a temporary folder and pruned with APT, with the same
 * events and progress view as a real run.
 */
async function demo(f: Flags): Promise<number> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'prunekit-demo-'));
  const config = {
    hidden_size: 256, intermediate_size: 688, num_hidden_layers: 4, num_attention_heads: 8, num_key_value_heads: 4,
    vocab_size: 512, max_position_embeddings: 512, rms_norm_eps: 1e-5, tie_word_embeddings: false,
  };
  const model = buildLlamaModel(config, randomLlamaWeights(config, 0));
  const modelDir = path.join(dir, 'demo-llama');
  mkdirSync(modelDir);
  writeFileSync(path.join(modelDir, 'model.onnx'), encodeModel(model));
  writeFileSync(path.join(modelDir, 'config.json'), JSON.stringify({ model_type: 'llama', ...config }, null, 2));
  const rand = mulberry32(1);
  writeFileSync(path.join(dir, 'calibration-ids.json'), JSON.stringify(Array.from({ length: 16384 }, () => Math.floor(rand() * config.vocab_size))));
  process.stdout.write(`demo model and random calibration tokens in ${dir}\n`);
  return prune(modelDir, {
    ...f, method: f.method ?? 'apt', calibration: path.join(dir, 'calibration-ids.json'), nsamples: f.nsamples ?? '32', seqlen: f.seqlen ?? '128',
    out: f.out ?? path.join(dir, 'demo-llama-pruned'),
  });
}

async function main(argv: string[]): Promise<number> {
  // Failures before a run starts (arguments, inspect) are reported as run.failed too, so --json readers see them.
  // Under --json the line goes to stderr too: callers of `inspect --json` (the extension's inspect cache) read it there.
  const fail = (e: unknown, exitCode: number): number => {
    const event = failureEvent(e, { debug: argv.includes('--debug') });
    if (argv.includes('--json')) process.stderr.write(`prunekit: ${event.message}\n`);
    emitter(argv.includes('--json'))(event);
    return exitCode;
  };
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: OPTIONS });
  } catch (e) {
    return fail(new RunError('bad-argument', `${(e as Error).message} (prunekit --help lists the options)`), 2);
  }
  const { values, positionals } = parsed;
  const command = positionals[0];
  if (values.help || !command) {
    process.stdout.write(USAGE);
    return command || values.help ? 0 : 2;
  }
  try {
    switch (command) {
      case 'prune':
        return await prune(positionals[1], values);
      case 'inspect':
        if (!positionals[1]) return fail(new RunError('bad-argument', 'inspect: which checkpoint? (prunekit inspect <model.onnx or folder>)'), 2);
        return await inspect(positionals[1], values);
      case 'demo':
        return await demo(values);
      case 'sweep':
        if (!positionals[1]) return fail(new RunError('bad-argument', 'sweep: which config? (prunekit sweep <x.prune.json>)'), 2);
        return await sweep(positionals[1], values);
      default:
        return fail(new RunError('bad-argument', `unknown command '${command}': use prune, inspect, sweep or demo (prunekit --help)`), 2);
    }
  } catch (e) {
    return fail(e, 1);
  }
}

if (require.main === module && isMainThread) { // a worker thread of the bundle (parallelEncode.ts) runs no CLI
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: Error) => {
      // Under --json a failure outside a run (inspect) is a run.failed event too, as the extension reads them.
      if (process.argv.includes('--json')) process.stdout.write(formatEvent(failureEvent(e)) + '\n');
      process.stderr.write(`prunekit: ${e.message}\n`);
      process.exit(1);
    },
  );
}
