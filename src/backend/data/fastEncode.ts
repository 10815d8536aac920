// Why hand-written: @huggingface/tokenizers runs BPE on each pre-token whole (a tokenizer without a pre-tokenizer,
// like Llama's, merges the whole file as one word) and builds strings per token: ~50 KB/s. This drives its own stages.
//
// Fast ids for a whole text, identical to `Tokenizer.encode(text, { add_special_tokens: false }).ids`.
//
// The library's stages are called as they are (added-token splitting, normalizer, pre-tokenizer, the BPE model);
// only the model step is cut smaller. A BPE merge joins a token ending in code point a with one starting with b;
// between two code points (a, b) that no merge can join, no merge ever crosses, so the pre-token's BPE is the
// concatenation of its pieces' BPE (its priority queue orders merges by rank, then position, within each piece
// as in the whole). Pieces are mostly words, and each distinct piece is merged once: its ids are memoized.
// Tokenizers this does not cover (another model, word suffixes, lower-casing options, an unknown post-processor)
// use the library's own encode.

import type { Tokenizer } from '@huggingface/tokenizers';

/** The library's internals this module drives (`@huggingface/tokenizers` 0.2: Tokenizer, BPE, Callable). */
interface AddedTokenInternals {
  id: number;
  lstrip: boolean;
  rstrip: boolean;
}
interface BpeInternals {
  (tokens: string[]): string[];
  encode(tokens: string[]): string[];
  /** One word's merges (no vocabulary look-up). */
  bpe(token: string): string[];
  byte_fallback: boolean;
  unk_token: string | null | undefined;
  tokens_to_ids: Map<string, number>;
  unk_token_id: number | undefined;
  fuse_unk: boolean;
  ignore_merges: boolean;
  merges: [string, string][];
  end_of_word_suffix?: string;
  continuing_subword_suffix: string | null;
}
interface NormalizerInternals {
  (text: string): string;
  normalize(text: string): string;
  config?: { type?: string; pattern?: { String?: string }; content?: string };
  /** A Sequence's steps. */
  normalizers?: (NormalizerInternals | null)[];
}
interface TokenizerInternals {
  splitter_unnormalized: { split(text: string): string[]; trie: Record<string, unknown> };
  splitter_normalized: { split(text: string): string[]; trie: Record<string, unknown> };
  added_tokens: { content: string; normalized: boolean }[];
  added_tokens_map: Map<string, AddedTokenInternals>;
  normalizer: NormalizerInternals | null;
  pre_tokenizer: ((text: string, options: { section_index: number }) => string[]) | null;
  model: BpeInternals;
  post_processor: unknown;
  remove_space?: boolean;
  do_lowercase_and_remove_accent: boolean;
}

/** Pieces up to this many code units are merged here (rank look-ups in a Map of Maps, O(n²) in the piece); longer
 *  ones by the library's priority queue, which is O(n log n) but builds a JSON key per pair. */
const OWN_MERGE_MAX = 48;
/** Pieces longer than this are merged but not memoized (text with no safe cut, e.g. one long run of letters). */
const MEMO_MAX_PIECE = 256;

/** A growable Int32Array. */
class IdBuffer {
  ids = new Int32Array(1 << 16);
  length = 0;
  push(id: number): void {
    if (this.length === this.ids.length) {
      const bigger = new Int32Array(this.ids.length * 2);
      bigger.set(this.ids);
      this.ids = bigger;
    }
    this.ids[this.length++] = id;
  }
  pushAll(ids: ArrayLike<number>): void {
    if (this.length + ids.length > this.ids.length) {
      const bigger = new Int32Array(Math.max(this.ids.length * 2, this.length + ids.length));
      bigger.set(this.ids);
      this.ids = bigger;
    }
    for (let i = 0; i < ids.length; i++) this.ids[this.length++] = ids[i];
  }
  /** Pushes src[from, to). */
  pushRange(src: Int32Array, from: number, to: number): void {
    if (this.length + to - from > this.ids.length) {
      const bigger = new Int32Array(Math.max(this.ids.length * 2, this.length + to - from));
      bigger.set(this.ids);
      this.ids = bigger;
    }
    for (let i = from; i < to; i++) this.ids[this.length++] = src[i];
  }
  result(): Int32Array {
    return this.ids.slice(0, this.length);
  }
}

/** FNV-1a over UTF-16 code units: the cutting loop hashes each piece as it passes over it. */
const HASH_SEED = 0x811c9dc5 | 0;
const FNV_PRIME = 0x01000193;

/** How large the piece memo starts, and how much it holds before it starts over (bounds memory on hostile text). */
export interface MemoLimits {
  /** Entries it has room for before it first grows. Sized for a typical text's distinct pieces (10⁴–10⁵): each
   *  growth replaces an array the optimized hot loop holds as a constant, and costs a deoptimization. */
  initialEntries: number;
  maxEntries: number;
  /** Ids of all entries together. */
  maxIds: number;
  /** The bits of the pieces' hash it keys on: all of them (−1), except in tests that make pieces collide. */
  hashMask: number;
}

export const MEMO_LIMITS: MemoLimits = { initialEntries: 1 << 16, maxEntries: 1 << 20, maxIds: 1 << 24, hashMask: -1 };

/** Each distinct piece's ids, merged once. Found by the hash the cutting loop computed and checked against the
 *  text's own code units, so a hit (nearly every piece) slices no string and allocates nothing. */
class PieceMemo {
  private slots: Int32Array; // entry + 1; 0: empty (open addressing, linear probing, at most half full)
  private keys: string[] = [];
  private hashes: Int32Array;
  /** Entry e's ids are ids[idFrom[e], idFrom[e + 1]). */
  private idFrom: Int32Array;
  private unknown: Uint8Array;
  private ids: Int32Array;
  /** Entry + 1 of each one-code-unit piece; 0: none yet. */
  private readonly singles = new Int32Array(0x10000);

  constructor(private readonly limits: MemoLimits) {
    const n = Math.max(2, limits.initialEntries);
    this.slots = new Int32Array(2 ** Math.ceil(Math.log2(2 * n)));
    this.hashes = new Int32Array(n);
    this.idFrom = new Int32Array(n);
    this.unknown = new Uint8Array(n);
    this.ids = new Int32Array(4 * n);
  }

  /** The entry of text[from, to) (whose hash is h), or −1. A piece of one code unit (half of all pieces with a
   *  small vocabulary) is looked up by that unit alone. */
  find(text: string, from: number, to: number, hash: number): number {
    if (to - from === 1) return this.singles[text.charCodeAt(from)] - 1;
    const h = hash & this.limits.hashMask;
    const mask = this.slots.length - 1;
    for (let s = mix(h) & mask; ; s = (s + 1) & mask) {
      const e = this.slots[s] - 1;
      if (e < 0) return -1;
      if (this.hashes[e] === h && sameUnits(this.keys[e], text, from, to)) return e;
    }
  }

  /** Adds a piece not in the memo; its entry. */
  add(piece: string, hash: number, ids: number[], unknown: boolean): number {
    const h = hash & this.limits.hashMask;
    let e = this.keys.length;
    if (e + 1 > this.limits.maxEntries || this.idFrom[e] + ids.length > this.limits.maxIds) e = this.clear();
    if (e + 2 > this.hashes.length) this.growEntries();
    const at = this.idFrom[e];
    if (at + ids.length > this.ids.length) this.ids = grown(this.ids, at + ids.length);
    this.ids.set(ids, at);
    this.idFrom[e + 1] = at + ids.length;
    this.keys.push(piece);
    this.hashes[e] = h;
    this.unknown[e] = unknown ? 1 : 0;
    if (piece.length === 1) this.singles[piece.charCodeAt(0)] = e + 1;
    if (2 * (e + 1) > this.slots.length) this.rehash(2 * this.slots.length);
    else this.place(e);
    return e;
  }

  /** Pushes entry e's ids; says whether one of them is the unknown token. */
  pushIds(e: number, out: IdBuffer): boolean {
    out.pushRange(this.ids, this.idFrom[e], this.idFrom[e + 1]);
    return this.unknown[e] === 1;
  }

  private place(e: number): void {
    const mask = this.slots.length - 1;
    let s = mix(this.hashes[e]) & mask;
    while (this.slots[s] !== 0) s = (s + 1) & mask;
    this.slots[s] = e + 1;
  }

  private rehash(size: number): void {
    this.slots = new Int32Array(size);
    for (let e = 0; e < this.keys.length; e++) this.place(e);
  }

  private growEntries(): void {
    this.hashes = grown(this.hashes, 2 * this.hashes.length);
    this.idFrom = grown(this.idFrom, 2 * this.idFrom.length);
    const unknown = new Uint8Array(2 * this.unknown.length);
    unknown.set(this.unknown);
    this.unknown = unknown;
  }

  private clear(): number {
    this.keys = [];
    this.slots.fill(0);
    this.singles.fill(0);
    return 0;
  }
}

function mix(h: number): number {
  const m = Math.imul(h ^ (h >>> 16), 0x45d9f3b);
  return m ^ (m >>> 16);
}

function sameUnits(key: string, text: string, from: number, to: number): boolean {
  if (key.length !== to - from) return false;
  for (let i = 0; i < key.length; i++) if (key.charCodeAt(i) !== text.charCodeAt(from + i)) return false;
  return true;
}

/** A copy of a slice that does not keep the whole text alive (V8 keeps a slice of 13 or more code units as a view). */
function flat(piece: string): string {
  return Buffer.from(piece, 'utf16le').toString('utf16le');
}

function grown(a: Int32Array, size: number): Int32Array<ArrayBuffer> {
  const out = new Int32Array(Math.max(size, 2 * a.length));
  out.set(a);
  return out;
}

/** The parts one after another. */
export function concatIds(parts: Int32Array[]): Int32Array {
  const out = new Int32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The fast encoder for `tok` (built from `json`, its tokenizer.json), or null when the library must do it all. */
export function fastEncoder(tok: Tokenizer, json: Record<string, unknown>, memo: MemoLimits = MEMO_LIMITS): FastEncoder | null {
  const t = tok as unknown as TokenizerInternals;
  const model = (json.model ?? {}) as { type?: string };
  if (model.type !== 'BPE' || !t.model || !Array.isArray(t.model.merges)) return null;
  if (t.model.end_of_word_suffix || t.model.continuing_subword_suffix) return null; // both depend on where a word ends
  if (t.remove_space === true || t.do_lowercase_and_remove_accent) return null;
  if (!identityWithoutSpecials(json.post_processor)) return null;
  const cuts = cutTable(t.model.merges);
  if (!cuts) return null;
  return new FastEncoder(t, cuts, memo);
}

/** With add_special_tokens false these post-processors return the tokens unchanged. */
function identityWithoutSpecials(p: unknown): boolean {
  if (p === null || p === undefined) return true;
  const pp = p as { type?: string; single?: unknown[]; processors?: unknown[] };
  if (pp.type === 'ByteLevel') return true;
  if (pp.type === 'Sequence') return Array.isArray(pp.processors) && pp.processors.every(identityWithoutSpecials);
  if (pp.type !== 'TemplateProcessing' || !Array.isArray(pp.single)) return false;
  return pp.single.every((item) => {
    const i = item as { SpecialToken?: unknown; Sequence?: { id?: string } };
    return i.SpecialToken !== undefined || i.Sequence?.id === 'A';
  });
}

/** Which code points end a merge's left token; for each code point b beginning a right token, whether it is
 *  merged with few distinct left ends (then `right[b]` is where they are listed in `partners`) or many (never cut).
 *  Typed arrays only: the hot loop reads them for every code unit of the text. */
interface CutTable {
  endsLeft: Uint8Array;
  /** 0: b begins no right token (always cut); MANY: never cut; else the offset in `partners` of b's count, then its left ends. */
  right: Int32Array;
  partners: Int32Array;
}

const CODE_POINTS = 0x110000;
const MANY = -1;
/** Up to this many left partners a right start is looked up pair by pair; letters, with dozens, are never cut between. */
const FEW_PARTNERS = 8;

function cutTable(merges: [string, string][]): CutTable | null {
  const endsLeft = new Uint8Array(CODE_POINTS);
  const lefts = new Map<number, Set<number>>();
  for (const [left, right] of merges) {
    const a = left ? left.codePointAt(left.length - (isLowSurrogate(left.charCodeAt(left.length - 1)) ? 2 : 1)) : undefined;
    const b = right ? right.codePointAt(0) : undefined;
    if (a === undefined || b === undefined) return null; // an empty side: no safe cut can be proved
    endsLeft[a] = 1;
    lefts.set(b, (lefts.get(b) ?? new Set()).add(a));
  }
  const right = new Int32Array(CODE_POINTS);
  const list = [0]; // offset 0 means "none"
  for (const [b, as] of lefts) {
    if (as.size > FEW_PARTNERS) {
      right[b] = MANY;
      continue;
    }
    right[b] = list.length;
    list.push(as.size, ...as);
  }
  return { endsLeft, right, partners: Int32Array.from(list) };
}

function isLowSurrogate(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}

/** Whether no merge can join code point a to the code point b after it: a piece ends between them. */
function isCut({ endsLeft, right, partners }: CutTable, a: number, b: number): boolean {
  const at = right[b];
  if (at === 0) return true;
  if (at === MANY || endsLeft[a] === 0) return at !== MANY;
  for (let k = at + 1, end = at + 1 + partners[at]; k < end; k++) if (partners[k] === a) return false;
  return true;
}

/** One step of an encoding, in order: an added token's id, or the pre-tokens of one call of the model. */
export type Step = number | string[];

export class FastEncoder {
  private readonly memo: PieceMemo;
  private readonly bpe: BpeInternals;
  private readonly unnormalized: string[];

  private readonly normalize: ((text: string) => string) | null;
  /** Merge rank by left token, then right token (the library's bpe_ranks: a pair listed twice keeps its last rank). */
  private readonly ranks = new Map<string, Map<string, number>>();
  private readonly utf8 = new TextEncoder();

  constructor(
    private readonly t: TokenizerInternals,
    private readonly cuts: CutTable,
    memo: MemoLimits,
  ) {
    this.memo = new PieceMemo(memo);
    this.bpe = t.model;
    t.model.merges.forEach(([left, right], rank) => {
      const byLeft = this.ranks.get(left) ?? new Map<string, number>();
      this.ranks.set(left, byLeft.set(right, rank));
    });
    this.normalize = t.normalizer && fastNormalizer(t.normalizer);
    this.unnormalized = t.added_tokens.filter((a) => !(a.normalized && t.normalizer !== null)).map((a) => a.content);
  }

  readonly encode = (text: string): Int32Array => {
    const out = new IdBuffer();
    for (const step of this.plan(text)) {
      if (typeof step === 'number') out.push(step);
      else this.model(step, out, true);
    }
    return out.result();
  };

  /** The library's stages before the model (added tokens, normalizer, pre-tokenizer): cheap, and serial. */
  plan(text: string): Step[] {
    const steps: Step[] = [];
    this.addedTokenSplit(text).forEach((section, sectionIndex) => this.section(section, sectionIndex, steps));
    return steps;
  }

  /** The steps cut into chunks of about `size` code units whose ids, concatenated, are those of all the steps: a
   *  model call's pre-tokens are encoded one by one, and a long pre-token is cut where pieces() cuts it (not under
   *  ignore_merges, where a whole pre-token in the vocabulary is one id). fuse_unk is the exception: see encodeSteps. */
  chunks(steps: Step[], size: number): Step[][] {
    const out: Step[][] = [];
    let chunk: Step[] = [];
    let n = 0;
    const add = (step: Step, units: number) => {
      chunk.push(step);
      n += units;
      if (n < size) return;
      out.push(chunk);
      chunk = [];
      n = 0;
    };
    for (const step of steps) {
      if (typeof step === 'number') {
        add(step, 1);
        continue;
      }
      let group: string[] = [];
      let units = 0;
      for (const token of step) {
        for (let from = 0; from < token.length; ) {
          const room = size - n - units;
          const to = token.length - from <= room || this.bpe.ignore_merges ? token.length : this.nextCut(token, from + Math.max(1, room));
          group.push(from === 0 && to === token.length ? token : token.slice(from, to));
          units += to - from;
          from = to;
          if (n + units >= size) {
            add(group, units);
            group = [];
            units = 0;
          }
        }
      }
      if (group.length) add(group, units);
    }
    if (chunk.length) out.push(chunk);
    return out;
  }

  /** The ids of a chunk's steps, without fuse_unk's redo (a model call may span chunks): `unknown` says whether a
   *  token was unknown to the model, and then, under fuse_unk, the whole text must be encoded by encode(). */
  encodeSteps(steps: Step[]): { ids: Int32Array; unknown: boolean } {
    const out = new IdBuffer();
    let unknown = false;
    for (const step of steps) {
      if (typeof step === 'number') out.push(step);
      else unknown = this.model(step, out, false) || unknown;
    }
    return { ids: out.result(), unknown };
  }

  /** Whether a chunk with an unknown token must be redone whole (fuse_unk joins unknown tokens across pre-tokens). */
  get fusesUnknown(): boolean {
    return this.bpe.fuse_unk;
  }

  /** The first index ≥ from (and ≥ 1) where pieces() cuts the pre-token, or its length when there is none. */
  private nextCut(token: string, from: number): number {
    for (let j = Math.max(1, from); j < token.length; j++) {
      const prev = token.charCodeAt(j - 1);
      if (isLowSurrogate(token.charCodeAt(j)) && isHighSurrogate(prev)) continue; // inside a surrogate pair
      const a = isLowSurrogate(prev) && j >= 2 && isHighSurrogate(token.charCodeAt(j - 2)) ? (token.codePointAt(j - 2) as number) : prev;
      if (isCut(this.cuts, a, token.codePointAt(j) as number)) return j;
    }
    return token.length;
  }

  /** The library's split at added tokens, with their lstrip / rstrip; skipped when the text holds none of them. */
  private addedTokenSplit(text: string): string[] {
    const t = this.t;
    if (!this.unnormalized.some((c) => text.includes(c))) return text.length ? [text] : [];
    return stripAround(t.splitter_unnormalized.split(text), t.added_tokens_map);
  }

  /** encode_text's work on one section, as steps. */
  private section(section: string, sectionIndex: number, out: Step[]): void {
    const t = this.t;
    if (section.length === 0) return;
    const added = t.added_tokens_map.get(section);
    if (added) return void out.push(added.id);
    const normalized = this.normalize ? this.normalize(section) : section;
    if (normalized.length === 0) return;
    const hasNormalized = Object.keys(t.splitter_normalized.trie).length > 0;
    const subsections = hasNormalized ? stripAround(t.splitter_normalized.split(normalized), t.added_tokens_map) : [normalized];
    for (const sub of subsections) {
      if (sub.length === 0) continue;
      const a = t.added_tokens_map.get(sub);
      out.push(a ? a.id : t.pre_tokenizer ? t.pre_tokenizer(sub, { section_index: sectionIndex }) : [sub]);
    }
  }

  /** The model's ids for one subsection's pre-tokens. fuse_unk joins unknown tokens across pre-tokens: a
   *  subsection that gave one is redone by the library's model when `fuse` (says whether one was unknown). */
  private model(preTokens: string[], out: IdBuffer, fuse: boolean): boolean {
    const start = out.length;
    let unknown = false;
    for (const token of preTokens) {
      if (this.bpe.ignore_merges && this.bpe.tokens_to_ids.has(token)) out.push(this.idOf(token));
      else unknown = this.pieces(token, out) || unknown;
    }
    if (fuse && unknown && this.bpe.fuse_unk) {
      out.length = start;
      out.pushAll(this.bpe(preTokens).map((tk) => this.idOf(tk)));
    }
    return unknown;
  }

  /** A pre-token's ids, piece by piece: cut before each code point that no merge joins to the one before it. The
   *  hot loop of the encoder (one pass over every code unit, typed arrays only), hashing each piece on the way. */
  private pieces(token: string, out: IdBuffer): boolean {
    const cuts = this.cuts;
    let unknown = false;
    let from = 0;
    let h = HASH_SEED;
    let a = 0;
    for (let i = 0; i < token.length; ) {
      const unit = token.charCodeAt(i);
      // Calls kept out of the common path: until the loop is optimized, each costs as much as the loop's own work.
      const b = unit >= 0xd800 && unit <= 0xdbff ? (token.codePointAt(i) as number) : unit;
      if (i > 0 && isCut(cuts, a, b)) {
        unknown = this.piece(token, from, i, h, out) || unknown;
        from = i;
        h = HASH_SEED;
      }
      h = Math.imul(h ^ unit, FNV_PRIME);
      if (b > 0xffff) h = Math.imul(h ^ token.charCodeAt(i + 1), FNV_PRIME);
      a = b;
      i += b > 0xffff ? 2 : 1;
    }
    return this.piece(token, from, token.length, h, out) || unknown;
  }

  /** Pushes the ids of the piece token[from, to) (hash h); says whether one of its tokens is unknown to the model
   *  (what fuse_unk joins). */
  private piece(token: string, from: number, to: number, h: number, out: IdBuffer): boolean {
    const e = this.memo.find(token, from, to, h);
    if (e >= 0) return this.memo.pushIds(e, out);
    const piece = from === 0 && to === token.length ? token : token.slice(from, to);
    const tokens = this.vocabularyTokens(piece.length <= OWN_MERGE_MAX ? this.merge(piece) : this.bpe.bpe(piece));
    const unk = this.bpe.unk_token_id;
    const ids = tokens.map((tk) => this.idOf(tk));
    const unknown = tokens.some((tk) => (this.bpe.tokens_to_ids.get(tk) ?? unk) === unk);
    if (piece.length > MEMO_MAX_PIECE) {
      out.pushAll(ids);
      return unknown;
    }
    return this.memo.pushIds(this.memo.add(piece.length > 12 ? flat(piece) : piece, h, ids, unknown), out);
  }

  /** BPE.bpe's merges of one piece: the pair of lowest rank, leftmost first (its queue's score is rank + position /
   *  length), until no pair has a rank. */
  private merge(piece: string): string[] {
    const word = Array.from(piece);
    for (;;) {
      let best = Infinity;
      let at = -1;
      for (let i = 0; i + 1 < word.length; i++) {
        const rank = this.ranks.get(word[i])?.get(word[i + 1]);
        if (rank !== undefined && rank < best) {
          best = rank;
          at = i;
        }
      }
      if (at < 0) return word;
      word.splice(at, 2, word[at] + word[at + 1]);
    }
  }

  /** BPE.encode's step after the merges: a token outside the vocabulary becomes its UTF-8 bytes' tokens
   *  (byte_fallback, when the vocabulary has them all) or the unknown token. */
  private vocabularyTokens(merged: string[]): string[] {
    const { tokens_to_ids: vocab, byte_fallback: byteFallback, unk_token: unk } = this.bpe;
    const out: string[] = [];
    for (const token of merged) {
      if (vocab.has(token)) {
        out.push(token);
        continue;
      }
      const bytes = byteFallback ? Array.from(this.utf8.encode(token), (x) => `<0x${x.toString(16).toUpperCase().padStart(2, '0')}>`) : null;
      if (bytes && bytes.every((x) => vocab.has(x))) out.push(...bytes);
      else if (unk !== null && unk !== undefined) out.push(unk);
    }
    return out;
  }

  /** Tokenizer.encode's token → id (an id the library leaves undefined becomes 0, as Int32Array.from made it). */
  private idOf(token: string): number {
    const t = this.t;
    return (t.added_tokens_map.get(token)?.id ?? this.bpe.tokens_to_ids.get(token) ?? this.bpe.unk_token_id ?? 0) | 0;
  }
}

/** The normalizer, with each Replace of a plain string done by split / join: the library's "gu" RegExp
 *  replaceAll costs ~100 ms a MB, split / join a third of it, with the same result for a literal without surrogates;
 *  one code unit for another (Llama's " " → "▁") is swapped in place in the UTF-16 bytes, ~10× faster still. */
function fastNormalizer(n: NormalizerInternals): (text: string) => string {
  const literal = n.config?.type === 'Replace' ? n.config.pattern?.String : undefined;
  if (typeof literal === 'string' && literal.length > 0 && !/[\ud800-\udfff]/.test(literal)) {
    const content = n.config?.content ?? '';
    if (literal.length === 1 && content.length === 1 && !/[\ud800-\udfff]/.test(content)) return swapCodeUnit(literal.charCodeAt(0), content.charCodeAt(0));
    return (text) => text.split(literal).join(content);
  }
  if (n.config?.type === 'Sequence' && Array.isArray(n.normalizers)) {
    const steps = n.normalizers.map((c) => (c ? fastNormalizer(c) : (text: string) => text));
    return (text) => steps.reduce((t, step) => step(t), text);
  }
  return (text) => n.normalize(text);
}

/** text.replaceAll(from, to) for two code units that are not surrogates, over the text's UTF-16 bytes. */
function swapCodeUnit(from: number, to: number): (text: string) => string {
  return (text) => {
    const bytes = Buffer.from(text, 'utf16le');
    if (bytes.byteOffset % 2 !== 0) return text.split(String.fromCharCode(from)).join(String.fromCharCode(to)); // a pooled Buffer is 8-aligned: never, in fact
    const units = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2);
    for (let i = 0; i < units.length; i++) if (units[i] === from) units[i] = to; // indexOf per hit costs more on text full of spaces
    return bytes.toString('utf16le');
  };
}

/** encode_text's lstrip / rstrip: an added token that strips trims the whitespace of its neighbours. */
function stripAround(parts: string[], added: Map<string, AddedTokenInternals>): string[] {
  parts.forEach((part, i) => {
    const a = added.get(part);
    if (!a) return;
    if (a.lstrip && i > 0) parts[i - 1] = parts[i - 1].trimEnd();
    if (a.rstrip && i < parts.length - 1) parts[i + 1] = parts[i + 1].trimStart();
  });
  return parts;
}
