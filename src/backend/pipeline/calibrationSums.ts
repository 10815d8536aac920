// Calibration sums: the per-batch XᵀX and Σx² a calibration variant (segmentGraph.ts) outputs, accumulated over
// micro-batches and scaled into the Hessian and the column norms the pruning methods read.

import * as ort from 'onnxruntime-node';
import { dropped } from '../fullCollection';
import { Kernels, mat } from '../linalg/kernels';
import type { Engine, Kernel } from '../onnx/session';
import type { CalibrationGraph } from './segmentGraph';

/**
 * Runs one micro-batch (`sequences` windows) through a calibration graph and adds its statistics to `sums` (one
 * per stat key; the graph's other outputs, e.g. keepOutputs' activations, are returned). XᵀX is added by the graph
 * itself: each running sum is fed as its stat's `sumIn` and comes back as its `xtx` output.
 * - On the host, that output is pre-allocated on the sum's own memory (an elementwise Add reads each element before
 *   writing it), so a batch's XᵀX is a cols² matrix (485 MB at 11008 columns) only inside onnxruntime, freed as the
 *   run ends. onnxruntime-node 1.30 still returns a copy of every output, a pre-allocated one too: those of XᵀX are
 *   dropped at once (fullCollection.ts).
 * - When the kernel leaves `xtx` on the device (WebGPU: Kernel.onDevice), the running sum stays there between
 *   batches (CalibrationSums.device): it goes up once, with the first batch, and comes back once (downloadSums).
 */
export async function runCalibration(kernel: Kernel, cg: CalibrationGraph, feeds: Record<string, ort.Tensor>, sums: Map<string, CalibrationSums>, sequences: number): Promise<Record<string, ort.Tensor>> {
  const inPlace: Record<string, ort.Tensor> = {};
  const fetches: Record<string, ort.Tensor | null> = Object.fromEntries(cg.outputs.map((o) => [o, null]));
  for (const s of cg.stats) {
    const running = sumsOf(sums, s.key);
    const host = new ort.Tensor('float32', running.xtx, s.groups === 1 ? [s.cols, s.cols] : [s.groups, s.cols, s.cols]);
    inPlace[s.sumIn] = running.device ?? host;
    if (!kernel.onDevice.has(s.xtx)) fetches[s.xtx] = host;
  }
  const out = await kernel.run({ ...feeds, ...inPlace }, fetches);
  for (const s of cg.stats) {
    const into = sums.get(s.key) as CalibrationSums;
    into.count(out[s.colSq].data as Float32Array, sequences, s.routed ? (out[s.routed].data as Float32Array)[0] : undefined);
    for (const [layer, name] of Object.entries(s.outSq)) into.addOutput(layer, out[name].data as Float32Array);
    if (kernel.onDevice.has(s.xtx)) {
      into.device?.dispose();
      into.device = out[s.xtx];
    } else dropped(into.xtx.byteLength);
    delete out[s.xtx];
  }
  return out;
}

/** The running sums left on the device by runCalibration, into their host arrays (the device's copies freed). */
export async function downloadSums(sums: Map<string, CalibrationSums>, engine: Engine): Promise<void> {
  const kernels = new Kernels(engine);
  for (const s of sums.values()) {
    if (!s.device) continue;
    await kernels.download(s.device, mat(1, s.xtx.length, s.xtx));
    s.device.dispose();
    s.device = null;
  }
}

/** Empty sums for every statistic of a calibration graph, by stat key (runCalibration's `sums`). */
export function emptySums(cg: CalibrationGraph): Map<string, CalibrationSums> {
  return new Map(cg.stats.map((s) => [s.key, new CalibrationSums(s.cols, s.groups)]));
}

function sumsOf(sums: Map<string, CalibrationSums>, key: string): CalibrationSums {
  const s = sums.get(key);
  if (!s) throw new Error(`calibration sums: none for ${key}`);
  if (s.isScaled) throw new Error('calibration sums: a run after hessian()');
  return s;
}

/**
 * Running sums of a calibration variant's outputs over micro-batches, scaled as HessianAccumulator does:
 * H = (2/N)·Σ_tokens xᵀx and colNorm2 = (1/N)·Σ_tokens x² (Wanda's scaler_row), N = sequences seen.
 */
export class CalibrationSums {
  readonly xtx: Float32Array;
  readonly colSq: Float64Array;
  sequences = 0;
  /** Tokens with a positive token weight (the `routed` output), when the statistic has a token weight. */
  routedTokens?: number;
  /** The running XᵀX in the device's memory while runCalibration keeps it there (xtx is stale until downloadSums). */
  device: ort.Tensor | null = null;
  /** hessian() has scaled xtx in place. */
  private scaled = false;
  /** What hessian()'s pass found: no NaN or ±inf in H. */
  private finite = false;
  /** Per layer name, Σ_tokens ‖y‖² of its output (calibrationModel's outSq), in float64. */
  private readonly outSq = new Map<string, number>();

  /** groups > 1: that many independent (cols, cols) Hessians, one after the other (a depthwise conv's channels). */
  constructor(readonly cols: number, readonly groups = 1) {
    this.xtx = new Float32Array(groups * cols * cols);
    this.colSq = new Float64Array(groups * cols);
  }

  /** Adds one batch's XᵀX and Σx² for `sequences` sequences, and its `routed` count (runCalibration has the
   *  graph add XᵀX in place, then counts the rest). */
  add(xtx: Float32Array, colSq: Float32Array, sequences: number, routed?: number): void {
    if (xtx.length !== this.xtx.length) throw new Error(`calibration sums: expected ${this.groups} × ${this.cols} columns`);
    if (this.scaled) throw new Error('calibration sums: add() after hessian()');
    for (let i = 0; i < xtx.length; i++) this.xtx[i] += xtx[i];
    this.count(colSq, sequences, routed);
  }

  /** Adds one batch's Σx², sequences and `routed` count: all of a batch but XᵀX, which `xtx` has already taken. */
  count(colSq: Float32Array, sequences: number, routed?: number): void {
    if (colSq.length !== this.colSq.length) throw new Error(`calibration sums: expected ${this.groups} × ${this.cols} columns`);
    if (this.scaled) throw new Error('calibration sums: count() after hessian()');
    if (routed !== undefined) this.routedTokens = (this.routedTokens ?? 0) + routed;
    for (let j = 0; j < this.colSq.length; j++) this.colSq[j] += colSq[j];
    this.sequences += sequences;
  }

  get isScaled(): boolean {
    return this.scaled;
  }

  /** Adds one batch's per-token Σ y² of `layer`'s output (its sequences are counted by count()). */
  addOutput(layer: string, perToken: Float32Array): void {
    let s = this.outSq.get(layer) ?? 0;
    for (let i = 0; i < perToken.length; i++) s += perToken[i];
    this.outSq.set(layer, s);
  }

  /** (1/N)·Σ_tokens ‖W x‖² = 0.5·tr(W H Wᵀ) for a layer whose outputs were added, else undefined. */
  reference(layer: string): number | undefined {
    const s = this.outSq.get(layer);
    return s === undefined ? undefined : s / this.sequences;
  }

  /** (groups, cols, cols) H = (2/N)·Σ XᵀX. The first call scales the sums in place (H can be cols² × 4 bytes: no copy);
   *  later calls return the same array, so layers sharing an input share one H (methods never modify it). */
  hessian(): Float32Array {
    if (this.device) throw new Error('calibration sums: hessian() before downloadSums()');
    if (!this.scaled) {
      const a = 2 / this.sequences;
      const xtx = this.xtx;
      const bits = new Int32Array(xtx.buffer, xtx.byteOffset, xtx.length);
      let m = 0; // allFinite (methods/index.ts) of H, in the scaling's pass: the layer's check then reads H no more
      for (let i = 0; i < xtx.length; i++) {
        xtx[i] *= a;
        m |= (bits[i] & 0x7f800000) + 0x00800000;
      }
      this.finite = m >= 0;
      this.scaled = true;
    }
    return this.xtx;
  }

  /** hessian() has been made and holds no NaN or ±inf. */
  get hessianFinite(): boolean {
    return this.scaled && this.finite;
  }

  /** The unscaled sums (before hessian()), to be kept and restored bit for bit (a sweep's shared first block). */
  saved(): SavedSums {
    if (this.scaled) throw new Error('calibration sums: saved() after hessian()');
    if (this.device) throw new Error('calibration sums: saved() before downloadSums()');
    return { cols: this.cols, groups: this.groups, sequences: this.sequences, routedTokens: this.routedTokens, outSq: [...this.outSq], xtx: this.xtx, colSq: this.colSq };
  }

  static restore(s: SavedSums): CalibrationSums {
    const sums = new CalibrationSums(s.cols, s.groups);
    if (s.xtx.length !== sums.xtx.length || s.colSq.length !== sums.colSq.length) throw new Error(`calibration sums: expected ${s.groups} × ${s.cols} columns`);
    sums.xtx.set(s.xtx);
    sums.colSq.set(s.colSq);
    sums.sequences = s.sequences;
    sums.routedTokens = s.routedTokens;
    for (const [layer, v] of s.outSq) sums.outSq.set(layer, v);
    return sums;
  }

  /** (groups, cols) (1/N)·Σ_tokens x_j². */
  colNorm2(): Float32Array {
    return Float32Array.from(this.colSq, (v) => v / this.sequences);
  }
}

/** CalibrationSums' state before scaling: what a calibration store keeps. */
export interface SavedSums {
  cols: number;
  groups: number;
  sequences: number;
  routedTokens?: number;
  /** Per layer, Σ_tokens ‖y‖². */
  outSq: [string, number][];
  xtx: Float32Array;
  colSq: Float64Array;
}
