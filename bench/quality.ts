// Quality and end-to-end benchmark (`npm run bench:quality`): whole-model pruning runs through `runPrune`,
// in-process, as the CLI does them.
//
// The scale run goes first, then the quality runs; the docs section is rewritten after every finished run, so a
// run stopped early leaves the rows it finished (marked partial).
//
//  1. Quality: for each fixture ONNX model (../shared/fixtures/stories260K-onnx, stories-llama-1M-onnx), the
//     dense perplexity and, per method × pattern, the pruned perplexity and the run's wall time, with the
//     SparseGPT protocol (calibration: 128 windows of 256 tokens of tinystories_valid_head.txt drawn after its
//     first 65,536 tokens, seed 0; evaluation: the first 256 windows of 256 tokens of the same file).
//  2. Scale: a generated Llama-shaped model (hidden 4096, intermediate 11008, 2 blocks (--scale-blocks), 32 heads, vocab 512,
//     random weights, stored with external data), random calibration token ids, no evaluation; one child
//     process per method (`--scale-child`), so each run's peak RSS is its own. Reports seconds per block and
//     the run's peak RSS.
//
// The section "Quality and end-to-end runs" of docs/BENCHMARKS.md goes to stdout as markdown (command line at the
// top), progress to stderr; the section in the file is rewritten with it unless --no-docs.

import { fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { rowPool } from '../src/backend/methods/rowKernels';
import type { LlamaConfig } from '../src/backend/models/llama';
import { DATA_FILE, randomIds, scaleConfig, writeScaleModel } from './scaleModel';
import { runPrune } from '../src/backend/pipeline/run';
import { PruneConfig, resolveConfig } from '../src/protocol/config';
import { Event, EventOf } from '../src/protocol/events';
import { BACKEND_ENV } from '../src/protocol/backendEnv';

const repoRoot = path.resolve(__dirname, '..');
const fixtures = path.resolve(repoRoot, '..', 'shared', 'fixtures');
const text = path.join(fixtures, 'data', 'tinystories_valid_head.txt');
const docsFile = path.join(repoRoot, 'docs', 'BENCHMARKS.md');
const SECTION = '## Quality and end-to-end runs (`npm run bench:quality`)';

const DEFAULT_MODELS = 'stories260K-onnx,stories-llama-1M-onnx';
const DEFAULT_METHODS = 'apt,sparsegpt,wanda,magnitude,apt+owl,apt+refine,apt+owl+refine,sparsegpt+owl,wanda+owl';
const DEFAULT_PATTERNS = '50%,60%,70%,80%,2:4,4:8';
/** ADMM iterations of a "+refine" column ("+refine7": 7). */
const DEFAULT_REFINE = 20;
const DEFAULT_SCALE_METHODS = 'sparsegpt,apt';

const USAGE = `usage: node --import tsx bench/quality.ts [options]   (npm run bench:quality -- [options])

  --models a,b        fixture model folders under ../shared/fixtures (default ${DEFAULT_MODELS})
  --methods a,b       methods of the quality table (default ${DEFAULT_METHODS});
                      +owl: allocation "owl" (unstructured patterns only); +refine[K]: refine.iterations K (default ${DEFAULT_REFINE})
  --patterns p,q      sparsities (50%) and N:M patterns (default ${DEFAULT_PATTERNS})
  --nsamples N        calibration windows of the quality runs (default 128)
  --scale-methods a,b methods of the scale run (default ${DEFAULT_SCALE_METHODS}; "none" skips it)
  --scale-nsamples N  calibration windows of the scale run (default 16, seqlen 128)
  --scale-hidden N    hidden size of the scale model (default 4096; heads = hidden / 128)
  --scale-intermediate N  its MLP size (default 11008)
  --scale-blocks N    its decoder blocks (default 2)
  --no-quality        skip the quality table
  --no-docs           print only; do not rewrite the section of docs/BENCHMARKS.md
  --threads N         onnxruntime intra-op threads (default 0 = one per core)
  -h, --help          this text
`;

// ---------------------------------------------------------------------------------------------------------
// Scale model

const SCALE_SEQLEN = 128;

interface ScaleResult {
  method: string;
  seconds: number;
  peakRssBytes: number;
  blocks: { block: number; name: string; layers: number; seconds: number; peakRssBytes: number }[];
  loss: number | null;
  sparsity: number;
}

async function scaleChild(method: string, modelDir: string, ids: string, nsamples: number, threads: number): Promise<ScaleResult> {
  const work = mkdtempSync(path.join(tmpdir(), 'prunekit-bench-scale-out-'));
  try {
    const config = resolveConfig({
      checkpoint: modelDir, output: path.join(work, 'out'), method, pattern: 'unstructured', sparsity: 0.5, threads,
      calibration: { path: ids, nsamples, seqlen: SCALE_SEQLEN, seed: 0, skipTokens: 0 }, evaluation: false,
    }, work);
    const blocks: ScaleResult['blocks'] = [];
    const finished = await runPrune(config, {
      emit: (e: Event) => {
        if (e.type === 'block.finished') {
          blocks.push({ block: e.block, name: e.name, layers: e.layers, seconds: e.seconds, peakRssBytes: e.peakRssBytes });
          process.stderr.write(`  [scale ${method}] block ${e.block} ${e.seconds.toFixed(1)} s, peak RSS ${(e.peakRssBytes / 2 ** 20).toFixed(0)} MiB\n`);
        }
      },
    });
    return { method, seconds: finished.totals.seconds, peakRssBytes: finished.totals.peakRssBytes, blocks, loss: finished.totals.loss, sparsity: finished.totals.sparsity };
  } finally {
    rmSync(work, { recursive: true, force: true });
    await rowPool.close();
  }
}

function forkScale(method: string, modelDir: string, ids: string, nsamples: number, threads: number): Promise<ScaleResult> {
  return new Promise((resolve, reject) => {
    const child = fork(process.argv[1], ['--scale-child', method, '--scale-dir', modelDir, '--scale-ids', ids, '--scale-nsamples', String(nsamples), '--threads', String(threads)], {
      execArgv: process.execArgv,
      env: { ...process.env, ...BACKEND_ENV }, // as the extension launches the backend
      stdio: ['ignore', 2, 2, 'ipc'],
    });
    let result: { ok: true; value: ScaleResult } | { ok: false; error: string } | undefined;
    child.on('message', (m) => (result = m as typeof result));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (result?.ok) resolve(result.value);
      else reject(new Error(result ? result.error : `scale child (${method}) exited with ${code ?? signal}`));
    });
  });
}

// ---------------------------------------------------------------------------------------------------------
// Quality runs

interface QualityRow {
  model: string;
  method: string;
  pattern: string;
  dense: number;
  pruned: number;
  seconds: number;
  evalSeconds: number;
  sparsity: number;
}

/** A column of the table: "apt", "apt+owl", "apt+owl+refine", "apt+refine5". */
function methodConfig(spec: string): Pick<PruneConfig, 'method' | 'allocation' | 'refine'> {
  const [method, ...extras] = spec.split('+');
  const out: Pick<PruneConfig, 'method' | 'allocation' | 'refine'> = { method: method as PruneConfig['method'] };
  for (const x of extras) {
    const refine = /^refine(\d*)$/.exec(x);
    if (x === 'owl') out.allocation = 'owl';
    else if (refine) out.refine = { iterations: refine[1] ? Number(refine[1]) : DEFAULT_REFINE };
    else throw new Error(`--methods: "${spec}": unknown option "+${x}" (use +owl, +refine or +refineK)`);
  }
  return out;
}

/** OWL spreads an unstructured sparsity: its N:M cells stay empty. */
const applies = (method: string, pattern: string) => !(method.includes('+owl') && pattern.includes(':'));

function patternConfig(p: string): Pick<PruneConfig, 'pattern' | 'sparsity'> {
  const m = /^(\d+(?:\.\d+)?)%$/.exec(p);
  if (m) return { pattern: 'unstructured', sparsity: Number(m[1]) / 100 };
  if (/^\d+:\d+$/.test(p)) return { pattern: p as PruneConfig['pattern'] };
  throw new Error(`--patterns: "${p}" is neither a sparsity (50%) nor N:M`);
}

async function qualityRun(model: string, method: string, pattern: string, nsamples: number, threads: number): Promise<QualityRow> {
  const work = mkdtempSync(path.join(tmpdir(), 'prunekit-bench-quality-'));
  try {
    const config = resolveConfig({
      checkpoint: path.join(fixtures, model), output: path.join(work, 'out'), ...methodConfig(method), ...patternConfig(pattern), threads,
      calibration: { path: text, nsamples, seqlen: 256, seed: 0, skipTokens: 65536 },
      evaluation: { path: text, seqlen: 256, maxWindows: 256 },
    }, work);
    const evals: EventOf<'evaluation.finished'>[] = [];
    const finished = await runPrune(config, { emit: (e: Event) => { if (e.type === 'evaluation.finished') evals.push(e); } });
    const ppl = (m: 'dense' | 'pruned') => (evals.find((e) => e.model === m) as EventOf<'evaluation.finished'>).perplexity;
    return {
      model, method, pattern, dense: ppl('dense'), pruned: ppl('pruned'), seconds: finished.totals.seconds,
      evalSeconds: evals.reduce((a, e) => a + e.seconds, 0), sparsity: finished.totals.sparsity,
    };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------------
// Tables

/** The official SparseGPT code on the same protocol (../shared/docs/anchors.md), beside the table's rows. */
const OFFICIAL_SPARSEGPT: Record<string, Record<string, number>> = {
  'stories260K-onnx': { '50%': 17.62, '60%': 48.83, '70%': 111.8, '2:4': 32.27, '4:8': 19.75 },
  'stories-llama-1M-onnx': { '50%': 5.651, '70%': 10.53, '2:4': 6.422 },
};

const fmtPpl = (x: number) => (x >= 1000 ? x.toExponential(3) : x.toFixed(x >= 100 ? 1 : 3));
const mib = (b: number) => (b / 2 ** 20).toFixed(0);

function qualityTables(rows: QualityRow[], methods: string[], patterns: string[]): string {
  const out: string[] = [];
  for (const model of [...new Set(rows.map((r) => r.model))]) {
    const mine = rows.filter((r) => r.model === model);
    const dense = mine[0].dense;
    out.push(`### ${model}`, '', `Dense perplexity ${fmtPpl(dense)} (${mine[0] ? `${mine.length} runs` : ''}; every run re-measures it: ${[...new Set(mine.map((r) => r.dense.toFixed(4)))].join(', ')}).`, '');
    out.push('Pruned perplexity:', '');
    out.push(`| method | ${patterns.join(' | ')} |`, `| --- | ${patterns.map(() => '---:').join(' | ')} |`);
    for (const m of methods) {
      const cells = patterns.map((p) => { const r = mine.find((x) => x.method === m && x.pattern === p); return r ? fmtPpl(r.pruned) : applies(m, p) ? '—' : 'n/a'; });
      out.push(`| ${m} | ${cells.join(' | ')} |`);
    }
    const official = OFFICIAL_SPARSEGPT[model];
    if (official) out.push(`| official SparseGPT (anchors.md) | ${patterns.map((p) => (official[p] !== undefined ? String(official[p]) : '—')).join(' | ')} |`);
    out.push('', 'Wall time per run, seconds (run.finished totals.seconds; in parentheses the part spent in the dense and pruned evaluations):', '');
    out.push(`| method | ${patterns.join(' | ')} |`, `| --- | ${patterns.map(() => '---:').join(' | ')} |`);
    for (const m of methods) {
      const cells = patterns.map((p) => { const r = mine.find((x) => x.method === m && x.pattern === p); return r ? `${r.seconds.toFixed(1)} (${r.evalSeconds.toFixed(1)})` : '—'; });
      out.push(`| ${m} | ${cells.join(' | ')} |`);
    }
    out.push('');
  }
  return out.join('\n');
}

/** The scale table, with its own command line: a later run without the scale part keeps it in the docs. */
function scaleTable(rows: ScaleResult[], info: string, config: LlamaConfig, command: string): string {
  const heading = `${SCALE_HEADING} generated Llama, hidden ${config.hidden_size}, intermediate ${config.intermediate_size}, ${config.num_hidden_layers} blocks`;
  const out: string[] = [heading, '', `Command: \`${command}\` (${new Date().toISOString()})`, '', info, ''];
  const nBlocks = Math.max(0, ...rows.map((r) => r.blocks.length));
  const blockCols = Array.from({ length: nBlocks }, (_, i) => `block ${i} s`);
  out.push(`| method | sparsity | ${blockCols.join(' | ')} | total s | peak RSS MiB | Σ layer loss |`);
  out.push(`| --- | --- | ${blockCols.map(() => '---:').join(' | ')} | ---: | ---: | ---: |`);
  for (const r of rows) {
    const cells = Array.from({ length: nBlocks }, (_, i) => (r.blocks[i] ? r.blocks[i].seconds.toFixed(1) : '—'));
    out.push(`| ${r.method} | 50% | ${cells.join(' | ')} | ${r.seconds.toFixed(1)} | ${mib(r.peakRssBytes)} | ${r.loss === null ? '—' : r.loss.toExponential(3)} |`);
  }
  out.push('');
  return out.join('\n');
}

const SCALE_HEADING = '### Scale:';

/** Rewrites the section (up to the next "## " heading); a run without the scale part keeps the scale table already there. */
function writeDocs(body: string, hasScale: boolean): void {
  const doc = readFileSync(docsFile, 'utf8');
  const start = doc.indexOf(`\n${SECTION}`);
  if (start < 0) throw new Error(`${docsFile}: no "${SECTION}" section`);
  const next = doc.indexOf('\n## ', start + 1);
  const end = next < 0 ? doc.length : next;
  if (!hasScale) {
    const old = doc.slice(start, end);
    const at = old.indexOf(`\n${SCALE_HEADING}`);
    if (at >= 0) body = `${body.trim()}\n\n${old.slice(at).trim()}\n`;
  }
  writeFileSync(docsFile, `${doc.slice(0, start).replace(/\n+$/, '')}\n\n${SECTION}\n\n${body.trim()}\n${doc.slice(end)}`);
}

// ---------------------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const { values: a } = parseArgs({
    options: {
      models: { type: 'string', default: DEFAULT_MODELS },
      methods: { type: 'string', default: DEFAULT_METHODS },
      patterns: { type: 'string', default: DEFAULT_PATTERNS },
      nsamples: { type: 'string', default: '128' },
      'scale-methods': { type: 'string', default: DEFAULT_SCALE_METHODS },
      'scale-nsamples': { type: 'string', default: '16' },
      'scale-hidden': { type: 'string', default: '4096' },
      'scale-intermediate': { type: 'string', default: '11008' },
      'scale-blocks': { type: 'string', default: '2' },
      'no-quality': { type: 'boolean', default: false },
      'no-docs': { type: 'boolean', default: false },
      threads: { type: 'string', default: '0' },
      'scale-child': { type: 'string' },
      'scale-dir': { type: 'string' },
      'scale-ids': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (a.help) {
    process.stdout.write(USAGE);
    return;
  }
  const threads = Number(a.threads);
  const list = (s: string) => s.split(',').map((x) => x.trim()).filter(Boolean);

  if (a['scale-child']) {
    try {
      const r = await scaleChild(a['scale-child'], a['scale-dir'] as string, a['scale-ids'] as string, Number(a['scale-nsamples']), threads);
      process.send?.({ ok: true, value: r });
    } catch (e) {
      process.send?.({ ok: false, error: (e as Error).stack ?? String(e) });
    }
    return;
  }

  const command = `node --import tsx bench/quality.ts${process.argv.length > 2 ? ' ' + process.argv.slice(2).join(' ') : ''}`;
  const cpu = cpus();
  const machine = `${new Date().toISOString()}, Node ${process.version}, onnxruntime-node ${ort.env.versions.node ?? '?'}, CPU only, ${cpu.length}× ${cpu[0]?.model.trim() ?? 'cpu'}, intra-op threads ${threads || 'default (one per core)'}`;
  const methods = list(a.methods);
  const patterns = list(a.patterns);
  const nsamples = Number(a.nsamples);
  const header = [
    `Command: \`${command}\``,
    '',
    `- ${machine}`,
    `- Quality protocol: calibration ${nsamples} windows × 256 tokens of \`../shared/fixtures/data/tinystories_valid_head.txt\`, drawn (seed 0) after its first 65,536 tokens (skipTokens 65536); evaluation on the same file, seqlen 256, the first 256 windows (65,536 tokens, disjoint from the calibration data); dampening 0.01, block 128, lm_head kept dense (defaults). Each run is \`runPrune\` in-process, output to a temporary folder deleted after the run.`,
    '',
  ].join('\n');

  const qualityRows: QualityRow[] = [];
  const scaleRows: ScaleResult[] = [];
  let scaleInfo = '';
  const models = a['no-quality'] ? [] : list(a.models);
  const scaleMethods = a['scale-methods'] === 'none' ? [] : list(a['scale-methods']);
  const planned = models.length * patterns.reduce((n, p) => n + methods.filter((m) => applies(m, p)).length, 0);
  const partial = () => {
    if (qualityRows.length >= planned && scaleRows.length >= scaleMethods.length) return '';
    return `**Partial results** (the run was stopped at the session deadline): ${qualityRows.length} of ${planned} quality runs and ${scaleRows.length} of ${scaleMethods.length} scale runs finished; missing cells show —.\n`;
  };
  const scale = scaleConfig(Number(a['scale-hidden']), Number(a['scale-intermediate']), Number(a['scale-blocks']));
  const render = () => [header, partial(), qualityRows.length ? qualityTables(qualityRows, methods, patterns) : '', scaleRows.length ? scaleTable(scaleRows, scaleInfo, scale, command) : ''].filter(Boolean).join('\n');
  const save = () => { if (!a['no-docs']) writeDocs(render(), scaleRows.length > 0); };

  if (scaleMethods.length) {
    const scaleNs = Number(a['scale-nsamples']);
    const dir = mkdtempSync(path.join(tmpdir(), 'prunekit-bench-scale-'));
    try {
      const t0 = performance.now();
      const w = writeScaleModel(dir, scale);
      const genSeconds = (performance.now() - t0) / 1000;
      // Random token ids: exactly nsamples windows of SCALE_SEQLEN (seeded LCG).
      const idsFile = randomIds(dir, scaleNs * SCALE_SEQLEN, scale.vocab_size);
      scaleInfo = `${(w.parameters / 1e6).toFixed(0)}M parameters (fp32, model.onnx ${(w.modelBytes / 1024).toFixed(0)} KiB + ${DATA_FILE} ${mib(w.dataBytes)} MiB, random weights \`randomLlamaWeights(seed 0)\`, generated in ${genSeconds.toFixed(0)} s), ${scale.num_attention_heads} heads, vocab 512; calibration ${scaleNs} windows × ${SCALE_SEQLEN} random token ids (a .json id file), no evaluation; 50% unstructured. One child process per method: *peak RSS* is run.finished totals.peakRssBytes of that process; *block s* is block.finished seconds (calibration, pruning, propagation); *total s* includes writing the ${mib(w.dataBytes)} MiB output.`;
      process.stderr.write(`scale model: ${scaleInfo}\n`);
      for (const m of scaleMethods) {
        const r = await forkScale(m, dir, idsFile, scaleNs, threads);
        scaleRows.push(r);
        process.stderr.write(`scale ${m}: ${r.seconds.toFixed(1)} s, peak RSS ${mib(r.peakRssBytes)} MiB\n`);
        save();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  if (!a['no-quality']) {
    for (const model of models) {
      for (const pattern of patterns) {
        for (const method of methods.filter((m) => applies(m, pattern))) {
          const r = await qualityRun(model, method, pattern, nsamples, threads);
          qualityRows.push(r);
          process.stderr.write(`${model} ${method} ${pattern}: dense ${r.dense.toFixed(4)} pruned ${r.pruned.toFixed(4)} ${r.seconds.toFixed(1)} s (eval ${r.evalSeconds.toFixed(1)} s)\n`);
          save();
        }
      }
    }
  }
  await rowPool.close();
  process.stdout.write(`${SECTION}\n\n${render()}\n`);
  save();
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
