// OWL: Outlier Weighed Layerwise sparsity (Yin et al., "Outlier Weighed Layerwise Sparsity (OWL): A Missing
// Secret Sauce for Pruning LLMs to High Sparsity", ICML 2024; official code luuyin/OWL, lib/prune_all.py,
// prune_wanda_outlier). Hand-written: the allocation is the pipeline's core, a few lines of arithmetic.
//
// Per block b (a decoder layer), over the Wanda scores A_ij = |W_ij|·‖X_j‖₂ of all its pruned layers together:
//     D_b = 100 · #{A_ij > M · mean(A)} / #A                       (the outlier ratio, in percent; M = 5)
//     d_b = (D_b − min D) / (max D − min D) · 2λ                    (λ = 0.08; all 0 when every D_b is equal)
// The published density of block b is d_b − mean(d) + (1 − S), its sparsity S − (d_b − mean(d)): blocks with more
// outliers are pruned less, within [S − 2λ, S + 2λ], at mean S over the blocks. Here mean(d) is weighted by
// each block's pruned parameters, so the model's sparsity is the requested one whatever the block sizes (the
// plain mean where the blocks are equal, as in every decoder stack). The offset δ_b = mean_w(d) − d_b is added
// to the target of each unstructured layer of the block, so per-layer overrides keep their differences.
// ‖X_j‖₂ is read as colNorm2 = (1/N)Σ x_j² (Wanda's scaler_row): the constant 1/N does not change the ratio.

/** Σ A and #A of one layer, and the count of A above a threshold: the two passes of the outlier ratio. */
export interface ScoredLayer {
  /** The weight as stored: (rows, cols) row-major when `transposed` is false, (cols, rows) when true. */
  W: Float32Array;
  rows: number;
  cols: number;
  transposed: boolean;
  /** (cols) Σ x_j² per input feature (any positive scale shared by the block). */
  colNorm2: Float32Array | Float64Array;
}

/** Visits every Wanda score |W_ij|·‖X_j‖ of a layer. */
function forEachScore(l: ScoredLayer, visit: (a: number) => void): void {
  const norm = Float64Array.from(l.colNorm2, (v) => Math.sqrt(Math.max(0, v)));
  const { W, rows, cols } = l;
  if (l.transposed) {
    for (let j = 0; j < cols; j++) for (let r = 0; r < rows; r++) visit(Math.abs(W[j * rows + r]) * norm[j]);
  } else {
    for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) visit(Math.abs(W[r * cols + j]) * norm[j]);
  }
}

/** D_b: the percentage of the block's scores above M times their mean (the published check_outlier_mean). */
export function outlierRatio(layers: readonly ScoredLayer[], threshold: number): number {
  let sum = 0;
  let count = 0;
  for (const l of layers) forEachScore(l, (a) => { sum += a; count++; });
  if (count === 0) return 0;
  const cut = (sum / count) * threshold;
  let above = 0;
  for (const l of layers) forEachScore(l, (a) => { if (a > cut) above++; });
  return (100 * above) / count;
}

/** δ_b, the sparsity offset of each block, from the outlier ratios D_b and the pruned parameters n_b. */
export function owlOffsets(ratios: readonly number[], parameters: readonly number[], maxDeviation: number): number[] {
  if (ratios.length !== parameters.length) throw new Error(`OWL: ${ratios.length} outlier ratios for ${parameters.length} blocks`);
  const lo = Math.min(...ratios);
  const span = Math.max(...ratios) - lo;
  const d = ratios.map((r) => (span > 0 ? ((r - lo) / span) * 2 * maxDeviation : 0));
  const total = parameters.reduce((s, n) => s + n, 0);
  const mean = total > 0 ? d.reduce((s, x, b) => s + x * parameters[b], 0) / total : 0;
  return d.map((x) => mean - x);
}
