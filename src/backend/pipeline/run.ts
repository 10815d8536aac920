// The pruning run: SparseGPT's sequential protocol over any ONNX decoder, one general driver.
//
//   cheap checks first (preflight.ts: the output, data paths; dead runs' temporaries removed)
//   → open checkpoint (ONNX, or a Hugging Face folder built into an ONNX graph: formats/checkpoint.ts) → discover layers and blocks → cut the graph into segments → dense perplexity
//   → run the prefix once over the calibration windows (cached by tensor name)
//   → per block: calibration variant with the dense weights (XᵀX, Σx² inside onnxruntime) → prune each layer
//     → run the block again with the pruned weights (fed as inputs) to produce the next block's inputs
//     → each pruned weight is spilled (in its stored type) to a scratch file beside the output and let go, so
//       memory holds one block's weights and the cached activations, not the whole model
//   → write the new checkpoint in the input's format (temporary folder; the pruned perplexity, report and event
//     log are written into it before it is renamed into place).
//
// Everything the user sees travels as protocol events through `emit`. `prune` below is this list, one function per phase.

import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { version as PRUNEKIT_VERSION } from '../../../package.json';
import { Event, EventBody, EventOf, EventType, formatEvent, LayerInfo, makeEvent, RunTotals, Transfer, WarningCode } from '../../protocol/events';
import { layerSelector, ResolvedConfig, unmatchedLayerPatterns } from '../../protocol/config';
import { formatPattern } from '../../protocol/pruning';
import { cachedTokens, TokenSource } from '../data/tokenCache';
import { calibrationWindows, evaluationWindows, TextTokenizer } from '../data/tokens';
import { perplexity } from '../eval/perplexity';
import { spillFileOf } from '../formats/atomicFolder';
import { readJson } from '../formats/hfCheckpoint';
import { fittingMicroBatch, runMemoryProblem, type RunSizes, runSizes } from './budget';
import { float32ToHalfBytes, roundedBytes } from '../formats/dtype';
import { Checkpoint, openCheckpoint, TensorSource } from '../formats/checkpoint';
import { SpillFile } from '../formats/tensorSource';
import { type LayerProblem, pruneLayer } from '../methods';
import { pruneDepthwise } from '../methods/depthwise';
import { outlierRatio, owlOffsets } from '../methods/owl';
import { causalLmFeeds, InputSpec, inputSpecs, positionLimit, vocabularySize } from '../models/inputs';
import { transpose, transposeBits } from '../models/emitter';
import { DataType, TensorProto } from '../onnx/proto';
import { Kernels } from '../linalg/kernels';
import { Engine, KernelOptions, ModelSource, transferSince } from '../onnx/session';
import { RunCancelledError, RunError } from './errors';
import { checkDataPaths, checkOutput, removeDeadTemporaries, tokenizerFor } from './preflight';
import { inferTypesWithOrt } from './types';
import { Discovery, discoverLayers, PrunableLayer } from './layers';
import { describeQuantized, quantizedRefusal } from './quantized';
import { dropped } from '../fullCollection';
import { CalibrationSums, calibrationGroups, calibrationKey, calibrationModel, downloadSums, emptySums, lastUse, planSegments, runCalibration, SavedSums, Segment, SegmentPlan, segmentModel } from './segments';

export { RunCancelledError, RunError } from './errors';

export interface RunHooks {
  emit(event: Event): void;
  /** Aborted by SIGINT/SIGTERM: the run stops at the next layer or batch boundary. */
  signal?: AbortSignal;
  /** Windows per onnxruntime run during calibration and evaluation (bounds activation memory); by default 8, or
   *  fewer where the free memory asks for it (fitMicroBatch). */
  microBatch?: number;
  /** Dense perplexities measured before, by what they depend on (a sweep's points share one: sweep/shared.ts). */
  denseStore?: DenseStore;
  /** The first block's dense calibration sums computed before, by what they depend on (a sweep's points share them). */
  calibrationStore?: CalibrationStore;
}

/** The dense model's evaluation.finished, kept by a key naming the model, the data and the windows. */
export interface DenseStore {
  get(key: string): EventBody<'evaluation.finished'> | undefined;
  put(key: string, evaluation: EventBody<'evaluation.finished'>): void;
}

/** A dense calibration pass's unscaled sums per statistic key, kept by a key naming everything that determines them. */
export interface CalibrationStore {
  /** undefined when none is kept; `warn` hears of a kept one that is not trusted (corrupt, another key): computed again. */
  get(key: string, warn: (message: string, file: string) => void): Map<string, SavedSums> | undefined;
  /** `warn` hears of sums that could not be kept (the run goes on). */
  put(key: string, sums: Map<string, SavedSums>, warn: (message: string, file: string) => void): void;
}

/** The weight as the methods take it, (rows, cols) row-major: `stored` itself, or its transpose, into `spare` when that
 *  is free and of the right size (a fresh array of 10⁸ bytes costs more in page faults than the transpose itself);
 *  `finite` when the transpose found every value finite (the method's check then reads W no more). */
function toRowMajor(stored: Float32Array, l: PrunableLayer, spare?: Float32Array): { W: Float32Array; finite?: boolean } {
  if (l.layout === 'out_in') return { W: stored };
  const W = spare?.length === stored.length ? spare : new Float32Array(stored.length);
  return { W, finite: transposeBits(stored, l.cols, l.rows, W) };
}

function weightTensor(stored: Float32Array, l: PrunableLayer): ort.Tensor {
  if (l.dataType === DataType.FLOAT16) {
    const bytes = float32ToHalfBytes(stored);
    return new ort.Tensor('float16', new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2), l.weightDims);
  }
  return new ort.Tensor('float32', stored as Float32Array<ArrayBuffer>, l.weightDims);
}

function peakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

export async function runPrune(config: ResolvedConfig, hooks: RunHooks): Promise<EventOf<'run.finished'>> {
  // Pruned weights wait for the writer in a scratch file beside the output (not in /tmp: that may be RAM), removed
  // however the run ends (the CLI removes it on a hard exit too).
  const spill = new SpillFile(spillFileOf(config.output));
  try {
    return await prune(config, hooks, spill);
  } finally {
    await spill.flushed().catch(() => undefined); // no write left in flight on the descriptor remove closes
    spill.remove();
  }
}

/** The protocol, phase by phase. */
async function prune(config: ResolvedConfig, hooks: RunHooks, spill: SpillFile): Promise<EventOf<'run.finished'>> {
  const run = new RunLog(hooks);
  reportRemoved(run, removeDeadTemporaries(config.output)); // first: a restored previous output is an existing one
  checkOutput(config);
  checkDataPaths(config);
  const model = await openModel(config);
  const data = prepareData(config, model, run);
  announce(config, model, data, run);
  const densePpl = data.evaluation ? await evaluateDense(config, model, run, data.evaluation) : null;
  const allocated = config.allocation === 'owl' ? await owlAllocation(config, model, data, run) : model;
  const sums = await pruneSequentially(config, allocated, data, run, spill);
  return writeOutput(config, model, data, run, { ...sums, densePpl });
}

// ---------------------------------------------------------------------------------------------------------------
// Events and cancellation

/** The run's event log (written into the output) and its cancel checks. */
class RunLog {
  readonly t0 = performance.now();
  readonly events: Event[] = [];
  /** The last layer pruned (run.cancelled names it). */
  lastLayer: string | null = null;

  /** Calibration windows per onnxruntime run: hooks.microBatch, else DEFAULT_MICRO_BATCH or fewer (fitMicroBatch). */
  micro: number;

  constructor(readonly hooks: RunHooks) {
    this.micro = hooks.microBatch ?? DEFAULT_MICRO_BATCH;
  }

  emit<T extends EventType>(type: T, body: EventBody<T>): EventOf<T> {
    const e = makeEvent(type, body);
    this.events.push(e);
    this.hooks.emit(e);
    return e;
  }

  warn(code: WarningCode, message: string, where: { layer?: string; file?: string } = {}): void {
    this.emit('warning.raised', { code, message, ...where });
  }

  /** Stops the run at a layer or batch boundary once SIGINT/SIGTERM arrived. */
  readonly checkpoint = (): void => {
    if (this.hooks.signal?.aborted) throw new RunCancelledError(this.lastLayer);
  };
}

function reportRemoved(run: RunLog, removed: string[]): void {
  if (removed.length === 0) return;
  run.warn('leftovers-removed', `cleaned up what ${removed.length === 1 ? 'a killed run' : 'killed runs'} left beside the output: ${removed.join(', ')}`, { file: removed[0].replace(/ \(.*$/, '') });
}

// ---------------------------------------------------------------------------------------------------------------
// Model: checkpoint, layers, blocks, segments

interface OpenModel {
  ckpt: Checkpoint;
  /** Loaded when some data file is text. */
  tokenizer: TextTokenizer | undefined;
  engine: Engine;
  discovery: Discovery;
  select: ReturnType<typeof layerSelector>;
  plan: SegmentPlan;
  specs: InputSpec[];
  /** Sessions are built from bytes: inlines any external initializer a segment keeps (norms, embedding). */
  mapInitializer(t: TensorProto): TensorProto;
}

async function openModel(config: ResolvedConfig): Promise<OpenModel> {
  const ckpt = openCheckpoint(config.checkpoint, { variant: config.variant ?? undefined });
  const tokenizer = tokenizerFor(config); // cheap, so before the graph work below
  const engine = new Engine({ device: config.device, threads: config.threads });
  const discovery = discoverBlocks(config, ckpt);
  const quantized = quantizedRefusal(discovery.quantized, discovery.layers.length);
  if (quantized) throw new RunError('checkpoint-invalid', `${ckpt.path}: ${quantized}`, { file: ckpt.path });
  if (discovery.layers.length === 0) throw new RunError('checkpoint-invalid', `${ckpt.path}: no prunable linear layers (MatMul/Gemm with a 2-D weight initializer) found`, { file: ckpt.path });
  const unmatched = unmatchedLayerPatterns(config, discovery.layers.map((l) => l.name), discovery.skipped);
  if (unmatched.length > 0) {
    throw new RunError('layers-unmatched', unmatched.map((p) => `${p.path}: ${p.message}`).join("; "), { jsonPath: unmatched[0].path }, `layer names look like ${discovery.layers[0].name}; run 'prunekit inspect' to list them`);
  }
  await checkGraphLoads(ckpt);
  const plan = await planSegments(ckpt.model, discovery);
  const initNames = new Set(ckpt.model.graph.initializer.map((t) => t.name));
  const mapInitializer = (t: TensorProto): TensorProto => (t.dataLocation === 1 ? { ...t, rawData: ckpt.tensorData(t.name), dataLocation: 0, externalData: [] } : t);
  // The first kernel resolves the device (before any data is tokenized); the propagate pass finds it in the engine's cache.
  await engine.kernel(segmentModel(plan, plan.segments[0], { mapInitializer }).model);
  return { ckpt, tokenizer, engine, discovery, plan, mapInitializer, select: layerSelector(config), specs: inputSpecs(ckpt.model.graph.input, initNames) };
}

/** onnxruntime loads the graph without its weights (cheap): an operator it does not know is the checkpoint's error, found now. */
async function checkGraphLoads(ckpt: Checkpoint): Promise<void> {
  try {
    await inferTypesWithOrt(ckpt.model, ckpt.model.graph.output.map((o) => o.name));
  } catch (e) {
    const why = String((e as Error).message ?? e).split('\n')[0].slice(0, 400);
    throw new RunError('checkpoint-invalid', `${ckpt.path}: onnxruntime cannot load the graph: ${why}`, { file: ckpt.path }, 'export the model with standard ONNX operators');
  }
}

/** discoverLayers with the config's options; a blockPattern it cannot use is the config's error, at its JSON path. */
function discoverBlocks(config: ResolvedConfig, ckpt: Checkpoint): Discovery {
  try {
    return discoverLayers(ckpt.model, {
      blockPattern: config.blockPattern ?? undefined, includeLmHead: !config.keepDense.lmHead, includeDepthwiseConv: !config.keepDense.depthwiseConv,
    });
  } catch (e) {
    if (!config.blockPattern || !/^blockPattern /.test((e as Error).message)) throw e;
    const code = /matches none/.test((e as Error).message) ? 'layers-unmatched' : 'config-invalid';
    throw new RunError(code, (e as Error).message, { jsonPath: '$.blockPattern' }, "run 'prunekit inspect' to see the node names");
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Data: calibration windows (in micro-batches) and evaluation windows

/** Calibration windows per onnxruntime run unless the free memory asks for fewer (fitMicroBatch). */
const DEFAULT_MICRO_BATCH = 8;

/** Fewer windows per onnxruntime run where the default's would not fit the free memory: the papers' 128 × 2048 on a
 *  7B model needs ~13.6 GB for eight windows' attention maps, ~9 GB in all with one (docs/BENCHMARKS.md). */
function fitMicroBatch(run: RunLog, layers: readonly PrunableLayer[], sizes: RunSizes): void {
  const m = fittingMicroBatch(layers, sizes);
  if (m === run.micro) return;
  run.warn('micro-batch-lowered', `${m} calibration window(s) per onnxruntime run instead of ${run.micro}, to fit the free memory: the forwards run slower`);
  run.micro = m;
}

interface RunData {
  /** Calibration windows in groups of `micro` (one onnxruntime run each); empty without calibration data. */
  batches: Int32Array[][];
  evaluation: Int32Array[] | null;
  evalSeqlen: number;
  /** The config with the sequence lengths the run uses (reported in run.started and the report). */
  resolved: ResolvedConfig;
}

function prepareData(config: ResolvedConfig, model: OpenModel, run: RunLog): RunData {
  const autoSeqlen = Math.min(2048, maxPositions(model.ckpt) ?? 2048);
  const heads = attentionHeads(model.ckpt);
  if (run.hooks.microBatch === undefined) fitMicroBatch(run, model.discovery.layers, runSizes(config, autoSeqlen, run.micro, heads));
  const tooBig = runMemoryProblem(config, model.discovery.layers, autoSeqlen, run.micro, heads);
  if (tooBig) throw new RunError('out-of-memory', tooBig);
  checkPositionLimit(config, model.ckpt);
  const tokensOf = tokenReader(config, model, run);
  let calib: { windows: Int32Array[]; seqlen: number } | null = null;
  if (config.calibration) {
    const c = config.calibration;
    const { ids, from, seconds } = tokensOf(c.path);
    const w = calibrationWindows(ids, c.nsamples, c.seqlen ?? autoSeqlen, c.seed, c.skipTokens, c.path);
    calib = w;
    run.emit('data.loaded', { role: 'calibration', file: c.path, tokens: Math.max(0, ids.length - c.skipTokens), windows: w.windows.length, seqlen: w.seqlen, ...from, seconds });
    for (const n of w.notes) run.warn('data-short', n, { file: c.path });
  }
  let evaluation: Int32Array[] | null = null;
  let evalSeqlen = 0;
  if (config.evaluation) {
    const e = config.evaluation;
    const { ids, from, seconds } = tokensOf(e.path);
    evalSeqlen = e.seqlen ?? calib?.seqlen ?? autoSeqlen;
    evaluation = evaluationWindows(ids, evalSeqlen, e.maxWindows ?? Infinity);
    if (evaluation.length === 0) throw new RunError('data-invalid', `${e.path}: ${ids.length} tokens, fewer than one window of ${evalSeqlen}`, { file: e.path });
    run.emit('data.loaded', { role: 'evaluation', file: e.path, tokens: ids.length, windows: evaluation.length, seqlen: evalSeqlen, ...from, seconds });
  }
  const batches: Int32Array[][] = [];
  if (calib) for (let i = 0; i < calib.windows.length; i += run.micro) batches.push(calib.windows.slice(i, i + run.micro));
  const resolved: ResolvedConfig = {
    ...config,
    calibration: config.calibration && calib ? { ...config.calibration, seqlen: calib.seqlen } : config.calibration,
    evaluation: config.evaluation ? { ...config.evaluation, seqlen: evalSeqlen } : false,
  };
  return { batches, evaluation, evalSeqlen, resolved };
}

/** Windows longer than a learned position table (GPT-2's wpe) cannot run: refused before any work. */
function checkPositionLimit(config: ResolvedConfig, ckpt: Checkpoint): void {
  const limit = positionLimit(ckpt.model);
  for (const role of ['calibration', 'evaluation'] as const) {
    const seqlen = config[role] ? config[role].seqlen : null;
    if (limit !== null && typeof seqlen === 'number' && seqlen > limit) {
      throw new RunError('data-invalid', `${role} windows of ${seqlen} tokens do not fit ${ckpt.path}: its learned position table has ${limit} rows`, { jsonPath: `$.${role}.seqlen` }, `set ${role}.seqlen to ${limit} or less`);
    }
  }
}

/** A data file's ids, where they came from, and the seconds they took (what data.loaded reports). */
type LoadedTokens = { ids: Int32Array; from: TokenSource; seconds: number };

/**
 * Token ids of a data file, read once per file (calibration and evaluation often share one), through the token
 * cache unless the config turns it off, and checked against the model's vocabulary.
 */
function tokenReader(config: ResolvedConfig, model: OpenModel, run: RunLog): (file: string) => LoadedTokens {
  const cache = new Map<string, LoadedTokens>();
  const vocab = vocabularySize(model.ckpt.model);
  return (file) => {
    let got = cache.get(file);
    if (!got) {
      const start = performance.now();
      const { ids, from } = cachedTokens(file, model.tokenizer, {
        enabled: config.tokenCache,
        warn: (m) => run.warn('data-encoding', m, { file }),
        cacheWarn: (m) => run.warn('token-cache', m, { file }),
      });
      if (vocab) checkVocabulary(ids, vocab, file);
      got = { ids, from, seconds: (performance.now() - start) / 1000 };
      cache.set(file, got);
    }
    return got;
  };
}

function checkVocabulary(ids: Int32Array, vocab: { size: number; embedding: string }, file: string): void {
  const i = ids.findIndex((id) => id >= vocab.size);
  if (i >= 0) {
    throw new RunError('token-out-of-range', `${file}: token id ${ids[i]} at position ${i} is beyond the model's vocabulary of ${vocab.size} (embedding ${vocab.embedding})`, { file },
      'use token ids (or a tokenizer.json) made for this model');
  }
}

function maxPositions(ckpt: Checkpoint): number | null {
  return configCount(ckpt, ['max_position_embeddings', 'n_positions']); // GPT-2 calls it n_positions
}

/** Query heads per attention block (config.json), for the memory estimate; null without attention (Mamba) or config. */
function attentionHeads(ckpt: Checkpoint): number | null {
  return configCount(ckpt, ['num_attention_heads', 'n_head']); // GPT-2 calls it n_head
}

/** The first of `keys` that config.json sets to a positive integer, or null. */
function configCount(ckpt: Checkpoint, keys: readonly string[]): number | null {
  if (!ckpt.configPath) return null;
  try {
    const c = readJson(ckpt.configPath, 'the model config') as Record<string, unknown>;
    const m = keys.map((k) => c[k]).find((v) => v !== undefined && v !== null);
    return Number.isSafeInteger(m) && (m as number) > 0 ? (m as number) : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// run.started

function announce(config: ResolvedConfig, model: OpenModel, data: RunData, run: RunLog): void {
  const { ckpt, engine, discovery } = model;
  const layers: LayerInfo[] = discovery.layers.map((l) => {
    const t = model.select(l.name);
    return {
      name: l.name, block: l.block, op: l.op, weight: l.weight, shape: [l.rows, l.cols],
      target: t ? { method: t.method, pattern: formatPattern(t.pattern), sparsity: t.sparsity } : null,
    };
  });
  run.emit('run.started', {
    model: {
      file: ckpt.path,
      dtype: discovery.layers.some((l) => l.dataType === DataType.FLOAT16) ? 'float16' : 'float32',
      parameters: parameterCount(ckpt), externalData: ckpt.hasExternalData, maxPositions: maxPositions(ckpt), inputs: model.specs.map((s) => s.name),
    },
    device: engine.device ?? config.device,
    deviceNotes: [...engine.fallbacks],
    adapter: engine.adapter,
    versions: { prunekit: PRUNEKIT_VERSION, 'onnxruntime-node': ort.env.versions.node ?? 'unknown', node: process.versions.node },
    blocks: discovery.blocks.map((b) => ({ index: b.index, name: b.name, layers: b.layers })),
    layers,
    config: data.resolved,
  });
  if (discovery.blockSource === 'per-layer') run.warn('blocks-fallback', discovery.notes.join(' ') || 'no block pattern fitted the node names: one block per layer');
  for (const w of discovery.warnings) run.warn('block-dense', w);
  if (discovery.quantized.length) run.warn('block-dense', `quantized linear layers outside the blocks stay as they are: ${describeQuantized(discovery.quantized)}`);
}

function parameterCount(ckpt: Checkpoint): number {
  let n = 0;
  for (const t of ckpt.model.graph.initializer) n += t.dims.reduce<number>((a, d) => a * Number(d), 1);
  return n;
}

// ---------------------------------------------------------------------------------------------------------------
// Perplexity: the dense model from the checkpoint, the pruned one from the temporary output

async function evaluate(model: OpenModel, run: RunLog, which: 'dense' | 'pruned', source: ModelSource, windows: Int32Array[]): Promise<number> {
  const s0 = performance.now();
  const session = await model.engine.modelSession(source);
  try {
    const r = await perplexity(session, model.specs, windows, {
      batch: run.micro, modelFile: typeof source === 'string' ? source : model.ckpt.path, checkpoint: run.checkpoint,
      onProgress: (done, total) => run.emit('evaluation.progressed', { model: which, done, total }),
    });
    const seqlen = windows[0].length;
    run.emit('evaluation.finished', { model: which, perplexity: r.ppl, seqlen, windows: r.windows, predictions: r.predictedTokens, seconds: (performance.now() - s0) / 1000 });
    return r.ppl;
  } finally {
    await session.release();
  }
}

/** The dense perplexity, from the hooks' store when an earlier run measured it on the same windows. */
async function evaluateDense(config: ResolvedConfig, model: OpenModel, run: RunLog, windows: Int32Array[]): Promise<number> {
  const store = run.hooks.denseStore;
  const key = JSON.stringify([config.checkpoint, config.variant, model.engine.device, (config.evaluation || null)?.path, windows.length, windows[0].length]);
  const known = store?.get(key);
  if (known) return run.emit('evaluation.finished', { ...known, seconds: 0 }).perplexity;
  const ppl = await evaluate(model, run, 'dense', model.ckpt.sessionSource(), windows);
  const { v: _v, type: _type, ...body } = run.events[run.events.length - 1] as EventOf<'evaluation.finished'>; // evaluate's last event
  store?.put(key, body);
  return ppl;
}

// ---------------------------------------------------------------------------------------------------------------
// Sequential calibration and pruning: per segment, calibrate → prune → propagate

/** What the pruning adds up for run.finished. */
interface PruneSums {
  layers: number;
  parameters: number;
  zeros: number;
  /** null without calibration data (no Hessian, no loss). */
  loss: number | null;
}

/** One segment's state: its weights as the next pass feeds them. */
interface SegmentWork {
  seg: Segment;
  /** Stored layout, dense until the layer is pruned; each read from the checkpoint when a pass first needs it
   *  (weightOf): the calibration pass does not read the block's last layer (a 7B down_proj: 180 MB). */
  current: Map<string, Float32Array>;
  load: (weight: string) => Float32Array;
  /** The weights of `current` that are pruned. */
  pruned: Set<string>;
  loss: number | null;
  layers: number;
}

/** Activations between segments, per tensor name and batch (the prefix's inputs first). */
type ActivationCache = Map<string, ort.Tensor[]>;

async function pruneSequentially(config: ResolvedConfig, model: OpenModel, data: RunData, run: RunLog, spill: SpillFile): Promise<PruneSums & { replacements: Map<string, TensorSource> }> {
  const { plan, select } = model;
  const replacements = new Map<string, TensorSource>(); // read back by the writer, one tensor at a time
  const sums: PruneSums = { layers: 0, parameters: 0, zeros: 0, loss: data.batches.length ? 0 : null };
  const cache = modelInputs(model, data.batches);
  // Segments after the last one with a layer to prune only matter for evaluation.
  const lastNeeded = Math.max(-1, ...plan.segments.filter((s) => s.layers.some((l) => select(l.name))).map((s) => s.index));
  const first = plan.segments.find((s) => s.layers.some((l) => select(l.name)));
  for (const seg of plan.segments) {
    if (seg.index > lastNeeded) break;
    run.checkpoint();
    const s0 = performance.now();
    const moved0 = { ...model.engine.moved };
    const work = segmentWork(model, seg, data.batches.length ? 0 : null);
    // A pass per group of Hessians (an MoE block's experts a few at a time), each pruned before the next is calibrated.
    for (const layers of calibrationGroups(seg.layers.filter((l) => select(l.name)))) {
      const stats = !data.batches.length ? new Map<string, CalibrationSums>()
        : seg === first ? await calibrateFirst(config, model, run, work, cache, data.batches, layers)
          : await calibrate(model, run, work, cache, data.batches, layers);
      await pruneSegmentLayers(config, model, run, work, layers, stats, spill, replacements, sums);
    }
    if (data.batches.length) await propagate(model, run, work, cache, data.batches);
    await spill.flushed(); // the block's pruned weights, written during its later solves, are on disk by block.finished
    for (const name of [...cache.keys()]) if (lastUse(plan, name) <= seg.index) cache.delete(name);
    if (seg.kind === 'block' && seg.block !== null) {
      run.emit('block.finished', { block: seg.block, name: seg.name, layers: work.layers, loss: work.loss, seconds: (performance.now() - s0) / 1000, peakRssBytes: peakRss(), transfer: transferSince(model.engine.moved, moved0) });
    }
  }
  cache.clear();
  return { ...sums, replacements };
}

function segmentWork(model: OpenModel, seg: Segment, loss: number | null): SegmentWork {
  return { seg, current: new Map(), load: (w) => model.ckpt.weightAsFloat32(w), pruned: new Set(), loss, layers: 0 };
}

/** The weight as the segment's next pass feeds it (read from the checkpoint the first time). */
function weightOf(work: SegmentWork, weight: string): Float32Array {
  let w = work.current.get(weight);
  if (!w) work.current.set(weight, (w = work.load(weight)));
  return w;
}

/** The model's own inputs (ids, mask, …) per calibration batch: what the prefix segment reads. */
function modelInputs(model: OpenModel, batches: Int32Array[][]): ActivationCache {
  const cache: ActivationCache = new Map();
  for (const [b, group] of batches.entries()) {
    for (const [name, t] of Object.entries(causalLmFeeds(model.specs, group, model.ckpt.path))) {
      if (!cache.has(name)) cache.set(name, []);
      (cache.get(name) as ort.Tensor[])[b] = t;
    }
  }
  return cache;
}

/** The segment's weights as onnxruntime feeds (all, or those named). */
function weightFeeds(work: SegmentWork, only?: Set<string>): Record<string, ort.Tensor> {
  const f: Record<string, ort.Tensor> = {};
  for (const l of work.seg.layers) if (!only || only.has(l.weight)) f[l.weight] = weightTensor(weightOf(work, l.weight), l);
  return f;
}

/** A segment graph's feeds for batch `b`: its inputs from the cache, and `weights`. */
function segmentFeeds(cache: ActivationCache, inputs: string[], weights: Record<string, ort.Tensor>, b: number): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = { ...weights };
  for (const name of inputs) {
    const t = cache.get(name)?.[b];
    if (!t) throw new RunError('internal', `segment input ${name} of batch ${b} is not available`);
    feeds[name] = t;
  }
  return feeds;
}

/** Hessians (XᵀX, Σx² inside onnxruntime) of `layers` from the dense segment on its (already pruned-upstream) inputs.
 *  With `outliers` (OWL's dense pass), the same run also produces the next segments' inputs. */
async function calibrate(model: OpenModel, run: RunLog, work: SegmentWork, cache: ActivationCache, batches: Int32Array[][], layers: PrunableLayer[], outliers = false): Promise<Map<string, CalibrationSums>> {
  const { seg } = work;
  const cg = calibrationModel(model.plan, seg, { mapInitializer: model.mapInitializer, layers, keepOutputs: outliers });
  // On a device that keeps outputs (WebGPU) the running sums stay there between batches (runCalibration), and the
  // activations kept for the next segments between passes.
  const kernel = await model.engine.kernel(cg.model, onDevice(model, [...cg.stats.map((s) => s.xtx), ...(outliers ? seg.outputs : [])]));
  const stats = emptySums(cg);
  // Dense weights throughout, also those an earlier pass of this segment has pruned (attention before the experts).
  const dense = weightFeeds(work, new Set(cg.weights));
  for (const l of seg.layers) if (dense[l.weight] && work.pruned.has(l.weight)) dense[l.weight] = weightTensor(model.ckpt.weightAsFloat32(l.weight), l);
  const weights = await weightsOnDevice(model, dense);
  for (let b = 0; b < batches.length; b++) {
    run.checkpoint();
    const out = await runCalibration(kernel, cg, segmentFeeds(cache, cg.inputs, weights, b), stats, batches[b].length);
    if (outliers) {
      keepActivations(cache, seg.outputs, out, b);
      dropLastRead(model.plan, seg, cache, cg.inputs, b);
    }
    run.emit('calibration.progressed', { phase: outliers ? 'outliers' : 'hessian', block: seg.block, done: b + 1, total: batches.length });
  }
  await downloadSums(stats, model.engine);
  releaseDevice(weights);
  await model.engine.forget(kernel); // each block's graphs run for that block only
  return stats;
}

/**
 * calibrate() for the first segment with layers to prune: its inputs are the dense model's, so its sums depend only on
 * the model, the windows and the pass, and the hooks' store keeps them for runs with the same (a sweep's points).
 */
async function calibrateFirst(config: ResolvedConfig, model: OpenModel, run: RunLog, work: SegmentWork, cache: ActivationCache, batches: Int32Array[][], layers: PrunableLayer[]): Promise<Map<string, CalibrationSums>> {
  const store = run.hooks.calibrationStore;
  if (!store) return calibrate(model, run, work, cache, batches, layers);
  const key = firstPassKey(config, model, work.seg, batches, layers);
  const warn = (message: string, file: string) => run.warn('sweep-shared', message, { file });
  const kept = store.get(key, warn);
  if (kept && layers.every((l) => kept.has(calibrationKey(l)))) return new Map([...kept].map(([k, s]) => [k, CalibrationSums.restore(s)]));
  const stats = await calibrate(model, run, work, cache, batches, layers);
  store.put(key, new Map([...stats].map(([k, s]) => [k, s.saved()])), warn);
  return stats;
}

/** What the first segment's dense sums depend on: the model and how it is cut, the device and threads (onnxruntime's
 *  summation order), the segment and the pass's layers, and the windows as they are grouped into batches. */
function firstPassKey(config: ResolvedConfig, model: OpenModel, seg: Segment, batches: Int32Array[][], layers: PrunableLayer[]): string {
  const windows = createHash('sha256');
  for (const group of batches) {
    windows.update(`${group.length}:`);
    for (const w of group) windows.update(`${w.length};`).update(new Uint8Array(w.buffer, w.byteOffset, w.byteLength));
  }
  return JSON.stringify([
    config.checkpoint, config.variant, model.engine.device, config.threads || availableParallelism(), config.blockPattern, config.keepDense,
    seg.index, seg.name, layers.map((l) => l.name), windows.digest('hex'),
  ]);
}

/** Prunes `selected` (layers of the segment) in order; each input's H is dropped after the last layer that reads it (q/k/v share one, gate/up another). */
async function pruneSegmentLayers(config: ResolvedConfig, model: OpenModel, run: RunLog, work: SegmentWork, selected: PrunableLayer[], stats: Map<string, CalibrationSums>, spill: SpillFile, replacements: Map<string, TensorSource>, sums: PruneSums): Promise<void> {
  const lastReader = new Map<string, string>();
  for (const l of selected) lastReader.set(calibrationKey(l), l.name);
  let spare: Float32Array | undefined; // the last transposed layer's dead row-major array, for the next one's
  for (const l of selected) {
    run.checkpoint();
    const key = calibrationKey(l);
    const s = stats.get(key);
    if (lastReader.get(key) === l.name) stats.delete(key);
    const method = methodFor(run, l, model.select(l.name) as LayerTarget, s);
    // A weight stored [in, out] is Wᵀ: kept while the method runs when the calibration pass had no output to give the
    // loss's reference (the block's last layer), as the sweep then reads it (LayerProblem.Wt) rather than transposing W.
    const Wt = l.layout === 'in_out' && s && s.reference(l.name) === undefined ? weightOf(work, l.weight) : undefined;
    const { W, finite } = toRowMajor(weightOf(work, l.weight), l, spare);
    spare = undefined;
    work.current.delete(l.weight); // W is the dense weight now: no second copy while the method runs (but Wt)
    const before = { ...model.engine.moved };
    const res = await pruneOne(config, model, l, { W, Wt, finiteW: finite }, s, method);
    const transfer = transferSince(model.engine.moved, before);
    // fp16/bf16 weights: pruned in fp32 (widened above), rounded to the stored type once, here, so the
    // propagate pass, the zero count and the written checkpoint all see the same values and pattern. A layer stored
    // [in, out] comes back in that layout from the sweep (res.transposed); from another method it is transposed
    // back into W, the dense row-major copy (dead once the method has returned a new array).
    const laid = l.layout === 'out_in' || res.transposed ? res.W : transpose(res.W, l.rows, l.cols, res.W !== W ? W : undefined);
    spare = res.transposed ? W : laid !== res.W ? res.W : undefined; // the row-major array now dead
    // Exact: `stored` holds values of l.dataType, and the checkpoint's storedType is that type or (a Hugging Face
    // fp16/bf16 weight the graph widens) the one the writer would round to anyway. They are written while the next
    // layer is pruned (the bytes may be a view of `stored`, which nothing changes: the propagate pass only reads it).
    const type = model.ckpt.storedType(l.weight);
    const { values: stored, bytes } = roundedBytes(l.dataType, type, laid, laid !== res.W || res.transposed ? laid : undefined);
    work.current.set(l.weight, stored);
    work.pruned.add(l.weight);
    replacements.set(l.weight, spill.addLater(type, stored.length, bytes));
    sums.zeros += Math.round(res.sparsity * res.W.length);
    sums.parameters += res.W.length;
    sums.layers++;
    work.layers++;
    if (work.loss !== null) work.loss += res.loss;
    if (sums.loss !== null) sums.loss += res.loss;
    run.lastLayer = l.name;
    reportLayer(run, l, model.select(l.name) as LayerTarget, { ...res, transfer }, method);
  }
}

type LayerTarget = NonNullable<ReturnType<OpenModel['select']>>;
type LayerResult = Awaited<ReturnType<typeof pruneLayer>>;

/**
 * The layer's method: the target's, except for an MoE expert routed fewer calibration tokens than it has inputs.
 * Its Hessian is rank-deficient (its compensation would be mostly the damping's), so it is pruned by magnitude
 * (the loss still measured on its H), and the run says so.
 */
function methodFor(run: RunLog, l: PrunableLayer, target: LayerTarget, s: CalibrationSums | undefined): LayerTarget['method'] {
  const routed = s?.routedTokens;
  if (routed === undefined || routed >= l.cols) return target.method;
  run.warn('expert-few-tokens', `${l.name}: ${routed} calibration tokens routed to it, fewer than its ${l.cols} inputs: pruned by magnitude`, { layer: l.name });
  return 'magnitude';
}

function pruneOne(config: ResolvedConfig, model: OpenModel, l: PrunableLayer, weights: Pick<LayerProblem, 'W' | 'Wt' | 'finiteW'>, s: CalibrationSums | undefined, method: LayerTarget['method']): Promise<LayerResult> | LayerResult {
  const { W } = weights;
  const target = model.select(l.name) as LayerTarget;
  const options = { pattern: target.pattern, blockSize: config.blockSize, dampening: config.dampening, nmMask: config.nmMask, magnitudeGroup: config.magnitudeGroup, refine: config.refine.iterations, transposedOutput: l.layout === 'in_out' };
  return l.kind === 'depthwiseConv'
    ? pruneDepthwise(target.method, { name: l.name, channels: l.rows, taps: l.cols, W, H: s?.hessian(), colNorm2: s?.colNorm2() }, options)
    : pruneLayer(method, { name: l.name, rows: l.rows, cols: l.cols, ...weights, H: s?.hessian(), finiteH: s?.hessianFinite, colNorm2: s?.colNorm2(), reference: s?.reference(l.name) }, options, model.engine);
}

function reportLayer(run: RunLog, l: PrunableLayer, target: LayerTarget, res: LayerResult & { transfer: Transfer }, method: LayerTarget['method']): void {
  for (const n of res.notes) {
    if (/not a multiple of M/.test(n)) run.warn('partial-group', n, { layer: l.name });
    else if (/dampening/.test(n)) run.warn('dampening-raised', n, { layer: l.name });
  }
  run.emit('layer.pruned', {
    block: l.block, layer: l.name, shape: [l.rows, l.cols], method, pattern: formatPattern(target.pattern),
    targetSparsity: target.sparsity, sparsity: res.sparsity,
    loss: Number.isFinite(res.loss) ? res.loss : null, relLoss: Number.isFinite(res.relLoss) ? res.relLoss : null,
    dampening: res.dampening ?? null, seconds: res.seconds, notes: res.notes, transfer: res.transfer, ...(res.refine ? { refine: res.refine } : {}),
  });
}

/** The segment with its current (pruned) weights produces the next segments' inputs. */
async function propagate(model: OpenModel, run: RunLog, work: SegmentWork, cache: ActivationCache, batches: Int32Array[][], phase?: 'outliers'): Promise<void> {
  const { seg } = work;
  const sg = segmentModel(model.plan, seg, { mapInitializer: model.mapInitializer });
  const kernel = await model.engine.kernel(sg.model, onDevice(model, sg.outputs));
  const weights = await weightsOnDevice(model, weightFeeds(work));
  for (let b = 0; b < batches.length; b++) {
    run.checkpoint();
    keepActivations(cache, sg.outputs, await kernel.run(segmentFeeds(cache, sg.inputs, weights, b)), b);
    dropLastRead(model.plan, seg, cache, sg.inputs, b);
    run.emit('calibration.progressed', { phase: phase ?? (seg.kind === 'prefix' ? 'prefix' : 'propagate'), block: seg.block, done: b + 1, total: batches.length });
  }
  releaseDevice(weights);
  await model.engine.forget(kernel);
}

/** Kernel options that leave `outputs` in the device's memory where the engine keeps outputs there (WebGPU): the
 *  activations the next segments read and the running Hessian sums then never cross to the host. */
function onDevice(model: OpenModel, outputs: string[]): KernelOptions {
  return model.engine.keepsOnDevice ? { deviceOutputs: outputs } : {};
}

/** A pass's weight feeds, sent to the device once for all its batches where the engine keeps outputs there (a host
 *  tensor fed to a run crosses again with every run). */
async function weightsOnDevice(model: OpenModel, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  if (!model.engine.keepsOnDevice) return feeds;
  const kernels = new Kernels(model.engine);
  const out: Record<string, ort.Tensor> = {};
  for (const [name, t] of Object.entries(feeds)) out[name] = await kernels.uploadTensor(t);
  return out;
}

function releaseDevice(feeds: Record<string, ort.Tensor>): void {
  for (const t of Object.values(feeds)) if (t.location !== 'cpu') t.dispose();
}

/** After the segment's last pass over batch `b`: drops that batch of the inputs no later segment reads, so a block's
 *  inputs and outputs are never both held whole (at 128 × 2048 tokens of a 7B model, 4.3 GB each). */
function dropLastRead(plan: SegmentPlan, seg: Segment, cache: ActivationCache, inputs: string[], b: number): void {
  for (const name of inputs) {
    const batches = cache.get(name);
    if (!batches?.[b] || lastUse(plan, name) > seg.index) continue;
    const t = batches[b];
    if (t.location === 'cpu') dropped((t.data as ArrayBufferView).byteLength);
    delete batches[b];
  }
}

function keepActivations(cache: ActivationCache, names: string[], out: Record<string, ort.Tensor>, b: number): void {
  for (const name of names) {
    if (!cache.has(name)) cache.set(name, []);
    (cache.get(name) as ort.Tensor[])[b] = out[name];
  }
}

// ---------------------------------------------------------------------------------------------------------------
// OWL allocation (methods/owl.ts): the published approach, a dense pass over the calibration data before pruning
// (each block's calibration variant once per micro-batch, also producing the next block's inputs: about one
// more calibration pass, no pruning), then each unstructured layer's target moved by its block's offset.

async function owlAllocation(config: ResolvedConfig, model: OpenModel, data: RunData, run: RunLog): Promise<OpenModel> {
  const t0 = performance.now();
  const owlLayers = (seg: Segment) => (seg.kind === 'block' && seg.block !== null
    ? seg.layers.filter((l) => l.kind === 'linear' && model.select(l.name)?.pattern.kind === 'unstructured') : []);
  const last = Math.max(-1, ...model.plan.segments.filter((s) => owlLayers(s).length > 0).map((s) => s.index));
  const cache = modelInputs(model, data.batches);
  const measured: { seg: Segment; layers: PrunableLayer[]; ratio: number; parameters: number }[] = [];
  for (const seg of model.plan.segments) {
    if (seg.index > last) break;
    run.checkpoint();
    const work = segmentWork(model, seg, null);
    const layers = owlLayers(seg);
    if (layers.length === 0) {
      await propagate(model, run, work, cache, data.batches, 'outliers');
    } else {
      const stats = await calibrate(model, run, work, cache, data.batches, layers, true);
      const scored = layers.map((l) => ({
        W: weightOf(work, l.weight), rows: l.rows, cols: l.cols, transposed: l.layout !== 'out_in',
        colNorm2: (stats.get(calibrationKey(l)) as CalibrationSums).colNorm2(),
      }));
      measured.push({ seg, layers, ratio: outlierRatio(scored, config.owl.outlierThreshold), parameters: layers.reduce((n, l) => n + l.rows * l.cols, 0) });
    }
    for (const name of [...cache.keys()]) if (lastUse(model.plan, name) <= seg.index) cache.delete(name);
  }
  cache.clear();
  const offsets = owlOffsets(measured.map((m) => m.ratio), measured.map((m) => m.parameters), config.owl.maxDeviation);
  const offsetOf = new Map(measured.flatMap((m, i) => m.layers.map((l) => [l.name, offsets[i]] as const)));
  const select = (name: string): LayerTarget | null => {
    const t = model.select(name);
    const delta = offsetOf.get(name);
    if (!t || t.pattern.kind !== 'unstructured' || delta === undefined) return t;
    return { ...t, pattern: { kind: 'unstructured', sparsity: t.sparsity + delta }, sparsity: t.sparsity + delta };
  };
  run.emit('allocation.computed', {
    rule: 'owl', outlierThreshold: config.owl.outlierThreshold, maxDeviation: config.owl.maxDeviation, seconds: (performance.now() - t0) / 1000,
    blocks: measured.map((m, i) => ({
      block: m.seg.block as number, name: m.seg.name, outlierRatio: m.ratio, offset: offsets[i], parameters: m.parameters,
      sparsity: m.layers.reduce((s, l) => s + (select(l.name) as LayerTarget).sparsity * l.rows * l.cols, 0) / m.parameters,
    })),
  });
  return { ...model, select };
}

// ---------------------------------------------------------------------------------------------------------------
// Output: written to a temporary folder; the pruned perplexity, report and log go in before the rename

async function writeOutput(config: ResolvedConfig, model: OpenModel, data: RunData, run: RunLog, sums: PruneSums & { replacements: Map<string, TensorSource>; densePpl: number | null }): Promise<EventOf<'run.finished'>> {
  const { ckpt, engine, discovery } = model;
  let finished: EventOf<'run.finished'> | undefined;
  await ckpt.write(config.output, sums.replacements, {
    overwrite: config.overwrite,
    signal: run.hooks.signal,
    beforeCommit: async (written) => {
      const prunedPpl = data.evaluation ? await evaluate(model, run, 'pruned', written.sessionSource(), data.evaluation) : null;
      const parameters = parameterCount(ckpt);
      const totals: RunTotals = {
        layers: sums.layers, blocks: discovery.blocks.length, parameters: sums.parameters, zeros: sums.zeros,
        sparsity: sums.parameters ? sums.zeros / sums.parameters : 0, modelSparsity: parameters ? sums.zeros / parameters : 0,
        loss: sums.loss, densePerplexity: sums.densePpl, prunedPerplexity: prunedPpl,
        seconds: (performance.now() - run.t0) / 1000, peakRssBytes: peakRss(),
      };
      // run.finished is logged before the rename (so events.ndjson is complete) and emitted after it.
      finished = makeEvent('run.finished', { output: config.output, totals });
      const report = {
        prunekit: PRUNEKIT_VERSION, config: data.resolved, device: engine.device, adapter: engine.adapter, deviceNotes: engine.fallbacks,
        layers: run.events.filter((e) => e.type === 'layer.pruned'),
        allocation: run.events.find((e) => e.type === 'allocation.computed') ?? null,
        evaluation: run.events.filter((e) => e.type === 'evaluation.finished'),
        warnings: run.events.filter((e) => e.type === 'warning.raised'),
        totals,
      };
      await writeFile(path.join(written.dir, 'prune-report.json'), JSON.stringify(report, null, 2) + '\n');
      await writeFile(path.join(written.dir, 'events.ndjson'), [...run.events, finished].map((e) => formatEvent(e) + '\n').join(''));
    },
  });
  const done = finished as EventOf<'run.finished'>;
  run.hooks.emit(done);
  return done;
}
