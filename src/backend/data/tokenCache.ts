// The token ids of a (tokenizer, text file) pair, kept so that the next run on the same text skips tokenizing.
//
// A cache file is a `.json` token-id file the CLI accepts as data ({"ids": [...]} plus what it was made from),
// named by the content hashes of the text and of the tokenizer, so a change to either misses it. It lives in a
// `.prunekit-cache/` folder beside the text, or in the user's cache folder when that one cannot be written
// (a read-only data folder: no permission, or no write bit in its mode, which root would otherwise ignore); it is written under a temporary name and renamed. A file there that is not what its
// name says (corrupt, truncated, another format) is never trusted: a warning, and the text is tokenized again.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import * as path from 'node:path';
import { readTokens, TextTokenizer, tokenIdsOf } from './tokens';

/** What a cache file records besides the ids; a bump of `format` misses every older file. */
const FORMAT = 'prunekit-token-ids/1';
export const CACHE_FOLDER = '.prunekit-cache';

/** How the ids of a data file were had: read from a token-id file, tokenized (the cache off, or missed and
 *  written), or read from the cache. */
export interface TokenSource {
  source: 'ids' | 'tokenized' | 'cache';
  /** The cache file read or written; null when none was (an id file, the cache off, no writable folder). */
  cacheFile: string | null;
}

export interface CacheOptions {
  /** false: tokenize every time and write nothing. */
  enabled: boolean;
  /** The text's own problems (invalid UTF-8, as readTokens says them), also when its ids come from the cache. */
  warn?: (message: string) => void;
  /** A cache file not trusted, or no folder to write one in. */
  cacheWarn?: (message: string) => void;
  /** The user cache folder (default: the platform's, see userCacheDir, when the home folder exists); tests point
   *  it elsewhere. */
  userDir?: string;
}

/** Token ids of a data file (as readTokens), from the cache when it holds them, else tokenized and cached. */
export function cachedTokens(file: string, tokenizer: TextTokenizer | undefined, options: CacheOptions): { ids: Int32Array; from: TokenSource } {
  const warn = options.warn ?? (() => undefined);
  const cacheWarn = options.cacheWarn ?? (() => undefined);
  if (path.extname(file).toLowerCase() === '.json') return { ids: readTokens(file, tokenizer, warn), from: { source: 'ids', cacheFile: null } };
  if (!options.enabled || !tokenizer || !existsSync(file)) return { ids: readTokens(file, tokenizer, warn), from: { source: 'tokenized', cacheFile: null } };
  const key = cacheKey(file, tokenizer);
  const userDir = options.userDir ?? (existsSync(homedir()) ? userCacheDir() : null); // never creates a missing $HOME
  const places = [path.join(path.dirname(file), CACHE_FOLDER), ...(userDir === null ? [] : [userDir])];
  for (const dir of places) {
    const hit = readCacheFile(path.join(dir, key.name), key, cacheWarn);
    if (hit) {
      for (const w of hit.warnings) warn(`${file}: ${w}`);
      return { ids: hit.ids, from: { source: 'cache', cacheFile: path.join(dir, key.name) } };
    }
  }
  const warnings: string[] = [];
  const ids = readTokens(file, tokenizer, (m) => (warnings.push(m.replace(`${file}: `, '')), warn(m)));
  const written = places.reduce<string | null>((done, dir) => done ?? writeCacheFile(dir, key, ids, warnings), null);
  if (!written) cacheWarn(`${file}: no token cache written (neither ${places.join(' nor ')} can be written): the next run tokenizes it again`);
  return { ids, from: { source: 'tokenized', cacheFile: written } };
}

/** The platform's per-user cache folder for token ids. */
export function userCacheDir(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  if (platform === 'win32') return path.win32.join(env.LOCALAPPDATA ?? path.win32.join(homedir(), 'AppData', 'Local'), 'prunekit', 'cache', 'tokens');
  if (platform === 'darwin') return path.join(homedir(), 'Library', 'Caches', 'prunekit', 'tokens');
  return path.join(env.XDG_CACHE_HOME || path.join(homedir(), '.cache'), 'prunekit', 'tokens');
}

interface CacheKey {
  /** The cache file's name: the text's name and both hashes. */
  name: string;
  text: { name: string; bytes: number; sha256: string };
  tokenizer: string;
}

function cacheKey(file: string, tokenizer: TextTokenizer): CacheKey {
  const bytes = readFileSync(file);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const name = path.basename(file);
  return { name: `${name}.${sha256.slice(0, 16)}.${tokenizer.fingerprint.slice(0, 16)}.json`, text: { name, bytes: bytes.length, sha256 }, tokenizer: tokenizer.fingerprint };
}

interface CacheHit {
  ids: Int32Array;
  /** The text's warnings when it was tokenized (without the file name), said again on every hit. */
  warnings: string[];
}

/** The ids in a cache file, or null when it is absent or not what its name says (then with a warning). */
function readCacheFile(file: string, key: CacheKey, warn: (message: string) => void): CacheHit | null {
  let size: number;
  try {
    size = statSync(file).size;
  } catch {
    return null;
  }
  // At most one id per byte of text plus a BOS per line, each under 12 characters: anything larger is not ours.
  const got = size > 12 * (2 * key.text.bytes + 2) + 4096 ? `${size} bytes, too large for ${key.text.bytes} bytes of text` : parseCacheFile(file, key);
  if (typeof got !== 'string') return got;
  warn(`${file}: token cache ignored (${got}): the text is tokenized again and the cache rewritten`);
  return null;
}

/** The ids of a cache file whose record matches the key, or why it cannot be trusted. */
function parseCacheFile(file: string, key: CacheKey): CacheHit | string {
  let v: { format?: unknown; text?: { sha256?: unknown }; tokenizer?: { sha256?: unknown }; warnings?: unknown; count?: unknown; ids?: unknown };
  let quick: { record: unknown; ids: Int32Array } | null;
  try {
    const bytes = readFileSync(file);
    quick = quickParse(bytes);
    v = (quick?.record ?? JSON.parse(bytes.toString('utf8'))) as typeof v;
  } catch (e) {
    return `not valid JSON: ${(e as Error).message}`;
  }
  const ids = quick?.ids ?? v?.ids;
  if (v?.format !== FORMAT) return `not a ${FORMAT} file`;
  if (v.text?.sha256 !== key.text.sha256 || v.tokenizer?.sha256 !== key.tokenizer) return 'made from another text or tokenizer';
  if (!(Array.isArray(ids) || ids instanceof Int32Array) || ids.length !== v.count) return `not the ${String(v.count)} ids it records`;
  const warnings = v.warnings;
  if (!Array.isArray(warnings) || !warnings.every((w) => typeof w === 'string')) return 'no list of the text\'s warnings';
  if (ids instanceof Int32Array) return { ids, warnings };
  try {
    return { ids: tokenIdsOf(file, ids), warnings };
  } catch (e) {
    return (e as Error).message.replace(`${file}: `, '');
  }
}

const IDS_KEY = Buffer.from(',"ids":[');

/** A cache file in the form writeCacheFile writes it (the record, then `,"ids":[` and ids in [0, 2³¹) as plain
 *  digits and commas, `]}`) read without JSON.parse, which takes most of a hit's time on millions of ids; null when
 *  the file is not in that form exactly, and JSON.parse then says what is wrong with it. */
function quickParse(bytes: Buffer): { record: unknown; ids: Int32Array } | null {
  const at = bytes.lastIndexOf(IDS_KEY); // the ids hold no quote: the last one is theirs
  const end = bytes.length - (bytes[bytes.length - 1] === 0x0a ? 1 : 0);
  if (at < 0 || bytes[end - 1] !== 0x7d || bytes[end - 2] !== 0x5d) return null;
  let record: unknown;
  try {
    record = JSON.parse(`${bytes.toString('utf8', 0, at)}}`);
  } catch {
    return null;
  }
  const ids = new Int32Array((end - 2 - at - IDS_KEY.length + 1) >> 1); // n ids take at least 2n − 1 bytes
  let n = 0;
  let x = 0;
  let digits = 0;
  for (let i = at + IDS_KEY.length; i < end - 2; i++) {
    const c = bytes[i];
    if (c >= 0x30 && c <= 0x39) {
      if (digits > 0 && x === 0) return null; // a leading zero: not JSON
      x = x * 10 + c - 0x30;
      if (++digits > 10 || x > 0x7fffffff) return null;
    } else if (c === 0x2c && digits > 0) {
      ids[n++] = x;
      x = 0;
      digits = 0;
    } else return null;
  }
  if (digits > 0) ids[n++] = x;
  else if (n > 0) return null; // a trailing comma
  return { record, ids: ids.slice(0, n) };
}

/** A folder whose mode has no write bit: read-only by intent, also to root, whom the kernel lets write it anyway. */
function readOnly(dir: string): boolean {
  try {
    return (statSync(dir).mode & 0o222) === 0;
  } catch {
    return false; // absent: mkdirSync says whether it can be made
  }
}

/** `ids.join(',')` as ASCII bytes, digits written directly (right to left, integer steps): a small fraction of
 *  join's time. */
export function idList(ids: Int32Array): Buffer {
  const out = Buffer.allocUnsafe(ids.length * 11);
  let at = 0;
  for (let i = 0; i < ids.length; i++) {
    if (i > 0) out[at++] = 0x2c;
    let x = ids[i];
    at += x < 10 ? 1 : x < 100 ? 2 : x < 1000 ? 3 : x < 10000 ? 4 : x < 100000 ? 5 : String(x).length;
    let d = at - 1;
    for (; x >= 10; d--) {
      const q = (x / 10) | 0;
      out[d] = 0x30 + x - q * 10;
      x = q;
    }
    out[d] = 0x30 + x;
  }
  return out.subarray(0, at);
}

/** Writes the cache file (temporary name, then rename); its path, or null when the folder cannot be written. */
function writeCacheFile(dir: string, key: CacheKey, ids: Int32Array, warnings: string[]): string | null {
  const file = path.join(dir, key.name);
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    if (!existsSync(dir) && readOnly(path.dirname(dir))) return null;
    mkdirSync(dir, { recursive: true });
    const record = { format: FORMAT, text: key.text, tokenizer: { sha256: key.tokenizer }, warnings, count: ids.length };
    writeFileSync(tmp, Buffer.concat([Buffer.from(`${JSON.stringify(record).slice(0, -1)},"ids":[`), idList(ids), Buffer.from(']}\n')]));
    renameSync(tmp, file);
    return file;
  } catch {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // no folder: nothing was written
    }
    return null;
  }
}
