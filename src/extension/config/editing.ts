// Completions and hovers of a *.prune.json from the cursor's JSON location and the checkpoint's inspect
// output: layer names and globs where layer patterns go (layers.include[], layers.exclude[],
// layers.overrides[].match), block regexes in blockPattern, a layer's shape and role on hover. No vscode
// here: offsets in, texts and ranges out; providers.ts adapts them.

import { KeepDenseConfig, layerMatcher } from '../../protocol/config';
import { JSONPath, Node } from 'jsonc-parser';
import { configLocation } from './tree';
import { scanTyping } from './typing';
import { blockPatternSuggestions, InspectInfo, layerHover, layerPatternSuggestions, patternTargets, Suggestion } from './layerInfo';

export type PatternSlot = 'layerPattern' | 'blockPattern';

/** The kind of value a JSON path holds, for the two kinds the editor completes. */
export function slotOf(path: JSONPath): PatternSlot | undefined {
  const [a, b, c, d] = path;
  if (a === 'layers' && (b === 'include' || b === 'exclude') && typeof c === 'number' && path.length === 3) return 'layerPattern';
  if (a === 'layers' && b === 'overrides' && typeof c === 'number' && d === 'match' && path.length === 4) return 'layerPattern';
  if (a === 'blockPattern' && path.length === 1) return 'blockPattern';
  return undefined;
}

export interface CursorLocation {
  /** The JSON path of the value (or key) at the cursor: ["layers", "include", 2]. */
  path: JSONPath;
  /** True where a property name goes (the last path segment is the key typed so far, or ""). */
  isKey: boolean;
  /** The string (value or key) the cursor is inside, between its quotes, if any. */
  string?: { offset: number; end: number; value: string; closed: boolean };
}

/**
 * Where offset (a position between characters) is in a config being edited, by jsonc-parser's getLocation:
 * the path there, whether a key goes there, and the string the cursor is inside. undefined inside a comment
 * or outside the top-level value.
 */
export function locationAt(text: string, offset: number): CursorLocation | undefined {
  const loc = configLocation(text, offset);
  if (!loc || loc.path.length === 0) return undefined;
  const { comments, unclosed } = scanTyping(text);
  // A line comment runs to the end of its line: the cursor there is still in it.
  if (comments.some((c) => c.offset < offset && (offset < c.end || (c.line && offset === c.end)))) return undefined;
  return { path: loc.path, isKey: loc.isAtPropertyKey, string: stringAround(loc.previousNode, offset, unclosed) };
}

/** node as a string the cursor is inside (after its opening quote, before its closing one or at its end). */
function stringAround(node: Node | undefined, offset: number, unclosed: Set<number>): CursorLocation['string'] {
  if (!node || (node.type !== 'string' && node.type !== 'property')) return undefined;
  const end = node.offset + node.length;
  const closed = !unclosed.has(node.offset);
  if (offset <= node.offset || offset > end || (closed && offset === end)) return undefined;
  return { offset: node.offset, end, value: String(node.value), closed };
}

export interface CompletionPlace {
  slot: PatternSlot;
  /** The range the completion replaces: a string's contents, or the cursor where a new string goes. */
  offset: number;
  end: number;
  /** True where no string was opened yet: the completion brings its quotes. */
  quoted: boolean;
}

/** Where a completion at this cursor would go, or undefined if the cursor is not at a pattern. */
export function completionPlace(text: string, offset: number): CompletionPlace | undefined {
  const loc = locationAt(text, offset);
  if (!loc || loc.isKey) return undefined;
  const slot = slotOf(loc.path);
  if (!slot) return undefined;
  if (loc.string) return { slot, offset: loc.string.offset + 1, end: loc.string.closed ? loc.string.end - 1 : loc.string.end, quoted: false };
  return { slot, offset, end: offset, quoted: true };
}

export interface Completion extends Suggestion {
  /** The text to insert, escaped for a JSON string (and quoted when CompletionPlace.quoted). */
  insertText: string;
}

/** The completions at a cursor: [] when it is not at a layer or block pattern. */
export function completionsAt(text: string, offset: number, info: InspectInfo, keepDense: KeepDenseConfig = {}): { place: CompletionPlace; items: Completion[] } | undefined {
  const place = completionPlace(text, offset);
  if (!place) return undefined;
  const suggestions = place.slot === 'layerPattern' ? layerPatternSuggestions(info, keepDense) : blockPatternSuggestions(info);
  const items = suggestions.map((s) => {
    const json = JSON.stringify(s.label);
    return { ...s, insertText: place.quoted ? json : json.slice(1, -1) };
  });
  return { place, items };
}

/** The hover at a cursor in a string: a layer name's shape, op, block and weight; a pattern's matched layers. */
export function hoverAt(text: string, offset: number, info: InspectInfo, keepDense: KeepDenseConfig = {}): { markdown: string; offset: number; end: number } | undefined {
  const loc = locationAt(text, offset);
  if (!loc?.string || loc.isKey) return undefined;
  const value = loc.string.value;
  const range = { offset: loc.string.offset, end: loc.string.end };
  const exact = layerHover(info, value);
  if (exact) return { markdown: exact, ...range };
  if (slotOf(loc.path) !== 'layerPattern') return undefined;
  let matches: (name: string) => boolean;
  try {
    matches = layerMatcher(value);
  } catch (e) {
    return { markdown: `\`${value}\`: ${(e as Error).message}`, ...range };
  }
  const names = patternTargets(info, keepDense).filter(matches);
  if (names.length === 0) return { markdown: `\`${value}\` matches no prunable layer (they look like \`${info.layers[0]?.name ?? ''}\`)`, ...range };
  const shown = names.slice(0, 12).map((n) => `- \`${n}\``);
  if (names.length > 12) shown.push(`- … and ${names.length - 12} more`);
  return { markdown: [`\`${value}\` matches ${names.length} layer${names.length === 1 ? '' : 's'}:`, '', ...shown].join('\n'), ...range };
}
