// Small checkers that turn an unknown JSON value into a protocol type, naming the JSON path of the first
// problem. `obj<T>(spec)` takes one checker per field of T and the compiler insists on exactly T's fields,
// so an interface in events.ts and its checker cannot drift apart silently.

export class ProtocolError extends Error {
  constructor(
    /** JSON path of the offending value, e.g. `$.shape[1]`. */
    readonly path: string,
    readonly problem: string,
  ) {
    super(`${path}: ${problem}`);
    this.name = 'ProtocolError';
  }
}

export type Check<T> = ((v: unknown, path: string) => T) & { optional?: true };

function fail(path: string, expected: string, v: unknown): never {
  const got =
    v === undefined ? 'nothing' : typeof v === 'number' ? String(v) : Array.isArray(v) ? 'an array' : typeof v === 'object' && v !== null ? 'an object' : JSON.stringify(v);
  throw new ProtocolError(path, `must be ${expected} (got ${got.length > 40 ? `${got.slice(0, 37)}...` : got})`);
}

export const str: Check<string> = (v, path) => (typeof v === 'string' ? v : fail(path, 'a string', v));

export const bool: Check<boolean> = (v, path) => (typeof v === 'boolean' ? v : fail(path, 'true or false', v));

/** A finite number (JSON has no NaN or Infinity: the writer must not produce them). */
export const num: Check<number> = (v, path) => (typeof v === 'number' && Number.isFinite(v) ? v : fail(path, 'a finite number', v));

/** A finite number >= 0. */
export const nonNeg: Check<number> = (v, path) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : fail(path, 'a number >= 0', v));

/** An integer >= 0 (counts, indices, bytes). */
export const count: Check<number> = (v, path) => (Number.isInteger(v) && (v as number) >= 0 ? (v as number) : fail(path, 'an integer >= 0', v));

/** One of the given literal values. */
export function oneOf<const T extends readonly (string | number | boolean)[]>(...values: T): Check<T[number]> {
  const words = values.map((x) => JSON.stringify(x)).join(', ');
  return (v, path) => (values.includes(v as T[number]) ? (v as T[number]) : fail(path, values.length === 1 ? words : `one of ${words}`, v));
}

export function array<T>(item: Check<T>): Check<T[]> {
  return (v, path) => (Array.isArray(v) ? v.map((x, i) => item(x, `${path}[${i}]`)) : fail(path, 'an array', v));
}

/** [a, b], e.g. a (rows, cols) shape. */
export function pair<T>(item: Check<T>): Check<[T, T]> {
  return (v, path) => (Array.isArray(v) && v.length === 2 ? [item(v[0], `${path}[0]`), item(v[1], `${path}[1]`)] : fail(path, 'an array of 2', v));
}

export function nullable<T>(c: Check<T>): Check<T | null> {
  return (v, path) => (v === null ? null : c(v, path));
}

/** A field that may be absent (it is then absent from the result too, so values round-trip exactly). */
export function optional<T>(c: Check<T>): Check<T | undefined> {
  const f: Check<T | undefined> = (v, path) => (v === undefined ? undefined : c(v, path));
  f.optional = true;
  return f;
}

/** Any JSON object whose values all pass `value` (a string-keyed map). */
export function record<T>(value: Check<T>): Check<Record<string, T>> {
  return (v, path) => {
    if (!isObject(v)) fail(path, 'an object', v);
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, value(x, `${path}.${k}`)]));
  };
}

/** Exactly the fields of T: a missing required field or an unknown one is an error. */
export function obj<T>(spec: { [K in keyof T]-?: Check<T[K]> }): Check<T> {
  const fields = Object.entries(spec) as [string, Check<unknown>][];
  return (v, path) => {
    if (!isObject(v)) fail(path, 'an object', v);
    const out: Record<string, unknown> = {};
    for (const [key, check] of fields) {
      if (!Object.hasOwn(v, key)) {
        if (check.optional) continue;
        throw new ProtocolError(`${path}.${key}`, 'is required');
      }
      const x = check(v[key], `${path}.${key}`);
      if (x !== undefined) out[key] = x;
    }
    for (const key of Object.keys(v)) if (!Object.hasOwn(spec, key)) throw new ProtocolError(`${path}.${key}`, 'unknown field');
    return out as T;
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
