// What `prunekit inspect <checkpoint> --json` says about a model, and what the editor makes of it: the layer
// names and globs offered in layers.include / exclude / overrides[].match, block patterns for blockPattern,
// the hover text of a layer name, and the one-line summary of a config. No vscode here (tested with Node).

import { KeepDenseConfig, layerMatcher, layerSelector, ResolvedConfig } from '../../protocol/config';
import { LIMITS } from '../../protocol/limits';
import { expertGroup } from '../../protocol/pruning';

/** The JSON line `prunekit inspect --json` prints (src/backend/cli/main.ts inspect). */
export interface InspectInfo {
  model: string;
  tokenizer: string | null;
  inputs: { name: string; dims: (string | number)[] }[];
  /** The block pattern the backend detected (a regular expression source), or null. */
  blockPattern: string | null;
  blocks: { index: number; name: string; layers: string[] }[];
  layers: InspectLayer[];
  /** Layers left dense by default (the LM head, depthwise convs) or unsupported, with why. */
  skipped: InspectSkipped[];
  notes: string[];
}

export interface InspectSkipped {
  name: string;
  node?: string;
  block?: number | null;
  op?: string;
  weight?: string;
  shape: [number, number];
  reason: string;
  /** The keepDense flag that, set to false, makes it prunable (an opt-in layer); absent: never pruned. */
  keptDenseBy?: keyof KeepDenseConfig;
}

export interface InspectLayer {
  /** The friendly name patterns match: `layers.3.mlp.down_proj`. */
  name: string;
  /** The ONNX node: `/model/layers.3/mlp/down_proj/MatMul`. */
  node: string;
  block: number | null;
  op: string;
  /** The weight initializer. */
  weight: string;
  /** [rows, cols]: output features × input features. */
  shape: [number, number];
}

/** Parses inspect's stdout; throws naming what is missing when it is not inspect's output. */
export function parseInspectOutput(stdout: string): InspectInfo {
  const line = stdout.split('\n').find((l) => l.trim().startsWith('{'));
  if (!line) throw new Error(`prunekit inspect printed no JSON (got ${JSON.stringify(stdout.slice(0, 200))})`);
  const info = JSON.parse(line) as InspectInfo;
  if (!Array.isArray(info.layers) || !Array.isArray(info.blocks) || !Array.isArray(info.skipped)) {
    throw new Error('prunekit inspect --json: expected "layers", "blocks" and "skipped" arrays');
  }
  return info;
}

/**
 * The names layer patterns are checked against: the prunable layers, plus the opt-in ones whose keepDense flag is
 * false (the LM head and layers outside every block with lmHead, depthwise convs with depthwiseConv), as the
 * pipeline's discovery does. keepDense as written: an absent flag is true.
 */
export function patternTargets(info: InspectInfo, keepDense: KeepDenseConfig = {}): string[] {
  return [...info.layers.map((l) => l.name), ...releasedLayers(info, keepDense).map((s) => s.name)];
}

/** The skipped layers keepDense makes prunable. */
function releasedLayers(info: InspectInfo, keepDense: KeepDenseConfig): InspectSkipped[] {
  return info.skipped.filter((s) => s.keptDenseBy !== undefined && keepDense[s.keptDenseBy] === false);
}

export type SuggestionKind = 'layer' | 'glob' | 'blockPattern';

export interface Suggestion {
  /** The text inserted (a pattern or a regular expression, unquoted). */
  label: string;
  kind: SuggestionKind;
  /** Short, shown beside the label: "64×172 MatMul", "7 layers". */
  detail: string;
  /** Sorts layers in model order after the globs. */
  sortText: string;
}

/**
 * What layers.include, layers.exclude and layers.overrides[].match may hold for this model: every layer by
 * name (model order), then globs that select real groups: each block (`layers.0.*`), each kind of layer
 * across blocks (`*.mlp.down_proj`), each sub-module (`*.mlp.*`). A glob is offered only if it matches
 * more than one layer and selects a set no earlier glob selected.
 */
export function layerPatternSuggestions(info: InspectInfo, keepDense: KeepDenseConfig = {}): Suggestion[] {
  const names = patternTargets(info, keepDense);
  const released = releasedLayers(info, keepDense);
  const out: Suggestion[] = [];
  const seen = new Set<string>();
  const addGlob = (glob: string) => {
    if (glob.length > LIMITS.pattern) return; // from a hostile layer name: never offered, never compiled
    const matched = names.filter(layerMatcher(glob));
    const key = matched.join('\n');
    if (matched.length < 2 || seen.has(key)) return;
    seen.add(key);
    out.push({ label: glob, kind: 'glob', detail: `${matched.length} layers`, sortText: `0${String(out.length).padStart(4, '0')}` });
  };
  addGlob('*');
  for (const b of info.blocks) addGlob(`${b.name}.*`);
  // Sub-modules and layer kinds: the name with its block prefix replaced by `*`; an MoE expert's with its index
  // too (`*.mlp.experts.*.up_proj`: one glob per projection, not one per expert).
  const tails = new Set<string>();
  for (const l of [...info.layers, ...released]) {
    const block = l.block === null || l.block === undefined ? undefined : info.blocks.find((b) => b.index === l.block);
    const tail = block && l.name.startsWith(`${block.name}.`) ? l.name.slice(block.name.length + 1) : undefined;
    if (tail) tails.add(expertGroup(tail)?.group ?? tail);
  }
  const modules = new Set<string>();
  for (const t of tails) {
    const parts = t.split('.');
    for (let k = 1; k < parts.length; k++) modules.add(parts.slice(0, k).join('.'));
  }
  for (const m of modules) addGlob(`*.${m}.*`);
  for (const t of tails) addGlob(`*.${t}`);
  names.forEach((name, i) => {
    const l = info.layers.find((x) => x.name === name);
    const s = info.skipped.find((x) => x.name === name);
    const shape = l?.shape ?? s?.shape;
    const what = l?.op ?? (s?.keptDenseBy === 'depthwiseConv' ? `${s.op ?? 'Conv'} (depthwise, opt-in)` : '(LM head)');
    out.push({ label: name, kind: 'layer', detail: `${shape ? `${shape[0]}×${shape[1]}` : ''} ${what}`.trim(), sortText: `1${String(i).padStart(6, '0')}` });
  });
  return out;
}

/**
 * Regular expressions for blockPattern (over ONNX node names, first capture group = block index): one per
 * `<word>.<n>` / `<word>_<n>` segment that numbers at least two distinct values across the layers' nodes.
 */
export function blockPatternSuggestions(info: InspectInfo): Suggestion[] {
  const found = new Map<string, { sep: string; indices: Set<string>; layers: number }>();
  for (const l of info.layers) {
    const seen = new Set<string>();
    for (const m of l.node.matchAll(/(?:^|[/.])([A-Za-z][A-Za-z0-9]*?)([._])(\d+)(?=[/.]|$)/g)) {
      const key = `${m[1]}${m[2]}`;
      const entry = found.get(key) ?? { sep: m[2], indices: new Set<string>(), layers: 0 };
      entry.indices.add(m[3]);
      if (!seen.has(key)) entry.layers++;
      seen.add(key);
      found.set(key, entry);
    }
  }
  return [...found.entries()]
    .filter(([, e]) => e.indices.size >= 2)
    .sort((a, b) => b[1].layers - a[1].layers)
    .map(([key, e], i) => ({
      label: `${key.slice(0, -1)}${e.sep === '.' ? '\\.' : '_'}(\\d+)`,
      kind: 'blockPattern' as const,
      detail: `${e.indices.size} blocks, ${e.layers} layers`,
      sortText: String(i).padStart(4, '0'),
    }));
}

/** Markdown for a hover over a layer name (or a pattern: the layers it matches). undefined if it is neither. */
export function layerHover(info: InspectInfo, text: string): string | undefined {
  const l = info.layers.find((x) => x.name === text);
  if (l) {
    const block = info.blocks.find((b) => b.index === l.block);
    return [
      `**${l.name}** — ${l.shape[0]}×${l.shape[1]} (${(l.shape[0] * l.shape[1]).toLocaleString('en-US')} weights)`,
      '',
      `- op: \`${l.op}\` (node \`${l.node}\`)`,
      `- block: ${block ? `\`${block.name}\` (${block.index})` : 'none (pruned on its own)'}`,
      `- weight: \`${l.weight}\``,
    ].join('\n');
  }
  const s = info.skipped.find((x) => x.name === text);
  if (s) {
    const reason = s.keptDenseBy ? s.reason.replace(/\)$/, `; opt-in: pruned when keepDense.${s.keptDenseBy} is false)`) : s.reason;
    return `**${s.name}** — ${s.shape[0]}×${s.shape[1]}${s.op ? ` ${s.op}` : ''}, left dense: ${reason}`;
  }
  return undefined;
}

/** "apt · 2:4 · 35 layers": the method(s), pattern(s) and number of layers a resolved config prunes. */
export function configSummary(config: ResolvedConfig, info: InspectInfo | undefined): string {
  if (!info) return `${config.method} · ${patternLabel(config.pattern, config.sparsity)}`;
  const select = layerSelector(config);
  const methods = new Set<string>();
  const patterns = new Set<string>();
  let n = 0;
  for (const name of patternTargets(info, config.keepDense)) {
    const t = select(name);
    if (!t) continue;
    n++;
    methods.add(t.method);
    patterns.add(t.pattern.kind === 'nm' ? `${t.pattern.n}:${t.pattern.m}` : `${Math.round(t.sparsity * 100)}%`);
  }
  return `${[...methods].join('+') || config.method} · ${[...patterns].join('+') || patternLabel(config.pattern, config.sparsity)} · ${n} layer${n === 1 ? '' : 's'}`;
}

function patternLabel(pattern: string, sparsity: number): string {
  return pattern === 'unstructured' ? `${Math.round(sparsity * 100)}%` : pattern;
}
