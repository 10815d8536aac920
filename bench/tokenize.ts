// Tokenization benchmark (`npm run bench:tokenize`): how fast a run gets the token ids of a text, cold (a fresh
// process tokenizes the whole text and writes the token cache) and cached (the next run, reading the cache), on
// the fixture texts with the fixtures' tokenizer; and, for scale, the rate of @huggingface/tokenizers' own encode
// on the first 100 KB of each text; then a large text (the fixture texts joined by blank lines, repeated to ~10 MB,
// the size of WikiText-2's train split) cold inline and cold on worker threads (parallelEncode.ts).
// docs/BENCHMARKS.md holds the tables it prints.
//
// Each measurement runs in a child of this script (`--child`), so "cold" pays what a run pays: the tokenizer
// loaded, its per-piece memo empty, the file read, hashed and tokenized, the cache file written; with workers,
// their start. The children run this script bundled by esbuild, as a run runs dist/backend.js: a worker then loads
// bundled JavaScript, not TypeScript compiled by tsx on the way.

import { Tokenizer } from '@huggingface/tokenizers';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { isMainThread } from 'node:worker_threads';
import { coreThreads } from '../src/backend/data/parallelEncode';
import { cachedTokens } from '../src/backend/data/tokenCache';
import { loadTokenizer } from '../src/backend/data/tokens';

const FIXTURES = path.resolve(__dirname, '..', '..', 'shared', 'fixtures');
const USAGE = `usage: node --import tsx bench/tokenize.ts [options]   (npm run bench:tokenize -- [options])

  --tokenizer FILE   tokenizer.json (default ../shared/fixtures/stories260K-hf/tokenizer.json)
  --texts a,b,...    text files (default every file in ../shared/fixtures/data)
  --library-bytes N  bytes of each text the library's own encode is timed on (default 100000; 0: skip)
  --large-mb N       size of the large text, the texts joined by blank lines and repeated (default 10; 0: skip)
  -h, --help         this text
`;

interface Timing {
  wall: number;
  cpu: number;
  tokens: number;
  source: string;
}

/** One measurement in this process: the ids of `text` through the cache in `cacheDir` (or the library's encode). */
function child(what: 'cached' | 'library', tokenizerFile: string, text: string, cacheDir: string, libraryBytes: number): Timing {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let tokens: number;
  let source: string = what;
  if (what === 'library') {
    const dir = path.dirname(tokenizerFile);
    const tok = new Tokenizer(JSON.parse(readFileSync(tokenizerFile, 'utf8')), JSON.parse(readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')));
    tokens = tok.encode(readFileSync(text, 'utf8').slice(0, libraryBytes), { add_special_tokens: false }).ids.length;
  } else {
    const got = cachedTokens(text, loadTokenizer(tokenizerFile), { enabled: true, userDir: cacheDir });
    tokens = got.ids.length;
    source = got.from.source;
  }
  const cpu = process.cpuUsage(cpu0);
  return { wall: (performance.now() - t0) / 1000, cpu: (cpu.user + cpu.system) / 1e6, tokens, source };
}

/** One measurement in a child process running `bundle`; `threads` sets PRUNEKIT_TOKENIZE_THREADS (1: inline). */
function measure(bundle: string, args: string[], threads?: number): Timing {
  const env = threads === undefined ? process.env : { ...process.env, PRUNEKIT_TOKENIZE_THREADS: String(threads) };
  const out = execFileSync(process.execPath, [bundle, '--child', ...args], { encoding: 'utf8', maxBuffer: 1 << 20, env });
  return JSON.parse(out.trim().split('\n').at(-1) as string) as Timing;
}

/** The texts joined by blank lines, repeated until the result holds at least `mb` MB (whole texts only). */
function largeText(texts: string[], mb: number): Buffer {
  const joined = Buffer.from(texts.map((f) => readFileSync(f, 'latin1')).join('\n\n'), 'latin1'); // bytes as they are
  const parts = [joined];
  while (parts.length * (joined.length + 2) < mb * 1e6) parts.push(joined);
  return Buffer.from(parts.map((p) => p.toString('latin1')).join('\n\n'), 'latin1');
}

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      child: { type: 'string' },
      tokenizer: { type: 'string', default: path.join(FIXTURES, 'stories260K-hf', 'tokenizer.json') },
      texts: { type: 'string' },
      text: { type: 'string' },
      cache: { type: 'string' },
      'library-bytes': { type: 'string', default: '100000' },
      'large-mb': { type: 'string', default: '10' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) return void process.stdout.write(USAGE);
  const libraryBytes = Number(v['library-bytes']);
  if (v.child) {
    process.stdout.write(JSON.stringify(child(v.child as 'cached' | 'library', v.tokenizer, v.text as string, v.cache as string, libraryBytes)) + '\n');
    return;
  }
  const texts = v.texts ? v.texts.split(',') : readdirSync(path.join(FIXTURES, 'data')).map((f) => path.join(FIXTURES, 'data', f));
  const work = mkdtempSync(path.join(tmpdir(), 'prunekit-bench-tokenize-'));
  const bundle = path.join(work, 'bench-tokenize.js');
  const { buildSync } = await import('esbuild'); // not in the bundle: its children and workers never load it
  buildSync({ entryPoints: [__filename], outfile: bundle, bundle: true, platform: 'node', format: 'cjs', target: 'node20', external: ['esbuild'], logLevel: 'warning' });
  const f = (x: number) => x.toFixed(3);
  const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
  console.log(`# bench:tokenize — ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, node ${process.version}, load average before: ${load()}`);
  console.log(`tokenizer: ${v.tokenizer}\n`);
  console.log('| text | MB | tokens | cold s | cold CPU s | cold MB/s (wall, CPU) | cached s | cached CPU s | library MB/s (wall, CPU) |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  try {
    texts.forEach((file, i) => {
      // A copy in a folder of its own: the cache goes beside it, as beside a user's text.
      const text = path.join(work, String(i), path.basename(file));
      cpSync(file, text);
      const common = ['--tokenizer', v.tokenizer, '--text', text, '--cache', path.join(work, 'user-cache')];
      const cold = measure(bundle, ['cached', ...common]);
      const cached = measure(bundle, ['cached', ...common]);
      if (cold.source !== 'tokenized' || cached.source !== 'cache') throw new Error(`${file}: expected a miss then a hit, got ${cold.source}, ${cached.source}`);
      const mb = statSync(text).size / 1e6;
      const lib = libraryBytes > 0 ? measure(bundle, ['library', ...common, '--library-bytes', String(libraryBytes)]) : null;
      const libMb = Math.min(libraryBytes, statSync(text).size) / 1e6;
      const libRate = lib ? `${(libMb / lib.wall).toFixed(3)}, ${(libMb / lib.cpu).toFixed(3)}` : '—';
      console.log(`| ${path.basename(file)} | ${mb.toFixed(2)} | ${cold.tokens} | ${f(cold.wall)} | ${f(cold.cpu)} | ${(mb / cold.wall).toFixed(2)}, ${(mb / cold.cpu).toFixed(2)} | ${f(cached.wall)} | ${f(cached.cpu)} | ${libRate} |`);
    });
    const largeMb = Number(v['large-mb']);
    if (largeMb > 0) {
      const bytes = largeText(texts, largeMb);
      const mb = bytes.length / 1e6;
      console.log(`\nLarge text: the texts above joined by "\\n\\n", repeated to ${mb.toFixed(2)} MB; cold inline (1 thread) and on ${coreThreads()} threads (the main one and ${coreThreads() - 1} worker(s): one a core; the default on an idle machine of 3 or more cores).\n`);
      console.log('| threads | tokens | cold s | cold CPU s | cold MB/s (wall, CPU) | cached s | cached CPU s |');
      console.log('|---:|---:|---:|---:|---:|---:|---:|');
      const counts = new Set<number>();
      for (const threads of [1, coreThreads()]) {
        const text = path.join(work, `large-${threads}`, 'large.txt');
        mkdirSync(path.dirname(text));
        writeFileSync(text, bytes);
        const common = ['--tokenizer', v.tokenizer, '--text', text, '--cache', path.join(work, `user-cache-large-${threads}`)];
        const cold = measure(bundle, ['cached', ...common], threads);
        const cached = measure(bundle, ['cached', ...common], threads);
        if (cold.source !== 'tokenized' || cached.source !== 'cache') throw new Error(`large text: expected a miss then a hit, got ${cold.source}, ${cached.source}`);
        counts.add(cold.tokens);
        console.log(`| ${threads} | ${cold.tokens} | ${f(cold.wall)} | ${f(cold.cpu)} | ${(mb / cold.wall).toFixed(2)}, ${(mb / cold.cpu).toFixed(2)} | ${f(cached.wall)} | ${f(cached.cpu)} |`);
      }
      if (counts.size !== 1) throw new Error(`large text: inline and worker runs gave different token counts: ${[...counts].join(', ')}`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  console.log(`\nload average after: ${load()}. Targets: cold >= 5 MB/s, cached < 0.2 s. CPU s is this process's user + system time:`);
  console.log('on a busy machine wall time is a multiple of it (other processes share the cores), so CPU rates are what a quiet machine gets;');
  console.log('with workers CPU s counts every thread, so there wall time is the gain and CPU s what the workers cost.');
  console.log(`library: @huggingface/tokenizers' encode on the first ${Math.round(libraryBytes / 1000)} KB of each text (what every run paid before the fast encoder).`);
}

if (isMainThread) void main(); // a tokenizing worker loads this bundle too
