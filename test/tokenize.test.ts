// Tokenizing fast and once: the fast encoder's ids are exactly @huggingface/tokenizers' own (fixture texts and
// edge cases), and the token cache hits, misses, is invalidated and distrusts corrupt files as tokenCache.ts says;
// a run's data.loaded events say where the ids came from; chunked and on worker threads, the ids are the same.

import { Tokenizer } from '@huggingface/tokenizers';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { fastEncoder, MEMO_LIMITS } from '../src/backend/data/fastEncode';
import { coreThreads, defaultThreads, encodeParallel, PARALLEL_MIN_CHARS } from '../src/backend/data/parallelEncode';
import { cachedTokens, CACHE_FOLDER, CacheOptions, idList } from '../src/backend/data/tokenCache';
import { loadTokenizer, readTokens, TextTokenizer } from '../src/backend/data/tokens';
import { runPrune } from '../src/backend/pipeline/run';
import { resolveConfig } from '../src/protocol/config';
import { Event, EventOf } from '../src/protocol/events';

const fixtures = path.resolve(__dirname, '..', '..', 'shared', 'fixtures');
const texts = readdirSync(path.join(fixtures, 'data')).map((name) => path.join(fixtures, 'data', name)).filter((f) => statSync(f).isFile());
/** Every fixture tokenizer.json, one per distinct content (the fixtures share one today). */
const tokenizerFiles = [...new Map(readdirSync(fixtures)
  .map((d) => path.join(fixtures, d, 'tokenizer.json'))
  .filter((f) => existsSync(f))
  .map((f) => [createHash('sha256').update(readFileSync(f)).digest('hex'), f] as const)).values()];

/** The library's ids for the whole text, as the encoder was before fastEncode.ts. */
function libraryIds(tokenizerFile: string, text: string): number[] {
  const dir = path.dirname(tokenizerFile);
  const config = existsSync(path.join(dir, 'tokenizer_config.json')) ? JSON.parse(readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')) : {};
  return new Tokenizer(JSON.parse(readFileSync(tokenizerFile, 'utf8')), config).encode(text, { add_special_tokens: false }).ids;
}

/** 40 KB of a text from `at` (a fraction of its length), cut at a line start: the library takes ~1 s for it. */
function slice(file: string, at: number): string {
  const text = readFileSync(file, 'utf8');
  const start = at === 0 ? 0 : text.indexOf('\n', Math.floor(at * text.length)) + 1;
  return text.slice(start, start + 40_000);
}

const EDGE_CASES: [string, string][] = [
  ['empty', ''],
  ['only newlines', '\n\n\n'],
  ['empty lines between documents', 'Once upon a time.\n\n\n\nThe end.\n\n'],
  ['runs of spaces (the normalizer folds them)', '  two  spaces,   three,\tand a tab   \n   indented'],
  ['non-ASCII', 'Zoë naïve café — “quoted” 東京 Ελληνικά русский'],
  ['byte fallback (no such tokens: emoji, rare CJK, a combining mark)', '😀🦊 𠜎 e\u0301 \u{10FFFD}'],
  ['special tokens inside the text', 'a<s>b</s> <unk>c<s>'],
  ['U+FFFD (invalid UTF-8 read as text)', 'bad \ufffd\ufffd bytes'],
  ['a document boundary next to a multi-byte character', 'end 😀\n\n😀 start\n\né\n\n€'],
  ['a long word with no cut (over the memo limit)', 'x'.repeat(700) + ' ' + 'ab'.repeat(300)],
];

describe('fast encoder', () => {
  for (const tokenizerFile of tokenizerFiles) {
    const tok = loadTokenizer(tokenizerFile);
    const name = path.basename(path.dirname(tokenizerFile));
    for (const file of texts) {
      for (const at of [0, 0.5]) {
        test(`${name}: ${path.basename(file)} from ${at * 100}%: ids identical to Tokenizer.encode`, () => {
          const text = slice(file, at);
          assert.deepEqual(Array.from(tok.encode(text)), libraryIds(tokenizerFile, text));
        });
      }
    }
    test(`${name}: edge cases: ids identical to Tokenizer.encode`, () => {
      for (const [what, text] of EDGE_CASES) assert.deepEqual(Array.from(tok.encode(text)), libraryIds(tokenizerFile, text), what);
    });
    test(`${name}: a piece memo that grows from 4 entries, starts over every 300 (or 900 ids) and keys on 3 bits of the hash gives the same ids on every whole text`, () => {
      const json = JSON.parse(readFileSync(tokenizerFile, 'utf8'));
      const dir = path.dirname(tokenizerFile);
      const config = existsSync(path.join(dir, 'tokenizer_config.json')) ? JSON.parse(readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')) : {};
      const encoder = (limits: typeof MEMO_LIMITS) => fastEncoder(new Tokenizer(json, config), json, limits)!;
      const usual = encoder(MEMO_LIMITS);
      const tiny = encoder({ initialEntries: 4, maxEntries: 300, maxIds: 900, hashMask: 7 });
      for (const file of texts) {
        const text = readFileSync(file, 'utf8');
        const ids = usual.encode(text);
        assert.ok(ids.length > text.length / 4, `${path.basename(file)}: ${ids.length} ids`);
        assert.deepEqual(tiny.encode(text), ids, path.basename(file));
        assert.deepEqual(usual.encode(text), ids, `${path.basename(file)}, again with the memo full`);
      }
    });
  }
});

/** GPT-2's bytes_to_unicode: each byte as a printable character. */
const BYTE_CHARS = (() => {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
  let extra = 0;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(printable(b) ? b : 256 + extra++));
})();

/**
 * A GPT-2-style tokenizer.json (ByteLevel pre-tokenizer, no normalizer, byte-level BPE) with `merges` merges learned
 * from `sample` by plain BPE training: the fixtures' tokenizers are all one SentencePiece-style file, and this
 * exercises the encoder's pre-tokenizer path (and ignore_merges, which Llama 3's tokenizer sets).
 */
function byteLevelTokenizer(sample: string, merges: number, ignoreMerges: boolean): Record<string, unknown> {
  const words = (sample.match(/ ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+/gu) ?? []).map((w) => Array.from(Buffer.from(w, 'utf8'), (b) => BYTE_CHARS[b]));
  const vocab = new Map(BYTE_CHARS.map((c, i) => [c, i]));
  const learned: [string, string][] = [];
  while (learned.length < merges) {
    const counts = new Map<string, number>();
    for (const w of words) for (let i = 0; i + 1 < w.length; i++) counts.set(`${w[i]}\n${w[i + 1]}`, (counts.get(`${w[i]}\n${w[i + 1]}`) ?? 0) + 1); // no byte character is \n
    const best = [...counts].reduce((a, b) => (b[1] > a[1] ? b : a), ['', 0] as [string, number]);
    if (best[1] < 2) break;
    const [l, r] = best[0].split('\n') as [string, string];
    learned.push([l, r]);
    vocab.set(l + r, vocab.size);
    for (const w of words) for (let i = 0; i + 1 < w.length; i++) if (w[i] === l && w[i + 1] === r) w.splice(i, 2, l + r);
  }
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0', truncation: null, padding: null, normalizer: null, pre_tokenizer: byteLevel, post_processor: byteLevel, decoder: byteLevel,
    added_tokens: [{ id: vocab.size, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: ignoreMerges, vocab: Object.fromEntries(vocab), merges: learned },
  };
}

describe('fast encoder on a byte-level BPE tokenizer (GPT-2 style, trained here)', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'prunekit-bytelevel-'));
  after(() => rmSync(work, { recursive: true, force: true }));
  const sample = slice(texts.find((f) => f.includes('tinyshakespeare'))!, 0).slice(0, 8_000) + slice(texts.find((f) => f.includes('wikitext'))!, 0).slice(0, 8_000);
  for (const ignoreMerges of [false, true]) {
    test(`ignore_merges ${ignoreMerges}: ids identical to Tokenizer.encode on every fixture text and the edge cases`, () => {
      const json = byteLevelTokenizer(sample, 200, ignoreMerges);
      const file = path.join(work, `ignore-${ignoreMerges}`, 'tokenizer.json');
      mkdirSync(path.dirname(file));
      writeFileSync(file, JSON.stringify(json));
      assert.ok(fastEncoder(new Tokenizer(json, {}), json), 'the fast encoder takes this tokenizer (else this test compares the library with itself)');
      const tok = loadTokenizer(file);
      for (const f of texts) {
        const text = slice(f, 0.5).slice(0, 10_000);
        assert.deepEqual(Array.from(tok.encode(text)), libraryIds(file, text), path.basename(f));
      }
      for (const [what, text] of [...EDGE_CASES, ['an added token', 'a<|endoftext|>b <|endoftext|>'] as [string, string]]) {
        assert.deepEqual(Array.from(tok.encode(text)), libraryIds(file, text), what);
      }
    });
  }
});

describe('token cache', () => {
  test('the id list is ids.join(",") byte for byte, at every digit count up to 2³¹ − 1', () => {
    const edges = [0, 1, 9, 10, 99, 100, 999, 1000, 9999, 10000, 99999, 100000, 999999, 1000000, 123456789, 2147483647];
    const ids = Int32Array.from([...edges, ...Array.from({ length: 5000 }, (_, i) => (i * 7919) % 300000)]);
    assert.equal(idList(ids).toString('latin1'), Array.from(ids).join(','));
    assert.equal(idList(new Int32Array(0)).length, 0);
  });

  const work = mkdtempSync(path.join(tmpdir(), 'prunekit-tokenize-'));
  after(() => rmSync(work, { recursive: true, force: true }));
  const tok = loadTokenizer(path.join(fixtures, 'stories260K-hf', 'tokenizer.json'));
  const story = slice(texts.find((f) => f.includes('tinystories_valid'))!, 0);
  let n = 0;
  /** A fresh folder holding a text file, and a user cache folder of its own. */
  function setup(text = story, name = 'calib.txt') {
    const dir = path.join(work, `case-${n++}`);
    mkdirSync(dir);
    const file = path.join(dir, name);
    writeFileSync(file, text);
    const warnings: string[] = [];
    const options: CacheOptions = { enabled: true, warn: (m) => warnings.push(m), cacheWarn: (m) => warnings.push(`cache: ${m}`), userDir: path.join(work, `user-cache-${n}`) };
    return { dir, file, warnings, options, load: (t: TextTokenizer = tok) => cachedTokens(file, t, options) };
  }

  test('a miss tokenizes and writes an id file the CLI accepts; the next call reads it', () => {
    const s = setup();
    const want = readTokens(s.file, tok);
    const first = s.load();
    assert.equal(first.from.source, 'tokenized');
    assert.equal(path.dirname(first.from.cacheFile!), path.join(s.dir, CACHE_FOLDER));
    assert.deepEqual(first.ids, want);
    assert.deepEqual(readTokens(first.from.cacheFile!, undefined), want, 'a token-id file readTokens takes');
    assert.deepEqual(readdirSync(path.dirname(first.from.cacheFile!)), [path.basename(first.from.cacheFile!)], 'no temporary left');
    const second = s.load();
    assert.deepEqual(second.from, { source: 'cache', cacheFile: first.from.cacheFile });
    assert.deepEqual(second.ids, want);
    assert.deepEqual(s.warnings, []);
  });

  test('a hit returns what the cache file holds (it is read, not tokenized again)', () => {
    const s = setup();
    const cacheFile = s.load().from.cacheFile!;
    const record = JSON.parse(readFileSync(cacheFile, 'utf8'));
    record.ids = record.ids.map(() => 7);
    writeFileSync(cacheFile, JSON.stringify(record));
    const hit = s.load();
    assert.equal(hit.from.source, 'cache');
    assert.ok(hit.ids.every((id) => id === 7));
  });

  test('a cache file in another JSON layout (spaces, no final newline) is read as well (JSON.parse, not the quick reader)', () => {
    const s = setup();
    const first = s.load();
    writeFileSync(first.from.cacheFile!, JSON.stringify(JSON.parse(readFileSync(first.from.cacheFile!, 'utf8')), null, 1));
    const hit = s.load();
    assert.equal(hit.from.source, 'cache');
    assert.deepEqual(hit.ids, first.ids);
    assert.deepEqual(s.warnings, []);
  });

  test('a changed text or tokenizer misses; the old file stays for the old pair', () => {
    const s = setup();
    const first = s.load().from.cacheFile!;
    writeFileSync(s.file, story + '\nOne more line.');
    const changed = s.load();
    assert.equal(changed.from.source, 'tokenized');
    assert.notEqual(changed.from.cacheFile, first);
    assert.deepEqual(changed.ids, readTokens(s.file, tok));
    const tokDir = path.join(s.dir, 'tok');
    cpSync(path.join(fixtures, 'stories260K-hf'), tokDir, { recursive: true, filter: (f) => !f.endsWith('.safetensors') });
    const config = JSON.parse(readFileSync(path.join(tokDir, 'tokenizer_config.json'), 'utf8'));
    writeFileSync(path.join(tokDir, 'tokenizer_config.json'), JSON.stringify({ ...config, model_max_length: 123 }));
    const otherTok = s.load(loadTokenizer(path.join(tokDir, 'tokenizer.json')));
    assert.equal(otherTok.from.source, 'tokenized', 'another tokenizer_config.json is another tokenizer');
    assert.deepEqual(otherTok.ids, changed.ids, 'same ids, but not trusted from the cache');
    assert.equal(readdirSync(path.join(s.dir, CACHE_FOLDER)).length, 3);
  });

  const corruptions: [string, (text: string) => string, RegExp][] = [
    ['truncated', (t) => t.slice(0, t.length / 2), /not valid JSON/],
    ['another format', (t) => t.replace('prunekit-token-ids/1', 'prunekit-token-ids/0'), /not a prunekit-token-ids\/1 file/],
    ['ids missing', (t) => t.replace(/,"ids":\[[^\]]*\]/, ''), /not the \d+ ids it records/],
    ['an id out of range', (t) => t.replace('"ids":[1,', '"ids":[-1,'), /token id -1 at position 0/],
    ['made from another text', (t) => t.replace(/"sha256":"[0-9a-f]{64}"/, `"sha256":"${'0'.repeat(64)}"`), /made from another text or tokenizer/],
    ['far too large', (t) => t + ' '.repeat(40 * story.length), /too large/],
    ['an id with a leading zero', (t) => t.replace('"ids":[1,', '"ids":[01,'), /not valid JSON/],
    ['an id of 2³¹', (t) => t.replace('"ids":[1,', '"ids":[2147483648,'), /token id 2147483648 at position 0/],
    ['a trailing comma', (t) => t.replace(/\]\}\n$/, ',]}\n'), /not valid JSON/],
  ];
  for (const [what, corrupt, why] of corruptions) {
    test(`a cache file ${what} is ignored with a warning and rewritten`, () => {
      const s = setup();
      const cacheFile = s.load().from.cacheFile!;
      const good = readFileSync(cacheFile, 'utf8');
      writeFileSync(cacheFile, corrupt(good));
      const again = s.load();
      assert.equal(again.from.source, 'tokenized');
      assert.deepEqual(again.ids, readTokens(s.file, tok));
      assert.equal(s.warnings.length, 1, s.warnings.join('\n'));
      assert.match(s.warnings[0], new RegExp(`^cache: ${cacheFile.replace(/[.\\]/g, '\\$&')}: token cache ignored \\(`));
      assert.match(s.warnings[0], why);
      assert.equal(readFileSync(cacheFile, 'utf8'), good, 'rewritten');
    });
  }

  test('beside a folder that cannot hold the cache, or a read-only one, the user cache folder is used; off, nothing is written', () => {
    const s = setup();
    writeFileSync(path.join(s.dir, CACHE_FOLDER), 'a file where the folder would be');
    const first = s.load();
    assert.equal(path.dirname(first.from.cacheFile!), s.options.userDir);
    assert.deepEqual(s.load().from, { source: 'cache', cacheFile: first.from.cacheFile });
    const readOnly = setup();
    chmodSync(readOnly.dir, 0o555); // no write bit: read-only, to root too
    try {
      assert.equal(path.dirname(readOnly.load().from.cacheFile!), readOnly.options.userDir);
      assert.ok(!existsSync(path.join(readOnly.dir, CACHE_FOLDER)), 'nothing written in the read-only folder');
    } finally {
      chmodSync(readOnly.dir, 0o755);
    }
    const off = setup();
    const got = cachedTokens(off.file, tok, { ...off.options, enabled: false });
    assert.deepEqual(got.from, { source: 'tokenized', cacheFile: null });
    assert.deepEqual(got.ids, readTokens(off.file, tok));
    assert.deepEqual(readdirSync(off.dir), ['calib.txt']);
  });

  test('the text\'s invalid UTF-8 warning is said again on a hit', () => {
    const s = setup();
    writeFileSync(s.file, Buffer.concat([Buffer.from('Once upon a time '), Buffer.from([0xff, 0xfe]), Buffer.from(' there was a cat.\n')]));
    s.load();
    s.load();
    assert.equal(s.warnings.length, 2);
    assert.equal(s.warnings[1], s.warnings[0]);
    assert.match(s.warnings[0], /calib\.txt: 2 invalid UTF-8 sequence\(s\)/);
  });

  test('a run\'s data.loaded says the ids were tokenized and cached, then read from the cache', async () => {
    const s = setup(story.slice(0, 20_000));
    const run = async (out: string) => {
      const events: Event[] = [];
      const config = resolveConfig({
        checkpoint: path.join(fixtures, 'stories260K-onnx'), output: path.join(s.dir, out), method: 'magnitude', sparsity: 0.5,
        calibration: { path: s.file, nsamples: 2, seqlen: 32 }, evaluation: { path: s.file, seqlen: 32, maxWindows: 1 },
      }, s.dir);
      await runPrune(config, { emit: (e) => events.push(e) });
      return events.filter((e) => e.type === 'data.loaded') as EventOf<'data.loaded'>[];
    };
    const first = await run('out1');
    assert.deepEqual(first.map((e) => [e.role, e.source]), [['calibration', 'tokenized'], ['evaluation', 'tokenized']]);
    const cacheFile = first[0].cacheFile!;
    assert.ok(existsSync(cacheFile) && path.dirname(cacheFile) === path.join(s.dir, CACHE_FOLDER), cacheFile);
    const second = await run('out2');
    assert.deepEqual(second.map((e) => [e.role, e.source, e.cacheFile]), [['calibration', 'cache', cacheFile], ['evaluation', 'cache', cacheFile]]);
    assert.deepEqual(second.map((e) => e.tokens), first.map((e) => e.tokens));
  });
});

describe('chunked and parallel encoding: ids identical to the whole text encoded inline', () => {
  /** A tokenizer's fast encoder and the source a worker builds it from. */
  function encoderOf(json: Record<string, unknown>, config: unknown = {}) {
    const encoder = fastEncoder(new Tokenizer(json as never, config as never), json);
    assert.ok(encoder, 'the fast encoder takes this tokenizer');
    return { encoder, source: { json: JSON.stringify(json), config } };
  }
  const jsonOf = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  const configOf = (file: string) => JSON.parse(readFileSync(path.join(path.dirname(file), 'tokenizer_config.json'), 'utf8')) as unknown;
  const whole = texts.map((f) => [path.basename(f), readFileSync(f, 'utf8')] as const);
  /** Edge cases for the cuts: every chunk size below puts a cut at nearly every place a cut can go. */
  const cutCases: [string, string][] = [
    ...EDGE_CASES,
    ['runs of newlines', 'one\n\n\n\n\ntwo\n\nthree\n\n\n\n\n\n\nfour\n'],
    ['no cut at all', 'x'.repeat(3000)],
    ['tiny', 'a'],
    ['only newlines', '\n'.repeat(50)],
    ['CRLF', 'line one\r\n\r\nline two\r\n\r\n\r\nthree\r\n'],
    ['non-ASCII at the boundaries', '😀\n\n😀\n\né\n\n€😀😀\n\n東京\n\nΕλ\n\n\ud800 lone\n\n\udc00 surrogates'],
    ['spaces around newlines (the normalizer folds runs)', 'a  \n\n  b \n \n  c'],
  ];
  const sizes = [1, 2, 3, 5, 8, 13, 64];

  for (const tokenizerFile of tokenizerFiles) {
    const name = path.basename(path.dirname(tokenizerFile));
    const { encoder, source } = encoderOf(jsonOf(tokenizerFile), configOf(tokenizerFile));
    for (const [file, text] of whole) {
      test(`${name}: ${file}, whole: on 2 threads, and in 4 Ki chunks on the main thread`, () => {
        const want = encoder.encode(text);
        assert.deepEqual(encodeParallel(encoder, source, text, { threads: 2 }), want);
        assert.deepEqual(encodeParallel(encoder, source, text, { threads: 1, chunkSize: 4096 }), want);
      });
    }
    test(`${name}: the workers' ids alone (the main thread encodes no chunk)`, () => {
      const text = whole.map(([, t]) => t).join('\n\n');
      const report = { chunks: 0, byWorkers: 0 };
      assert.deepEqual(encodeParallel(encoder, source, text, { threads: 3, chunkSize: 1 << 18, mainEncodes: false, report }), encoder.encode(text));
      assert.ok(report.chunks > 10 && report.byWorkers === report.chunks, JSON.stringify(report));
    });
    test(`${name}: edge cases, cut into chunks of ${sizes.join(', ')} code units; on workers in chunks of 7`, () => {
      for (const [what, text] of cutCases) {
        const want = Array.from(encoder.encode(text));
        for (const chunkSize of sizes) assert.deepEqual(Array.from(encodeParallel(encoder, source, text, { threads: 1, chunkSize })), want, `${what}, chunks of ${chunkSize}`);
      }
      const all = cutCases.map(([, t]) => t).join('');
      const report = { chunks: 0, byWorkers: 0 };
      assert.deepEqual(encodeParallel(encoder, source, all, { threads: 2, chunkSize: 7, mainEncodes: false, report }), encoder.encode(all));
      assert.equal(report.byWorkers, report.chunks);
    });
    test(`${name}: fuse_unk with unknown tokens (byte_fallback off): the text is encoded whole`, () => {
      const json = { ...jsonOf(tokenizerFile), model: { ...(jsonOf(tokenizerFile).model as object), byte_fallback: false } };
      const { encoder: noFallback, source: src } = encoderOf(json);
      const text = '😀🦊 unknown 😀\n\n€€ and more 𠜎𠜎 text '.repeat(40);
      const want = noFallback.encode(text);
      assert.deepEqual(Array.from(want), new Tokenizer(json as never, {}).encode(text, { add_special_tokens: false }).ids);
      for (const chunkSize of [3, 50]) assert.deepEqual(encodeParallel(noFallback, src, text, { threads: 2, chunkSize }), want);
    });
    test(`${name}: workers that cannot build the tokenizer leave their chunks to the main thread`, () => {
      const text = whole[0][1];
      const report = { chunks: 0, byWorkers: 0 };
      assert.deepEqual(encodeParallel(encoder, { json: '{not json', config: {} }, text, { threads: 3, chunkSize: 1 << 16, mainEncodes: false, report }), encoder.encode(text));
      assert.equal(report.byWorkers, 0);
    });
  }

  test('a byte-level BPE tokenizer (pre-tokenizer; ignore_merges on and off): chunked ids identical', () => {
    const sample = slice(texts.find((f) => f.includes('tinyshakespeare'))!, 0).slice(0, 8_000) + slice(texts.find((f) => f.includes('wikitext'))!, 0).slice(0, 8_000);
    for (const ignoreMerges of [false, true]) {
      const { encoder, source } = encoderOf(byteLevelTokenizer(sample, 200, ignoreMerges));
      for (const [what, text] of [...cutCases, ...texts.map((f) => [path.basename(f), slice(f, 0.5).slice(0, 10_000)] as [string, string])]) {
        const want = Array.from(encoder.encode(text));
        for (const chunkSize of [1, 5, 64]) assert.deepEqual(Array.from(encodeParallel(encoder, source, text, { threads: 1, chunkSize })), want, `${what}, chunks of ${chunkSize}`);
      }
      const text = whole.map(([, t]) => t.slice(0, 200_000)).join('\n\n');
      assert.deepEqual(encodeParallel(encoder, source, text, { threads: 2, chunkSize: 1 << 16 }), encoder.encode(text), `ignore_merges ${ignoreMerges}`);
    }
  });

  test('readTokens takes the parallel path above PARALLEL_MIN_CHARS: [BOS] + the inline ids', () => {
    const work = mkdtempSync(path.join(tmpdir(), 'prunekit-parallel-'));
    process.env.PRUNEKIT_TOKENIZE_THREADS = '2'; // workers even on a busy machine
    try {
      const file = path.join(work, 'large.txt');
      let text = whole.map(([, t]) => t).join('\n\n');
      while (text.length < PARALLEL_MIN_CHARS) text += '\n\n' + text;
      writeFileSync(file, text);
      const tok = loadTokenizer(tokenizerFiles[0]);
      const { encoder } = encoderOf(jsonOf(tokenizerFiles[0]), configOf(tokenizerFiles[0]));
      const ids = readTokens(file, tok);
      assert.equal(ids[0], tok.bosId);
      assert.deepEqual(ids.subarray(1), encoder.encode(text));
    } finally {
      delete process.env.PRUNEKIT_TOKENIZE_THREADS;
      rmSync(work, { recursive: true, force: true });
    }
  });

  test('threads: one an idle core, at most 4, inline below 3 idle cores; PRUNEKIT_TOKENIZE_THREADS sets them', () => {
    assert.ok(coreThreads() >= 1 && coreThreads() <= 4);
    assert.equal(defaultThreads({}, 0, 8), 4);
    assert.equal(defaultThreads({}, 1, 4), 3);
    assert.equal(defaultThreads({}, 2, 4), 1);
    assert.equal(defaultThreads({}, 0, 2), 1); // 2 idle cores: one worker did not pay (docs/BENCHMARKS.md)
    assert.equal(defaultThreads({}, 99, 16), 1);
    assert.equal(defaultThreads({ PRUNEKIT_TOKENIZE_THREADS: '3' }, 99, 2), 3);
    assert.equal(defaultThreads({ PRUNEKIT_TOKENIZE_THREADS: 'x' }, 0, 8), 4);
  });

  test('the workers do not keep the process alive', () => {
    const script = `const { loadTokenizer } = require(${JSON.stringify(require.resolve('../src/backend/data/tokens'))});
      const tok = loadTokenizer(${JSON.stringify(tokenizerFiles[0])});
      const ids = tok.encode(require('node:fs').readFileSync(${JSON.stringify(texts[0])}, 'utf8').repeat(5));
      console.log('done', ids.length);`;
    const env = { ...process.env, PRUNEKIT_TOKENIZE_THREADS: '2' }; // workers even on a busy machine
    const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { encoding: 'utf8', timeout: 60_000, cwd: path.resolve(__dirname, '..'), env });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^done \d+/);
  });
});
