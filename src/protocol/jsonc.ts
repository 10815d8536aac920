// JSON with comments (`//`, `/* */`), as *.prune.json files are written: a tokenizer that keeps every token's
// offset, a tolerant tree (a half-typed file still gives the nodes around the cursor), the JSON path of a
// cursor position, and the node at a JSON path such as `$.layers.overrides[0].match`. The editor features
// put completions, hovers and diagnostics on exact ranges with it; parseConfigText blanks comments with it.
// Pure TypeScript (no vscode, no Node).

import { tooHeavyForEditor } from './limits';

export type TokenKind = '{' | '}' | '[' | ']' | ':' | ',' | 'string' | 'number' | 'literal' | 'comment' | 'unknown';

export interface Token {
  kind: TokenKind;
  offset: number;
  /** Offset just past the token. */
  end: number;
  /** Strings: the decoded value; numbers and literals: the parsed value. */
  value?: string | number | boolean | null;
  /** Strings only: false when the closing quote is missing (the string runs to the end of its line). */
  closed?: boolean;
}

/** Every token of text, comments included, in order. Never throws: what is not JSON becomes `unknown`. */
export function tokenize(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\uFEFF') {
      i++;
    } else if (c === '/' && text[i + 1] === '/') {
      const nl = text.indexOf('\n', i);
      const end = nl < 0 ? n : nl;
      out.push({ kind: 'comment', offset: i, end });
      i = end;
    } else if (c === '/' && text[i + 1] === '*') {
      const close = text.indexOf('*/', i + 2);
      const end = close < 0 ? n : close + 2;
      out.push({ kind: 'comment', offset: i, end });
      i = end;
    } else if ('{}[]:,'.includes(c)) {
      out.push({ kind: c as TokenKind, offset: i, end: i + 1 });
      i++;
    } else if (c === '"') {
      out.push(scanString(text, i));
      i = out[out.length - 1].end;
    } else {
      const m = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|^(?:true|false|null)\b/.exec(text.slice(i, i + 400));
      if (m) {
        const word = m[0];
        const isNumber = word !== 'true' && word !== 'false' && word !== 'null';
        out.push({ kind: isNumber ? 'number' : 'literal', offset: i, end: i + word.length, value: isNumber ? Number(word) : (JSON.parse(word) as boolean | null) });
        i += word.length;
      } else {
        // A run of anything else (a bare word, a stray character): one unknown token.
        let j = i + 1;
        while (j < n && !/[\s{}[\]:,"/]/.test(text[j])) j++;
        out.push({ kind: 'unknown', offset: i, end: j });
        i = j;
      }
    }
  }
  return out;
}

function scanString(text: string, start: number): Token {
  let i = start + 1;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      return { kind: 'string', offset: start, end: i + 1, value: decode(text.slice(start + 1, i)), closed: true };
    }
    if (c === '\n' || c === '\r') break;
    i += c === '\\' && i + 1 < text.length && text[i + 1] !== '\n' ? 2 : 1;
  }
  return { kind: 'string', offset: start, end: i, value: decode(text.slice(start + 1, i)), closed: false };
}

function decode(raw: string): string {
  try {
    return JSON.parse(`"${raw}"`) as string;
  } catch {
    return raw; // a half-typed escape: the text as written
  }
}

/** text with every comment replaced by spaces (line breaks kept), so offsets, lines and columns stay the same. */
export function blankComments(text: string): string {
  let out = '';
  let last = 0;
  for (const t of tokenize(text)) {
    if (t.kind !== 'comment') continue;
    out += text.slice(last, t.offset) + text.slice(t.offset, t.end).replace(/[^\r\n]/g, ' ');
    last = t.end;
  }
  return out + text.slice(last);
}

// ---------------------------------------------------------------------------------------------------------
// The tree

export type JsonNode =
  | { kind: 'object'; offset: number; end: number; properties: JsonProperty[] }
  | { kind: 'array'; offset: number; end: number; items: JsonNode[] }
  | { kind: 'string'; offset: number; end: number; value: string; closed: boolean }
  | { kind: 'number' | 'literal'; offset: number; end: number; value: number | boolean | null };

export interface JsonProperty {
  key: string;
  keyOffset: number;
  keyEnd: number;
  /** Absent while the value is not typed yet. */
  value?: JsonNode;
}

/** The tree of text; parts that are not JSON are skipped. undefined when there is no value at all. */
export function parseTree(text: string): JsonNode | undefined {
  if (tooHeavyForEditor(text)) return undefined; // too big or too deep (the tree is built recursively): no work
  const tokens = tokenize(text).filter((t) => t.kind !== 'comment');
  let i = 0;
  const value = (): JsonNode | undefined => {
    const t = tokens[i];
    if (!t) return undefined;
    if (t.kind === '{') {
      i++;
      const properties: JsonProperty[] = [];
      while (i < tokens.length && tokens[i].kind !== '}') {
        const k = tokens[i];
        if (k.kind !== 'string') {
          if (k.kind === ']') break; // a bracket that closes an outer array: this object was left open
          i++;
          continue;
        }
        i++;
        const prop: JsonProperty = { key: k.value as string, keyOffset: k.offset, keyEnd: k.end };
        properties.push(prop);
        if (tokens[i]?.kind === ':') {
          i++;
          if (tokens[i] && startsValue(tokens[i].kind)) prop.value = value();
        }
        if (tokens[i]?.kind === ',') i++;
      }
      const close = tokens[i];
      const end = close?.kind === '}' ? close.end : (tokens[i - 1]?.end ?? t.end);
      if (close?.kind === '}') i++;
      return { kind: 'object', offset: t.offset, end, properties };
    }
    if (t.kind === '[') {
      i++;
      const items: JsonNode[] = [];
      while (i < tokens.length && tokens[i].kind !== ']') {
        if (tokens[i].kind === '}') break;
        if (startsValue(tokens[i].kind)) {
          const v = value();
          if (v) items.push(v);
        } else {
          i++;
        }
        if (tokens[i]?.kind === ',') i++;
      }
      const close = tokens[i];
      const end = close?.kind === ']' ? close.end : (tokens[i - 1]?.end ?? t.end);
      if (close?.kind === ']') i++;
      return { kind: 'array', offset: t.offset, end, items };
    }
    i++;
    if (t.kind === 'string') return { kind: 'string', offset: t.offset, end: t.end, value: t.value as string, closed: t.closed ?? true };
    if (t.kind === 'number' || t.kind === 'literal') return { kind: t.kind, offset: t.offset, end: t.end, value: t.value as number | boolean | null };
    return undefined;
  };
  while (i < tokens.length && !startsValue(tokens[i].kind)) i++;
  return value();
}

function startsValue(kind: TokenKind): boolean {
  return kind === '{' || kind === '[' || kind === 'string' || kind === 'number' || kind === 'literal';
}

/** The plain value of a node (an object's property without a value is left out). */
export function nodeValue(node: JsonNode): unknown {
  switch (node.kind) {
    case 'object':
      return Object.fromEntries(node.properties.filter((p) => p.value).map((p) => [p.key, nodeValue(p.value as JsonNode)]));
    case 'array':
      return node.items.map(nodeValue);
    default:
      return node.value;
  }
}

export type JsonPathSegment = string | number;

/** `$.layers.overrides[0].match` → ["layers", "overrides", 0, "match"] (the form schema.ts childPath writes). */
export function parseJsonPath(path: string): JsonPathSegment[] {
  const out: JsonPathSegment[] = [];
  const re = /\.([A-Za-z_$][A-Za-z0-9_$]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/gy;
  re.lastIndex = path.startsWith('$') ? 1 : 0;
  let m: RegExpExecArray | null;
  while (re.lastIndex < path.length && (m = re.exec(path))) {
    if (m[1] !== undefined) out.push(m[1]);
    else if (m[2] !== undefined) out.push(Number(m[2]));
    else out.push(JSON.parse(m[3]) as string);
  }
  return out;
}

/** The node at a path (the last property of that name wins, as in JSON.parse); undefined when absent. */
export function nodeAtPath(root: JsonNode | undefined, path: readonly JsonPathSegment[]): JsonNode | undefined {
  let node = root;
  for (const seg of path) {
    if (!node) return undefined;
    if (typeof seg === 'number') node = node.kind === 'array' ? node.items[seg] : undefined;
    else node = node.kind === 'object' ? node.properties.filter((p) => p.key === seg).pop()?.value : undefined;
  }
  return node;
}

/** The property (key and value) at a path, for ranges on the key of a value that is missing or wrong. */
export function propertyAtPath(root: JsonNode | undefined, path: readonly JsonPathSegment[]): JsonProperty | undefined {
  if (path.length === 0) return undefined;
  const parent = nodeAtPath(root, path.slice(0, -1));
  const key = path[path.length - 1];
  return parent?.kind === 'object' && typeof key === 'string' ? parent.properties.filter((p) => p.key === key).pop() : undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Where the cursor is

export interface CursorLocation {
  /** The JSON path of the value (or key) at the cursor: ["layers", "include", 2]. */
  path: JsonPathSegment[];
  /** True where a property name goes (the last path segment is the key typed so far, or ""). */
  isKey: boolean;
  /** The string token the cursor is inside (between its quotes), if any. */
  string?: { offset: number; end: number; value: string; closed: boolean };
}

type Frame = { kind: 'object'; key: string | undefined; afterColon: boolean } | { kind: 'array'; index: number };

/**
 * Where offset (a position between characters) is in the document: the path of the value there, whether a
 * key goes there, and the string it is inside. Reads the tokens before the cursor only, so text after it may
 * be broken. undefined inside a comment or outside the top-level value.
 */
export function locationAt(text: string, offset: number): CursorLocation | undefined {
  const stack: Frame[] = [];
  let string: CursorLocation['string'];
  for (const t of tokenize(text)) {
    if (t.offset >= offset) break;
    // Inside a token: only strings (between the quotes) and comments matter.
    if (t.end > offset || (t.kind === 'string' && !t.closed && t.end === offset)) {
      if (t.kind === 'comment') return undefined;
      if (t.kind === 'string') string = { offset: t.offset, end: t.end, value: t.value as string, closed: t.closed ?? true };
      if (t.kind === 'string' || t.kind === 'number' || t.kind === 'literal' || t.kind === 'unknown') break;
    }
    if (t.kind === 'comment' && t.end === offset && text.slice(t.offset, t.offset + 2) === '//') return undefined;
    const top = stack[stack.length - 1];
    switch (t.kind) {
      case '{':
        stack.push({ kind: 'object', key: undefined, afterColon: false });
        break;
      case '[':
        stack.push({ kind: 'array', index: 0 });
        break;
      case '}':
      case ']':
        stack.pop();
        if (stack.length === 0) return undefined;
        break;
      case ':':
        if (top?.kind === 'object') top.afterColon = true;
        break;
      case ',':
        if (top?.kind === 'object') Object.assign(top, { key: undefined, afterColon: false });
        else if (top?.kind === 'array') top.index++;
        break;
      case 'string':
        if (top?.kind === 'object' && !top.afterColon) top.key = t.value as string;
        break;
      default:
        break;
    }
  }
  if (stack.length === 0) return undefined;
  const path: JsonPathSegment[] = [];
  let isKey = false;
  stack.forEach((f, depth) => {
    const last = depth === stack.length - 1;
    if (f.kind === 'array') path.push(f.index);
    else if (!last) path.push(f.key ?? '');
    else if (f.afterColon) path.push(f.key ?? '');
    else {
      isKey = true;
      path.push(string ? string.value : '');
    }
  });
  return { path, isKey, string };
}
