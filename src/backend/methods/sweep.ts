// The left-to-right blocked OBS sweep shared by SparseGPT and APT (algorithms.md §1.5, §2.2).
//
// Both methods walk the input columns in blocks of B. For a block b = [i1, i2) with the still-active set
// A = [i1, cols), the upper inverse-Hessian factor U (H⁻¹ = UᵀU) gives (H_AA⁻¹)_{b,:} = Gᵀ·U[b, i1:] with
// G = U[b, b]. Each method turns the block's current weights into a mask and an error matrix E (rows × B) such
// that the optimal compensation of the whole active set is W[:, i1:] −= E·U[b, i1:]. SparseGPT's E comes from
// removing one column at a time; APT's from removing each row's pruned set jointly. Everything else lives here.
//
// Over all blocks the compensation is F = E·U, so the pruned weights are W − F. The reference applies each
// block's E·U[b, i1:] to the columns on its right as soon as E is known ("lazy" right-looking updates, one
// GEMM of inner dimension B per block). This sweep is left-looking instead: with R = U⁻¹ (upper, H = R·Rᵀ,
// one Cholesky and no triangular inverse), F·R = E gives block b's share of the earlier blocks' compensation
//     F^{<b}_b = −F[:, :i1]·R[:i1, b]·G,   G = U[b, b] = R[b, b]⁻¹,
// one GEMM of inner dimension i1 per block (the same flops as the lazy updates, at a far better GEMM rate),
// and after the method has chosen E, F_b = E·G + F^{<b}_b. Same arithmetic in exact terms, half the
// factorisation, and only the finished blocks' F is ever written.
//
// The loss comes with it (sweepLoss): F·R = E block by block, whatever E the method chose, so the damped loss is
// ½·tr(F H_d Fᵀ) = ½·‖F·R‖² = ½·‖E‖² (H_d = R·Rᵀ), and the undamped one, what every method reports, is
// ½·‖E‖² − ½·λ·‖F‖² over the live columns (H_d − H = λ·I there; F is 0 on dead columns, where H is 0 anyway).
// For SparseGPT that is the sum of its per-column OBS errors err²/2, for APT the sum of its joint removal losses
// ½·w_P S_PP⁻¹ w_Pᵀ: no second pass over H.

import { DampedCholesky, dampedCholeskyFactor, invertUpper } from '../linalg/cholesky';
import { dampedDeviceFactor, DeviceFactor, releaseDeviceFactor } from '../linalg/deviceFactor';
import type * as ort from 'onnxruntime-node';
import { BlockReferenceOperands, Kernels, Mat, mat } from '../linalg/kernels';
import { transpose } from '../models/emitter';
import { sharedF64, sharedU8 } from '../parallel/rowPool';
import { Engine } from '../onnx/session';
import { kthSmallest, sampleBracket } from './masks';
import { rowPool } from './rowKernels';
import { LayerProblem, MethodName, MethodOutput, PruneOptions, PruningMethod } from './types';

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
  /** (rows, width) output: the block's error matrix E. Not cleared between blocks: a solver writes all of it, so
   *  until it does, E is scratch (adaptiveBlockMask keeps its candidate scores there). */
  E: Float64Array;
  /** Columns from this one on are a trailing partial N:M group and stay dense. */
  denseFrom: number;
  /** (3 × pool size) scratch for adaptiveBlockMask's per-part counts (shared memory). */
  parts: Int32Array;
}

/** The block arrays the row pool's threads see (shared memory). */
interface SharedBlockBuffers {
  w: Float64Array;
  E: Float64Array;
  G: Float64Array;
  mask: Uint8Array;
  parts: Int32Array;
}

// The shared block arrays are kept from one layer to the next: the pool's workers keep every SharedArrayBuffer they
// were sent alive until their own garbage collection, which idle workers hardly ever run, so fresh ones per layer
// piled up (≈ 13 MB per 4096-row layer; and fresh ones per block, far more). A sweep takes the spare set if it is
// large enough (else allocates one) and leaves the larger of the two behind; concurrent sweeps never share a set.
let spare: SharedBlockBuffers | undefined;

function takeSharedBuffers(rows: number, B: number): SharedBlockBuffers {
  const s = spare;
  if (s && s.w.length >= rows * B && s.G.length >= B * B) {
    spare = undefined;
    return s;
  }
  const n = rows * B;
  return { w: sharedF64(n), E: sharedF64(n), G: sharedF64(B * B), mask: sharedU8(n), parts: new Int32Array(new SharedArrayBuffer(rowPool.size * 3 * 4)) };
}

function keepSharedBuffers(s: SharedBlockBuffers): void {
  if (!spare || spare.w.length < s.w.length) spare = s;
}

/** What the sweep asks of its factor and of where its operands live, per block b = [i1, i2). */
interface SweepOperands {
  /** The factor's dampening, λ, dead inputs and notes. */
  readonly factor: { dampening: number; lambda: number; dead: number[]; notes: string[] };
  /** G = R[b, b]⁻¹ (upper, float64) into G. */
  inverse(i1: number, i2: number, G: Float64Array): void;
  /** The block's current weights W[:, b]·live + D into w, D = F[:, :i1]·R[:i1, b]·G the earlier blocks'
   *  compensation (none for block 0). */
  blockWeights(i1: number, i2: number, G: Mat, w: Float64Array): Promise<void>;
  /** Fᵀ[i1:i2] = Gᵀ·Eᵀ − Dᵀ. */
  addBlock(i1: number, G: Mat, E: Mat): Promise<void>;
  /** Fᵀ complete in the host's array. */
  finish(): Promise<void>;
  /** The loss's reference ½·tr(W H Wᵀ) (undamped H), if the operands measured it (HostOperands given W0ᵀ). */
  reference(): number | undefined;
  /** H in the device's memory, for the loss's reference (the caller disposes it), if the operands hold it. */
  takeHessian(): ort.Tensor | undefined;
  /** Frees what lives on the device. */
  release(): void;
}

/** The host's operands: R's panels, W and Fᵀ in the host's arrays; each block's graph call sends W, R[:i1, b] and
 *  the finished Fᵀ[:i1] again (on the CPU provider nothing crosses).
 *
 *  Given W0ᵀ (`Wt`, cols × rows), the same graph calls measure the loss's reference: H_d = R·Rᵀ, so
 *  tr(W0 H_d W0ᵀ) = ‖W0·R‖², and block b's columns of W0·R, transposed, are R[:i2, b]ᵀ·W0ᵀ[:i2]: one more
 *  GEMM beside the compensation's (the same rows·cols² flops as a pass over H, with no pass over H). With W0's
 *  dead columns left out (R's rows there are zero off the diagonal, and `rbb`'s are zeroed),
 *  ½·‖W0·R‖² − ½·λ·‖W0_live‖² is the reference with the undamped H, as sweepLoss takes the loss. */
class HostOperands implements SweepOperands {
  private readonly Rbb: Float64Array;
  private readonly Rcol: Float32Array;
  private readonly Dt: Float32Array;
  private readonly wb: Float32Array;
  private readonly rbb: Float32Array;
  private referenceSq = 0; // ‖W0·R‖², block by block
  private liveSq = 0; // ‖W0_live‖²

  constructor(private readonly kernels: Kernels, readonly factor: DampedCholesky, private readonly W: Mat, private readonly Ft: Float32Array, private readonly live: Float32Array, B: number, private readonly Wt?: Float32Array) {
    this.Rbb = new Float64Array(B * B);
    this.Rcol = new Float32Array(W.cols * B);
    this.Dt = new Float32Array(W.rows * B);
    this.wb = new Float32Array(W.rows * B);
    this.rbb = new Float32Array(Wt ? B * B : 0);
  }

  inverse(i1: number, i2: number, G: Float64Array): void {
    const width = i2 - i1;
    for (let k = 0; k < width; k++) this.factor.R.row(i1 + k, i1, i2, this.Rbb, k * width);
    if (this.Wt) for (let i = 0; i < width * width; i++) this.rbb[i] = this.Rbb[i] * this.live[i1 + Math.floor(i / width)];
    invertUpper(this.Rbb, width, G);
  }

  async blockWeights(i1: number, i2: number, G: Mat, w: Float64Array): Promise<void> {
    const { rows, cols, data: W } = this.W;
    const width = i2 - i1;
    const ref = this.Wt ? this.referenceOperands(i1, i2) : undefined;
    if (i1 === 0) {
      liveColumns(W, cols, i1, this.live, w, rows, width);
      if (ref) this.referenceSq += await this.kernels.firstBlockReference(ref);
      return;
    }
    for (let p = 0; p < i1; p++) this.factor.R.row(p, i1, i2, this.Rcol, p * width);
    const wb = mat(rows, width, this.wb.subarray(0, rows * width));
    const r = mat(i1, width, this.Rcol.subarray(0, i1 * width));
    this.referenceSq += await this.kernels.sweepBlock(G, r, mat(i1, rows, this.Ft.subarray(0, i1 * rows)), this.W, i1, this.live.subarray(i1, i2), this.dt(width), wb, ref);
    w.set(wb.data);
  }

  /** Block b's reference operands (see the class), and its live rows of W0ᵀ added to ‖W0_live‖². */
  private referenceOperands(i1: number, i2: number): Required<BlockReferenceOperands> {
    const { rows } = this.W;
    const Wt = this.Wt as Float32Array;
    const width = i2 - i1;
    for (let j = i1; j < i2; j++) if (this.live[j]) this.liveSq += sumOfSquares(Wt.subarray(j * rows, (j + 1) * rows));
    return { rbb: mat(width, width, this.rbb.subarray(0, width * width)), wtBlock: mat(width, rows, Wt.subarray(i1 * rows, i2 * rows)), wtHead: mat(i1, rows, Wt.subarray(0, i1 * rows)) };
  }

  reference(): number | undefined {
    return this.Wt ? 0.5 * (this.referenceSq - this.factor.lambda * this.liveSq) : undefined;
  }

  async addBlock(i1: number, G: Mat, E: Mat): Promise<void> {
    const rows = this.W.rows;
    const Dt = this.dt(G.rows);
    if (i1 === 0) Dt.data.fill(0);
    await this.kernels.aTbTMinusC(G, E, Dt, mat(G.rows, rows, this.Ft.subarray(i1 * rows, (i1 + G.rows) * rows)));
  }

  private dt(width: number): Mat {
    return mat(width, this.W.rows, this.Dt.subarray(0, width * this.W.rows));
  }

  async finish(): Promise<void> {}

  takeHessian(): undefined {
    return undefined;
  }

  release(): void {}
}

/** The device's operands (Engine.keepsOnDevice: WebGPU): the factor is computed there (deviceFactor.ts: H up once)
 *  and R's columns stay there, as does Fᵀ between blocks. Per block Dᵀ comes down (the host adds it to the block's
 *  weights, so W never goes up) and E goes up; Fᵀ comes down once: about 3·W + H per layer. */
class DeviceOperands implements SweepOperands {
  private ft: ort.Tensor | null = null;
  private dtDevice: ort.Tensor | null = null;
  private readonly Dt: Float32Array;

  constructor(private readonly kernels: Kernels, readonly factor: DeviceFactor, private readonly W: Mat, private readonly Ft: Float32Array, private readonly live: Float32Array, private readonly B: number) {
    this.Dt = new Float32Array(W.rows * B);
  }

  inverse(i1: number, _i2: number, G: Float64Array): void {
    G.set(this.factor.inverses[i1 / this.B]);
  }

  async blockWeights(i1: number, i2: number, G: Mat, w: Float64Array): Promise<void> {
    const { rows, cols, data: W } = this.W;
    const width = i2 - i1;
    if (i1 === 0) return liveColumns(W, cols, i1, this.live, w, rows, width);
    const Dt = mat(width, rows, this.Dt.subarray(0, width * rows));
    this.dtDevice = await this.kernels.blockCompensationOnDevice(G, this.factor.columns[i1 / this.B] as ort.Tensor, this.ft as ort.Tensor, Dt);
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < width; k++) w[r * width + k] = W[r * cols + i1 + k] * this.live[i1 + k] + Dt.data[k * rows + r];
    }
  }

  async addBlock(_i1: number, G: Mat, E: Mat): Promise<void> {
    const next = await this.kernels.appendBlock(G, E, this.dtDevice, this.ft);
    this.dtDevice?.dispose();
    this.ft?.dispose();
    this.dtDevice = null;
    this.ft = next;
  }

  async finish(): Promise<void> {
    if (this.ft) await this.kernels.download(this.ft, mat(this.W.cols, this.W.rows, this.Ft));
  }

  reference(): undefined {
    return undefined; // measured from H, which takeHessian leaves on the device
  }

  takeHessian(): ort.Tensor | undefined {
    const h = this.factor.hessian ?? undefined;
    this.factor.hessian = null;
    return h;
  }

  release(): void {
    for (const x of [this.ft, this.dtDevice]) x?.dispose();
    this.ft = this.dtDevice = null;
    releaseDeviceFactor(this.factor);
  }
}

/** The operands for this layer: on the device when the engine keeps outputs there and the layer has more than one
 *  block (one block has no left-looking product, and its factor is one host Cholesky). */
async function sweepOperands(kernels: Kernels, problem: LayerProblem, Ft: Float32Array, live: Float32Array, B: number, dampening: number): Promise<SweepOperands> {
  const { rows, cols } = problem;
  const H = problem.H as Float32Array;
  const W = mat(rows, cols, problem.W);
  if (cols > B && await kernels.keepsOnDevice()) {
    return new DeviceOperands(kernels, await dampedDeviceFactor(H, cols, B, dampening, kernels), W, Ft, live, B);
  }
  // The reference, unless the caller has it: from W0ᵀ as the caller holds it (a weight stored [in, out]), else a copy.
  const Wt = problem.reference !== undefined ? undefined : problem.Wt ?? transpose(problem.W, rows, cols);
  return new HostOperands(kernels, await dampedCholeskyFactor(H, cols, dampening, kernels), W, Ft, live, B, Wt);
}

/** Fills the block's mask (unless fixed) and E. The block's arrays live in shared memory, so a solver may
 *  hand rows to worker threads. */
export type BlockSolver = (block: Block) => void | Promise<void>;

/** A method made of the shared sweep and its block solver (SparseGPT, APT). */
export function sweepMethod(name: MethodName, solve: (block: Block, options: PruneOptions) => void | Promise<void>): PruningMethod {
  return { name, needs: 'hessian', prune: (problem, options, engine) => obsSweep(problem, options, engine, (block) => solve(block, options)) };
}

export async function obsSweep(problem: LayerProblem, options: PruneOptions, engine: Engine, solve: BlockSolver): Promise<MethodOutput> {
  const { rows, cols, W } = problem;
  const pattern = options.pattern;
  const m = pattern.kind === 'nm' ? pattern.m : 1;
  // N:M groups must not straddle blocks.
  const blockSize = Math.max(m, Math.ceil((options.blockSize ?? 128) / m) * m);
  const kernels = new Kernels(engine);
  const denseFromCol = cols - (cols % m);

  // Fᵀ (cols, rows): the finished blocks' compensation F[:, :i1] is then the contiguous head Ft[:i1], the operand of
  // each block's left-looking GEMM. At the end it becomes the output (in place for a square layer).
  const Ft = new Float32Array(cols * rows);
  const mask = new Uint8Array(rows * cols);
  const live = new Float32Array(cols).fill(1); // 0 for a dead input: its weights are zeroed
  const operands = await sweepOperands(kernels, problem, Ft, live, blockSize, options.dampening ?? 0.01);
  const { factor } = operands;
  for (const j of factor.dead) live[j] = 0;
  const notes = [...factor.notes];
  if (factor.dead.length) notes.push(`${factor.dead.length} input column(s) never active in calibration: their weights are zeroed`);
  if (blockSize !== (options.blockSize ?? 128)) notes.push(`block size rounded to ${blockSize}, a multiple of M=${m}`);
  if (denseFromCol < cols) notes.push(`cols=${cols} is not a multiple of M=${m}: the last ${cols - denseFromCol} column(s) stay dense`);

  // One set of block buffers, reused by every block (zeroed where the solvers expect zeros); the shared ones also
  // by the next layers.
  const shared = takeSharedBuffers(rows, blockSize);
  const { w: wBuf, E: EBuf, G: GBuf, mask: maskBuf, parts } = shared;
  const G32 = new Float32Array(blockSize * blockSize);
  const E32 = new Float32Array(rows * blockSize); // onnxruntime's copy of the block's E
  let errors2 = 0; // ‖E‖², summed block by block in float64
  let deviceH: ort.Tensor | undefined;
  let reference: number | undefined;

  try {
    for (let i1 = 0; i1 < cols; i1 += blockSize) {
      const i2 = Math.min(i1 + blockSize, cols);
      const width = i2 - i1;
      // G = U[b, b] = R[b, b]⁻¹ (inverted in float64).
      const G = GBuf.subarray(0, width * width);
      operands.inverse(i1, i2, G);
      const g32 = mat(width, width, G32.subarray(0, width * width));
      g32.data.set(G);

      // The block's current weights w = W[:, b] (dead inputs zeroed) + D, with D = F[:, :i1]·R[:i1, b]·G = −F^{<b}_b the
      // earlier blocks' compensation.
      const w = wBuf.subarray(0, rows * width);
      await operands.blockWeights(i1, i2, g32, w);

      const blockMask = maskBuf.subarray(0, rows * width).fill(0);
      if (options.mask) for (let r = 0; r < rows; r++) blockMask.set(options.mask.subarray(r * cols + i1, r * cols + i2), r * width);
      const block: Block = {
        rows, width, start: i1, w, G, mask: blockMask, fixedMask: !!options.mask,
        E: EBuf.subarray(0, rows * width), denseFrom: Math.max(0, denseFromCol - i1),
        parts,
      };
      await solve(block);
      errors2 += sumOfSquares(block.E);

      // F_b = E·G − D, written transposed into Ft[i1:i2] as Gᵀ·Eᵀ − Dᵀ.
      const E = mat(rows, width, E32.subarray(0, rows * width));
      E.data.set(block.E);
      await operands.addBlock(i1, g32, E);
      copyColumns(blockMask, mask, cols, i1, rows, width);
    }
    await operands.finish();
    reference = operands.reference();
    deviceH = operands.takeHessian();
  } finally {
    operands.release();
    keepSharedBuffers(shared);
  }

  const loss = sweepLoss(errors2, factor.lambda, Ft, rows, factor.dead);
  const out = { mask, dampening: factor.dampening, loss, reference, notes, deviceH };
  if (options.transposedOutput) return { ...out, ...transposedResult(W, Ft, mask, rows, cols, factor.dead) };
  // W_pruned = W − F, pruned weights and dead inputs exact zeros. For a square layer the result overwrites Fᵀ,
  // so no second rows×cols array exists at the end.
  const pruned = rows === cols ? Ft : new Float32Array(rows * cols);
  let nonzero = subtractTransposed(W, Ft, mask, rows, cols, pruned);
  for (const c of factor.dead) {
    for (let r = 0; r < rows; r++) {
      if (nonzero !== undefined && pruned[r * cols + c] !== 0) nonzero--;
      pruned[r * cols + c] = 0;
    }
  }
  return { ...out, W: pruned, zeros: nonzero === undefined ? undefined : rows * cols - nonzero };
}

/** (W − F)ᵀ written over Fᵀ, pruned weights and dead inputs exact zeros: the pruned weights in the layout of a
 *  weight stored [in, out], with no second array and no transpose; its zeros counted on the way. */
function transposedResult(W: Float32Array, Ft: Float32Array, mask: Uint8Array, rows: number, cols: number, dead: number[]): { W: Float32Array; transposed: true; zeros: number } {
  const bits = new Int32Array(Ft.buffer, Ft.byteOffset, Ft.length);
  let nonzero = 0;
  for (let c0 = 0; c0 < cols; c0 += TILE) {
    const c1 = Math.min(cols, c0 + TILE);
    for (let r0 = 0; r0 < rows; r0 += TILE) {
      const r1 = Math.min(rows, r0 + TILE);
      for (let c = c0; c < c1; c++) {
        const o = c * rows;
        for (let r = r0; r < r1; r++) {
          Ft[o + r] = (W[r * cols + c] - Ft[o + r]) * (1 - mask[r * cols + c]) + 0;
          const x = bits[o + r] << 1;
          nonzero += (x | -x) >>> 31;
        }
      }
    }
  }
  for (const c of dead) {
    for (let r = 0; r < rows; r++) if (Ft[c * rows + r] !== 0) nonzero--;
    Ft.fill(0, c * rows, (c + 1) * rows);
  }
  return { W: Ft, transposed: true, zeros: rows * cols - nonzero };
}

/** The undamped loss ½·tr(F H Fᵀ) of the compensation F (Fᵀ: (cols, rows)) from ‖E‖² = tr(F H_d Fᵀ):
 *  ½·(‖E‖² − λ·‖F_live‖²). (F's dead columns come out zero anyway: zero weights, decoupled in H_d.) */
function sweepLoss(errors2: number, lambda: number, Ft: Float32Array, rows: number, dead: number[]): number {
  let f2 = sumOfSquares(Ft);
  for (const c of dead) f2 -= sumOfSquares(Ft.subarray(c * rows, (c + 1) * rows));
  return 0.5 * (errors2 - lambda * f2);
}

/** Σ a_i² in float64. */
function sumOfSquares(a: Float32Array | Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return s;
}

/** w (rows, width) = W[:, i1:i1+width]·live[i1:i1+width], as the sweepBlock graph computes it for the other blocks. */
function liveColumns(W: Float32Array, cols: number, i1: number, live: Float32Array, w: Float64Array, rows: number, width: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols + i1;
    const ob = r * width;
    for (let k = 0; k < width; k++) w[ob + k] = W[o + k] * live[i1 + k];
  }
}

/** mask[:, i1:i1+width] = block (rows, width). */
function copyColumns(block: Uint8Array, mask: Uint8Array, cols: number, i1: number, rows: number, width: number): void {
  for (let r = 0; r < rows; r++) mask.set(block.subarray(r * width, (r + 1) * width), r * cols + i1);
}

/** SparseGPT's adaptive per-block mask (algorithms.md §2.2), which APT keeps: with scores w[r, k]² / d[k] over all
 *  rows × B of the block, prune every score <= the floor(rows·B·sparsity)-th smallest, as masks.ts thresholdMask.
 *  The threshold is selected without a pass that stores the scores: a sample brackets it, one pass on the row
 *  pool's threads counts the scores below the bracket and keeps the few inside, and a quickselect on those gives it
 *  exactly. A second pass on the pool writes the mask. */
export async function adaptiveBlockMask(blk: Block, d: Float64Array, sparsity: number): Promise<void> {
  const { rows, width: B, w, E: cand, parts, mask } = blk;
  const n = rows * B;
  const k = Math.floor(n * sparsity);
  const score = (i: number) => (w[i] * w[i]) / d[i % B];
  const { lo, hi } = sampleBracket(n, k, score);
  parts.fill(0);
  await rowPool.run('bracketScoreRows', rows, { B, w, d, lo, hi, cand, parts });
  let below = 0;
  let inside = 0;
  for (let p = 0; p < parts.length; p += 3) {
    below += parts[p];
    inside += parts[p + 1];
  }
  let thresh: number;
  if (k >= below && k < below + inside) {
    const within = new Float64Array(inside);
    for (let p = 0, o = 0; p < parts.length; o += parts[p + 1], p += 3) within.set(cand.subarray(parts[p + 2], parts[p + 2] + parts[p + 1]), o);
    thresh = kthSmallest(within, k - below);
  } else {
    thresh = kthSmallest(Float64Array.from({ length: n }, (_, i) => score(i)), k); // the sample missed: exact, slower
  }
  await rowPool.run('maskAtMostRows', rows, { B, w, d, thresh, mask });
}

// 64×64 tiles: 32×32 ran 1.3–1.9× slower here (measured at 4096², 4096×11008 and 11008×4096).
const TILE = 64;

/** out (rows, cols) = W − (Ft)ᵀ, 0 where `mask` is set, for Ft (cols, rows), in TILE×TILE tiles, each along out's
 *  rows. `out` may be Ft itself when the layer is square: tiles are then swapped across the diagonal, each pair read
 *  before either is written. The mask is applied without a branch (× (1 − mask), then + 0 so a pruned negative value
 *  gives +0, not −0). Returns how many values of `out` are not zero, or undefined in place (the caller counts). */
function subtractTransposed(W: Float32Array, Ft: Float32Array, mask: Uint8Array, rows: number, cols: number, out: Float32Array): number | undefined {
  if (out !== Ft) {
    // The values that are not zero, counted from the bits as they are written (countZeros's trick): no second pass.
    const bits = new Int32Array(out.buffer, out.byteOffset, out.length);
    let nonzero = 0;
    for (let r0 = 0; r0 < rows; r0 += TILE) {
      const r1 = Math.min(rows, r0 + TILE);
      for (let c0 = 0; c0 < cols; c0 += TILE) {
        const c1 = Math.min(cols, c0 + TILE);
        for (let r = r0; r < r1; r++) {
          const o = r * cols;
          for (let c = c0; c < c1; c++) {
            out[o + c] = (W[o + c] - Ft[c * rows + r]) * (1 - mask[o + c]) + 0;
            const x = bits[o + c] << 1;
            nonzero += (x | -x) >>> 31;
          }
        }
      }
    }
    return nonzero;
  }
  const n = rows;
  for (let r0 = 0; r0 < n; r0 += TILE) {
    const r1 = Math.min(n, r0 + TILE);
    for (let c0 = r0; c0 < n; c0 += TILE) {
      const c1 = Math.min(n, c0 + TILE);
      for (let r = r0; r < r1; r++) {
        for (let c = c0 === r0 ? r : c0; c < c1; c++) {
          const rc = r * n + c;
          const cr = c * n + r;
          const x = Ft[rc]; // F[c, r]
          out[rc] = (W[rc] - Ft[cr]) * (1 - mask[rc]) + 0;
          out[cr] = (W[cr] - x) * (1 - mask[cr]) + 0;
        }
      }
    }
  }
  return undefined; // in place, each pair at once: the caller counts the zeros
}
