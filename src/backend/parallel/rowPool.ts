// Why hand-written, not piscina: piscina starts workers from a module file, while these kernels ship as source text,
// so the same code runs from the esbuild bundle and from tsx with no extra worker entry point; the pool is 100 lines.
// Row-parallel JavaScript kernels on worker threads.
//
// Some per-row work has no onnxruntime form (APT's small SPD solves: ONNX has no Cholesky). Rows are
// independent, so a pool of workers splits them. A kernel is a self-contained function — no imports, no
// free variables — `(start, end, args, part) => void` (part: which of the run's row ranges, 0 … size−1, so a
// kernel can keep per-range results such as counts apart without atomics); it is shipped to the workers as
// source text, which works the same from the esbuild bundle and from TypeScript run by tsx. Arrays a kernel
// writes must be views of SharedArrayBuffers: the workers write their rows' results in place. Other arrays in
// `args` are copied to each worker, so large inputs should be shared too.

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

export type RowKernel<A> = (start: number, end: number, args: A, part: number) => void;

const WORKER_SOURCE = (kernels: Record<string, string>) => `
const { parentPort } = require('node:worker_threads');
// esbuild (tsx, keepNames) wraps nested functions in __name(fn, "name"); give kernels a no-op one.
var __name = (f) => f;
const kernels = { ${Object.entries(kernels).map(([k, src]) => `${JSON.stringify(k)}: (${src})`).join(',\n')} };
parentPort.on('message', (m) => {
  try { kernels[m.name](m.start, m.end, m.args, m.part); parentPort.postMessage({ id: m.id }); }
  catch (e) { parentPort.postMessage({ id: m.id, error: String(e && e.stack || e) }); }
});`;

interface Pending {
  resolve: () => void;
  reject: (e: Error) => void;
}

export class RowPool {
  private workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  /** Runs in flight: the workers are ref'd while there is any (one run ending must not unref another's workers). */
  private active = 0;

  constructor(private readonly kernels: Record<string, RowKernel<never>>, readonly size = availableParallelism()) {}

  private start(): void {
    if (this.workers.length) return;
    const source = WORKER_SOURCE(Object.fromEntries(Object.entries(this.kernels).map(([k, f]) => [k, f.toString()])));
    for (let i = 0; i < this.size; i++) {
      const w = new Worker(source, { eval: true });
      w.on('message', (m: { id: number; error?: string }) => {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (m.error) p?.reject(new Error(m.error));
        else p?.resolve();
      });
      w.on('error', (e) => {
        for (const p of this.pending.values()) p.reject(e);
        this.pending.clear();
        this.workers = [];
      });
      w.unref(); // after the listeners (adding one re-refs): an idle pool never keeps the process alive
      this.workers.push(w);
    }
  }

  /** Runs `kernel` over rows [0, rows), split into one contiguous range per worker (part i = worker i). Small
   *  jobs run inline, as part 0. */
  async run<A>(name: string, rows: number, args: A, inlineBelow = 64): Promise<void> {
    const kernel = this.kernels[name] as RowKernel<A>;
    if (!kernel) throw new Error(`unknown row kernel ${name}`);
    if (this.size <= 1 || rows < inlineBelow) {
      kernel(0, rows, args, 0);
      return;
    }
    this.start();
    const chunk = Math.ceil(rows / this.workers.length);
    const jobs: Promise<void>[] = [];
    // Busy workers keep the process alive, so a pending job is never abandoned at exit.
    if (this.active++ === 0) for (const w of this.workers) w.ref();
    this.workers.forEach((w, i) => {
      const start = i * chunk;
      const end = Math.min(rows, start + chunk);
      if (start >= end) return;
      const id = this.nextId++;
      jobs.push(new Promise<void>((resolve, reject) => this.pending.set(id, { resolve, reject })));
      w.postMessage({ id, name, start, end, args, part: i });
    });
    try {
      await Promise.all(jobs);
    } finally {
      if (--this.active === 0) for (const w of this.workers) w.unref();
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers = [];
  }
}

/** A float64 array in shared memory. */
export function sharedF64(n: number): Float64Array {
  return new Float64Array(new SharedArrayBuffer(n * 8));
}

export function sharedU8(n: number): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(n));
}
