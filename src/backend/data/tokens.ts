// Calibration and evaluation tokens.
//
// Text is tokenized with the checkpoint's tokenizer.json through @huggingface/tokenizers (pure JS), as
// ids = [BOS] + encode(text) — the protocol of the fixtures' reference perplexities and of SparseGPT's
// WikiText loader ("\n\n".join(texts) encoded once). Calibration windows are drawn at random (seeded)
// from that stream; evaluation uses non-overlapping windows from its start.

import { Tokenizer } from '@huggingface/tokenizers';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { mulberry32 } from '../random';
import { concatIds, fastEncoder } from './fastEncode';
import { encodeLarge } from './parallelEncode';

/** A data problem with the protocol code the CLI reports and the file it concerns. */
export class DataError extends Error {
  constructor(readonly code: 'data-not-found' | 'data-invalid' | 'tokenizer-missing' | 'tokenizer-invalid' | 'token-out-of-range', readonly file: string, message: string) {
    super(message);
    this.name = 'DataError';
  }
}

export interface TextTokenizer {
  /** The ids of `encode(text, { add_special_tokens: false })`, fast (fastEncode.ts) where the tokenizer allows, on
   *  worker threads for a large text (parallelEncode.ts). */
  encode(text: string): Int32Array;
  /** Prepended to every document; undefined when the tokenizer has none. */
  bosId: number | undefined;
  /** The tokenizer.json that was loaded. */
  file: string;
  /** sha256 (hex) of what decides the ids: tokenizer.json, tokenizer_config.json and the BOS id. */
  fingerprint: string;
}

/** Loads tokenizer.json (and tokenizer_config.json / config.json beside it for the BOS token). */
export function loadTokenizer(file: string): TextTokenizer {
  if (!existsSync(file)) throw new DataError('tokenizer-missing', file, `${file}: tokenizer.json not found (set "tokenizer" in the prune config to its path)`);
  const dir = path.dirname(file);
  let json: Record<string, unknown>;
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
    json = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new DataError('tokenizer-invalid', file, `${file}: not a valid tokenizer.json (${e instanceof RangeError ? 'nested too deeply' : (e as Error).message})`);
  }
  const hash = createHash('sha256').update(bytes);
  const readJson = (name: string): Record<string, unknown> => {
    const p = path.join(dir, name);
    try {
      if (!existsSync(p)) return {};
      const text = readFileSync(p, 'utf8');
      if (name === 'tokenizer_config.json') hash.update(text);
      return JSON.parse(text) as Record<string, unknown>;
    } catch (e) {
      throw new DataError('tokenizer-invalid', p, `${p}: not valid JSON (${(e as Error).message})`);
    }
  };
  const tokConfig = readJson('tokenizer_config.json');
  const modelConfig = readJson('config.json');
  let tok: Tokenizer;
  try {
    tok = new Tokenizer(json as never, tokConfig as never);
  } catch (e) {
    const why = e instanceof RangeError ? 'nested too deeply' : (e as Error).message;
    throw new DataError('tokenizer-invalid', file, `${file}: not a tokenizer.json the tokenizer can load (${why}): use the tokenizer.json saved with the model`);
  }
  let bosId = typeof modelConfig.bos_token_id === 'number' ? modelConfig.bos_token_id : undefined;
  if (bosId === undefined) {
    const bosToken = typeof tokConfig.bos_token === 'string' ? tokConfig.bos_token : (tokConfig.bos_token as { content?: string } | undefined)?.content;
    const added = (json.added_tokens as { id: number; content: string }[] | undefined) ?? [];
    bosId = added.find((t) => t.content === (bosToken ?? '<s>'))?.id;
  }
  const fast = fastEncoder(tok, json);
  const fingerprint = hash.update(`bos=${bosId}`).digest('hex');
  const source = { json: bytes.toString('utf8'), config: tokConfig }; // what a worker builds the same tokenizer from
  const encode = fast ? (text: string) => encodeLarge(fast, source, text) : (text: string) => Int32Array.from(tok.encode(text, { add_special_tokens: false }).ids);
  return { encode, bosId, file, fingerprint };
}

/**
 * Token ids of a data file: `.txt` → [BOS] + encode(whole text); `.jsonl` → per line, the `text` field as a
 * document ([BOS] + encode(text)), concatenated; `.json` → a JSON array of token ids (no tokenizer needed).
 */
export function readTokens(file: string, tokenizer: TextTokenizer | undefined, warn: (message: string) => void = () => undefined): Int32Array {
  if (!existsSync(file)) throw new DataError('data-not-found', file, `${file}: data file not found`);
  const ext = path.extname(file).toLowerCase();
  if (ext === '.json') return tokenIdFile(file);
  if (!tokenizer) throw new DataError('tokenizer-missing', file, `${file}: text needs a tokenizer.json`);
  const bos = tokenizer.bosId === undefined ? [] : [tokenizer.bosId];
  const text = decodeText(file, warn);
  if (ext === '.jsonl') {
    const out: Int32Array[] = [];
    text.split('\n').forEach((line, i) => {
      if (!line.trim()) return;
      let rec: unknown;
      try {
        rec = JSON.parse(line);
      } catch {
        throw new DataError('data-invalid', file, `${file}:${i + 1}: not valid JSON`);
      }
      const t = (rec as { text?: unknown }).text;
      if (typeof t !== 'string') throw new DataError('data-invalid', file, `${file}:${i + 1}: no "text" string field`);
      out.push(withBos(bos, tokenizer.encode(t)));
    });
    return concatIds(out);
  }
  return withBos(bos, tokenizer.encode(text));
}

function withBos(bos: number[], ids: Int32Array): Int32Array {
  return bos.length ? concatIds([Int32Array.from(bos), ids]) : ids;
}

/** A JSON array of token ids (or {"ids": [...]}): each must be an integer in [0, 2³¹), never wrapped into another id. */
function tokenIdFile(file: string): Int32Array {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new DataError('data-invalid', file, `${file}: not valid JSON (${e instanceof RangeError ? 'nested too deeply' : (e as Error).message})`);
  }
  return tokenIdsOf(file, Array.isArray(v) ? v : (v as { ids?: unknown } | null)?.ids);
}

/** The ids of a parsed token-id file: an array of integers in [0, 2³¹); `file` names it in the error. */
export function tokenIdsOf(file: string, ids: unknown): Int32Array {
  if (!Array.isArray(ids)) throw new DataError('data-invalid', file, `${file}: a token-id file must be a JSON array of non-negative integers (or {"ids": [...]})`);
  const out = new Int32Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const x: unknown = ids[i];
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > 0x7fffffff) {
      throw new DataError('token-out-of-range', file, `${file}: token id ${shortForm(x)} at position ${i} is not an integer in [0, 2³¹): a token-id file holds the model's vocabulary indices`);
    }
    out[i] = x;
  }
  return out;
}

/** Text never holds a NUL byte: a file that does is binary (an archive, a model, …) and is refused. */
export function refuseBinary(file: string, bytes: Uint8Array): void {
  const nul = bytes.indexOf(0);
  if (nul >= 0) {
    throw new DataError('data-invalid', file, `${file}: a NUL byte at offset ${nul}: this looks like a binary file, not text (give .txt or .jsonl text, or token ids as .json)`);
  }
}

/** A value for a message: short, and never walked deeply (a hostile file may nest arrays 10⁵ deep). */
function shortForm(x: unknown): string {
  if (typeof x === 'number') return String(x);
  if (typeof x === 'string') return JSON.stringify(x.length > 20 ? `${x.slice(0, 20)}…` : x);
  return Array.isArray(x) ? 'an array' : x === null ? 'null' : `a ${typeof x}`;
}

/** The file as UTF-8 text: binary (NUL bytes) is refused; invalid UTF-8 is replaced by U+FFFD with a warning saying how much. */
function decodeText(file: string, warn: (message: string) => void): string {
  const bytes = readFileSync(file);
  refuseBinary(file, bytes);
  const text = bytes.toString('utf8');
  const decoded = countOf(text, '\ufffd');
  const replaced = decoded && decoded - countOf(bytes.toString('latin1'), '\xef\xbf\xbd'); // minus U+FFFD the file itself holds
  if (replaced > 0) {
    warn(`${file}: ${replaced} invalid UTF-8 sequence(s) (${((100 * replaced) / Math.max(1, bytes.length)).toPrecision(2)}% of ${bytes.length} bytes) read as U+FFFD: the text is not UTF-8`);
  }
  return text;
}

function countOf(s: string, piece: string): number {
  let n = 0;
  for (let i = s.indexOf(piece); i >= 0; i = s.indexOf(piece, i + piece.length)) n++;
  return n;
}

export interface Windows {
  /** Each of length seqlen. */
  windows: Int32Array[];
  seqlen: number;
  notes: string[];
}

/**
 * `nsamples` windows of `seqlen` tokens at seeded random offsets in ids[skip:] (SparseGPT's loader:
 * i = randint(0, len − seqlen − 1)). If the text holds fewer than seqlen + 1 tokens, seqlen shrinks to fit and
 * a note says so; windows may overlap when the text is shorter than nsamples·seqlen (also noted).
 */
export function calibrationWindows(ids: Int32Array, nsamples: number, seqlen: number, seed: number, skip = 0, source = 'calibration data'): Windows {
  const notes: string[] = [];
  const pool = ids.subarray(Math.min(skip, ids.length));
  if (pool.length < 2) throw new DataError('data-invalid', source, `${source}: only ${pool.length} token(s) after skipping ${skip}; need at least 2`);
  let len = seqlen;
  if (pool.length < seqlen + 1) {
    len = pool.length - 1;
    notes.push(`${source} has ${pool.length} tokens after skipping ${skip}: windows shortened from ${seqlen} to ${len} tokens`);
  }
  if (pool.length < nsamples * len) {
    notes.push(`${source} has ${pool.length} tokens, fewer than ${nsamples} × ${len}: calibration windows overlap`);
  }
  const rand = mulberry32(seed);
  const windows: Int32Array[] = [];
  for (let s = 0; s < nsamples; s++) {
    const i = Math.floor(rand() * (pool.length - len));
    windows.push(pool.slice(i, i + len));
  }
  return { windows, seqlen: len, notes };
}

/** Non-overlapping windows from the start of ids (the tail that does not fill a window is dropped). */
export function evaluationWindows(ids: Int32Array, seqlen: number, maxWindows = Infinity): Int32Array[] {
  const n = Math.min(Math.floor(ids.length / seqlen), maxWindows);
  return Array.from({ length: n }, (_, w) => ids.slice(w * seqlen, (w + 1) * seqlen));
}
