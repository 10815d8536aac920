// The pruning run: SparseGPT's sequential protocol over any ONNX decoder, one general driver.
//
//   open checkpoint (ONNX, or a Hugging Face folder built into an ONNX graph: formats/checkpoint.ts) → discover layers and blocks → cut the graph into segments → dense perplexity
//   → run the prefix once over the calibration windows (cached by tensor name)
//   → per block: calibration variant with the dense weights (XᵀX, Σx² inside onnxruntime) → prune each layer
//     → run the block again with the pruned weights (fed as inputs) to produce the next block's inputs
//     → each pruned weight is spilled (in its stored type) to a scratch file beside the output and let go, so
//       memory holds one block's weights and the cached activations, not the whole model
//   → write the new checkpoint in the input's format (temporary folder; the pruned perplexity, report and event
//     log are written into it before it is renamed into place).
//
// Everything the user sees travels as protocol events through `emit`.

import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { version as PRUNEKIT_VERSION } from '../../../package.json';
import { Event, EventBody, EventOf, EventType, formatEvent, LayerInfo, makeEvent, RunTotals, WarningCode } from '../../protocol/events';
import { layerSelector, ResolvedConfig, unmatchedLayerPatterns } from '../../protocol/config';
import { formatPattern } from '../../protocol/pruning';
import { calibrationWindows, evaluationWindows, loadTokenizer, readTokens, TextTokenizer } from '../data/tokens';
import { perplexity } from '../eval/perplexity';
import { spillFileOf } from '../formats/atomicFolder';
import { float32ToBytes, float32ToHalfBytes, roundToType } from '../formats/dtype';
import { Checkpoint, openCheckpoint, TensorSource } from '../formats/checkpoint';
import { SpillFile } from '../formats/tensorSource';
import { pruneLayer } from '../methods';
import { pruneDepthwise } from '../methods/depthwise';
import { causalLmFeeds, inputSpecs, positionLimit } from '../models/inputs';
import { DataType, TensorProto } from '../onnx/proto';
import { Engine, ModelSource } from '../onnx/session';
import { discoverLayers, PrunableLayer } from './layers';
import { describeQuantized, quantizedRefusal } from './quantized';
import { CalibrationSums, calibrationKey, calibrationModel, lastUse, planSegments, segmentModel } from './segments';

/** A failure with a protocol error code and what it concerns. */
export class RunError extends Error {
  constructor(readonly code: EventOf<'run.failed'>['code'], message: string, readonly where: { file?: string; jsonPath?: string; layer?: string } = {}, readonly hint?: string) {
    super(message);
  }
}

export class RunCancelledError extends Error {
  constructor(readonly lastLayer: string | null) {
    super('cancelled');
  }
}

export interface RunHooks {
  emit(event: Event): void;
  /** Aborted by SIGINT/SIGTERM: the run stops at the next layer or batch boundary. */
  signal?: AbortSignal;
  /** Windows per onnxruntime run during calibration and evaluation (bounds activation memory). */
  microBatch?: number;
}

/** Weight (rows, cols) row-major from the stored layout, and back. */
function toRowMajor(stored: Float32Array, l: PrunableLayer): Float32Array {
  if (l.layout === 'out_in') return stored;
  const out = new Float32Array(l.rows * l.cols);
  for (let j = 0; j < l.cols; j++) for (let r = 0; r < l.rows; r++) out[r * l.cols + j] = stored[j * l.rows + r];
  return out;
}
function toStored(W: Float32Array, l: PrunableLayer): Float32Array {
  if (l.layout === 'out_in') return W;
  const out = new Float32Array(l.rows * l.cols);
  for (let r = 0; r < l.rows; r++) for (let j = 0; j < l.cols; j++) out[j * l.rows + r] = W[r * l.cols + j];
  return out;
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

function maxPositions(ckpt: Checkpoint): number | null {
  if (!ckpt.configPath) return null;
  try {
    const c = JSON.parse(readFileSync(ckpt.configPath, 'utf8')) as { max_position_embeddings?: unknown; n_positions?: unknown };
    const max = c.max_position_embeddings ?? c.n_positions; // GPT-2 calls it n_positions
    return typeof max === 'number' ? max : null;
  } catch {
    return null;
  }
}

export async function runPrune(config: ResolvedConfig, hooks: RunHooks): Promise<EventOf<'run.finished'>> {
  // Pruned weights wait for the writer in a scratch file beside the output (not in /tmp: that may be RAM), removed
  // however the run ends (the CLI removes it on a hard exit too).
  const spill = new SpillFile(spillFileOf(config.output));
  try {
    return await prune(config, hooks, spill);
  } finally {
    spill.remove();
  }
}

async function prune(config: ResolvedConfig, hooks: RunHooks, spill: SpillFile): Promise<EventOf<'run.finished'>> {
  const t0 = performance.now();
  const log: Event[] = [];
  const emit = <T extends EventType>(type: T, body: EventBody<T>): EventOf<T> => {
    const e = makeEvent(type, body);
    log.push(e);
    hooks.emit(e);
    return e;
  };
  const warn = (code: WarningCode, message: string, where: { layer?: string; file?: string } = {}) => emit('warning.raised', { code, message, ...where });
  let lastLayer: string | null = null;
  const checkpoint = () => {
    if (hooks.signal?.aborted) throw new RunCancelledError(lastLayer);
  };
  const micro = hooks.microBatch ?? 8;

  // --- Model, layers, blocks, segments
  // The tokenizer is only needed for text data: it is loaded (and its absence reported) when first used.
  const ckpt = openCheckpoint(config.checkpoint, { variant: config.variant ?? undefined });
  const engine = new Engine({ device: config.device, threads: config.threads });
  const discovery = discoverLayers(ckpt.model, {
    blockPattern: config.blockPattern ?? undefined, includeLmHead: !config.keepDense.lmHead, includeDepthwiseConv: !config.keepDense.depthwiseConv,
  });
  const quantized = quantizedRefusal(discovery.quantized, discovery.layers.length);
  if (quantized) throw new RunError('checkpoint-invalid', `${ckpt.path}: ${quantized}`, { file: ckpt.path });
  if (discovery.layers.length === 0) throw new RunError('checkpoint-invalid', `${ckpt.path}: no prunable linear layers (MatMul/Gemm with a 2-D weight initializer) found`, { file: ckpt.path });
  const unmatched = unmatchedLayerPatterns(config, discovery.layers.map((l) => l.name), discovery.skipped);
  if (unmatched.length > 0) {
    throw new RunError('layers-unmatched', unmatched.map((p) => `${p.path}: ${p.message}`).join("; "), { jsonPath: unmatched[0].path }, `layer names look like ${discovery.layers[0].name}; run 'prunekit inspect' to list them`);
  }
  const select = layerSelector(config);
  const plan = await planSegments(ckpt.model, discovery);
  const initNames = new Set(ckpt.model.graph.initializer.map((t) => t.name));
  const specs = inputSpecs(ckpt.model.graph.input, initNames);
  // Sessions are built from bytes: inline any external initializer a segment keeps (norms, embedding).
  const mapInitializer = (t: TensorProto): TensorProto =>
    t.dataLocation === 1 ? { ...t, rawData: ckpt.tensorData(t.name), dataLocation: 0, externalData: [] } : t;

  // --- Data
  const maxPos = maxPositions(ckpt);
  const autoSeqlen = Math.min(2048, maxPos ?? 2048);
  const limit = positionLimit(ckpt.model);
  for (const role of ['calibration', 'evaluation'] as const) {
    const seqlen = config[role] ? config[role].seqlen : null;
    if (limit !== null && typeof seqlen === 'number' && seqlen > limit) {
      throw new RunError('data-invalid', `${role} windows of ${seqlen} tokens do not fit ${ckpt.path}: its learned position table has ${limit} rows`, { jsonPath: `$.${role}.seqlen` }, `set ${role}.seqlen to ${limit} or less`);
    }
  }
  let tokenizer: TextTokenizer | undefined;
  const needsTokenizer = (p: string) => path.extname(p).toLowerCase() !== '.json';
  const getTokenizer = () => (tokenizer ??= loadTokenizer(config.tokenizer));
  const tokenCache = new Map<string, Int32Array>(); // calibration and evaluation often read one file
  const tokensOf = (file: string) => {
    let ids = tokenCache.get(file);
    if (!ids) tokenCache.set(file, (ids = readTokens(file, needsTokenizer(file) ? getTokenizer() : undefined)));
    return ids;
  };
  let calib: { windows: Int32Array[]; seqlen: number } | null = null;
  if (config.calibration) {
    const c = config.calibration;
    const ids = tokensOf(c.path);
    const w = calibrationWindows(ids, c.nsamples, c.seqlen ?? autoSeqlen, c.seed, c.skipTokens, c.path);
    calib = w;
    emit('data.loaded', { role: 'calibration', file: c.path, tokens: Math.max(0, ids.length - c.skipTokens), windows: w.windows.length, seqlen: w.seqlen });
    for (const n of w.notes) warn('data-short', n, { file: c.path });
  }
  let evalWindows: Int32Array[] | null = null;
  let evalSeqlen = 0;
  if (config.evaluation) {
    const e = config.evaluation;
    const ids = tokensOf(e.path);
    evalSeqlen = e.seqlen ?? calib?.seqlen ?? autoSeqlen;
    evalWindows = evaluationWindows(ids, evalSeqlen, e.maxWindows ?? Infinity);
    if (evalWindows.length === 0) throw new RunError('data-invalid', `${e.path}: ${ids.length} tokens, fewer than one window of ${evalSeqlen}`, { file: e.path });
    emit('data.loaded', { role: 'evaluation', file: e.path, tokens: ids.length, windows: evalWindows.length, seqlen: evalSeqlen });
  }
  const resolved: ResolvedConfig = {
    ...config,
    calibration: config.calibration && calib ? { ...config.calibration, seqlen: calib.seqlen } : config.calibration,
    evaluation: config.evaluation ? { ...config.evaluation, seqlen: evalSeqlen } : false,
  };

  // --- run.started (the first kernel resolves the device)
  const segKernels = new Map<number, Awaited<ReturnType<Engine['kernel']>>>();
  const first = plan.segments[0];
  segKernels.set(first.index, await engine.kernel(segmentModel(plan, first, { mapInitializer }).model));
  const layerInfos: LayerInfo[] = discovery.layers.map((l) => {
    const t = select(l.name);
    return {
      name: l.name, block: l.block, op: l.op, weight: l.weight, shape: [l.rows, l.cols],
      target: t ? { method: t.method, pattern: formatPattern(t.pattern), sparsity: t.sparsity } : null,
    };
  });
  let parameters = 0;
  for (const t of ckpt.model.graph.initializer) parameters += t.dims.reduce<number>((a, d) => a * Number(d), 1);
  emit('run.started', {
    model: {
      file: ckpt.path,
      dtype: discovery.layers.some((l) => l.dataType === DataType.FLOAT16) ? 'float16' : 'float32',
      parameters, externalData: ckpt.hasExternalData, maxPositions: maxPos, inputs: specs.map((s) => s.name),
    },
    device: engine.device ?? config.device,
    deviceNotes: [...engine.fallbacks],
    versions: { prunekit: PRUNEKIT_VERSION, 'onnxruntime-node': ort.env.versions.node ?? 'unknown', node: process.versions.node },
    blocks: discovery.blocks.map((b) => ({ index: b.index, name: b.name, layers: b.layers })),
    layers: layerInfos,
    config: resolved,
  });
  if (discovery.blockSource === 'per-layer') warn('blocks-fallback', discovery.notes.join(' ') || 'no block pattern fitted the node names: one block per layer');
  for (const w of discovery.warnings) warn('block-dense', w);
  if (discovery.quantized.length) warn('block-dense', `quantized linear layers outside the blocks stay as they are: ${describeQuantized(discovery.quantized)}`);

  // --- Dense perplexity (the same routine scores the pruned model from the temporary output below)
  const evaluate = async (model: 'dense' | 'pruned', source: ModelSource, windows: Int32Array[]): Promise<number> => {
    const s0 = performance.now();
    const session = await engine.modelSession(source);
    try {
      const r = await perplexity(session, specs, windows, {
        batch: micro, modelFile: typeof source === 'string' ? source : ckpt.path, checkpoint,
        onProgress: (done, total) => emit('evaluation.progressed', { model, done, total }),
      });
      emit('evaluation.finished', { model, perplexity: r.ppl, seqlen: evalSeqlen, windows: r.windows, predictions: r.predictedTokens, seconds: (performance.now() - s0) / 1000 });
      return r.ppl;
    } finally {
      await session.release();
    }
  };
  const densePpl = evalWindows ? await evaluate('dense', ckpt.sessionSource(), evalWindows) : null;

  // --- Sequential calibration and pruning
  const replacements = new Map<string, TensorSource>(); // read back by the writer, one tensor at a time
  let totalLoss: number | null = calib ? 0 : null;
  let prunedParams = 0;
  let zeros = 0;
  let layersPruned = 0;
  const batches: Int32Array[][] = [];
  if (calib) for (let i = 0; i < calib.windows.length; i += micro) batches.push(calib.windows.slice(i, i + micro));
  const cache = new Map<string, ort.Tensor[]>();
  for (const [b, group] of batches.entries()) {
    const feeds = causalLmFeeds(specs, group, ckpt.path);
    for (const [name, t] of Object.entries(feeds)) {
      if (!cache.has(name)) cache.set(name, []);
      (cache.get(name) as ort.Tensor[])[b] = t;
    }
  }
  // Segments after the last one with a layer to prune only matter for evaluation.
  const lastNeeded = Math.max(-1, ...plan.segments.filter((s) => s.layers.some((l) => select(l.name))).map((s) => s.index));
  const runSegment = async (kernel: Awaited<ReturnType<Engine['kernel']>>, inputs: string[], weights: Record<string, ort.Tensor>, b: number) => {
    const feeds: Record<string, ort.Tensor> = { ...weights };
    for (const name of inputs) {
      const t = cache.get(name)?.[b];
      if (!t) throw new RunError('internal', `segment input ${name} of batch ${b} is not available`);
      feeds[name] = t;
    }
    return kernel.run(feeds);
  };
  const dense = (l: PrunableLayer) => ckpt.weightAsFloat32(l.weight);

  for (const seg of plan.segments) {
    if (seg.index > lastNeeded) break;
    checkpoint();
    const sBlock = performance.now();
    let blockLoss: number | null = calib ? 0 : null;
    let blockLayers = 0;
    const current = new Map<string, Float32Array>(); // stored layout, what this block's propagate pass feeds
    for (const l of seg.layers) current.set(l.weight, dense(l));
    const weightFeeds = (only?: Set<string>): Record<string, ort.Tensor> => {
      const f: Record<string, ort.Tensor> = {};
      for (const l of seg.layers) if (!only || only.has(l.weight)) f[l.weight] = weightTensor(current.get(l.weight) as Float32Array, l);
      return f;
    };

    if (seg.layers.some((l) => select(l.name))) {
      // Hessians from the dense block on the (already pruned-upstream) inputs; none without calibration data
      // (magnitude alone).
      const sums = new Map<string, CalibrationSums>();
      const calibrate = async () => { // a scope of its own: the weight feeds do not outlive it
        const cg = calibrationModel(plan, seg, { mapInitializer });
        const ck = await engine.kernel(cg.model);
        for (const st of cg.stats) sums.set(st.key, new CalibrationSums(st.cols, st.groups));
        const calibWeights = weightFeeds(new Set(cg.weights));
        for (let b = 0; b < batches.length; b++) {
          checkpoint();
          const out = await runSegment(ck, cg.inputs, calibWeights, b);
          for (const s of cg.stats) (sums.get(s.key) as CalibrationSums).add(out[s.xtx].data as Float32Array, out[s.colSq].data as Float32Array, batches[b].length, s.routed ? (out[s.routed].data as Float32Array)[0] : undefined);
          emit('calibration.progressed', { phase: 'hessian', block: seg.block, done: b + 1, total: batches.length });
        }
        await engine.forget(ck); // each block's graphs run for that block only
      };
      if (batches.length) await calibrate();
      // Each input's H is dropped after the last layer that reads it (q/k/v share one, gate/up another).
      const lastReader = new Map<string, string>();
      for (const l of seg.layers) if (select(l.name)) lastReader.set(calibrationKey(l), l.name);
      for (const l of seg.layers) {
        const target = select(l.name);
        if (!target) continue;
        checkpoint();
        const key = calibrationKey(l);
        // An MoE expert routed fewer calibration tokens than it has inputs: its Hessian is rank-deficient (its
        // compensation would be mostly the damping's), so it is pruned by magnitude (the loss still measured on
        // its H), and the run says so.
        const s = sums.get(key);
        const routed = s?.routedTokens;
        const starved = routed !== undefined && routed < l.cols;
        const method = starved ? 'magnitude' : target.method;
        if (starved) warn('expert-few-tokens', `${l.name}: ${routed} calibration tokens routed to it, fewer than its ${l.cols} inputs: pruned by magnitude`, { layer: l.name });
        if (lastReader.get(key) === l.name) sums.delete(key);
        const W = toRowMajor(current.get(l.weight) as Float32Array, l);
        current.delete(l.weight); // W is the dense weight now: no second copy while the method runs
        const options = {
          pattern: target.pattern, blockSize: config.blockSize, dampening: config.dampening, nmMask: config.nmMask, magnitudeGroup: config.magnitudeGroup,
        };
        const res = l.kind === 'depthwiseConv'
          ? pruneDepthwise(target.method, { name: l.name, channels: l.rows, taps: l.cols, W, H: s?.hessian(), colNorm2: s?.colNorm2() }, options)
          : await pruneLayer(method, { name: l.name, rows: l.rows, cols: l.cols, W, H: s?.hessian(), colNorm2: s?.colNorm2() }, options, engine);
        // fp16/bf16 weights: pruned in fp32 (widened above), rounded to the stored type once, here, so the
        // propagate pass, the zero count and the written checkpoint all see the same values and pattern.
        const stored = roundToType(l.dataType, toStored(res.W, l), { keepNonZero: true });
        current.set(l.weight, stored);
        // Exact: `stored` already holds values of l.dataType, and the checkpoint's storedType is that type or
        // (a Hugging Face fp16/bf16 weight the graph widens) the one the writer would round to anyway.
        const type = ckpt.storedType(l.weight);
        replacements.set(l.weight, spill.add(type, stored.length, float32ToBytes(type, stored)));
        const z = Math.round(res.sparsity * res.W.length);
        zeros += z;
        prunedParams += res.W.length;
        layersPruned++;
        blockLayers++;
        if (blockLoss !== null) blockLoss += res.loss;
        if (totalLoss !== null) totalLoss += res.loss;
        lastLayer = l.name;
        for (const n of res.notes) {
          if (/not a multiple of M/.test(n)) warn('partial-group', n, { layer: l.name });
          else if (/dampening/.test(n)) warn('dampening-raised', n, { layer: l.name });
        }
        emit('layer.pruned', {
          block: l.block, layer: l.name, shape: [l.rows, l.cols], method, pattern: formatPattern(target.pattern),
          targetSparsity: target.sparsity, sparsity: res.sparsity,
          loss: Number.isFinite(res.loss) ? res.loss : null, relLoss: Number.isFinite(res.relLoss) ? res.relLoss : null,
          dampening: res.dampening ?? null, seconds: res.seconds, notes: res.notes,
        });
      }
    }

    // Propagate: the segment with the current (pruned) weights produces the next segments' inputs.
    if (batches.length > 0) {
      let k = segKernels.get(seg.index);
      const sg = segmentModel(plan, seg, { mapInitializer });
      if (!k) k = await engine.kernel(sg.model);
      const w = weightFeeds();
      for (let b = 0; b < batches.length; b++) {
        checkpoint();
        const out = await runSegment(k, sg.inputs, w, b);
        for (const name of sg.outputs) {
          if (!cache.has(name)) cache.set(name, []);
          (cache.get(name) as ort.Tensor[])[b] = out[name];
        }
        emit('calibration.progressed', { phase: seg.kind === 'prefix' ? 'prefix' : 'propagate', block: seg.block, done: b + 1, total: batches.length });
      }
      await engine.forget(k);
      segKernels.delete(seg.index);
    }
    for (const name of [...cache.keys()]) if (lastUse(plan, name) <= seg.index) cache.delete(name);
    if (seg.kind === 'block' && seg.block !== null) {
      emit('block.finished', { block: seg.block, name: seg.name, layers: blockLayers, loss: blockLoss, seconds: (performance.now() - sBlock) / 1000, peakRssBytes: peakRss() });
    }
  }
  cache.clear();

  // --- Output: written to a temporary folder; the pruned perplexity, report and log go in before the rename.
  let prunedPpl: number | null = null;
  let finished: EventOf<'run.finished'> | undefined;
  const totals = (): RunTotals => ({
    layers: layersPruned, blocks: discovery.blocks.length, parameters: prunedParams, zeros,
    sparsity: prunedParams ? zeros / prunedParams : 0, modelSparsity: parameters ? zeros / parameters : 0,
    loss: totalLoss, densePerplexity: densePpl, prunedPerplexity: prunedPpl,
    seconds: (performance.now() - t0) / 1000, peakRssBytes: peakRss(),
  });
  await ckpt.write(config.output, replacements, {
    overwrite: config.overwrite,
    signal: hooks.signal,
    beforeCommit: async (written) => {
      const tmp = written.dir;
      if (evalWindows) prunedPpl = await evaluate('pruned', written.sessionSource(), evalWindows);
      // run.finished is logged before the rename (so events.ndjson is complete) and emitted after it.
      finished = makeEvent('run.finished', { output: config.output, totals: totals() });
      const report = {
        prunekit: PRUNEKIT_VERSION, config: resolved, device: engine.device, deviceNotes: engine.fallbacks,
        layers: log.filter((e) => e.type === 'layer.pruned'),
        evaluation: log.filter((e) => e.type === 'evaluation.finished'),
        warnings: log.filter((e) => e.type === 'warning.raised'),
        totals: finished.totals,
      };
      await writeFile(path.join(tmp, 'prune-report.json'), JSON.stringify(report, null, 2) + '\n');
      await writeFile(path.join(tmp, 'events.ndjson'), [...log, finished].map((e) => formatEvent(e) + '\n').join(''));
    },
  });
  const done = finished as EventOf<'run.finished'>;
  hooks.emit(done);
  return done;
}
