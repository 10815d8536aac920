// What a run looks like so far, folded from its events. One fold for every reader: the extension host (status
// bar, Runs view), the webview (header, progress bar, summary) and the Compare table all call foldProgress, so
// they can never disagree about "12 of 35 layers, ETA 40 s".
//
// ETA: pruning work is counted in weights (rows·cols of each targeted layer), since a 4096×11008 layer costs
// far more than a 4096×4096 one; evaluation passes (dense, pruned) are counted by windows.

import type { CalibrationProgressed, Event, RunTotals } from './events';
import type { MethodName, PatternString } from './pruning';

/** `running` until a terminal event arrives; `interrupted`: the backend process ended without one (crash, kill,
 *  VS Code closed), which the host sets through markInterrupted. */
export type RunStatus = 'running' | 'finished' | 'failed' | 'cancelled' | 'interrupted';

export interface RunProgress {
  status: RunStatus;
  /** The .onnx file, once run.started arrived. */
  model: string | null;
  device: string | null;
  /** What the device is (GPU, WebGPU adapter or CPU model), when the run says. */
  adapter: string | null;
  method: MethodName | null;
  pattern: PatternString | null;
  sparsity: number | null;
  /** Targeted layers in the run, and pruned so far. */
  layersTotal: number;
  layersDone: number;
  blocksTotal: number;
  blocksDone: number;
  /** Σ rows·cols of targeted layers, and of those pruned so far. */
  weightsTotal: number;
  weightsDone: number;
  /** What the backend is doing now, in words ("block 3/8: calibrating 40/128"). */
  phase: string;
  /** 0..1 of the whole run. */
  fraction: number;
  /** Seconds left, estimated from the time taken so far; null until there is something to estimate from. */
  etaSeconds: number | null;
  /** ms since epoch of the first event folded (the host's clock), and of the last. */
  startedAt: number | null;
  updatedAt: number | null;
  lossSum: number | null;
  densePerplexity: number | null;
  prunedPerplexity: number | null;
  /** Set by run.finished. */
  output: string | null;
  totals: RunTotals | null;
  /** Set by run.failed (or markInterrupted). */
  error: { code: string; message: string; hint?: string } | null;
  warnings: number;
}

/** The device with what it is, for display: "webgpu (llvmpipe (LLVM 15.0.6, 256 bits))", or just the device. */
export function deviceLabel(p: RunProgress): string | null {
  return p.device !== null && p.adapter ? `${p.device} (${p.adapter})` : p.device;
}

export function emptyProgress(): RunProgress {
  return {
    status: 'running',
    model: null,
    device: null,
    adapter: null,
    method: null,
    pattern: null,
    sparsity: null,
    layersTotal: 0,
    layersDone: 0,
    blocksTotal: 0,
    blocksDone: 0,
    weightsTotal: 0,
    weightsDone: 0,
    phase: 'starting',
    fraction: 0,
    etaSeconds: null,
    startedAt: null,
    updatedAt: null,
    lossSum: null,
    densePerplexity: null,
    prunedPerplexity: null,
    output: null,
    totals: null,
    error: null,
    warnings: 0,
  };
}

const CALIBRATION_PHASES: Record<CalibrationProgressed['phase'], string> = {
  prefix: 'embedding', hessian: 'calibrating', propagate: 'propagating', outliers: 'measuring outliers (OWL)',
};

// Share of the run given to each stage, for the progress bar. Pruning (with its calibration) dominates; each
// perplexity pass is a forward pass over the evaluation text, a fraction of it.
const EVAL_SHARE = 0.1;

/** The progress after one more event; `now` is the reader's clock (ms), used for the ETA. Never mutates `p`. */
export function foldProgress(p: RunProgress, e: Event, now: number): RunProgress {
  const q: RunProgress = { ...p, startedAt: p.startedAt ?? now, updatedAt: now };
  switch (e.type) {
    case 'run.started': {
      const targeted = e.layers.filter((l) => l.target !== null);
      q.model = e.model.file;
      q.device = e.device;
      q.adapter = e.adapter ?? null;
      q.method = e.config.method;
      q.pattern = e.config.pattern;
      q.sparsity = e.config.sparsity;
      q.layersTotal = targeted.length;
      q.blocksTotal = e.blocks.length;
      q.weightsTotal = targeted.reduce((s, l) => s + l.shape[0] * l.shape[1], 0);
      q.phase = 'loading data';
      break;
    }
    case 'data.loaded':
      q.phase = `${e.role} data: ${e.windows} windows of ${e.seqlen} tokens`;
      break;
    case 'calibration.progressed':
      q.phase =
        e.block === null
          ? `embedding calibration windows ${e.done}/${e.total}`
          : `block ${e.block + 1}/${q.blocksTotal}: ${CALIBRATION_PHASES[e.phase]} ${e.done}/${e.total}`;
      break;
    case 'layer.pruned':
      q.layersDone += 1;
      q.weightsDone += e.shape[0] * e.shape[1];
      if (e.loss !== null) q.lossSum = (q.lossSum ?? 0) + e.loss;
      q.phase = `pruned ${e.layer}`;
      break;
    case 'block.finished':
      q.blocksDone += 1;
      q.phase = `block ${e.block + 1}/${q.blocksTotal} done`;
      break;
    case 'evaluation.progressed':
      q.phase = `${e.model} perplexity ${e.done}/${e.total}`;
      break;
    case 'evaluation.finished':
      if (e.model === 'dense') q.densePerplexity = e.perplexity;
      else q.prunedPerplexity = e.perplexity;
      q.phase = `${e.model} perplexity ${e.perplexity.toFixed(3)}`;
      break;
    case 'warning.raised':
      q.warnings += 1;
      break;
    case 'run.failed':
      q.status = 'failed';
      q.error = { code: e.code, message: e.message, ...(e.hint !== undefined ? { hint: e.hint } : {}) };
      q.phase = 'failed';
      break;
    case 'run.cancelled':
      q.status = 'cancelled';
      q.phase = 'cancelled';
      break;
    case 'run.finished':
      q.status = 'finished';
      q.output = e.output;
      q.totals = e.totals;
      q.densePerplexity = e.totals.densePerplexity;
      q.prunedPerplexity = e.totals.prunedPerplexity;
      q.lossSum = e.totals.loss;
      q.phase = 'finished';
      break;
  }
  q.fraction = q.status === 'finished' ? 1 : runFraction(q, e);
  q.etaSeconds = q.status !== 'running' ? null : eta(q, now);
  return q;
}

/** Folds a whole stream; `times` gives each event's clock (defaults to one tick per event from 0). */
export function progressOf(events: readonly Event[], times?: readonly number[]): RunProgress {
  let p = emptyProgress();
  events.forEach((e, i) => {
    p = foldProgress(p, e, times?.[i] ?? i);
  });
  return p;
}

/** The backend ended without a terminal event. */
export function markInterrupted(p: RunProgress, message: string): RunProgress {
  if (p.status !== 'running') return p;
  return { ...p, status: 'interrupted', phase: 'interrupted', etaSeconds: null, error: { code: 'interrupted', message } };
}

function runFraction(q: RunProgress, e: Event): number {
  const evals = (q.densePerplexity !== null ? 1 : 0) + (q.prunedPerplexity !== null ? 1 : 0);
  let evalPart = evals * EVAL_SHARE;
  if (e.type === 'evaluation.progressed' && e.total > 0) evalPart += (EVAL_SHARE * e.done) / e.total;
  const prunePart = q.weightsTotal > 0 ? (q.weightsDone / q.weightsTotal) * (1 - 2 * EVAL_SHARE) : 0;
  return Math.min(1, prunePart + evalPart);
}

function eta(q: RunProgress, now: number): number | null {
  if (q.startedAt === null || q.fraction < 0.02) return null;
  const elapsed = (now - q.startedAt) / 1000;
  return Math.max(0, (elapsed * (1 - q.fraction)) / q.fraction);
}
