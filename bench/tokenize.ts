// Tokenization benchmark (`npm run bench:tokenize`): how fast a run gets the token ids of a text, cold (a fresh
// process tokenizes the whole text and writes the token cache) and cached (the next run, reading the cache), on
// the fixture texts with the fixtures' tokenizer; and, for scale, the rate of @huggingface/tokenizers' own encode
// on the first 100 KB of each text. docs/BENCHMARKS.md holds the table it prints.
//
// Each measurement runs in a child of this script (`--child`), so "cold" pays what a run pays: the tokenizer
// loaded, its per-piece memo empty, the file read, hashed and tokenized, the cache file written.

import { Tokenizer } from '@huggingface/tokenizers';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { cachedTokens } from '../src/backend/data/tokenCache';
import { loadTokenizer } from '../src/backend/data/tokens';

const FIXTURES = path.resolve(__dirname, '..', '..', 'shared', 'fixtures');
const USAGE = `usage: node --import tsx bench/tokenize.ts [options]   (npm run bench:tokenize -- [options])

  --tokenizer FILE   tokenizer.json (default ../shared/fixtures/stories260K-hf/tokenizer.json)
  --texts a,b,...    text files (default every file in ../shared/fixtures/data)
  --library-bytes N  bytes of each text the library's own encode is timed on (default 100000; 0: skip)
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

function measure(args: string[]): Timing {
  const out = execFileSync(process.execPath, [...process.execArgv, __filename, '--child', ...args], { encoding: 'utf8', maxBuffer: 1 << 20 });
  return JSON.parse(out.trim().split('\n').at(-1) as string) as Timing;
}

function main(): void {
  const { values: v } = parseArgs({
    options: {
      child: { type: 'string' },
      tokenizer: { type: 'string', default: path.join(FIXTURES, 'stories260K-hf', 'tokenizer.json') },
      texts: { type: 'string' },
      text: { type: 'string' },
      cache: { type: 'string' },
      'library-bytes': { type: 'string', default: '100000' },
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
      const cold = measure(['cached', ...common]);
      const cached = measure(['cached', ...common]);
      if (cold.source !== 'tokenized' || cached.source !== 'cache') throw new Error(`${file}: expected a miss then a hit, got ${cold.source}, ${cached.source}`);
      const mb = statSync(text).size / 1e6;
      const lib = libraryBytes > 0 ? measure(['library', ...common, '--library-bytes', String(libraryBytes)]) : null;
      const libMb = Math.min(libraryBytes, statSync(text).size) / 1e6;
      const libRate = lib ? `${(libMb / lib.wall).toFixed(3)}, ${(libMb / lib.cpu).toFixed(3)}` : '—';
      const f = (x: number) => x.toFixed(3);
      console.log(`| ${path.basename(file)} | ${mb.toFixed(2)} | ${cold.tokens} | ${f(cold.wall)} | ${f(cold.cpu)} | ${(mb / cold.wall).toFixed(2)}, ${(mb / cold.cpu).toFixed(2)} | ${f(cached.wall)} | ${f(cached.cpu)} | ${libRate} |`);
    });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  console.log(`\nload average after: ${load()}. Targets: cold >= 5 MB/s, cached < 0.2 s. CPU s is this process's user + system time:`);
  console.log('on a busy machine wall time is a multiple of it (other processes share the cores), so CPU rates are what a quiet machine gets.');
  console.log(`library: @huggingface/tokenizers' encode on the first ${Math.round(libraryBytes / 1000)} KB of each text (what every run paid before the fast encoder).`);
}

main();
