// Mamba perplexities (docs/BENCHMARKS.md, "Mamba"), printed as that section in markdown:
//   node --import tsx bench/mamba.ts [--out rows.ndjson] [--timings] apt@50% sparsegpt@2:4 wanda@4:8 apt@2:4+conv1d …
// Each argument is one runPrune of ../shared/fixtures/stories-mamba-hf (calibration 128 × 256 tokens of
// tinystories_valid_head.txt after its first 65,536, seed 0; no in-run evaluation, so the dense perplexity is not
// re-measured every run), then the pruned folder's perplexity on the first 256 windows of 256 tokens (the
// reference protocol, the same numbers bench/quality.ts reports). Calibration throughput: tokens × blocks over the
// seconds between the calibration.progressed events of the hessian (block + XᵀX) and propagate phases (each
// block's first batch includes building its session). A `+conv1d` suffix also prunes each block's depthwise conv1d
// (keepDense.depthwiseConv false) with the same method and pattern; `+conv1d-only` prunes only the conv1d layers.
// The dense model is evaluated once, first. The table: one row per method, one column per pattern (and conv1d
// variant), in the order given; --timings adds each run's seconds and calibration tokens/s (load-dependent).
// One JSON row per run goes to stderr (and is appended to --out).
import * as path from 'node:path';
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import { evaluationWindows, loadTokenizer, readTokens } from '../src/backend/data/tokens';
import { perplexity } from '../src/backend/eval/perplexity';
import { openCheckpoint } from '../src/backend/formats/checkpoint';
import { inputSpecs } from '../src/backend/models/inputs';
import { Engine } from '../src/backend/onnx/session';
import { runPrune } from '../src/backend/pipeline/run';
import { resolveConfig } from '../src/protocol/config';
import { rowPool } from '../src/backend/methods/rowKernels';
const fx = path.resolve(__dirname, '..', '..', 'shared', 'fixtures');
const model = path.join(fx, 'stories-mamba-hf');
const text = path.join(fx, 'data/tinystories_valid_head.txt');
const args = process.argv.slice(2);
const outAt = args.indexOf('--out');
const results = outAt >= 0 ? args.splice(outAt, 2)[1] : null;
const timingsAt = args.indexOf('--timings');
const timings = timingsAt >= 0 && args.splice(timingsAt, 1).length > 0;
const command = `node --import tsx bench/mamba.ts ${process.argv.slice(2).join(' ')}`;

interface Row { method: string; column: string; ppl: number; pruneSeconds: number; hessianTokPerS: number | null; propagateTokPerS: number | null; load: number }

/** "50%", "2:4 + conv1d", "conv1d only, 50%". */
const columnOf = (pat: string, conv1d: boolean, only: boolean) => (only ? `conv1d only, ${pat}` : conv1d ? `${pat} + conv1d` : pat);

function markdown(dense: number, rows: Row[]): string {
  const methods = [...new Set(rows.map((r) => r.method))];
  const columns = [...new Set(rows.map((r) => r.column))];
  const cell = (m: string, c: string) => rows.find((r) => r.method === m && r.column === c);
  const out = [
    '## Mamba (`bench/mamba.ts`)', '', `Command: \`${command}\``, '',
    `- ${new Date().toISOString()}, Node ${process.version}, CPU, ${os.cpus().length}× ${os.cpus()[0]?.model.trim() ?? '?'}`,
    '- stories-mamba-hf; calibration 128 × 256 tokens of tinystories_valid_head.txt after its first 65,536 (seed 0), dampening 0.01, ' +
      'block 128; perplexity on its first 256 windows of 256 tokens. `+ conv1d`: keepDense.depthwiseConv false; `conv1d only`: layers.include ["*.conv1d"].',
    '', `Dense perplexity ${dense.toFixed(4)}. Pruned:`, '',
    `| method | ${columns.join(' | ')} |`, `| --- | ${columns.map(() => '---:').join(' | ')} |`,
    ...methods.map((m) => `| ${m} | ${columns.map((c) => cell(m, c)?.ppl.toFixed(3) ?? '').join(' | ')} |`),
  ];
  if (timings) {
    const tps = (x: number | null) => (x === null ? '—' : x.toFixed(0));
    out.push('', '| run | prune s | calibration tok/s (hessian) | calibration tok/s (propagate) | load avg |', '| --- | ---: | ---: | ---: | ---: |',
      ...rows.map((r) => `| ${r.method} ${r.column} | ${r.pruneSeconds.toFixed(1)} | ${tps(r.hessianTokPerS)} | ${tps(r.propagateTokPerS)} | ${r.load.toFixed(1)} |`));
  }
  return out.join('\n') + '\n';
}

(async () => {
  const engine = new Engine({ device: 'cpu', threads: 0 });
  const ids = readTokens(text, loadTokenizer(path.join(model, 'tokenizer.json'))).subarray(0, 65536);
  const windows = evaluationWindows(ids, 256);
  const evaluate = async (dir: string) => {
    const ck = openCheckpoint(dir);
    const session = await engine.modelSession(ck.sessionSource());
    try {
      return (await perplexity(session, inputSpecs(ck.model.graph.input, new Set(ck.model.graph.initializer.map((t) => t.name))), windows, { batch: 8 })).ppl;
    } finally {
      await session.release();
    }
  };
  const dense = await evaluate(model);
  const rows: Row[] = [];
  for (const spec of args) {
    if (!/^[a-z]+@(\d+%|\d+:\d+)(\+conv1d(-only)?)?$/.test(spec)) throw new Error(`"${spec}": expected method@50% or method@2:4, optionally +conv1d or +conv1d-only`);
    const conv1d = spec.includes('+conv1d');
    const only = spec.endsWith('-only');
    const [method, pat] = spec.replace(/\+conv1d(-only)?$/, '').split('@');
    const pattern = pat.includes(':') ? pat : 'unstructured';
    const sparsity = pat.includes(':') ? 0.5 : Number(pat.replace('%', '')) / 100;
    const work = mkdtempSync(path.join(os.tmpdir(), 'mbench-'));
    const out = path.join(work, 'out');
    const config = resolveConfig({ checkpoint: model, output: out, method, sparsity, pattern, keepDense: { depthwiseConv: !conv1d }, layers: { include: only ? ['*.conv1d'] : ['*'] },
      calibration: { path: text, nsamples: 128, seqlen: 256, seed: 0, skipTokens: 65536 } }, work);
    const phase: Record<string, number> = {};
    let last = performance.now();
    const t0 = performance.now();
    await runPrune(config, { emit: (e) => {
      const now = performance.now();
      if (e.type === 'calibration.progressed' && e.phase !== 'prefix') phase[e.phase] = (phase[e.phase] ?? 0) + (now - last);
      last = now;
      if (e.type === 'run.failed') console.log(e);
    } });
    const pruneSeconds = (performance.now() - t0) / 1000;
    const tokens = 4 * 128 * 256;
    const row: Row = { method, column: columnOf(pat, conv1d, only), ppl: await evaluate(out), pruneSeconds,
      hessianTokPerS: phase.hessian ? tokens / (phase.hessian / 1000) : null, propagateTokPerS: phase.propagate ? tokens / (phase.propagate / 1000) : null, load: os.loadavg()[0] };
    rows.push(row);
    process.stderr.write(JSON.stringify(row) + '\n');
    if (results) appendFileSync(results, JSON.stringify(row) + '\n');
    rmSync(work, { recursive: true, force: true });
  }
  await engine.release();
  await rowPool.close();
  process.stdout.write(markdown(dense, rows));
})();
