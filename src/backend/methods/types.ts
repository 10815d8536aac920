// The one interface every pruning method implements. A method sees one linear layer at a time:
// W (rows = output features, cols = input features), row-major fp32, plus the calibration statistics it
// needs, and returns the pruned weights and mask. Every method is scored with the same loss (index.ts): the
// OBS sweep returns it from its own errors, for the others the caller measures it.

import type * as ort from 'onnxruntime-node';
import type { Engine } from '../onnx/session';
import type { LayerRefinement } from '../../protocol/events';
import type { MethodName, Pattern } from '../../protocol/pruning';

// MethodName and Pattern are defined once, in the protocol shared with the extension and the config file.
export type { MethodName, Pattern };

export interface LayerProblem {
  /** Layer name, used in every error message. */
  name: string;
  rows: number;
  cols: number;
  /** (rows, cols) row-major. Not modified. */
  W: Float32Array;
  /** The caller has found W free of NaN and ±inf (the pipeline, in the pass that transposes it): validate skips it. */
  finiteW?: boolean;
  /** (cols, cols) H = (2/N) Σ xᵀx over calibration tokens (N = number of sequences). Not modified. */
  H?: Float32Array;
  /** The caller has found H free of NaN and ±inf (the pipeline, in the pass that scales it): validate skips it. */
  finiteH?: boolean;
  /** (cols) Σ x_j² per input feature (Wanda's ‖X_j‖₂²); derived from diag(H) when absent. */
  colNorm2?: Float32Array;
  /** 0.5·tr(W H Wᵀ), the relative loss's denominator, when the caller has it (the pipeline: (1/N)·Σ‖W x‖² from the
   *  calibration forward); otherwise measured: by the OBS sweep from its factor, by the others from H. */
  reference?: number;
  /** (cols, rows) W transposed, when the caller holds W in that layout anyway (a weight stored [in, out]): the OBS
   *  sweep reads it for the reference rather than transposing W. Not modified. */
  Wt?: Float32Array;
}

export interface PruneOptions {
  pattern: Pattern;
  /** Columns per sweep block (SparseGPT, APT). Default 128. */
  blockSize?: number;
  /** λ = dampening · mean(diag H) is added to diag H. Default 0.01. */
  dampening?: number;
  /** A fixed mask (rows*cols, 1 = pruned): skips mask selection (SparseGPT, APT) so the weight update can be
   *  studied apart from it. */
  mask?: Uint8Array;
  /** APT's N:M mask rule: 'saliency' (Solution S: smallest w²/[H⁻¹]jj per group) or 'joint' (Solution M: the
   *  group subset with the smallest joint removal loss, all C(M,N) candidates). */
  nmMask?: 'saliency' | 'joint';
  /** Magnitude's comparison group for unstructured sparsity. Default 'layer' (SparseGPT's --gmp). */
  magnitudeGroup?: 'layer' | 'row';
  /** APT: ADMM iterations of the refinement after the one-shot mask (aptRefine.ts). 0 or absent: one-shot APT. */
  refine?: number;
  /** The caller stores the weight [in, out]: a method that can write W transposed at no cost (the OBS sweep of
   *  SparseGPT and APT, without refinement) returns it so, and says so (MethodOutput.transposed). */
  transposedOutput?: boolean;
}

export interface MethodOutput {
  /** (rows, cols) pruned weights; (cols, rows) when `transposed`. */
  W: Float32Array;
  /** W is (cols, rows) (asked for by PruneOptions.transposedOutput). The mask stays (rows, cols). */
  transposed?: boolean;
  /** (rows, cols) 1 = pruned. */
  mask: Uint8Array;
  /** Dampening actually used (after any retry), for Hessian-based methods. */
  dampening?: number;
  /** 0.5·tr(ΔW H ΔWᵀ) with the undamped H, when the method gets it from its own solve (the OBS sweep: see
   *  sweep.ts); otherwise the caller measures it. */
  loss?: number;
  /** 0.5·tr(W H Wᵀ) of the dense W with the undamped H, when the method measured it (the OBS sweep on the host,
   *  when LayerProblem.reference is absent); otherwise the caller measures it. */
  reference?: number;
  notes: string[];
  /** How many values of W are exact zeros, when the method counted them as it wrote W (else the caller counts). */
  zeros?: number;
  /** APT with refine > 0: the losses of the refinement and which result the layer kept. */
  refine?: LayerRefinement;
  /** H, left in the device's memory by the method (the sweep's device path), for the loss's reference: the caller
   *  disposes it. */
  deviceH?: ort.Tensor;
}

export interface PruneResult extends MethodOutput {
  method: MethodName;
  /** 0.5·tr(ΔW H ΔWᵀ) with the undamped H: the calibration reconstruction error. */
  loss: number;
  /** loss / 0.5·tr(W H Wᵀ). */
  relLoss: number;
  /** Fraction of zeros in the pruned W. */
  sparsity: number;
  /** Wall time of the pruning itself (with the sweep's loss, which it computes on the way; not with a loss or
   *  reference measured afterwards). */
  seconds: number;
  device: string;
}

export interface PruningMethod {
  readonly name: MethodName;
  /** Which calibration statistics the method needs. */
  readonly needs: 'hessian' | 'norms' | 'none';
  prune(problem: LayerProblem, options: PruneOptions, engine: Engine): Promise<MethodOutput>;
}

/** An error about a specific layer and field; the CLI and the extension show both. */
export class PruneError extends Error {
  constructor(readonly layer: string, readonly field: string, message: string) {
    super(`layer ${layer}: ${field}: ${message}`);
    this.name = 'PruneError';
  }
}
