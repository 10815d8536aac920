// Sizes a prune config may not exceed, checked before any work on the value: the file's bytes before parsing,
// every string, key and nesting level before validation, the N:M group before a method enumerates it. Hitting one
// is a ConfigError with code `limit-exceeded` naming the JSON path and the limit. Pure TypeScript (no Node).

import type { SchemaProblem } from './schema';
import { childPath } from './schema';

export const LIMITS = {
  /** Bytes of a *.prune.json file (a real one is under 10 KB). */
  configBytes: 1 << 20,
  /** Characters of any string value or path. */
  string: 4096,
  /** Characters of an object key. */
  key: 4096,
  /** Characters of a layer pattern (layers.include/exclude, overrides[].match) or blockPattern. */
  pattern: 1024,
  /** Nesting depth of objects and arrays (the schema's deepest value is at depth 4). */
  depth: 32,
  /** Items of any array, entries of any object. */
  items: 10_000,
  /** Patterns in layers.include, layers.exclude or layers.overrides: each is matched against every layer name,
   *  in the editor too, so their number bounds that work. */
  patternList: 256,
  /** M of an N:M pattern: hardware patterns are 2:4 to 16:32; every N:M path allocates per group of M. */
  nmGroup: 256,
  /** C(M, N) subsets APT's joint N:M search tries per group and row ("Solution M"): each costs a small N×N solve,
   *  so 1024 keeps a 4096² layer's mask search within about a minute (2:4 is 6, 4:8 70, 6:12 924; 8:16 12870). */
  jointSubsets: 1024,
} as const;

/** The JSON paths whose strings are layer or block patterns (array items end in `[i]`), and the pattern lists. */
const PATTERN_PATH = /^\$\.(layers\.(include|exclude)\[\d+\]|layers\.overrides\[\d+\]\.match|blockPattern)$/;
const PATTERN_LIST_PATH = /^\$\.layers\.(include|exclude|overrides)$/;

/** Every limit a parsed config exceeds, walking it iteratively (no recursion to overflow) and stopping early. */
export function limitProblems(raw: unknown): SchemaProblem[] {
  const out: SchemaProblem[] = [];
  const stack: [unknown, string, number][] = [[raw, '$', 0]];
  while (stack.length > 0 && out.length < 20) {
    const [v, path, depth] = stack.pop() as [unknown, string, number];
    if (typeof v === 'string') {
      const max = PATTERN_PATH.test(path) ? LIMITS.pattern : LIMITS.string;
      if (v.length > max) out.push({ path, message: `is ${v.length} characters long; the limit is ${max}` });
      continue;
    }
    if (typeof v !== 'object' || v === null) continue;
    if (depth >= LIMITS.depth) {
      out.push({ path, message: `nests deeper than ${LIMITS.depth} levels` });
      continue;
    }
    const entries: [string | number, unknown][] = Array.isArray(v) ? v.map((x, i) => [i, x]) : Object.entries(v);
    const maxItems = PATTERN_LIST_PATH.test(path) ? LIMITS.patternList : LIMITS.items;
    if (entries.length > maxItems) {
      out.push({ path, message: `has ${entries.length} ${Array.isArray(v) ? 'items' : 'entries'}; the limit is ${maxItems}` });
      continue;
    }
    for (const [k, x] of entries) {
      if (typeof k === 'string' && k.length > LIMITS.key) {
        out.push({ path: `${path}["${k.slice(0, 20)}…"]`, message: `a key ${k.length} characters long; the limit is ${LIMITS.key}` });
        continue;
      }
      stack.push([x, childPath(path, k), depth + 1]);
    }
  }
  return out;
}

/** Problem text when a config file's size exceeds LIMITS.configBytes (checked before it is read or parsed). */
export function configSizeProblem(bytes: number): SchemaProblem | null {
  return bytes > LIMITS.configBytes ? { path: '$', message: `the file is ${bytes} bytes; a prune config may be at most ${LIMITS.configBytes} bytes (1 MiB)` } : null;
}

/**
 * The problem of a config text no parser should see: over the size limit, or nesting deeper than 2 · LIMITS.depth
 * (jsonc-parser's parser recurses per level and overflows the stack near 10 000). One linear scan; brackets
 * inside strings are skipped. Shallower excess nesting is left to limitProblems, which names the JSON path.
 */
export function heavyTextProblem(text: string): SchemaProblem | null {
  const tooBig = configSizeProblem(text.length);
  if (tooBig) return tooBig;
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      for (i++; i < text.length && text[i] !== '"' && text[i] !== '\n'; i++) if (text[i] === '\\') i++;
    } else if (c === '{' || c === '[') {
      if (++depth > 2 * LIMITS.depth) return { path: '$', message: `nests deeper than ${2 * LIMITS.depth} levels; a prune config has at most ${LIMITS.depth}` };
    } else if (c === '}' || c === ']') {
      depth = Math.max(0, depth - 1);
    }
  }
  return null;
}

/** Whether the editor should build no syntax tree of `text` (see heavyTextProblem). */
export function tooHeavyForEditor(text: string): boolean {
  return heavyTextProblem(text) !== null;
}

/** C(m, n), or Infinity once it passes `cap` (never computes a huge number). */
export function binomialUpTo(m: number, n: number, cap: number): number {
  let c = 1;
  for (let i = 1; i <= Math.min(n, m - n); i++) {
    c = (c * (m - Math.min(n, m - n) + i)) / i;
    if (c > cap) return Infinity;
  }
  return Math.round(c);
}
