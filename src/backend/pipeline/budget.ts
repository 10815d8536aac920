// The memory a run will need, estimated from the layers and the data sizes before anything is allocated, and
// checked against the memory this process can get (free memory, and the cgroup's limit when there is one): a run
// asking for 10⁸ calibration windows fails at once with the numbers instead of growing until the kernel kills it.
// An estimate, not a bound: it counts the big terms (the cached calibration activations, the Hessians of the
// largest calibration pass, the largest layer's float64 working set, one micro-batch through the graph, whose
// attention holds three float32 score maps per head at its peak).

import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import type { ResolvedConfig } from '../../protocol/config';
import type { PrunableLayer } from './layers';
import { calibrationBytes, calibrationGroups } from './segmentGraph';

export interface RunSizes {
  /** Calibration windows and their length (0 windows without calibration). */
  nsamples: number;
  seqlen: number;
  /** Evaluation window length (0 without evaluation). */
  evalSeqlen: number;
  /** Windows per onnxruntime run. */
  microBatch: number;
  /** Query heads of an attention block (config.json); null when unknown or without attention (Mamba): one map. */
  heads?: number | null;
}

export interface MemoryEstimate {
  activations: number;
  hessians: number;
  largestLayer: number;
  batch: number;
  total: number;
}

/** The seq × seq float32 maps an attention head holds at once at its peak: scores, masked scores, softmax. */
export const SCORE_MAPS_PER_HEAD = 3;

/** The big terms of a run's memory, in bytes. */
export function estimateRunMemory(layers: readonly PrunableLayer[], s: RunSizes): MemoryEstimate {
  if (layers.length === 0) return { activations: 0, hessians: 0, largestLayer: 0, batch: 0, total: 0 };
  const blocks = new Map<number | null, PrunableLayer[]>();
  for (const l of layers) blocks.set(l.block, [...(blocks.get(l.block) ?? []), l]);
  // A block's input stream: the narrowest layer input of the first block (the hidden size). Its outputs replace its
  // inputs batch by batch as they are made (run.ts, dropLastRead), so the two are held whole only once.
  const width = Math.min(...(blocks.values().next().value as PrunableLayer[]).map((l) => l.cols));
  const activations = s.nsamples * s.seqlen * width * 4;
  // The calibration pass holding the most running sums (segmentGraph.ts's calibrationGroups), and one batch's XᵀX of
  // the largest: onnxruntime computes it before adding it in, and hands back a copy (calibrationSums.ts).
  const hessians = Math.max(...[...blocks.values()].flatMap((b) => calibrationGroups(b).map(calibrationBytes)))
    + Math.max(...layers.map((l) => calibrationBytes([l])));
  // The weight, its update and the method's float64 copies.
  const largestLayer = Math.max(...layers.map((l) => l.rows * l.cols * 8 * 4));
  // One micro-batch: the widest activation (logits, an MLP) and the attention's seq × seq float32 maps per window.
  // The graph materialises [batch, heads, seq, seq] scores (q·kᵀ), the masked scores and their softmax; measured
  // with onnxruntime 1.30 on CPU (32 heads × 2048², one window): the peak grows by 3.06–3.2 such maps, so three
  // per head (llama.ts, decoderParts.ts attention). Without a head count, one map per window.
  const widest = Math.max(...layers.map((l) => Math.max(l.rows, l.cols)));
  const seq = Math.max(s.seqlen, s.evalSeqlen);
  const maps = s.heads ? SCORE_MAPS_PER_HEAD * s.heads : 1;
  const batch = s.microBatch * seq * (widest + maps * seq) * 4;
  return { activations, hessians, largestLayer, batch, total: activations + hessians + largestLayer + batch };
}

/** The cgroup v2 (or v1) memory limit minus what the cgroup already uses, or null when there is none. */
function cgroupHeadroom(): number | null {
  const read = (file: string): number | null => {
    try {
      const v = Number(readFileSync(file, 'utf8').trim());
      return Number.isFinite(v) ? v : null;
    } catch {
      return null;
    }
  };
  const limit = read('/sys/fs/cgroup/memory.max') ?? read('/sys/fs/cgroup/memory/memory.limit_in_bytes');
  if (limit === null || limit >= 2 ** 60) return null; // "max" reads as NaN, v1's unlimited as ~2⁶³
  const used = read('/sys/fs/cgroup/memory.current') ?? read('/sys/fs/cgroup/memory/memory.usage_in_bytes') ?? 0;
  return Math.max(0, limit - used);
}

/** Bytes this process can still get: free memory (MemAvailable on Linux), capped by the cgroup's headroom. */
export function availableMemory(): { bytes: number; source: string } {
  const free = os.freemem();
  const cgroup = cgroupHeadroom();
  return cgroup !== null && cgroup < free ? { bytes: cgroup, source: 'the cgroup memory limit' } : { bytes: free, source: 'free memory' };
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(b < 2 ** 30 ? 2 : 1)} GiB`;

/** One line with the numbers when the estimate exceeds what is available, else null. */
export function memoryProblem(e: MemoryEstimate, available = availableMemory()): string | null {
  if (e.total <= available.bytes) return null;
  return (
    `the run needs about ${gib(e.total)} (calibration activations ${gib(e.activations)}, Hessians ${gib(e.hessians)}, largest layer ${gib(e.largestLayer)}, ` +
      `one batch ${gib(e.batch)}) but ${available.source} is ${gib(available.bytes)}; lower calibration.nsamples or seqlen (--nsamples, --seqlen, --eval-seqlen)`
  );
}

/** memoryProblem for a config's run over `layers`; `autoSeqlen` fills a null seqlen as the run will; `heads` as RunSizes'. */
export function runMemoryProblem(config: ResolvedConfig, layers: readonly PrunableLayer[], autoSeqlen: number, microBatch: number, heads: number | null = null): string | null {
  return memoryProblem(estimateRunMemory(layers, runSizes(config, autoSeqlen, microBatch, heads)));
}

/** A config's RunSizes; `autoSeqlen` fills a null seqlen as the run will. */
export function runSizes(config: ResolvedConfig, autoSeqlen: number, microBatch: number, heads: number | null = null): RunSizes {
  const c = config.calibration;
  const seqlen = c ? (c.seqlen ?? autoSeqlen) : 0;
  const evalSeqlen = config.evaluation ? (config.evaluation.seqlen ?? (seqlen || autoSeqlen)) : 0;
  return { nsamples: c?.nsamples ?? 0, seqlen, evalSeqlen, microBatch, heads };
}

/** Windows per onnxruntime run: sizes.microBatch, halved until the run's estimate fits in `available`, down to 1
 *  (which memoryProblem then judges). Fewer windows per run cost time, not results' quality: each run adds its XᵀX
 *  to the running sums in one pass (docs/BENCHMARKS.md, bench:peer). */
export function fittingMicroBatch(layers: readonly PrunableLayer[], sizes: RunSizes, available = availableMemory()): number {
  let m = sizes.microBatch;
  while (m > 1 && estimateRunMemory(layers, { ...sizes, microBatch: m }).total > available.bytes) m = Math.floor(m / 2);
  return m;
}
