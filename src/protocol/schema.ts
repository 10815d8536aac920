// A validator for the subset of JSON Schema draft-07 that prune-config.schema.json uses, so the schema file
// stays the single source of truth (VS Code's editor, the backend and the extension all read the same file)
// and errors name the JSON path in words a user can act on: `$.calibration.nsamples: must be an integer >= 1
// (got 0)`. Keywords outside VALIDATION_KEYWORDS and ANNOTATION_KEYWORDS are not understood here; the
// protocol test fails if the schema uses one, so the schema cannot silently outgrow this file.
// Pure TypeScript: no vscode, no Node.

export type JsonType = 'null' | 'boolean' | 'integer' | 'number' | 'string' | 'array' | 'object';

export interface JsonSchema {
  // Validation (every keyword here is enforced by validateSchema).
  type?: JsonType | JsonType[];
  enum?: unknown[];
  const?: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  pattern?: string;
  items?: JsonSchema;
  minItems?: number;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  anyOf?: JsonSchema[];
  // Annotations (draft-07's, and VS Code's JSON editor extensions: markdownDescription, patternErrorMessage,
  // markdownEnumDescriptions, defaultSnippets).
  $schema?: string;
  $comment?: string;
  title?: string;
  description?: string;
  markdownDescription?: string;
  default?: unknown;
  examples?: unknown[];
  /** Shown by VS Code when `pattern` fails; used here too. Starts with "Must …", no final period. */
  patternErrorMessage?: string;
  markdownEnumDescriptions?: string[];
  defaultSnippets?: { label?: string; description?: string; body: unknown }[];
  /** VS Code: the file may hold comments (*.prune.json is JSON with comments; parseConfigText accepts them). */
  allowComments?: boolean;
}

export const VALIDATION_KEYWORDS: readonly string[] = [
  'type', 'enum', 'const', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'minLength', 'pattern', 'items',
  'minItems', 'properties', 'required', 'additionalProperties', 'anyOf',
];
export const ANNOTATION_KEYWORDS: readonly string[] = [
  '$schema', '$comment', 'title', 'description', 'markdownDescription', 'default', 'examples', 'patternErrorMessage',
  'markdownEnumDescriptions', 'defaultSnippets', 'allowComments',
];

export interface SchemaProblem {
  /** JSON path of the offending value: `$`, `$.layers.overrides[0].sparsity`. */
  path: string;
  message: string;
}

/** Every problem of value against schema, in schema order (empty when valid). */
export function validateSchema(schema: JsonSchema, value: unknown, path = '$'): SchemaProblem[] {
  const out: SchemaProblem[] = [];
  check(schema, value, path, out);
  return out;
}

/**
 * value with every absent property that has a `default` filled in (deep-copied), recursively; a filled-in
 * default object gets its own properties' defaults too. value must already be valid; it is not modified.
 */
export function withDefaults(schema: JsonSchema, value: unknown): unknown {
  if (schema.anyOf) {
    const branch = schema.anyOf.find((b) => admits(b, value) && validateSchema(b, value).length === 0);
    return branch ? withDefaults(branch, value) : value;
  }
  if (Array.isArray(value)) return schema.items ? value.map((x) => withDefaults(schema.items as JsonSchema, x)) : [...value];
  if (!isObject(value) || !schema.properties) return value;
  const out: Record<string, unknown> = { ...value };
  for (const [key, sub] of Object.entries(schema.properties)) {
    if (!Object.hasOwn(out, key) && Object.hasOwn(sub, 'default')) out[key] = JSON.parse(JSON.stringify(sub.default));
    if (Object.hasOwn(out, key)) out[key] = withDefaults(sub, out[key]);
  }
  return out;
}

/** `$.a` + "b" → `$.a.b`; keys that are not identifiers are quoted: `$["x-y"]`. */
export function childPath(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

// ---------------------------------------------------------------------------------------------------------
// Checking

function check(s: JsonSchema, v: unknown, path: string, out: SchemaProblem[]): void {
  if (s.anyOf) {
    // Report the branch the value was evidently meant for (the one whose type it has), else list them all.
    const meant = s.anyOf.filter((b) => admits(b, v));
    const results = meant.map((b) => validateSchema(b, v, path));
    if (!results.some((r) => r.length === 0)) {
      if (results.length === 1) out.push(...results[0]);
      else out.push(mustBe(path, s, v));
      return;
    }
  }
  const types = typeList(s);
  if (types.length > 0 && !types.some((t) => hasType(t, v))) return void out.push(mustBe(path, s, v));
  if (Object.hasOwn(s, 'const') && !jsonEqual(s.const, v)) return void out.push(mustBe(path, s, v));
  if (s.enum && !s.enum.some((e) => jsonEqual(e, v))) {
    const near = typeof v === 'string' ? closest(v, s.enum.filter((e): e is string => typeof e === 'string')) : undefined;
    const p = mustBe(path, s, v);
    return void out.push(near ? { path, message: `${p.message}; did you mean "${near}"?` } : p);
  }
  if (typeof v === 'number' && !inBounds(s, v)) return void out.push(mustBe(path, s, v));
  if (typeof v === 'string') {
    if (s.minLength !== undefined && v.length < s.minLength) {
      return void out.push({ path, message: `must be ${s.minLength === 1 ? 'a non-empty string' : `a string of at least ${s.minLength} characters`}` });
    }
    if (s.pattern !== undefined && !new RegExp(s.pattern, 'u').test(v)) {
      const message = s.patternErrorMessage ? lowerFirst(s.patternErrorMessage) : `must match /${s.pattern}/`;
      return void out.push({ path, message: `${message} (got ${brief(v)})` });
    }
  }
  if (Array.isArray(v)) {
    if (s.minItems !== undefined && v.length < s.minItems) {
      return void out.push({ path, message: `must have at least ${s.minItems} item${s.minItems === 1 ? '' : 's'}` });
    }
    if (s.items) v.forEach((x, i) => check(s.items as JsonSchema, x, childPath(path, i), out));
  }
  if (isObject(v)) {
    const props = s.properties ?? {};
    for (const key of s.required ?? []) {
      if (!Object.hasOwn(v, key)) out.push({ path: childPath(path, key), message: `is required${props[key]?.description ? ` (${firstSentence(props[key].description)})` : ''}` });
    }
    for (const [key, sub] of Object.entries(props)) if (Object.hasOwn(v, key)) check(sub, v[key], childPath(path, key), out);
    for (const key of Object.keys(v)) {
      if (Object.hasOwn(props, key)) continue;
      if (s.additionalProperties === false) {
        const near = closest(key, Object.keys(props));
        out.push({ path: childPath(path, key), message: `unknown property${near ? `; did you mean "${near}"?` : ` (known: ${Object.keys(props).join(', ')})`}` });
      } else if (isObject(s.additionalProperties)) {
        check(s.additionalProperties as JsonSchema, v[key], childPath(path, key), out);
      }
    }
  }
}

function mustBe(path: string, s: JsonSchema, v: unknown): SchemaProblem {
  return { path, message: `must be ${describe(s)} (got ${brief(v)})` };
}

/** What a schema accepts, in words: "an integer >= 1 or null", "one of "apt", "sparsegpt"", "false or an object". */
export function describe(s: JsonSchema): string {
  if (s.anyOf) return joinOr(s.anyOf.map(describe));
  if (Object.hasOwn(s, 'const')) return JSON.stringify(s.const);
  if (s.enum) return s.enum.length === 1 ? JSON.stringify(s.enum[0]) : `one of ${s.enum.map((e) => JSON.stringify(e)).join(', ')}`;
  const types = typeList(s);
  if (types.length === 0) return 'any JSON value';
  return joinOr(types.map((t) => describeType(t, s)));
}

function describeType(t: JsonType, s: JsonSchema): string {
  switch (t) {
    case 'integer':
      return `an integer${bounds(s)}`;
    case 'number':
      return `a number${bounds(s)}`;
    case 'string':
      if (s.pattern !== undefined) return s.patternErrorMessage ? lowerFirst(s.patternErrorMessage).replace(/^must be /, '') : `a string matching /${s.pattern}/`;
      return s.minLength ? 'a non-empty string' : 'a string';
    case 'boolean':
      return 'true or false';
    case 'array':
      return 'an array';
    case 'object':
      return 'an object';
    case 'null':
      return 'null';
  }
}

function bounds(s: JsonSchema): string {
  const lo = s.exclusiveMinimum ?? s.minimum;
  const hi = s.exclusiveMaximum ?? s.maximum;
  const loOpen = s.exclusiveMinimum !== undefined;
  const hiOpen = s.exclusiveMaximum !== undefined;
  if (lo !== undefined && hi !== undefined) return ` in ${loOpen ? '(' : '['}${lo}, ${hi}${hiOpen ? ')' : ']'}`;
  if (lo !== undefined) return ` ${loOpen ? '>' : '>='} ${lo}`;
  if (hi !== undefined) return ` ${hiOpen ? '<' : '<='} ${hi}`;
  return '';
}

function inBounds(s: JsonSchema, v: number): boolean {
  return !(
    (s.minimum !== undefined && v < s.minimum) ||
    (s.maximum !== undefined && v > s.maximum) ||
    (s.exclusiveMinimum !== undefined && v <= s.exclusiveMinimum) ||
    (s.exclusiveMaximum !== undefined && v >= s.exclusiveMaximum)
  );
}

function typeList(s: JsonSchema): JsonType[] {
  return s.type === undefined ? [] : Array.isArray(s.type) ? s.type : [s.type];
}

function hasType(t: JsonType, v: unknown): boolean {
  switch (t) {
    case 'null':
      return v === null;
    case 'boolean':
      return typeof v === 'boolean';
    case 'integer':
      return Number.isInteger(v);
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    case 'string':
      return typeof v === 'string';
    case 'array':
      return Array.isArray(v);
    case 'object':
      return isObject(v);
  }
}

/** Whether a value has one of the JSON types a schema branch can accept (its `type`, or its const/enum values'). */
function admits(s: JsonSchema, v: unknown): boolean {
  if (s.anyOf) return s.anyOf.some((b) => admits(b, v));
  const types = typeList(s);
  if (types.length > 0) return types.some((t) => hasType(t, v));
  const values = Object.hasOwn(s, 'const') ? [s.const] : s.enum;
  if (values) return values.some((e) => jsonTypeOf(e) === jsonTypeOf(v));
  return true;
}

function jsonTypeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => jsonEqual(x, b[i]));
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k], b[k]));
  }
  return false;
}

// ---------------------------------------------------------------------------------------------------------
// Wording

function brief(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'an array';
  if (isObject(v)) return 'an object';
  const text = JSON.stringify(v);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

function joinOr(parts: string[]): string {
  return parts.length <= 1 ? (parts[0] ?? '') : `${parts.slice(0, -1).join(', ')} or ${parts[parts.length - 1]}`;
}

function lowerFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}

function firstSentence(s: string): string {
  const end = s.search(/\.(\s|$)/);
  return lowerFirst(end < 0 ? s : s.slice(0, end));
}

/** The candidate within edit distance 2 (or equal ignoring case), for "did you mean". */
function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const c of candidates) {
    const d = c.toLowerCase() === word.toLowerCase() ? 0 : editDistanceUpTo(word, c, 2);
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best;
}

/** Words longer than this are never "meant" as a known name: no suggestion, no work. */
const MAX_SUGGESTED_LENGTH = 64;

/**
 * Levenshtein distance when it is at most `max`, else max + 1: bounded work whatever the input (strings whose
 * lengths differ by more than max, or longer than MAX_SUGGESTED_LENGTH, are skipped; the DP runs in a band of
 * width 2·max + 1 around the diagonal).
 */
export function editDistanceUpTo(a: string, b: string, max: number): number {
  if (Math.abs(a.length - b.length) > max || a.length > MAX_SUGGESTED_LENGTH || b.length > MAX_SUGGESTED_LENGTH) return max + 1;
  const far = max + 1;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => (j <= max ? j : far));
  for (let i = 1; i <= a.length; i++) {
    const cur = new Array<number>(b.length + 1).fill(far);
    if (i <= max) cur[0] = i;
    for (let j = Math.max(1, i - max); j <= Math.min(b.length, i + max); j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1), far);
    }
    prev = cur;
  }
  return prev[b.length];
}
