// Calibration and evaluation tokens.
//
// Text is tokenized with the checkpoint's tokenizer.json through @huggingface/tokenizers (pure JS), as
// ids = [BOS] + encode(text) — the protocol of the fixtures' reference perplexities and of SparseGPT's
// WikiText loader ("\n\n".join(texts) encoded once). Calibration windows are drawn at random (seeded)
// from that stream; evaluation uses non-overlapping windows from its start.

import { Tokenizer } from '@huggingface/tokenizers';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { mulberry32 } from '../random';

/** A data problem with the protocol code the CLI reports and the file it concerns. */
export class DataError extends Error {
  constructor(readonly code: 'data-not-found' | 'data-invalid' | 'tokenizer-missing', readonly file: string, message: string) {
    super(message);
    this.name = 'DataError';
  }
}

export interface TextTokenizer {
  encode(text: string): number[];
  /** Prepended to every document; undefined when the tokenizer has none. */
  bosId: number | undefined;
  /** The tokenizer.json that was loaded. */
  file: string;
}

/** Loads tokenizer.json (and tokenizer_config.json / config.json beside it for the BOS token). */
export function loadTokenizer(file: string): TextTokenizer {
  if (!existsSync(file)) throw new DataError('tokenizer-missing', file, `${file}: tokenizer.json not found (set "tokenizer" in the prune config to its path)`);
  const dir = path.dirname(file);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new DataError('tokenizer-missing', file, `${file}: not a valid tokenizer.json (${(e as Error).message})`);
  }
  const readJson = (name: string): Record<string, unknown> => {
    const p = path.join(dir, name);
    return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>) : {};
  };
  const tokConfig = readJson('tokenizer_config.json');
  const modelConfig = readJson('config.json');
  const tok = new Tokenizer(json as never, tokConfig as never);
  let bosId = typeof modelConfig.bos_token_id === 'number' ? modelConfig.bos_token_id : undefined;
  if (bosId === undefined) {
    const bosToken = typeof tokConfig.bos_token === 'string' ? tokConfig.bos_token : (tokConfig.bos_token as { content?: string } | undefined)?.content;
    const added = (json.added_tokens as { id: number; content: string }[] | undefined) ?? [];
    bosId = added.find((t) => t.content === (bosToken ?? '<s>'))?.id;
  }
  return { encode: (text) => tok.encode(text, { add_special_tokens: false }).ids, bosId, file };
}

/**
 * Token ids of a data file: `.txt` → [BOS] + encode(whole text); `.jsonl` → per line, the `text` field as a
 * document ([BOS] + encode(text)), concatenated; `.json` → a JSON array of token ids (no tokenizer needed).
 */
export function readTokens(file: string, tokenizer: TextTokenizer | undefined): Int32Array {
  if (!existsSync(file)) throw new DataError('data-not-found', file, `${file}: data file not found`);
  const ext = path.extname(file).toLowerCase();
  if (ext === '.json') {
    const v: unknown = JSON.parse(readFileSync(file, 'utf8'));
    const ids = Array.isArray(v) ? v : (v as { ids?: unknown }).ids;
    if (!Array.isArray(ids) || !ids.every((x) => Number.isInteger(x) && x >= 0)) {
      throw new DataError('data-invalid', file, `${file}: a token-id file must be a JSON array of non-negative integers (or {"ids": [...]})`);
    }
    return Int32Array.from(ids as number[]);
  }
  if (!tokenizer) throw new DataError('tokenizer-missing', file, `${file}: text needs a tokenizer.json`);
  const bos = tokenizer.bosId === undefined ? [] : [tokenizer.bosId];
  if (ext === '.jsonl') {
    const out: number[] = [];
    readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
      if (!line.trim()) return;
      let rec: unknown;
      try {
        rec = JSON.parse(line);
      } catch {
        throw new DataError('data-invalid', file, `${file}:${i + 1}: not valid JSON`);
      }
      const text = (rec as { text?: unknown }).text;
      if (typeof text !== 'string') throw new DataError('data-invalid', file, `${file}:${i + 1}: no "text" string field`);
      for (const id of [...bos, ...tokenizer.encode(text)]) out.push(id);
    });
    return Int32Array.from(out);
  }
  return Int32Array.from([...bos, ...tokenizer.encode(readFileSync(file, 'utf8'))]);
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
