// The backend's event stream: one JSON object per line (NDJSON) on stdout with `prunekit prune --json`, and
// the run's events.ndjson. The backend writes lines with formatEvent; the extension reads them with
// parseEvent, which checks every field (habit 1: no unchecked JSON crosses a boundary). Every event carries
// `v` (PROTOCOL_VERSION) and a dotted, past-tense `type`.
//
// Order of a run:
//   data.loaded (calibration, evaluation)   (first: run.started carries the seqlen the data fixed)
//   run.started
//   evaluation.progressed* evaluation.finished (dense)
//   allocation "owl": calibration.progressed* (phase outliers) allocation.computed
//   per block: calibration.progressed*  layer.pruned*  block.finished
//   evaluation.progressed* evaluation.finished (pruned)
//   run.finished | run.cancelled | run.failed      (warning.raised anywhere; run.failed may come first)
//
// Change an event here, and the checker below will not compile until it matches; bump PROTOCOL_VERSION when
// a change breaks old readers (the extension refuses other versions with a clear message).

import { PRUNE_CONFIG_SCHEMA, ResolvedConfig } from './config';
import { array, bool, Check, count, nonNeg, nullable, num, obj, oneOf, optional, pair, ProtocolError, record, str } from './check';
import { KNOWN_METHODS, MethodName, PATTERN_RE, PatternString } from './pruning';
import { validateSchema } from './schema';

export const PROTOCOL_VERSION = 1;

// ---------------------------------------------------------------------------------------------------------
// Pieces

export interface ModelInfo {
  /** The .onnx file read (absolute). */
  file: string;
  /** Element type of the prunable weights. */
  dtype: 'float32' | 'float16';
  /** Parameters of every initializer. */
  parameters: number;
  /** Whether weights live in external data files. */
  externalData: boolean;
  /** Maximum positions (from config.json or the graph); null when unknown. */
  maxPositions: number | null;
  /** The graph's declared inputs, e.g. ["input_ids", "attention_mask"]. */
  inputs: string[];
}

export interface BlockInfo {
  index: number;
  /** e.g. "layers.3". */
  name: string;
  /** Names of its prunable layers, in topological order. */
  layers: string[];
}

/** How one layer is pruned, as it travels on the wire (the pattern as its string). */
export interface LayerPlan {
  method: MethodName;
  pattern: PatternString;
  /** Fraction of zeros asked for (N/M for N:M). */
  sparsity: number;
}

export interface LayerInfo {
  /** The name patterns match and every later event uses (the node name, e.g. /model/layers.0/self_attn/q_proj/MatMul). */
  name: string;
  /** Index into run.started's blocks; null for a layer outside every block (the LM head). */
  block: number | null;
  /** Conv: a depthwise conv (rows = channels, cols = taps), prunable with keepDense.depthwiseConv false. */
  op: 'MatMul' | 'Gemm' | 'Conv';
  /** The weight initializer's name. */
  weight: string;
  /** (rows, cols) = (output features, input features), whatever the storage layout. */
  shape: [number, number];
  /** null: left dense (keepDense, or not included / excluded). */
  target: LayerPlan | null;
}

export const ERROR_CODES = [
  'config-invalid', // the config breaks the schema or its rules (problems lists each JSON path)
  'checkpoint-not-found',
  'checkpoint-invalid', // not a readable ONNX model, or no prunable layers
  'external-data-missing', // an external data file is missing or shorter than the graph says
  'tokenizer-missing',
  'tokenizer-invalid', // tokenizer.json (or the tokenizer_config.json beside it) is not one the tokenizer can load
  'data-not-found', // a calibration or evaluation file
  'data-invalid', // unreadable, binary, or too short to give one window
  'token-out-of-range', // a token id that is not an integer in [0, vocabulary size)
  'layers-unmatched', // an include/exclude/override pattern (or blockPattern) matching no layer
  'file-not-found', // any other path given (a --config file, …)
  'not-a-file', // a folder where a file was expected
  'not-a-folder', // a file where a folder was expected (e.g. the parent of --out)
  'permission-denied',
  'bad-argument', // a command-line flag that is unknown or out of range
  'limit-exceeded', // an input over one of the backend's bounds (sizes, counts, nesting): the message names the bound
  'output-exists',
  'write-failed', // the output could not be written (read-only disk, …)
  'no-space',
  'device-unavailable',
  'out-of-memory',
  'numerical', // e.g. a Hessian not positive definite after every dampening retry
  'internal', // a bug: the message says where
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export const WARNING_CODES = [
  'blocks-fallback', // no block pattern fitted: one block per layer
  'data-short', // the text gave shorter or overlapping windows, or fewer evaluation windows, than asked
  'device-fallback', // the device asked for was not used
  'dampening-raised', // H needed more dampening than configured
  'partial-group', // N:M with M not dividing the columns: the trailing group stays dense
  'block-dense', // a block (or quantized layers) with no prunable linear layer: it stays dense
  'data-encoding', // calibration or evaluation text that is not valid UTF-8 (bytes replaced by U+FFFD)
  'token-cache', // a token cache file not trusted (corrupt, another format), or no folder to write one in
  'leftovers-removed', // temporaries of a killed earlier run beside the output were removed
  'expert-few-tokens', // an MoE expert routed fewer calibration tokens than its inputs: pruned by magnitude
  'sweep-shared', // a sweep's shared file (shared/) not trusted (corrupt, made for other settings) or not written
  'micro-batch-lowered', // fewer calibration windows per onnxruntime run than the default, to fit the free memory
  'other',
] as const;
export type WarningCode = (typeof WARNING_CODES)[number];

/** Where a warning or an error points; each field is set only when it applies. */
export interface Location {
  /** A file the problem is about (absolute). */
  file?: string;
  /** A path into the config, e.g. `$.layers.exclude[1]`. */
  jsonPath?: string;
  /** A layer name. */
  layer?: string;
}

export interface Problem {
  jsonPath: string;
  message: string;
}

// ---------------------------------------------------------------------------------------------------------
// Events

export interface RunStarted {
  v: typeof PROTOCOL_VERSION;
  type: 'run.started';
  model: ModelInfo;
  /** The device onnxruntime runs on, e.g. "cuda:0", "cpu". */
  device: string;
  /** Devices tried and not used, with why (e.g. "cuda: libonnxruntime_providers_cuda.so not found"). */
  deviceNotes: string[];
  /** What the device is: the GPU's model ("NVIDIA A100-SXM4-80GB"), the WebGPU adapter ("llvmpipe (LLVM 15.0.6,
   *  256 bits)") or the CPU's model; null when the machine does not say. Absent from logs of older versions. */
  adapter?: string | null;
  /** Versions of prunekit, onnxruntime-node and Node. */
  versions: Record<string, string>;
  blocks: BlockInfo[];
  /** Every prunable layer, pruned or not. */
  layers: LayerInfo[];
  /** The config after defaults, with the model-dependent values (seqlen) filled in. */
  config: ResolvedConfig;
}

/** The tokens behind calibration or evaluation. */
export interface DataLoaded {
  v: typeof PROTOCOL_VERSION;
  type: 'data.loaded';
  role: 'calibration' | 'evaluation';
  file: string;
  /** Token ids in the file (after skipTokens for calibration). */
  tokens: number;
  /** Windows actually used, and their length (may be below what was asked: a warning then says why). */
  windows: number;
  seqlen: number;
  /** Where the ids came from: a token-id file, the text tokenized, or the token cache (tokenCache.ts). */
  source: 'ids' | 'tokenized' | 'cache';
  /** The token cache file read (source "cache") or written (source "tokenized"); null when none was. */
  cacheFile: string | null;
  /** Seconds spent reading (and tokenizing) the file. */
  seconds: number;
}

export interface CalibrationProgressed {
  v: typeof PROTOCOL_VERSION;
  type: 'calibration.progressed';
  /** prefix: running the graph up to the first block; hessian: a block with H accumulation; propagate: the
   *  pruned block producing the next block's inputs; outliers: OWL's dense pass measuring each block's outliers. */
  phase: 'prefix' | 'hessian' | 'propagate' | 'outliers';
  /** null in the prefix. */
  block: number | null;
  /** Calibration windows done of total in this phase. */
  done: number;
  total: number;
}

export interface LayerPruned {
  v: typeof PROTOCOL_VERSION;
  type: 'layer.pruned';
  block: number | null;
  layer: string;
  /** (rows, cols) = (output features, input features). */
  shape: [number, number];
  method: MethodName;
  pattern: PatternString;
  targetSparsity: number;
  /** Fraction of zeros in the pruned weight. */
  sparsity: number;
  /** 0.5·tr(ΔW H ΔWᵀ) with the undamped H; null without calibration data (magnitude alone). */
  loss: number | null;
  /** loss / 0.5·tr(W H Wᵀ) (0 when that is 0); null with loss. */
  relLoss: number | null;
  /** Dampening used (after any retry); null for methods without a Hessian. */
  dampening: number | null;
  /** Wall time of pruning this layer. */
  seconds: number;
  /** The method's notes (e.g. "trailing 2 columns of each row kept dense"). */
  notes: string[];
  /** APT refinement (refine.iterations > 0): the loss after the one-shot mask, after each iteration, and after
   *  the final refit; `kept` says which result the layer holds (the refined one only when its loss is lower). */
  refine?: LayerRefinement;
  /** Bytes this layer's graph calls sent to the device and read back (on the CPU: what a GPU device would copy).
   *  Absent from logs of older versions. */
  transfer?: Transfer;
}

export interface LayerRefinement {
  oneShotLoss: number;
  iterationLosses: number[];
  refitLoss: number;
  kept: 'refined' | 'one-shot';
  /** Weights whose pruned/kept state the refinement changed. */
  maskChanges: number;
}

/** One block's share of an OWL allocation. */
export interface BlockAllocation {
  block: number;
  name: string;
  /** Percentage of the block's Wanda scores |W|·‖X‖ above outlierThreshold × their mean (dense model). */
  outlierRatio: number;
  /** Added to the target sparsity of each of its unstructured layers. */
  offset: number;
  /** Its pruned layers' parameter-weighted target sparsity after the offset. */
  sparsity: number;
  /** Weights in those layers. */
  parameters: number;
}

/** The per-block sparsity OWL chose (allocation "owl"), before any layer is pruned. */
export interface AllocationComputed {
  v: typeof PROTOCOL_VERSION;
  type: 'allocation.computed';
  rule: 'owl';
  outlierThreshold: number;
  maxDeviation: number;
  blocks: BlockAllocation[];
  /** The dense pass over the calibration data that measured the outliers. */
  seconds: number;
}

/** Host↔device bytes of a job's graph calls. */
export interface Transfer {
  toDevice: number;
  fromDevice: number;
}

export interface BlockFinished {
  v: typeof PROTOCOL_VERSION;
  type: 'block.finished';
  block: number;
  name: string;
  /** Layers pruned in this block. */
  layers: number;
  /** Σ loss of its layers; null without calibration data. */
  loss: number | null;
  /** Calibration, pruning and propagation of this block. */
  seconds: number;
  /** Peak resident set size of the backend so far. */
  peakRssBytes: number;
  /** Bytes its graph calls (calibration, its layers, propagation) sent to the device and read back. Absent from
   *  logs of older versions. */
  transfer?: Transfer;
}

export interface EvaluationProgressed {
  v: typeof PROTOCOL_VERSION;
  type: 'evaluation.progressed';
  model: 'dense' | 'pruned';
  done: number;
  total: number;
}

/** Emitted once for the dense model (before pruning) and once for the pruned one; run.finished repeats both. */
export interface EvaluationFinished {
  v: typeof PROTOCOL_VERSION;
  type: 'evaluation.finished';
  model: 'dense' | 'pruned';
  perplexity: number;
  seqlen: number;
  windows: number;
  /** Next-token predictions scored: windows · (seqlen − 1). */
  predictions: number;
  seconds: number;
}

export interface WarningRaised extends Location {
  v: typeof PROTOCOL_VERSION;
  type: 'warning.raised';
  code: WarningCode;
  message: string;
}

/** The run stopped on an error; nothing is left in the output folder and the input is untouched. */
export interface RunFailed extends Location {
  v: typeof PROTOCOL_VERSION;
  type: 'run.failed';
  code: ErrorCode;
  message: string;
  /** The next step, when there is one (e.g. "pass --overwrite to replace it"). */
  hint?: string;
  /** config-invalid: every problem, each with its JSON path. */
  problems?: Problem[];
}

export interface RunTotals {
  /** Layers pruned. */
  layers: number;
  blocks: number;
  /** Weights in the pruned layers, and zeros among them. */
  parameters: number;
  zeros: number;
  /** zeros / parameters. */
  sparsity: number;
  /** Zeros among all the model's parameters. */
  modelSparsity: number;
  /** Σ loss of every layer; null without calibration data. */
  loss: number | null;
  densePerplexity: number | null;
  prunedPerplexity: number | null;
  seconds: number;
  peakRssBytes: number;
}

export interface RunFinished {
  v: typeof PROTOCOL_VERSION;
  type: 'run.finished';
  /** The output folder, complete. */
  output: string;
  totals: RunTotals;
}

export interface RunCancelled {
  v: typeof PROTOCOL_VERSION;
  type: 'run.cancelled';
  /** The signal that stopped the run; null when stopped another way. */
  signal: 'SIGINT' | 'SIGTERM' | null;
  /** The last layer pruned before stopping; null when none was. */
  lastLayer: string | null;
  seconds: number;
}

export type Event =
  | RunStarted
  | DataLoaded
  | CalibrationProgressed
  | LayerPruned
  | AllocationComputed
  | BlockFinished
  | EvaluationProgressed
  | EvaluationFinished
  | WarningRaised
  | RunFailed
  | RunFinished
  | RunCancelled;

export type EventType = Event['type'];
export type EventOf<T extends EventType> = Extract<Event, { type: T }>;
/** An event without its `v` and `type`, as makeEvent takes it. */
export type EventBody<T extends EventType> = Omit<EventOf<T>, 'v' | 'type'>;

export function makeEvent<T extends EventType>(type: T, body: EventBody<T>): EventOf<T> {
  return { v: PROTOCOL_VERSION, type, ...body } as unknown as EventOf<T>;
}

// ---------------------------------------------------------------------------------------------------------
// Checkers: one per event, typed against its interface.

const version: Check<typeof PROTOCOL_VERSION> = oneOf(PROTOCOL_VERSION);
const method: Check<MethodName> = oneOf(...KNOWN_METHODS);
const patternString: Check<PatternString> = (v, path) => {
  if (typeof v === 'string' && PATTERN_RE.test(v)) return v as PatternString;
  throw new ProtocolError(path, `must be "unstructured" or "N:M" (got ${JSON.stringify(v)})`);
};
const fraction: Check<number> = (v, path) => {
  const x = num(v, path);
  if (x < 0 || x > 1) throw new ProtocolError(path, `must be a number in [0, 1] (got ${x})`);
  return x;
};
const shape = pair(count);
const transfer = optional(obj<Transfer>({ toDevice: count, fromDevice: count }));

/** A resolved config: valid against the schema, with every top-level field present (but `sweep`: a run is one point). */
const resolvedConfig: Check<ResolvedConfig> = (v, path) => {
  const problems = validateSchema(PRUNE_CONFIG_SCHEMA, v, path);
  if (problems.length > 0) throw new ProtocolError(problems[0].path, problems[0].message);
  for (const key of Object.keys(PRUNE_CONFIG_SCHEMA.properties ?? {})) {
    if (key !== '$schema' && key !== 'sweep' && !Object.hasOwn(v as object, key)) throw new ProtocolError(`${path}.${key}`, 'is required');
  }
  return v as ResolvedConfig;
};

const location = { file: optional(str), jsonPath: optional(str), layer: optional(str) };

const CHECKS: { [T in EventType]: Check<EventOf<T>> } = {
  'run.started': obj<RunStarted>({
    v: version,
    type: oneOf('run.started'),
    model: obj<ModelInfo>({
      file: str,
      dtype: oneOf('float32', 'float16'),
      parameters: count,
      externalData: bool,
      maxPositions: nullable(count),
      inputs: array(str),
    }),
    device: str,
    deviceNotes: array(str),
    adapter: optional(nullable(str)),
    versions: record(str),
    blocks: array(obj<BlockInfo>({ index: count, name: str, layers: array(str) })),
    layers: array(
      obj<LayerInfo>({
        name: str,
        block: nullable(count),
        op: oneOf('MatMul', 'Gemm', 'Conv'),
        weight: str,
        shape,
        target: nullable(obj<LayerPlan>({ method, pattern: patternString, sparsity: fraction })),
      }),
    ),
    config: resolvedConfig,
  }),
  'data.loaded': obj<DataLoaded>({
    v: version,
    type: oneOf('data.loaded'),
    role: oneOf('calibration', 'evaluation'),
    file: str,
    tokens: count,
    windows: count,
    seqlen: count,
    source: oneOf('ids', 'tokenized', 'cache'),
    cacheFile: nullable(str),
    seconds: nonNeg,
  }),
  'calibration.progressed': obj<CalibrationProgressed>({
    v: version,
    type: oneOf('calibration.progressed'),
    phase: oneOf('prefix', 'hessian', 'propagate', 'outliers'),
    block: nullable(count),
    done: count,
    total: count,
  }),
  'layer.pruned': obj<LayerPruned>({
    v: version,
    type: oneOf('layer.pruned'),
    block: nullable(count),
    layer: str,
    shape,
    method,
    pattern: patternString,
    targetSparsity: fraction,
    sparsity: fraction,
    loss: nullable(nonNeg),
    relLoss: nullable(nonNeg),
    dampening: nullable(nonNeg),
    seconds: nonNeg,
    notes: array(str),
    refine: optional(obj<LayerRefinement>({
      oneShotLoss: nonNeg, iterationLosses: array(nonNeg), refitLoss: nonNeg, kept: oneOf('refined', 'one-shot'), maskChanges: count,
    })),
    transfer,
  }),
  'allocation.computed': obj<AllocationComputed>({
    v: version,
    type: oneOf('allocation.computed'),
    rule: oneOf('owl'),
    outlierThreshold: nonNeg,
    maxDeviation: nonNeg,
    blocks: array(obj<BlockAllocation>({ block: count, name: str, outlierRatio: nonNeg, offset: num, sparsity: fraction, parameters: count })),
    seconds: nonNeg,
  }),
  'block.finished': obj<BlockFinished>({
    v: version,
    type: oneOf('block.finished'),
    block: count,
    name: str,
    layers: count,
    loss: nullable(nonNeg),
    seconds: nonNeg,
    peakRssBytes: count,
    transfer,
  }),
  'evaluation.progressed': obj<EvaluationProgressed>({
    v: version,
    type: oneOf('evaluation.progressed'),
    model: oneOf('dense', 'pruned'),
    done: count,
    total: count,
  }),
  'evaluation.finished': obj<EvaluationFinished>({
    v: version,
    type: oneOf('evaluation.finished'),
    model: oneOf('dense', 'pruned'),
    perplexity: nonNeg,
    seqlen: count,
    windows: count,
    predictions: count,
    seconds: nonNeg,
  }),
  'warning.raised': obj<WarningRaised>({
    v: version,
    type: oneOf('warning.raised'),
    code: oneOf(...WARNING_CODES),
    message: str,
    ...location,
  }),
  'run.failed': obj<RunFailed>({
    v: version,
    type: oneOf('run.failed'),
    code: oneOf(...ERROR_CODES),
    message: str,
    hint: optional(str),
    problems: optional(array(obj<Problem>({ jsonPath: str, message: str }))),
    ...location,
  }),
  'run.finished': obj<RunFinished>({
    v: version,
    type: oneOf('run.finished'),
    output: str,
    totals: obj<RunTotals>({
      layers: count,
      blocks: count,
      parameters: count,
      zeros: count,
      sparsity: fraction,
      modelSparsity: fraction,
      loss: nullable(nonNeg),
      densePerplexity: nullable(nonNeg),
      prunedPerplexity: nullable(nonNeg),
      seconds: nonNeg,
      peakRssBytes: count,
    }),
  }),
  'run.cancelled': obj<RunCancelled>({
    v: version,
    type: oneOf('run.cancelled'),
    signal: nullable(oneOf('SIGINT', 'SIGTERM')),
    lastLayer: nullable(str),
    seconds: nonNeg,
  }),
};

/** Every event type, in the order of the union. */
export const EVENT_TYPES = Object.keys(CHECKS) as EventType[];

// ---------------------------------------------------------------------------------------------------------
// Reading and writing lines

/** A line that is not a valid event of this protocol version. `path` is the JSON path of the problem. */
export class EventParseError extends Error {
  constructor(
    readonly path: string,
    readonly problem: string,
    readonly line: string,
  ) {
    const shown = line.length > 120 ? `${line.slice(0, 117)}...` : line;
    super(`bad event line: ${path}: ${problem} — ${shown}`);
    this.name = 'EventParseError';
  }
}

/** One NDJSON line (without or with its line end) into an Event; throws EventParseError. */
export function parseEvent(line: string): Event {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    throw new EventParseError('$', `not JSON (${(e as Error).message})`, line);
  }
  return checkEvent(value, line);
}

/** An already-parsed JSON value into an Event; throws EventParseError. */
export function toEvent(value: unknown): Event {
  return checkEvent(value, JSON.stringify(value) ?? String(value));
}

function checkEvent(value: unknown, line: string): Event {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new EventParseError('$', 'must be a JSON object with "v" and "type"', line);
  }
  const { v, type } = value as { v?: unknown; type?: unknown };
  if (v !== PROTOCOL_VERSION) {
    throw new EventParseError('$.v', `protocol version ${JSON.stringify(v)}, but this reader speaks ${PROTOCOL_VERSION}: the backend and the extension come from different builds (rebuild or reinstall PruneKit)`, line);
  }
  if (typeof type !== 'string' || !Object.hasOwn(CHECKS, type)) {
    throw new EventParseError('$.type', `unknown event type ${JSON.stringify(type)} (known: ${EVENT_TYPES.join(', ')})`, line);
  }
  try {
    return CHECKS[type as EventType](value, '$');
  } catch (e) {
    if (e instanceof ProtocolError) throw new EventParseError(e.path, e.problem, line);
    throw e;
  }
}

/**
 * One event as one NDJSON line, without the line end. Checks the event first, so a backend bug (a NaN loss, a
 * missing field) fails where it happens instead of in the reader.
 */
export function formatEvent(event: Event): string {
  const line = JSON.stringify(event);
  checkEvent(event, line);
  return line;
}
