// Mamba quality rows and calibration throughput (docs/BENCHMARKS.md, "Mamba"):
//   node --import tsx bench/mamba.ts [--out rows.ndjson] apt@50% sparsegpt@2:4 wanda@4:8 apt@2:4+conv1d …
// Each argument is one runPrune of ../shared/fixtures/stories-mamba-hf (calibration 128 × 256 tokens of
// tinystories_valid_head.txt after its first 65,536, seed 0; no in-run evaluation, so the dense perplexity is not
// re-measured every run), then the pruned folder's perplexity on the first 256 windows of 256 tokens (the
// reference protocol, the same numbers bench/quality.ts reports). Calibration throughput: tokens × blocks over the
// seconds between the calibration.progressed events of the hessian (block + XᵀX) and propagate phases (each
// block's first batch includes building its session). A `+conv1d` suffix also prunes each block's depthwise conv1d
// (keepDense.depthwiseConv false) with the same method and pattern; `+conv1d-only` prunes only the conv1d layers.
// One JSON row per run on stdout (and appended to --out).
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
(async () => {
  const engine = new Engine({ device: 'cpu', threads: 0 });
  const ids = readTokens(text, loadTokenizer(path.join(model, 'tokenizer.json'))).subarray(0, 65536);
  const windows = evaluationWindows(ids, 256);
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
    const ck = openCheckpoint(out);
    const s = await engine.modelSession(ck.sessionSource());
    const t1 = performance.now();
    const res = await perplexity(s, inputSpecs(ck.model.graph.input, new Set(ck.model.graph.initializer.map((t) => t.name))), windows, { batch: 8 });
    const evalSeconds = (performance.now() - t1) / 1000;
    await s.release();
    const tokens = 4 * 128 * 256;
    const row = { method, pattern: pat, conv1d: only ? 'only' : conv1d, ppl: res.ppl, windows: res.windows, pruneSeconds, evalSeconds,
      hessianTokPerS: phase.hessian ? tokens / (phase.hessian / 1000) : null, propagateTokPerS: phase.propagate ? tokens / (phase.propagate / 1000) : null, load: os.loadavg()[0], at: new Date().toISOString() };
    console.log(JSON.stringify(row));
    if (results) appendFileSync(results, JSON.stringify(row) + '\n');
    rmSync(work, { recursive: true, force: true });
  }
  await engine.release();
  await rowPool.close();
})();
