// Solver benchmark (`npm run bench:solvers`): how fast APT, SparseGPT, Wanda and magnitude prune one linear
// layer, where the time goes, how close the Hessian solvers come to the machine's fp32 GEMM rate, and how
// much memory they need. docs/BENCHMARKS.md explains the method and holds the results.
//
// The parent process measures the GEMM rate, then for each size forks children of this same script
// (`--child ...`): one generates W and H and writes them to a temporary folder, then one child per
// measurement (the factorisation alone, then each method) loads them, so each child's peak RSS covers
// one job and not the data generation.

import { fork, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { dampedCholeskyFactor } from '../src/backend/linalg/cholesky';
import { Kernels, mat } from '../src/backend/linalg/kernels';
import { halfTrace, METHODS, pruneLayer } from '../src/backend/methods';
import type { MethodName, Pattern, PruneOptions } from '../src/backend/methods/types';
import type { ModelProto } from '../src/backend/onnx/proto';
import { BACKEND_ENV } from '../src/protocol/backendEnv';
import { DeviceRequest, Engine, Feeds, Kernel } from '../src/backend/onnx/session';
import { gemmRate } from './scaleModel';
import { syntheticLayer } from './synthetic';

const DEFAULT_SIZES = '1024x1024,4096x4096,4096x11008,11008x4096';
const GEMM_N = 2048;
const USAGE = `usage: node --import tsx bench/solvers.ts [options]   (npm run bench:solvers -- [options])

  --sizes RxC,...     layer shapes, rows (out features) x cols (in features) (default ${DEFAULT_SIZES})
  --methods a,b,...   methods to time (default ${Object.keys(METHODS).join(',')})
  --repeat N          time each job N times; the table shows the best and the median (default 3)
  --sparsity S        unstructured sparsity (default 0.5)
  --pattern N:M       also prune with this N:M pattern (default: unstructured only)
  --block B           sweep block size of SparseGPT and APT (default 128)
  --tokens T          calibration tokens for H (default cols + 512)
  --device D          auto|cpu|cuda[:N]|webgpu (default auto)
  --threads N         onnxruntime intra-op threads (default 0 = one per core)
  --block-windows N   then a whole Llama-7B-shaped block (hidden 4096, MLP 11008) of SparseGPT and APT through the
                      pipeline, N calibration windows of 512 (bench/scale.ts): the layers' time, the loss and
                      bookkeeping around them, and the propagation (default 8; 0: no block)
  -h, --help          this text
`;

// ---------------------------------------------------------------------------------------------------------
// Options

interface Options {
  sizes: [number, number][];
  methods: MethodName[];
  repeat: number;
  patterns: Pattern[];
  block: number;
  tokens?: number;
  device: DeviceRequest;
  threads: number;
}

const OPTION_SPEC = {
  sizes: { type: 'string', default: DEFAULT_SIZES },
  methods: { type: 'string', default: Object.keys(METHODS).join(',') },
  repeat: { type: 'string', default: '3' },
  sparsity: { type: 'string', default: '0.5' },
  pattern: { type: 'string' },
  block: { type: 'string', default: '128' },
  tokens: { type: 'string' },
  device: { type: 'string', default: 'auto' },
  threads: { type: 'string', default: '0' },
  'block-windows': { type: 'string', default: '8' },
  help: { type: 'boolean', short: 'h' },
  // Internal: a child's job and its arguments.
  child: { type: 'string' },
  data: { type: 'string' },
  rows: { type: 'string' },
  cols: { type: 'string' },
  method: { type: 'string' },
  'pattern-json': { type: 'string' },
} as const;

function positiveInt(flag: string, s: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag}: '${s}' is not a positive integer`);
  return n;
}

function parseOptions(values: ReturnType<typeof parseArgv>['values']): Options {
  const sizes = (values.sizes ?? DEFAULT_SIZES).split(',').map((s): [number, number] => {
    const m = /^\s*(\d+)x(\d+)\s*$/.exec(s);
    if (!m) throw new Error(`--sizes: '${s}' is not of the form ROWSxCOLS (e.g. 4096x11008)`);
    return [positiveInt('sizes', m[1]), positiveInt('sizes', m[2])];
  });
  const methods = (values.methods ?? '').split(',').map((s) => s.trim()).filter(Boolean) as MethodName[];
  for (const m of methods) if (!(m in METHODS)) throw new Error(`--methods: unknown method '${m}' (known: ${Object.keys(METHODS).join(', ')})`);
  const sparsity = Number(values.sparsity);
  if (!(sparsity > 0 && sparsity < 1)) throw new Error(`--sparsity: ${values.sparsity} is outside (0, 1)`);
  const patterns: Pattern[] = [{ kind: 'unstructured', sparsity }];
  if (values.pattern) {
    const m = /^(\d+):(\d+)$/.exec(values.pattern);
    if (!m || Number(m[1]) < 1 || Number(m[1]) >= Number(m[2])) throw new Error(`--pattern: '${values.pattern}' is not N:M with 1 <= N < M (e.g. 2:4)`);
    patterns.push({ kind: 'nm', n: Number(m[1]), m: Number(m[2]) });
  }
  const threads = Number(values.threads);
  if (!Number.isInteger(threads) || threads < 0) throw new Error(`--threads: '${values.threads}' is not an integer >= 0`);
  return {
    sizes,
    methods,
    repeat: positiveInt('repeat', values.repeat ?? '3'),
    patterns,
    block: positiveInt('block', values.block ?? '128'),
    tokens: values.tokens ? positiveInt('tokens', values.tokens) : undefined,
    device: (values.device ?? 'auto') as DeviceRequest,
    threads,
  };
}

function parseArgv(argv: string[]) {
  return parseArgs({ args: argv, options: OPTION_SPEC, allowPositionals: false });
}

// ---------------------------------------------------------------------------------------------------------
// Instrumentation: an Engine whose kernels add up the seconds spent inside onnxruntime, per graph.

class TimedEngine extends Engine {
  readonly ortSeconds = new Map<string, number>();
  private readonly wrapped = new WeakMap<Kernel, Kernel>();

  override async kernel(model: ModelProto): Promise<Kernel> {
    const inner = await super.kernel(model);
    let k = this.wrapped.get(inner);
    if (!k) {
      const name = model.graph.name;
      const totals = this.ortSeconds;
      k = new (class extends Kernel {
        override async run(feeds: Feeds, outputs?: Feeds) {
          const t0 = performance.now();
          try {
            // Forward pre-allocated outputs: the lazy update is written in place through them.
            return await super.run(feeds, outputs);
          } finally {
            totals.set(name, (totals.get(name) ?? 0) + (performance.now() - t0) / 1000);
          }
        }
      })(inner.session, inner.device);
      this.wrapped.set(inner, k);
    }
    return k;
  }

  /** Seconds inside onnxruntime since the last reset, for the given graph names (all when omitted). */
  ort(names?: string[]): number {
    let s = 0;
    for (const [name, v] of this.ortSeconds) if (!names || names.includes(name)) s += v;
    return s;
  }
}

// Graph names in src/backend/linalg/kernels.ts.
const FACTOR_GRAPHS = ['abT', 'cMinusABT', 'ab', 'cPlusAB', 'negAB'];
/** The sweep's update products (methods/sweep.ts): per block Dᵀ = (Gᵀ·R[:i1, b]ᵀ)·Fᵀ[:i1] with the block's weights
 *  W[:, b] + D (graph sweepBlock: its GEMMs, a Slice, a Transpose and an Add), and Fᵀ_b = Gᵀ·Eᵀ − Dᵀ. */
const UPDATE_GRAPHS = ['sweepBlock', 'aTbTMinusC'];

// ---------------------------------------------------------------------------------------------------------
// Flop counts (docs/BENCHMARKS.md, algorithms.md §7.4–7.5). Useful flops: a multiply-add is 2 flops.

/** The sweep's factorisation: one Cholesky, c³/3 (R = U⁻¹; no triangular inverse). */
function factorFlops(c: number): number {
  return c ** 3 / 3;
}

/** The reference's factorisation (algorithms.md §7.4): chol, cholesky_inverse, chol of H⁻¹, ≈ 4/3·c³. */
function referenceFactorFlops(c: number): number {
  return (4 / 3) * c ** 3;
}

/** What the panel Cholesky in linalg/cholesky.ts executes in its GEMMs (mirrors its panel widths: 256 from
 *  n = 2048 on, else 128; diagonal blocks wider than 128 are factored and inverted the same way, since the panel
 *  solves use their inverses). Only the products with a diagonal block's inverse treat a triangular operand as
 *  dense. `invert` adds the triangular inverse (dampedInverseFactor; the sweep does not need it). */
function factorExecutedGemmFlops(n: number, invert = false, leaf = 128): number {
  const nb = n >= 2048 ? 2 * leaf : leaf;
  if (n <= leaf) return 0;
  const count = Math.ceil(n / nb);
  const w = (j: number) => Math.min(nb, n - j * nb);
  let f = 0;
  for (let q = 0; q < count; q++) {
    if (w(q) > leaf) f += factorExecutedGemmFlops(w(q), true, leaf);
    const k = invert ? 2 : 1;
    const below = n - (q + 1) * nb;
    if (below > 0) f += k * (2 * below * w(q) * w(q)); /* L[below, q] = A·L_qq⁻ᵀ (and X[below, q] = −T·X_qq) */
    for (let j = q + 1; j < count; j++) f += k * (2 * (n - j * nb) * w(j) * w(q)); /* trailing update (and inverse accumulation) */
  }
  return f;
}

/** The block size the shared sweep uses (methods/sweep.ts): a multiple of M for N:M. */
function sweepBlockSize(pattern: Pattern, block: number): number {
  const m = pattern.kind === 'nm' ? pattern.m : 1;
  return Math.max(m, Math.ceil(block / m) * m);
}

interface Flops {
  factor: number;
  /** Σ_blocks 2·rows·B·(c − i1): the reference's lazy GEMMs E·U[b, i1:], in-block update included. The sweep's
   *  left-looking products (Gᵀ·R[:i1, b]ᵀ)·Fᵀ[:i1] and Gᵀ·Eᵀ do exactly this arithmetic, in another order; the small
   *  factor Gᵀ·R[:i1, b]ᵀ (2·B²·i1 per block, 0.27 GFLOP at 4096²) is not counted. */
  lazy: number;
  /** SparseGPT's in-block column sweep, or APT's per-row solves (+ the block Gram GᵀG), from the actual mask. */
  inBlock: number;
}

function solverFlops(method: 'apt' | 'sparsegpt', rows: number, cols: number, B: number, mask: Uint8Array): Flops {
  let lazy = 0;
  let inBlock = 0;
  for (let i1 = 0; i1 < cols; i1 += B) {
    const width = Math.min(B, cols - i1);
    lazy += 2 * rows * width * (cols - i1);
    if (method === 'apt') {
      for (let i = 0; i < width; i++) inBlock += 2 * (i + 1) * (width - i); // S = GᵀG, G upper triangular
      for (let r = 0; r < rows; r++) {
        let n = 0;
        let gemv = 0;
        for (let k = 0; k < width; k++) {
          if (mask[r * cols + i1 + k]) {
            n++;
            gemv += 2 * (k + 1); // e += G[:k+1, p]·λ_p
          }
        }
        inBlock += n ** 3 / 3 + 2 * n * n + gemv; // Cholesky of S_PP, two triangular solves, e = G[:, P]·λ
      }
    } else {
      for (let r = 0; r < rows; r++) {
        for (let k = 0; k < width; k++) if (mask[r * cols + i1 + k]) inBlock += 2 * (width - 1 - k); // rank-1 update of the rest of the block row
      }
    }
  }
  return { factor: factorFlops(cols), lazy, inBlock };
}

/** The same solver's flops with the reference's factorisation (algorithms.md §7.4–7.5). */
function referenceFlops(f: Flops, cols: number): number {
  return referenceFactorFlops(cols) + f.lazy + f.inBlock;
}

// ---------------------------------------------------------------------------------------------------------
// Children

interface ChildResultBase {
  /** RSS (bytes) right after start-up, before any data: Node + onnxruntime. */
  baseRss: number;
  /** process.resourceUsage().maxRSS at the end, in bytes. */
  peakRss: number;
}
interface GenResult { seconds: number; tokens: number }
interface FactorResult extends ChildResultBase { seconds: number[]; ortSeconds: number[] }
interface PruneRun { seconds: number; ortLazy: number; relLoss: number }
interface PruneResultMsg extends ChildResultBase { runs: PruneRun[]; flops?: Flops; notes: string[] }

const files = (dir: string) => ({ W: path.join(dir, 'W.f32'), H: path.join(dir, 'H.f32'), colNorm2: path.join(dir, 'colNorm2.f32') });

function writeF32(file: string, a: Float32Array): void {
  writeFileSync(file, new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
}

function readF32(file: string): Float32Array {
  const buf = readFileSync(file);
  if (buf.byteOffset % 4 === 0) return new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

/** Full garbage collections around one macrotask turn: what a finished job leaves (its buffers, onnxruntime's tensors)
 *  is only released by a second collection after the job's promises have settled (measured: one gc() right away
 *  keeps ≈ 70–130 MB of a 4096² prune alive, the second frees it), and it must not count in the next job's peak. */
const gc = async (): Promise<void> => {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (!collect) return;
  collect();
  await new Promise((resolve) => setTimeout(resolve, 10));
  collect();
};

async function childMain(job: string, values: ReturnType<typeof parseArgv>['values']): Promise<unknown> {
  const baseRss = process.memoryUsage().rss;
  const engine = new TimedEngine({ device: (values.device ?? 'auto') as DeviceRequest, threads: Number(values.threads ?? 0) });
  const rows = Number(values.rows);
  const cols = Number(values.cols);
  const dir = values.data as string;
  const peak = () => process.resourceUsage().maxRSS * 1024;

  if (job === 'gen') {
    const tokens = Number(values.tokens ?? cols + 512);
    const t0 = performance.now();
    const layer = await syntheticLayer(`bench.${rows}x${cols}`, rows, cols, engine, { tokens, seed: 1 });
    const f = files(dir);
    writeF32(f.W, layer.W);
    writeF32(f.H, layer.H);
    writeF32(f.colNorm2, layer.colNorm2);
    return { seconds: (performance.now() - t0) / 1000, tokens } satisfies GenResult;
  }

  const repeat = Number(values.repeat ?? 1);
  const f = files(dir);
  const W = readF32(f.W);
  const H = readF32(f.H);
  const colNorm2 = readF32(f.colNorm2);
  // Warm-up on a small problem: creates the (shape-independent) onnxruntime sessions, and compiles the JavaScript and
  // WebAssembly kernels on every thread, outside the timings (a 64×256 layer pruned once left the first repeats at
  // 1024² up to 2× slower than the steady state).
  const warm = await syntheticLayer('warmup', 512, 512, engine, { tokens: 1024, seed: 2 });

  if (job === 'factor') {
    const kernels = new Kernels(engine);
    await dampedCholeskyFactor(warm.H, warm.cols, 0.01, kernels);
    const seconds: number[] = [];
    const ortSeconds: number[] = [];
    for (let i = 0; i < repeat; i++) {
      await gc();
      engine.ortSeconds.clear();
      const t0 = performance.now();
      await dampedCholeskyFactor(H, cols, 0.01, kernels);
      seconds.push((performance.now() - t0) / 1000);
      ortSeconds.push(engine.ort(FACTOR_GRAPHS));
    }
    return { baseRss, peakRss: peak(), seconds, ortSeconds } satisfies FactorResult;
  }

  if (job === 'prune') {
    const method = values.method as MethodName;
    const pattern = JSON.parse(values['pattern-json'] as string) as Pattern;
    const options: PruneOptions = { pattern, blockSize: Number(values.block ?? 128) };
    for (let i = 0; i < 3; i++) await pruneLayer(method, warm, options, engine);
    // The reference ½·tr(W H Wᵀ) given, as the pipeline gives it for every layer but a block's last: the solve's
    // seconds are then the method's alone (given none, SparseGPT and APT would measure it inside their sweep).
    const reference = await halfTrace(rows, cols, mat(cols, cols, H), new Kernels(engine), (r0, r1) => W.subarray(r0 * cols, r1 * cols));
    const problem = { name: `bench.${rows}x${cols}`, rows, cols, W, H, colNorm2, reference };
    const runs: PruneRun[] = [];
    let flops: Flops | undefined;
    let notes: string[] = [];
    // One pruning, keeping only numbers: a result held across the next repeat (an async function's locals live
    // on until overwritten) would count in that repeat's peak RSS.
    const once = async (withFlops: boolean) => {
      const res = await pruneLayer(method, problem, options, engine);
      runs.push({ seconds: res.seconds, ortLazy: engine.ort(UPDATE_GRAPHS), relLoss: res.relLoss });
      if (withFlops && (method === 'apt' || method === 'sparsegpt')) flops = solverFlops(method, rows, cols, sweepBlockSize(pattern, options.blockSize ?? 128), res.mask);
      notes = res.notes;
    };
    for (let i = 0; i < repeat; i++) {
      await gc();
      engine.ortSeconds.clear();
      await once(i === 0);
    }
    return { baseRss, peakRss: peak(), runs, flops, notes } satisfies PruneResultMsg;
  }
  throw new Error(`unknown child job '${job}'`);
}

/** Runs this script as a child with `args`; resolves with the message it sends back. */
function runChild<T>(args: string[]): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = fork(process.argv[1], args, {
      execArgv: [...process.execArgv, '--expose-gc'],
      env: { ...process.env, ...BACKEND_ENV }, // as the extension launches the backend
      stdio: ['ignore', 2, 2, 'ipc'], // children never write to our stdout, which carries the table
    });
    let result: { ok: true; value: T } | { ok: false; error: string } | undefined;
    child.on('message', (m) => (result = m as typeof result));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (result?.ok) resolve(result.value);
      else reject(new Error(result && !result.ok ? result.error : `child exited with ${signal ?? `code ${code}`} (out of memory?)`));
    });
  });
}

// ---------------------------------------------------------------------------------------------------------
// Parent

const MB = 1024 * 1024;
const min = (a: number[]) => Math.min(...a);
const median = (a: number[]) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const fx = (x: number | undefined, d = 2) => (x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(d));
/** Three significant digits, no exponent for the magnitudes in these tables. */
const f3 = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '—' : Math.abs(x) >= 100 ? x.toFixed(0) : x.toPrecision(3));
const fs = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '—' : x < 10 ? x.toFixed(3) : x.toFixed(1));
const patternName = (p: Pattern) => (p.kind === 'nm' ? `${p.n}:${p.m}` : `${Math.round(p.sparsity * 100)}%`);

interface Row {
  size: string;
  rows: number;
  cols: number;
  what: string;
  pattern: string;
  best?: number;
  median?: number;
  factor?: number;
  lazy?: number;
  rest?: number;
  gflop?: number;
  /** The same job's GFLOP with the reference's 4/3·c³ factorisation (solver rows only). */
  refGflop?: number;
  peakRss?: number;
  baseRss?: number;
  relLoss?: number;
  error?: string;
}

async function parentMain(opts: Options, rawArgs: string[]): Promise<void> {
  const command = `node ${process.execArgv.join(' ')} ${path.relative(process.cwd(), process.argv[1])}${rawArgs.length ? ' ' + rawArgs.join(' ') : ''}`;
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const load0 = loadavg();

  log(`measuring the fp32 GEMM rate (n=${GEMM_N} MatMul, best of 3)...`);
  const engine = new Engine({ device: opts.device, threads: opts.threads });
  const rateStart = await gemmRate(engine, GEMM_N);
  const device = engine.device ?? '?';
  log(`  ${rateStart.toFixed(1)} GFLOP/s on ${device}`);
  await engine.release();

  const shared = ['--device', opts.device, '--threads', String(opts.threads), '--repeat', String(opts.repeat), '--block', String(opts.block)];
  const rows: Row[] = [];
  const gen: string[] = [];
  const notes = new Set<string>();
  const hessian = opts.methods.filter((m) => METHODS[m].needs === 'hessian');

  for (const [r, c] of opts.sizes) {
    const size = `${r}x${c}`;
    const dir = mkdtempSync(path.join(tmpdir(), `prunekit-bench-${size}-`));
    // W and H of the big layers take up to ~700 MB on disk: remove them on Ctrl-C too.
    const onInterrupt = () => {
      rmSync(dir, { recursive: true, force: true });
      process.exit(130);
    };
    process.once('SIGINT', onInterrupt);
    const base = { size, rows: r, cols: c };
    try {
      log(`[${size}] generating W and H...`);
      const sizeArgs = [...shared, '--rows', String(r), '--cols', String(c), '--data', dir];
      const g = await runChild<GenResult>(['--child', 'gen', ...sizeArgs, ...(opts.tokens ? ['--tokens', String(opts.tokens)] : [])]);
      gen.push(`${size}: T = ${g.tokens} tokens, ${g.seconds.toFixed(1)} s`);
      log(`  ${g.seconds.toFixed(1)} s (T=${g.tokens})`);

      let factorBest: number | undefined;
      if (hessian.length) {
        log(`[${size}] factorisation (dampedCholeskyFactor)...`);
        try {
          const fr = await runChild<FactorResult>(['--child', 'factor', ...sizeArgs]);
          factorBest = min(fr.seconds);
          const iBest = fr.seconds.indexOf(factorBest);
          rows.push({
            ...base, what: 'factor', pattern: '—', best: factorBest, median: median(fr.seconds), factor: factorBest,
            lazy: undefined, rest: factorBest - fr.ortSeconds[iBest], gflop: factorFlops(c) / 1e9, peakRss: fr.peakRss, baseRss: fr.baseRss,
          });
          notes.add(`${size}: factorisation ${fs(factorBest)} s, of which ${fs(fr.ortSeconds[iBest])} s inside onnxruntime GEMMs ` +
            `(${f3(factorExecutedGemmFlops(c) / 1e9)} GFLOP executed there, vs ${f3(factorFlops(c) / 1e9)} GFLOP useful)`);
          log(`  ${fs(factorBest)} s`);
        } catch (e) {
          rows.push({ ...base, what: 'factor', pattern: '—', error: (e as Error).message });
        }
      }

      for (const pattern of opts.patterns) {
        for (const method of opts.methods) {
          log(`[${size}] ${method} ${patternName(pattern)}...`);
          try {
            const pr = await runChild<PruneResultMsg>(['--child', 'prune', ...sizeArgs, '--method', method, '--pattern-json', JSON.stringify(pattern)]);
            const secs = pr.runs.map((x) => x.seconds);
            const b = pr.runs[secs.indexOf(min(secs))];
            const isSolver = METHODS[method].needs === 'hessian';
            const f = pr.flops;
            rows.push({
              ...base, what: method, pattern: patternName(pattern), best: b.seconds, median: median(secs),
              factor: isSolver ? factorBest : undefined,
              lazy: isSolver ? b.ortLazy : undefined,
              rest: isSolver && factorBest !== undefined ? b.seconds - factorBest - b.ortLazy : undefined,
              gflop: f ? (f.factor + f.lazy + f.inBlock) / 1e9 : undefined,
              refGflop: f ? referenceFlops(f, c) / 1e9 : undefined,
              peakRss: pr.peakRss, baseRss: pr.baseRss, relLoss: b.relLoss,
            });
            if (f) notes.add(`${size} ${method} ${patternName(pattern)}: GFLOP = ${f3(f.factor / 1e9)} factor + ${f3(f.lazy / 1e9)} update GEMMs + ${f3(f.inBlock / 1e9)} ${method === 'apt' ? 'per-row solves' : 'in-block sweep'}`);
            for (const n of pr.notes) notes.add(`${size} ${method}: ${n}`);
            log(`  ${fs(b.seconds)} s`);
          } catch (e) {
            rows.push({ ...base, what: method, pattern: patternName(pattern), error: (e as Error).message });
            log(`  failed: ${(e as Error).message}`);
          }
        }
      }
    } finally {
      process.off('SIGINT', onInterrupt);
      rmSync(dir, { recursive: true, force: true });
    }
  }

  const engine2 = new Engine({ device: opts.device, threads: opts.threads });
  log('measuring the GEMM rate again...');
  const rateEnd = await gemmRate(engine2, GEMM_N);
  await engine2.release();
  const rate = Math.max(rateStart, rateEnd); // GFLOP/s
  const load1 = loadavg();

  // ----- report
  const out: string[] = [];
  const p = (s = '') => out.push(s);
  p('## Solvers (`npm run bench:solvers`)');
  p();
  p('Each method prunes one linear layer; each job (the factorisation alone, then each method) runs in its own child process ' +
    'after a warm-up on a 512×512 layer, so its peak RSS is its own. Flops are useful flops (a multiply-add counts 2), the ' +
    'per-block terms from the mask the method returned.');
  p();
  p(`Command: \`${command}\``);
  p();
  p(`- ${new Date().toISOString()}, Node ${process.version}, onnxruntime-node ${ortVersion()}, device ${device}, ` +
    `intra-op threads ${opts.threads || 'default (one per core)'}, ${cpus().length}× ${cpus()[0]?.model.trim() ?? '?'}`);
  p(`- load average (1 min) at start ${load0[0].toFixed(2)}, at end ${load1[0].toFixed(2)}`);
  p(`- fp32 GEMM rate (n=${GEMM_N} MatMul through the same Engine, best of 3): ${rateStart.toFixed(1)} GFLOP/s at start, ` +
    `${rateEnd.toFixed(1)} at end; flop-bound times use ${rate.toFixed(1)}`);
  p(`- block size ${opts.block}, dampening 0.01, best of ${opts.repeat} (median in parentheses); W ~ N(0, 1/cols), H from synthetic correlated activations (${gen.join('; ')})`);
  p();
  p('| size (rows×cols) | method | pattern | seconds | factor s | update GEMM s | rest s | GFLOP | GFLOP/s | × flop-bound | × ref. flop-bound | peak RSS MB | ×(W+H) | net ×(W+H) | rel. loss |');
  p('|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const x of rows) {
    if (x.error) {
      p(`| ${x.size} | ${x.what} | ${x.pattern} | failed: ${x.error.split('\n')[0].replace(/\|/g, '/')} ||||||||||||`);
      continue;
    }
    const wh = 4 * (x.rows * x.cols + x.cols * x.cols);
    const achieved = x.gflop !== undefined && x.best ? x.gflop / x.best : undefined;
    const bound = x.gflop !== undefined && x.best ? x.best / (x.gflop / rate) : undefined;
    const refBound = x.refGflop !== undefined && x.best ? x.best / (x.refGflop / rate) : undefined;
    const secs = x.median !== undefined && opts.repeat > 1 ? `${fs(x.best)} (${fs(x.median)})` : fs(x.best);
    p(`| ${x.size} | ${x.what} | ${x.pattern} | ${secs} | ${fs(x.factor)} | ${fs(x.lazy)} | ${fs(x.rest)} | ${f3(x.gflop)} | ${f3(achieved)} | ${f3(bound)} | ${f3(refBound)} | ` +
      `${fx(x.peakRss !== undefined ? x.peakRss / MB : undefined, 0)} | ${fx(x.peakRss !== undefined ? x.peakRss / wh : undefined, 1)} | ` +
      `${fx(x.peakRss !== undefined && x.baseRss !== undefined ? (x.peakRss - x.baseRss) / wh : undefined, 1)} | ${x.relLoss !== undefined ? x.relLoss.toExponential(3) : '—'} |`);
  }
  p();
  p('Columns: *seconds* = `pruneLayer` result.seconds (the factor row: `dampedCholeskyFactor` alone, the one Cholesky the ' +
    'sweep needs); *factor s* = that separately timed factorisation; *update GEMM s* = time inside the sweep\'s onnxruntime ' +
    'update products (per block `Dᵀ = (Gᵀ·R[:i1, b]ᵀ)·Fᵀ[:i1]` with the block\'s weights `W[:, b] + D`, and `Fᵀ_b = Gᵀ·Eᵀ − Dᵀ`); ' +
    '*rest s* = seconds − factor − update GEMMs (JavaScript: ' +
    'masks, in-block sweep / per-row solves, copies; for the factor row: the part of the factorisation outside onnxruntime); ' +
    '*GFLOP* = useful flops of this implementation; *× flop-bound* = seconds / (GFLOP / GEMM rate); *× ref. flop-bound* = ' +
    'the same with the reference algorithm\'s flops (its 4/3·c³ chol → cholesky_inverse → chol in place of our c³/3 Cholesky, ' +
    'algorithms.md §7.4); *×(W+H)* = peak RSS of the child process / bytes of W and H (fp32); *net* subtracts the child\'s RSS ' +
    'before loading W and H (Node + onnxruntime). The memory target is judged on the first ratio, for layers with W+H ≥ 128 MiB.');
  p();

  // ----- targets
  p('Targets, each with the one definition it was set with: *within 2× of flop-bound* = the × flop-bound column (this ' +
    'implementation\'s useful flops at the GEMM rate measured in the same run) for both SparseGPT and APT at 4096×4096, ' +
    'unstructured; *APT ≤ 1.5× SparseGPT* = the ratio of their best seconds at every size run, unstructured; *peak memory* = ' +
    'the ×(W+H) column, for every job on a layer with W+H ≥ 128 MiB.');
  p();
  p('| target | measured | met? |');
  p('|---|---|---|');
  const unstructured = patternName(opts.patterns[0]);
  const find = (size: string, what: string) => rows.find((x) => x.size === size && x.what === what && x.pattern === unstructured && !x.error);
  const boundOf = (x?: Row) => (x?.best && x.gflop !== undefined ? x.best / (x.gflop / rate) : undefined);
  const refBoundOf = (x?: Row) => (x?.best && x.refGflop !== undefined ? x.best / (x.refGflop / rate) : undefined);
  {
    const tgt = '4096x4096';
    const cells = (['sparsegpt', 'apt'] as const).map((m) => ({ m, b: boundOf(find(tgt, m)), rb: refBoundOf(find(tgt, m)) }));
    if (cells.every((c) => c.b !== undefined && c.rb !== undefined)) {
      // Judged on the definition the target was set with (× flop-bound, this implementation's useful flops); the
      // reference algorithm's count is shown beside it, for information only.
      p(`| SparseGPT and APT within 2× of flop-bound at 4096×4096 | ${cells.map((c) => `${c.m} ${fx(c.b)}×`).join(', ')} ` +
        `(on the reference algorithm's flops, for information: ${cells.map((c) => `${c.m} ${fx(c.rb)}×`).join(', ')}) | ${cells.every((c) => c.b! <= 2) ? 'yes' : 'no'} |`);
    } else {
      const sizes = [...new Set(rows.filter((x) => boundOf(x) !== undefined && x.what !== 'factor').map((x) => x.size))];
      const info = sizes.map((s) => `${s}: ${(['sparsegpt', 'apt'] as const).map((m) => `${m} ${f3(boundOf(find(s, m)))}× (reference flops ${f3(refBoundOf(find(s, m)))}×)`).join(', ')}`).join('; ');
      p(`| SparseGPT and APT within 2× of flop-bound at 4096×4096 | 4096x4096 not run${info ? ` (for information, ${info})` : ''} | not evaluated |`);
    }
  }
  {
    const ratios = opts.sizes.map(([r, c]) => `${r}x${c}`).map((s) => {
      const a = find(s, 'apt');
      const g = find(s, 'sparsegpt');
      return { s, q: a?.best && g?.best ? a.best / g.best : undefined };
    }).filter((x) => x.q !== undefined);
    p(`| APT ≤ 1.5× SparseGPT's time | ${ratios.length ? ratios.map((x) => `${x.s}: ${fx(x.q)}×`).join(', ') : 'apt and sparsegpt not both run'} | ` +
      `${ratios.length ? (ratios.every((x) => x.q! <= 1.5) ? 'yes' : `no (${ratios.filter((x) => x.q! > 1.5).map((x) => x.s).join(', ')})`) : 'not evaluated'} |`);
  }
  {
    // Judged on layers of at least 128 MiB of W and H (a 4096×4096 layer and up): below that, the ~100-200 MB that
    // Node, onnxruntime and any worker threads take whatever the layer dominates the ratio.
    const mem = rows.filter((x) => x.peakRss !== undefined && x.baseRss !== undefined).map((x) => {
      const wh = 4 * (x.rows * x.cols + x.cols * x.cols);
      return { x, wh, raw: x.peakRss! / wh, net: (x.peakRss! - x.baseRss!) / wh };
    });
    const big = mem.filter((m) => m.wh >= 128 * MB);
    const worst = (ms: typeof mem, k: 'raw' | 'net') => ms.reduce((a, b) => (b[k] > a[k] ? b : a));
    const desc = (ms: typeof mem) => {
      const wr = worst(ms, 'raw');
      const wn = worst(ms, 'net');
      return `worst ${f3(wr.raw)}× (${wr.x.size} ${wr.x.what}); net of the runtime baseline ${f3(wn.net)}× (${wn.x.size} ${wn.x.what})`;
    };
    if (big.length) {
      const fails = big.filter((m) => m.raw > 4);
      p(`| peak memory ≤ 4× the bytes of W and H | ${desc(big)} | ${fails.length ? `no (${[...new Set(fails.map((m) => `${m.x.size} ${m.x.what}`))].join(', ')})` : 'yes'} |`);
    } else if (mem.length) {
      p(`| peak memory ≤ 4× the bytes of W and H | no layer with W+H ≥ 128 MiB run (for information, ${desc(mem)}) | not evaluated |`);
    }
  }
  p();
  if (notes.size) {
    p('Notes:');
    for (const n of notes) p(`- ${n}`);
    p();
  }
  process.stdout.write(out.join('\n'));
}

function ortVersion(): string {
  try {
    return (JSON.parse(readFileSync(require.resolve('onnxruntime-node/package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '?';
  }
}

async function main(): Promise<number> {
  const rawArgs = process.argv.slice(2);
  const { values } = parseArgv(rawArgs);
  if (values.child) {
    // Reply over the IPC channel, then exit: the open channel (and any worker threads a method started)
    // would keep the child alive.
    const reply = (msg: unknown) => new Promise<void>((resolve) => (process.send ? process.send(msg, () => resolve()) : resolve()));
    let code = 0;
    try {
      await reply({ ok: true, value: await childMain(values.child, values) });
    } catch (e) {
      await reply({ ok: false, error: (e as Error).message });
      code = 1;
    }
    process.exit(code);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const options = parseOptions(values);
  await parentMain(options, rawArgs);
  const windows = Number(values['block-windows']);
  if (!Number.isInteger(windows) || windows < 0) throw new Error(`--block-windows: '${values['block-windows']}' is not an integer >= 0`);
  if (windows > 0) return wholeBlock(options, windows);
  return 0;
}

/** The whole-block table: bench/scale.ts on one 7B-shaped block, its markdown appended to this script's. */
function wholeBlock(options: Options, windows: number): number {
  const methods = options.methods.filter((m) => m === 'sparsegpt' || m === 'apt');
  if (methods.length === 0) return 0;
  process.stdout.write(`\n### One block: the layers, the loss around them, the propagation\n\n` +
    `*solves* is the seven layers' own seconds, *pruning* adds each layer's loss, checks and bookkeeping, *output forward* is the propagation ` +
    `(bench/scale.ts; the same columns as in "One Llama block at the papers' protocol").\n\n`);
  const args = [...process.execArgv, path.join(__dirname, 'scale.ts'), '--windows', String(windows), '--seqlen', '512', '--methods', methods.join(','), '--threads', String(options.threads)];
  return spawnSync(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] }).status ?? 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`${(e as Error).message}\n\n${USAGE}`);
    process.exitCode = 2;
  },
);
