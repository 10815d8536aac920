// The left-to-right blocked OBS sweep shared by SparseGPT and APT (algorithms.md §1.5, §2.2).
//
// Both methods walk the input columns in blocks of B. For a block b = [i1, i2) with the still-active set
// A = [i1, cols), the upper inverse-Hessian factor U gives (H_AA⁻¹)_{b,:} = Gᵀ·U[b, i1:] with G = U[b, b].
// Each method turns the block's current weights into a mask and an error matrix E (rows × B) such that
// the optimal compensation of the whole active set is  W[:, i1:] −= E · U[b, i1:]  — one GEMM per block,
// which also performs the in-block update. SparseGPT's E comes from removing one column at a time;
// APT's from removing each row's pruned set jointly. Everything else lives here, once.

import { dampedInverseFactor } from '../linalg/cholesky';
import { Kernels, mat } from '../linalg/kernels';
import { sharedF64, sharedU8 } from '../parallel/rowPool';
import type { Engine } from '../onnx/session';
import { LayerProblem, MethodOutput, PruneOptions } from './types';

/** What a method sees of one block. All arrays are row-major float64 unless noted. */
export interface Block {
  rows: number;
  /** Block width B (the last block may be narrower). */
  width: number;
  /** Index of the block's first column. */
  start: number;
  /** (rows, width) current weights of the block, after all updates from earlier blocks. */
  w: Float64Array;
  /** (width, width) G = U[b, b], upper triangular. */
  G: Float64Array;
  /** (rows, width) 1 = pruned. Pre-filled (and not to be changed) when `fixedMask`. */
  mask: Uint8Array;
  fixedMask: boolean;
  /** (rows, width) output: the block's error matrix E. */
  E: Float64Array;
  /** Columns from this one on are a trailing partial N:M group and stay dense. */
  denseFrom: number;
  /** (rows, width) scratch for mask scores, reused by every block. */
  scores: Float64Array;
}

/** Fills the block's mask (unless fixed) and E. The block's arrays live in shared memory, so a solver may
 *  hand rows to worker threads. */
export type BlockSolver = (block: Block) => void | Promise<void>;

export async function obsSweep(problem: LayerProblem, options: PruneOptions, engine: Engine, solve: BlockSolver): Promise<MethodOutput> {
  const { rows, cols } = problem;
  const pattern = options.pattern;
  const m = pattern.kind === 'nm' ? pattern.m : 1;
  // N:M groups must not straddle blocks.
  const blockSize = Math.max(m, Math.ceil((options.blockSize ?? 128) / m) * m);
  const kernels = new Kernels(engine);
  const factor = await dampedInverseFactor(problem.H as Float32Array, cols, options.dampening ?? 0.01, kernels);
  const notes = [...factor.notes];
  if (factor.dead.length) notes.push(`${factor.dead.length} input column(s) never active in calibration: their weights are zeroed`);
  if (blockSize !== (options.blockSize ?? 128)) notes.push(`block size rounded to ${blockSize}, a multiple of M=${m}`);
  const denseFromCol = cols - (cols % m);
  if (denseFromCol < cols) notes.push(`cols=${cols} is not a multiple of M=${m}: the last ${cols - denseFromCol} column(s) stay dense`);
  const U = factor.U;

  // Work on Wᵀ (cols, rows): a block of columns of W is then a contiguous run of rows, and the suffix
  // W[:, i1:] the GEMM updates is a contiguous tail of the array.
  const Wt = new Float32Array(cols * rows);
  transpose(problem.W, rows, cols, Wt);
  for (const j of factor.dead) Wt.fill(0, j * rows, (j + 1) * rows);
  const mask = new Uint8Array(rows * cols);

  // One set of shared block buffers per layer, reused by every block (zeroed where the solvers expect zeros).
  // Fresh ones per block would pile up: the pool's workers keep each buffer they were sent alive until their own
  // garbage collection, which idle workers hardly ever run (≈ 0.5 GB retained by the end of a hidden-1024 run).
  const wBuf = sharedF64(rows * blockSize);
  const EBuf = sharedF64(rows * blockSize);
  const GBuf = sharedF64(blockSize * blockSize);
  const maskBuf = sharedU8(rows * blockSize);
  const E32 = new Float32Array(rows * blockSize);
  const Ub = new Float32Array(blockSize * cols);
  const scoresBuf = new Float64Array(rows * blockSize);

  for (let i1 = 0; i1 < cols; i1 += blockSize) {
    const i2 = Math.min(i1 + blockSize, cols);
    const width = i2 - i1;
    const w = wBuf.subarray(0, rows * width);
    transpose(Wt.subarray(i1 * rows, i2 * rows), width, rows, w);
    const G = GBuf.subarray(0, width * width);
    for (let k = 0; k < width; k++) U.row(i1 + k, i1, i2, G, k * width);
    const blockMask = maskBuf.subarray(0, rows * width).fill(0);
    if (options.mask) for (let r = 0; r < rows; r++) blockMask.set(options.mask.subarray(r * cols + i1, r * cols + i2), r * width);
    const block: Block = {
      rows, width, start: i1, w, G, mask: blockMask, fixedMask: !!options.mask,
      E: EBuf.subarray(0, rows * width).fill(0), denseFrom: Math.max(0, denseFromCol - i1),
      scores: scoresBuf.subarray(0, rows * width),
    };
    await solve(block);

    // W[:, i1:] −= E·U[b, i1:]   ⇔   Wᵀ[i1:, :] −= U[b, i1:]ᵀ · Eᵀ, in place on the tail of Wᵀ.
    // (Grouping two blocks into one GEMM with inner dimension 2B measured no faster: onnxruntime's CPU GEMM
    // works through the inner dimension in strides anyway.)
    const n = cols - i1;
    for (let k = 0; k < width; k++) U.row(i1 + k, i1, cols, Ub, k * n);
    const E = E32.subarray(0, rows * width);
    E.set(block.E);
    await kernels.cMinusATBTInPlace(mat(width, n, Ub.subarray(0, width * n)), mat(rows, width, E), mat(n, rows, Wt.subarray(i1 * rows)));

    // Pruned weights become exact zeros; the block is now frozen.
    for (let r = 0; r < rows; r++) mask.set(blockMask.subarray(r * width, (r + 1) * width), r * cols + i1);
    for (let r0 = 0; r0 < rows; r0 += TILE) {
      const r1 = Math.min(rows, r0 + TILE);
      for (let k = 0; k < width; k++) {
        const o = (i1 + k) * rows;
        for (let r = r0; r < r1; r++) if (blockMask[r * width + k]) Wt[o + r] = 0;
      }
    }
  }
  // The output W = (Wᵀ)ᵀ: in place for a square layer, so no second rows×cols array exists at the end.
  let W = Wt;
  if (rows === cols) transposeSquareInPlace(Wt, rows);
  else transpose(Wt, cols, rows, (W = new Float32Array(rows * cols)));
  return { W, mask, dampening: factor.dampening, notes };
}

const TILE = 32;

/** a (n×n, row-major) ← aᵀ, swapping TILE×TILE tiles across the diagonal. */
function transposeSquareInPlace(a: Float32Array, n: number): void {
  for (let r0 = 0; r0 < n; r0 += TILE) {
    const r1 = Math.min(n, r0 + TILE);
    for (let c0 = r0; c0 < n; c0 += TILE) {
      const c1 = Math.min(n, c0 + TILE);
      for (let r = r0; r < r1; r++) {
        for (let c = c0 === r0 ? r + 1 : c0; c < c1; c++) {
          const x = a[r * n + c];
          a[r * n + c] = a[c * n + r];
          a[c * n + r] = x;
        }
      }
    }
  }
}

/** dst (cols, rows) = srcᵀ for a row-major src (rows, cols), in TILE×TILE tiles so that both the reads
 *  and the writes stay within a few cache lines (a plain double loop strides one of them by a whole row). */
function transpose(src: ArrayLike<number>, rows: number, cols: number, dst: { [i: number]: number }): void {
  for (let r0 = 0; r0 < rows; r0 += TILE) {
    const r1 = Math.min(rows, r0 + TILE);
    for (let c0 = 0; c0 < cols; c0 += TILE) {
      const c1 = Math.min(cols, c0 + TILE);
      for (let r = r0; r < r1; r++) {
        const o = r * cols;
        for (let c = c0; c < c1; c++) dst[c * rows + r] = src[o + c];
      }
    }
  }
}
