// Pruning a depthwise 1-D conv (weight [C, 1, K] with group = C: Mamba's causal conv1d) in the OBS framework.
//
// Output channel c is y_c[t] = b_c + Σ_j w_c[j]·u_c[t][j], u_c[t] the K inputs of channel c that output t reads
// (x_c[t−K+1 … t] for Mamba's causal padding). So each channel is a linear layer with one output row and K input
// columns, and its own Hessian H_c = (2/N)·Σ_t u_c[t]u_c[t]ᵀ (accumulated inside the block graph, like XᵀX:
// pipeline/segments.ts). The loss is the linear layers' 0.5·tr(ΔW H ΔWᵀ) with one H per row,
// 0.5·Σ_c δw_c H_c δw_cᵀ (relative: ÷ 0.5·Σ_c w_c H_c w_cᵀ), undamped. K is tiny (4 in Mamba), so every channel is
// solved exactly in float64 here; channels never interact except through a layer-wide mask threshold.
//
// Per channel, as the linear methods do per layer: dead taps (H_jj = 0, inputs never active) get H_jj = 1 and a
// zero weight (SparseGPT, APT); λ = dampening·mean(diag H_c) is added to the diagonal (×10, up to 4 times, while H_c
// is not positive definite). H_c⁻¹ = UᵀU, U upper triangular (SparseGPT's factor).
//  - magnitude: |w|; unstructured over the whole layer (magnitudeGroup 'row': per channel).
//  - wanda: |w_c[j]|·sqrt(mean u_c[j]²); unstructured per channel (Wanda's per-output comparison: floor(K·s) taps of
//    every channel), N:M per group of taps.
//  - sparsegpt: SparseGPT with the row as one block (K ≤ its block size): the unstructured mask over the whole layer
//    from w²/U_jj² (its adaptive threshold), N:M chosen in the column loop on compensated weights; column by
//    column err = w_j/U_jj, w_{j+1:} −= err·U_{j,j+1:}.
//  - apt: the unstructured mask over the whole layer from the OBS saliency w²/[H_c⁻¹]_jj; N:M group by group
//    along the taps on compensated weights ('joint': the subset with the least joint loss; 'saliency': the N
//    smallest w²/S_jj); then the joint removal of the channel's whole pruned set P,
//    δw = −w_P [(H_c⁻¹)_PP]⁻¹ (H_c⁻¹)_{P,:}, the exact least-squares optimum for the mask.
// N:M groups run along each channel's K taps; when M does not divide K the trailing K mod M taps stay dense (as the
// linear layers' trailing columns do), so with M > K nothing is pruned; a note says so either way.

import { choleskyLowerInPlace, invertLower, NotPositiveDefiniteError, spdSolve } from '../linalg/cholesky';
import { jointRemoval, leastJointLoss, principal } from './apt.reference';
import { combinations, nmGroupMask, nmMask, perRowMask, thresholdMask } from './masks';
import { MethodName, PruneError, PruneOptions, PruneResult } from './types';

export interface DepthwiseProblem {
  /** Layer name, used in every error message. */
  name: string;
  /** C: output (= input) channels. */
  channels: number;
  /** K: taps per channel. */
  taps: number;
  /** (C, K) row-major, the [C, 1, K] weight as stored. Not modified. */
  W: Float32Array;
  /** (C, K, K) H_c = (2/N)·Σ_t u_c[t]u_c[t]ᵀ. Not modified. */
  H?: Float32Array;
  /** (C, K) mean over sequences of Σ_t u_c[t][j]² (Wanda's norms); from diag(H_c) when absent. */
  colNorm2?: Float32Array;
}

/** One channel's damped inverse Hessian and its upper factor, float64 K×K row-major. */
interface ChannelFactor {
  Hinv: Float64Array;
  U: Float64Array;
  dead: number[];
  dampening: number;
}

const RETRIES = 4;

function channelFactor(problem: DepthwiseProblem, c: number, dampening: number): ChannelFactor {
  const K = problem.taps;
  const H = problem.H as Float32Array;
  const o = c * K * K;
  const dead: number[] = [];
  let mean = 0;
  for (let j = 0; j < K; j++) {
    const d = H[o + j * K + j];
    if (d === 0) dead.push(j);
    mean += d === 0 ? 1 : d;
  }
  mean /= K;
  let damp = dampening;
  for (let attempt = 0; ; attempt++) {
    const a = Float64Array.from(H.subarray(o, o + K * K));
    for (let j = 0; j < K; j++) a[j * K + j] = (a[j * K + j] === 0 ? 1 : a[j * K + j]) + damp * mean;
    try {
      choleskyLowerInPlace(a, K);
      // H⁻¹ = L⁻ᵀL⁻¹; then U = chol(H⁻¹)ᵀ, so H⁻¹ = UᵀU.
      const Li = invertLower(a, K);
      const Hinv = new Float64Array(K * K);
      for (let i = 0; i < K; i++) {
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let k = i; k < K; k++) s += Li[k * K + i] * Li[k * K + j];
          Hinv[i * K + j] = s;
          Hinv[j * K + i] = s;
        }
      }
      const L2 = Float64Array.from(Hinv);
      choleskyLowerInPlace(L2, K);
      const U = new Float64Array(K * K);
      for (let i = 0; i < K; i++) for (let j = i; j < K; j++) U[i * K + j] = L2[j * K + i];
      return { Hinv, U, dead, dampening: damp };
    } catch (e) {
      if (!(e instanceof NotPositiveDefiniteError) || attempt >= RETRIES) {
        throw new PruneError(problem.name, 'H', `channel ${c}: H_c is not positive definite even with dampening ${damp}`);
      }
      damp *= 10;
    }
  }
}

/** SparseGPT's column loop over one channel (one block of K columns); N:M chosen at each group's first column. */
function sparsegptRow(w: Float64Array, U: Float64Array, K: number, mask: Uint8Array, nm: { n: number; m: number; full: number } | null): void {
  for (let i = 0; i < K; i++) {
    if (nm && i % nm.m === 0 && i + nm.m <= nm.full) {
      const scores = Array.from({ length: nm.m }, (_, j) => (w[i + j] * w[i + j]) / (U[(i + j) * K + i + j] ** 2));
      nmGroupMask(scores, 0, nm.m, nm.n, mask, i);
    }
    if (!mask[i]) continue;
    const err = w[i] / U[i * K + i];
    for (let j = i + 1; j < K; j++) w[j] -= err * U[i * K + j];
    w[i] = 0;
  }
}

/** APT's N:M mask for one channel: groups left to right on weights compensated for the groups before, each with
 *  S = ((H_AA)⁻¹)_{gg}, A = [g, K) (= U[g:g+m, g:g+m]ᵀU[g:g+m, g:g+m]). */
function aptNmRowMask(w0: Float64Array, U: Float64Array, K: number, mask: Uint8Array, n: number, m: number, full: number, joint: boolean, subsets: number[][]): void {
  const w = Float64Array.from(w0);
  for (let g = 0; g + m <= full; g += m) {
    const S = new Float64Array(m * m);
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < m; j++) {
        let s = 0;
        for (let k = 0; k <= Math.min(i, j); k++) s += U[(g + k) * K + g + i] * U[(g + k) * K + g + j];
        S[i * m + j] = s;
      }
    }
    let chosen: number[];
    if (joint) {
      chosen = leastJointLoss(w.subarray(g, g + m), S, m, subsets).Q;
    } else {
      const scores = Array.from({ length: m }, (_, j) => (w[g + j] * w[g + j]) / S[j * m + j]);
      const gm = new Uint8Array(m);
      nmGroupMask(scores, 0, m, n, gm, 0);
      chosen = [...gm.keys()].filter((j) => gm[j]);
    }
    for (let j = 0; j < m; j++) mask[g + j] = 0;
    for (const j of chosen) mask[g + j] = 1;
    // Remove the group jointly over the active set A = [g, K): δw_A = −λᵀ (H_AA⁻¹)_{Q,A}, λ = S_QQ⁻¹ w_Q.
    const lambda = spdSolve(principal(S, m, chosen), chosen.length, chosen.map((j) => w[g + j]));
    for (let k = 0; k < m; k++) {
      let e = 0;
      for (let p = 0; p < chosen.length; p++) if (chosen[p] >= k) e += U[(g + k) * K + g + chosen[p]] * lambda[p];
      if (e !== 0) for (let j = g + k; j < K; j++) w[j] -= e * U[(g + k) * K + j];
    }
  }
}

function validate(method: MethodName, p: DepthwiseProblem, options: PruneOptions): void {
  const fail = (field: string, msg: string): never => {
    throw new PruneError(p.name, field, msg);
  };
  const { channels: C, taps: K } = p;
  if (!Number.isInteger(C) || !Number.isInteger(K) || C <= 0 || K <= 0) fail('shape', `invalid depthwise shape ${C} channels × ${K} taps`);
  if (p.W.length !== C * K) fail('W', `has ${p.W.length} values, expected ${C}x${K}`);
  if (p.H && p.H.length !== C * K * K) fail('H', `has ${p.H.length} values, expected ${C} channels × ${K}x${K}`);
  if (p.colNorm2 && p.colNorm2.length !== C * K) fail('colNorm2', `has ${p.colNorm2.length} values, expected ${C}x${K}`);
  if ((method === 'apt' || method === 'sparsegpt') && !p.H) fail('H', `${method} needs the layer's per-channel Hessians`);
  if (method === 'wanda' && !p.H && !p.colNorm2) fail('colNorm2', 'Wanda needs input norms or Hessians');
  for (const [field, a] of [['W', p.W], ['H', p.H], ['colNorm2', p.colNorm2]] as const) {
    if (a) for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) fail(field, `non-finite value ${a[i]} at index ${i}`);
  }
  const pat = options.pattern;
  if (pat.kind === 'unstructured' && !(pat.sparsity > 0 && pat.sparsity < 1)) fail('sparsity', `${pat.sparsity} is outside (0, 1)`);
  if (pat.kind === 'nm' && !(Number.isInteger(pat.n) && Number.isInteger(pat.m) && pat.n >= 1 && pat.n < pat.m)) fail('pattern', `${pat.n}:${pat.m} is not a valid N:M pattern`);
  const d = options.dampening;
  if (d !== undefined && !(d >= 0 && Number.isFinite(d))) fail('dampening', `${d} must be a finite number >= 0`);
  if (options.mask && options.mask.length !== C * K) fail('mask', `has ${options.mask.length} values, expected ${C * K}`);
}

/** 0.5·Σ_c δw_c H_c δw_cᵀ and 0.5·Σ_c w_c H_c w_cᵀ in float64, H undamped. */
export function depthwiseLoss(W0: Float32Array, W: Float32Array, H: Float32Array, C: number, K: number): { loss: number; reference: number } {
  let loss = 0;
  let reference = 0;
  for (let c = 0; c < C; c++) {
    for (let i = 0; i < K; i++) {
      for (let j = 0; j < K; j++) {
        const h = H[c * K * K + i * K + j];
        loss += (W0[c * K + i] - W[c * K + i]) * h * (W0[c * K + j] - W[c * K + j]);
        reference += W0[c * K + i] * h * W0[c * K + j];
      }
    }
  }
  return { loss: 0.5 * loss, reference: 0.5 * reference };
}

/** Prunes a depthwise conv with `method` (see the file comment) and scores it with depthwiseLoss. */
export function pruneDepthwise(method: MethodName, problem: DepthwiseProblem, options: PruneOptions): PruneResult {
  validate(method, problem, options);
  const t0 = performance.now();
  const { channels: C, taps: K, W } = problem;
  const pattern = options.pattern;
  const notes: string[] = [];
  const nm = pattern.kind === 'nm' ? { n: pattern.n, m: pattern.m, full: K - (K % pattern.m) } : null;
  if (nm && nm.full < K) {
    notes.push(`kernel width K=${K} is not a multiple of M=${nm.m}: the last ${K - nm.full} tap(s) of every channel stay dense${nm.full === 0 ? ' (so nothing is pruned)' : ''}`);
  }
  const mask = new Uint8Array(C * K);
  const fixed = options.mask;
  if (fixed) mask.set(fixed);
  let out: Float32Array;
  let dampening: number | undefined;

  if (method === 'magnitude' || method === 'wanda') {
    const scores = new Float64Array(C * K);
    const norm2 = problem.colNorm2;
    for (let c = 0; c < C; c++) {
      for (let j = 0; j < K; j++) {
        const i = c * K + j;
        const n2 = method === 'magnitude' ? 1 : norm2 ? norm2[i] : (problem.H as Float32Array)[c * K * K + j * K + j];
        scores[i] = Math.abs(W[i]) * Math.sqrt(n2);
      }
    }
    if (!fixed) {
      if (nm) nmMask(scores, C, K, nm.n, nm.m, mask);
      else if (method === 'wanda' || options.magnitudeGroup === 'row') perRowMask(scores, C, K, pattern.kind === 'unstructured' ? pattern.sparsity : 0, mask);
      else thresholdMask(scores, pattern.kind === 'unstructured' ? pattern.sparsity : 0, mask);
      if (pattern.kind === 'unstructured' && (method === 'wanda' || options.magnitudeGroup === 'row') && Math.floor(K * pattern.sparsity) / K !== pattern.sparsity) {
        notes.push(`per-channel comparison: ${Math.floor(K * pattern.sparsity)} of every channel's ${K} taps pruned (${Math.floor(K * pattern.sparsity) / K} instead of ${pattern.sparsity})`);
      }
    }
    out = Float32Array.from(W, (v, i) => (mask[i] ? 0 : v));
  } else {
    // Per-channel factors, then the layer-wide mask (unstructured), then each channel's update.
    const damp = options.dampening ?? 0.01;
    const factors = Array.from({ length: C }, (_, c) => channelFactor(problem, c, damp));
    const w = Float64Array.from(W);
    let deadTaps = 0;
    factors.forEach((f, c) => {
      for (const j of f.dead) w[c * K + j] = 0;
      deadTaps += f.dead.length;
    });
    if (deadTaps) notes.push(`${deadTaps} tap(s) never active in calibration: their weights are zeroed`);
    const raised = factors.filter((f) => f.dampening > damp);
    dampening = Math.max(damp, ...factors.map((f) => f.dampening));
    if (raised.length) notes.push(`H_c was not positive definite with dampening ${damp} in ${raised.length} channel(s); used up to ${dampening}`);
    if (!fixed && !nm) {
      const scores = new Float64Array(C * K);
      for (let c = 0; c < C; c++) {
        const { Hinv, U } = factors[c];
        for (let j = 0; j < K; j++) {
          const v = w[c * K + j];
          scores[c * K + j] = (v * v) / (method === 'apt' ? Hinv[j * K + j] : U[j * K + j] ** 2);
        }
      }
      thresholdMask(scores, (pattern as { sparsity: number }).sparsity, mask);
    }
    const subsets = nm ? combinations(nm.m, nm.n) : [];
    for (let c = 0; c < C; c++) {
      const row = w.subarray(c * K, (c + 1) * K);
      const rowMask = mask.subarray(c * K, (c + 1) * K);
      const { Hinv, U } = factors[c];
      if (method === 'sparsegpt') {
        sparsegptRow(row, U, K, rowMask, fixed ? null : nm);
      } else {
        if (nm && !fixed) aptNmRowMask(row, U, K, rowMask, nm.n, nm.m, nm.full, (options.nmMask ?? 'joint') === 'joint', subsets);
        const P = [...rowMask.keys()].filter((j) => rowMask[j]);
        jointRemoval(row, Hinv, K, P, `APT, channel ${c}`);
      }
    }
    out = Float32Array.from(w, (v, i) => (mask[i] ? 0 : v));
  }

  const seconds = (performance.now() - t0) / 1000;
  let zeros = 0;
  for (let i = 0; i < out.length; i++) if (out[i] === 0) zeros++;
  const scored = problem.H ? depthwiseLoss(W, out, problem.H, C, K) : null;
  return {
    W: out, mask, notes, ...(dampening !== undefined ? { dampening } : {}),
    method, loss: scored ? scored.loss : NaN, relLoss: scored ? (scored.reference > 0 ? scored.loss / scored.reference : 0) : NaN,
    sparsity: zeros / out.length, seconds, device: 'cpu',
  };
}
