// Names shared by the config file, the event stream and the backend's methods: which methods exist, what a
// sparsity pattern is, which devices a run may ask for. Pure values and types (no vscode, no Node): the
// backend, the extension host and the webview all import this file. src/backend/methods/types.ts re-exports
// MethodName and Pattern from here, so there is one definition of each.

import { LIMITS } from './limits';

/** The pruning methods, in the order the UI lists them. The schema's `method` enum must equal this list (tested). */
export const KNOWN_METHODS = ['apt', 'sparsegpt', 'wanda', 'magnitude'] as const;
export type MethodName = (typeof KNOWN_METHODS)[number];

/** Which calibration statistics each method needs; 'none' runs without calibration data. */
export const METHOD_NEEDS: Readonly<Record<MethodName, 'hessian' | 'norms' | 'none'>> = {
  apt: 'hessian',
  sparsegpt: 'hessian',
  wanda: 'norms',
  magnitude: 'none',
};

/** APT's N:M mask rule: 'joint' (Solution M, default) or 'saliency' (Solution S). */
export const NM_MASKS = ['joint', 'saliency'] as const;
export type NmMask = (typeof NM_MASKS)[number];

/** Magnitude's comparison group for unstructured sparsity: one threshold per layer (SparseGPT's --gmp) or per row. */
export const MAGNITUDE_GROUPS = ['layer', 'row'] as const;
export type MagnitudeGroup = (typeof MAGNITUDE_GROUPS)[number];

/** How the sparsity is spread over the blocks: each layer at its target, or OWL's outlier-weighted per-block
 *  sparsities (src/backend/methods/owl.ts). */
export const ALLOCATIONS = ['uniform', 'owl'] as const;
export type Allocation = (typeof ALLOCATIONS)[number];

export type Pattern =
  | { kind: 'unstructured'; sparsity: number }
  /** N:M: exactly N of every M consecutive input weights of a row are zero. */
  | { kind: 'nm'; n: number; m: number };

/** A pattern as written in the config and in events: "unstructured" or "N:M" (N zeros in every M; "2:4"). */
export type PatternString = 'unstructured' | `${number}:${number}`;

/** Where onnxruntime runs: the schema's `device` pattern must accept exactly these forms (tested). */
export type DeviceName = 'auto' | 'cpu' | 'cuda' | `cuda:${number}` | 'webgpu';
export const DEVICE_RE = /^(auto|cpu|cuda|cuda:[0-9]+|webgpu)$/;

/** The schema's `pattern` pattern, and what events accept: "unstructured" or N:M with positive N, M (N < M is checked apart). */
export const PATTERN_RE = /^(unstructured|[1-9][0-9]*:[1-9][0-9]*)$/;
const NM_RE = /^([1-9][0-9]*):([1-9][0-9]*)$/;

/**
 * "unstructured" (with the given sparsity) or "N:M" into a Pattern. Throws a message without a location
 * (callers prefix the JSON path or flag): N:M needs 1 ≤ N < M, unstructured a sparsity in (0, 1).
 */
export function parsePattern(text: string, sparsity: number): Pattern {
  if (text === 'unstructured') {
    if (!(sparsity > 0 && sparsity < 1)) throw new Error(`sparsity must be in (0, 1) (got ${sparsity})`);
    return { kind: 'unstructured', sparsity };
  }
  const nm = NM_RE.exec(text);
  if (!nm) throw new Error(`"${text}" is not a pattern: use "unstructured" or "N:M" (N zeros in every M weights, e.g. "2:4")`);
  const n = Number(nm[1]);
  const m = Number(nm[2]);
  if (n >= m) throw new Error(`"${text}": N must be below M (N of every M consecutive weights are zeroed)`);
  if (m > LIMITS.nmGroup) throw new Error(`"${text}": M may be at most ${LIMITS.nmGroup} (N:M groups are hardware patterns such as 2:4 or 8:16)`);
  return { kind: 'nm', n, m };
}

export function formatPattern(p: Pattern): PatternString {
  return p.kind === 'nm' ? `${p.n}:${p.m}` : 'unstructured';
}

/** The fraction of zeros a pattern asks for: N/M for N:M. */
export function patternSparsity(p: Pattern): number {
  return p.kind === 'nm' ? p.n / p.m : p.sparsity;
}

/** An MoE expert's layer split into its group and expert index: `layers.0.mlp.experts.12.up_proj` →
 *  { group: 'layers.0.mlp.experts.*.up_proj', expert: 12 }; null for any other layer. The run panel's table and
 *  `prunekit inspect` show one line per group, so a 64-expert block stays readable. */
export function expertGroup(layer: string): { group: string; expert: number } | null {
  const m = /^((?:.*\.)?experts)\.(\d+)\.(.+)$/.exec(layer);
  return m ? { group: `${m[1]}.*.${m[3]}`, expert: Number(m[2]) } : null;
}
