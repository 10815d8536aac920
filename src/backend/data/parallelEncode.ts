// Why: a large text's BPE is seconds of one core before a run can start, and it splits exactly where the fast
// encoder's own proof says pieces never join (fastEncode.ts, FastEncoder.chunks), so the cores can share it.
//
// The main thread runs the cheap serial stages (added tokens, normalizer, pre-tokenizer: FastEncoder.plan), cuts
// the result into chunks and claims them one at a time from a shared counter, as do a few worker threads that each
// build the tokenizer once. readTokens stays synchronous: the main thread waits with Atomics.wait and takes the
// workers' ids with receiveMessageOnPort, as Int32Array buffers transferred, not copied; then concatenates in order.
// A chunk a worker failed on (or never answered) is encoded again inline, so an error is the inline path's own.

import { Tokenizer } from '@huggingface/tokenizers';
import { createRequire } from 'node:module';
import { availableParallelism, loadavg } from 'node:os';
import { isMainThread, MessageChannel, MessagePort, receiveMessageOnPort, Worker, workerData } from 'node:worker_threads';
import { concatIds, FastEncoder, fastEncoder, Step } from './fastEncode';

/** Texts shorter than this (UTF-16 code units) are encoded inline. A worker helps ~0.2 s after it is made (~0.1 s
 *  to load dist/backend.js and build the tokenizer, ~0.1 s of misses while its own memo of pieces fills), then takes
 *  half of the model's ~0.085 s a MB: on two threads it gains 0.0425 s a MB less 0.1 s, nothing below ~2.5 MB; from
 *  4 MB the gain is worth the CPU the worker adds (docs/BENCHMARKS.md, "Tokenization"). */
export const PARALLEL_MIN_CHARS = 4_000_000;
/** Threads (the main one included) at most: beyond a few, the serial plan and the workers' starts dominate. */
const MAX_THREADS = 4;
/** No chunk answered for this long: the missing ones are encoded inline (a worker that died without a word; one
 *  that could not build the tokenizer says so at once). */
const STALL_MS = 10_000;

/** A worker loads this module: the bundle it was built into (dist/backend.js, whose CLI starts only on the main
 *  thread), or under tsx (tests, benches) the .ts file, through tsx's require hook (Node 20's workers do not
 *  inherit --import tsx). */
const workerSource = () => `${__filename.endsWith('.ts') ? `require(${JSON.stringify(createRequire(__filename).resolve('tsx/cjs/api'))}).register();` : ''} require(${JSON.stringify(__filename)});`;

/** What a worker needs to build the same tokenizer: the tokenizer.json text and tokenizer_config.json. */
export interface TokenizerSource {
  json: string;
  config: unknown;
}

interface Job {
  source: TokenizerSource;
  chunks: Step[][];
  /** [next chunk to claim, answers and finished workers (what the main thread waits on), finished workers]. */
  sync: SharedArrayBuffer;
  port: MessagePort;
}

interface Answer {
  index: number;
  ids?: Int32Array;
  unknown?: boolean;
  error?: string;
}

/** One thread a core, at most MAX_THREADS. */
export function coreThreads(): number {
  return Math.min(MAX_THREADS, availableParallelism());
}

/** Fewer idle cores than this and the text stays inline: on 2 idle cores one worker did not pay (10.6 MB: 1.56 s
 *  against 1.54 s inline, and 0.55 s more CPU; docs/BENCHMARKS.md, "Tokenization"). */
const MIN_PARALLEL = 3;

/** One thread an idle core (the cores less the last minute's load average: on a busy machine a worker only slows
 *  the run), at most MAX_THREADS, and 1 (inline) below MIN_PARALLEL; PRUNEKIT_TOKENIZE_THREADS sets it (1: always
 *  inline). */
export function defaultThreads(env: NodeJS.ProcessEnv = process.env, load = loadavg()[0], cores = availableParallelism()): number {
  const set = Number(env.PRUNEKIT_TOKENIZE_THREADS);
  if (Number.isInteger(set) && set >= 1) return set;
  const idle = Math.min(MAX_THREADS, cores) - Math.round(load);
  return idle >= MIN_PARALLEL ? idle : 1;
}

/** encoder.encode(text), on `threads` threads (the main one included) when the text is large enough to pay. */
export function encodeLarge(encoder: FastEncoder, source: TokenizerSource, text: string, threads = defaultThreads()): Int32Array {
  return threads < 2 || text.length < PARALLEL_MIN_CHARS ? encoder.encode(text) : encodeParallel(encoder, source, text, { threads });
}

export interface ParallelOptions {
  /** Threads, the main one included (default: defaultThreads()). */
  threads?: number;
  /** Code units a chunk (default: 8 chunks a thread, at least 64 Ki). */
  chunkSize?: number;
  /** false: the main thread only waits, the workers encode every chunk (tests check the workers' ids so). */
  mainEncodes?: boolean;
  /** Filled in: chunks in all, and how many the workers encoded. */
  report?: { chunks: number; byWorkers: number };
}

/** The ids of encoder.encode(text), its chunks shared by the main thread and worker threads; with one thread the
 *  main thread encodes them alone (tests use it to check the cuts). */
export function encodeParallel(encoder: FastEncoder, source: TokenizerSource, text: string, options: ParallelOptions = {}): Int32Array {
  const threads = options.threads ?? defaultThreads();
  const chunks = encoder.chunks(encoder.plan(text), options.chunkSize ?? Math.max(1 << 16, Math.ceil(text.length / (8 * threads))));
  const sync = new Int32Array(new SharedArrayBuffer(12));
  const ports: MessagePort[] = [];
  const workers: Worker[] = [];
  for (let w = 1; w < Math.min(threads, chunks.length); w++) {
    const { port1, port2 } = new MessageChannel();
    const job: Job = { source, chunks, sync: sync.buffer as SharedArrayBuffer, port: port2 };
    const worker = new Worker(workerSource(), { eval: true, workerData: { prunekitEncode: job }, transferList: [port2] });
    worker.on('error', () => undefined); // its chunks are encoded inline instead
    worker.unref();
    workers.push(worker);
    ports.push(port1);
  }
  const results: (Int32Array | undefined)[] = new Array(chunks.length);
  let unknown = false;
  let answered = 0;
  let byWorkers = 0;
  const take = (a: Answer, fromWorker: boolean) => {
    answered++;
    if (a.ids) results[a.index] = a.ids;
    if (a.ids && fromWorker) byWorkers++;
    unknown ||= a.unknown === true;
  };
  const drain = () => {
    for (const port of ports) for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) take(m.message as Answer, true);
  };
  try {
    for (let i = options.mainEncodes === false ? chunks.length : Atomics.add(sync, 0, 1); i < chunks.length; i = Atomics.add(sync, 0, 1)) {
      take({ index: i, ...encoder.encodeSteps(chunks[i]) }, false);
      drain();
    }
    for (let last = Date.now(); answered < chunks.length; ) {
      const seen = Atomics.load(sync, 1);
      const finished = Atomics.load(sync, 2) === workers.length; // read first: their answers are all posted then
      const before = answered;
      drain();
      if (finished || Date.now() - last > STALL_MS) break;
      if (answered > before) last = Date.now();
      else Atomics.wait(sync, 1, seen, 100);
    }
  } finally {
    for (const w of workers) void w.terminate();
    for (const p of ports) p.close();
  }
  for (let i = 0; i < chunks.length; i++) {
    if (results[i]) continue;
    const r = encoder.encodeSteps(chunks[i]);
    results[i] = r.ids;
    unknown ||= r.unknown;
  }
  if (options.report) Object.assign(options.report, { chunks: chunks.length, byWorkers });
  if (unknown && encoder.fusesUnknown) return encoder.encode(text); // fuse_unk joins unknown tokens across chunks
  return concatIds(results as Int32Array[]);
}

/** A worker: builds the tokenizer, then claims and encodes chunks until none is left. A tokenizer it cannot build
 *  claims none: the main thread encodes them all. */
function work(job: Job): void {
  let encoder: FastEncoder | null = null;
  try {
    const json = JSON.parse(job.source.json) as Record<string, unknown>;
    encoder = fastEncoder(new Tokenizer(json as never, job.source.config as never), json);
  } catch {
    encoder = null;
  }
  const sync = new Int32Array(job.sync);
  for (let i = encoder ? Atomics.add(sync, 0, 1) : job.chunks.length; i < job.chunks.length; i = Atomics.add(sync, 0, 1)) {
    try {
      const r = (encoder as FastEncoder).encodeSteps(job.chunks[i]);
      job.port.postMessage({ index: i, ids: r.ids, unknown: r.unknown } satisfies Answer, [r.ids.buffer as ArrayBuffer]);
    } catch (e) {
      job.port.postMessage({ index: i, error: String(e) } satisfies Answer);
    }
    Atomics.add(sync, 1, 1);
    Atomics.notify(sync, 1);
  }
  Atomics.add(sync, 2, 1);
  Atomics.add(sync, 1, 1);
  Atomics.notify(sync, 1);
  job.port.close();
}

const job = isMainThread ? undefined : (workerData as { prunekitEncode?: Job } | null)?.prunekitEncode;
if (job) work(job);
