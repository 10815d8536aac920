// Calibration sums: the per-batch XᵀX and Σx² a calibration variant (segmentGraph.ts) outputs, accumulated over
// micro-batches and scaled into the Hessian and the column norms the pruning methods read.

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
  /** hessian() has scaled xtx in place. */
  private scaled = false;
  /** Per layer name, Σ_tokens ‖y‖² of its output (calibrationModel's outSq), in float64. */
  private readonly outSq = new Map<string, number>();

  /** groups > 1: that many independent (cols, cols) Hessians, one after the other (a depthwise conv's channels). */
  constructor(readonly cols: number, readonly groups = 1) {
    this.xtx = new Float32Array(groups * cols * cols);
    this.colSq = new Float64Array(groups * cols);
  }

  /** Adds one batch's XᵀX and Σx² (from the calibration variant) for `sequences` sequences, and its `routed` count. */
  add(xtx: Float32Array, colSq: Float32Array, sequences: number, routed?: number): void {
    if (routed !== undefined) this.routedTokens = (this.routedTokens ?? 0) + routed;
    if (xtx.length !== this.xtx.length || colSq.length !== this.colSq.length) throw new Error(`calibration sums: expected ${this.groups} × ${this.cols} columns`);
    if (this.scaled) throw new Error('calibration sums: add() after hessian()');
    for (let i = 0; i < xtx.length; i++) this.xtx[i] += xtx[i];
    for (let j = 0; j < this.colSq.length; j++) this.colSq[j] += colSq[j];
    this.sequences += sequences;
  }

  /** Adds one batch's per-token Σ y² of `layer`'s output (its sequences are counted by add()). */
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
    if (!this.scaled) {
      const a = 2 / this.sequences;
      for (let i = 0; i < this.xtx.length; i++) this.xtx[i] *= a;
      this.scaled = true;
    }
    return this.xtx;
  }

  /** The unscaled sums (before hessian()), to be kept and restored bit for bit (a sweep's shared first block). */
  saved(): SavedSums {
    if (this.scaled) throw new Error('calibration sums: saved() after hessian()');
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
