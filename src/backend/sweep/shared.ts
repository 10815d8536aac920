// What a sweep's points share, computed once and kept in <sweep>/shared/ so that Slurm tasks on other machines find it
// too: the calibration and evaluation text as token ids (a `.json` id file every point reads instead of the text:
// the same ids, no tokenizing per point), and the dense perplexity (measured by the first point that evaluates, read
// by the others; concurrent Slurm tasks that start before it exists measure it themselves), and the first block's
// dense calibration sums (shared/calibration-<hash>.bin, one per calibration pass of that block, same rule).

import { createHash, randomUUID } from 'node:crypto';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { ResolvedConfig } from '../../protocol/config';
import { EventBody } from '../../protocol/events';
import { loadTokenizer, readTokens, TextTokenizer } from '../data/tokens';
import { SavedSums } from '../pipeline/calibrationSums';
import { CalibrationStore, DenseStore } from '../pipeline/run';
import { PlannedPoint } from './expand';

export function sharedDir(sweepDir: string): string {
  return path.join(sweepDir, 'shared');
}

/** Writes `text` to `file` under a temporary name and renames it into place (readers never see half a file). */
export function writeFileAtomically(file: string, text: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = temporaryName(file);
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

/** Unique across the machines of a cluster sharing the folder (a process id alone is not). */
function temporaryName(file: string): string {
  return `${file}.tmp-${randomUUID()}`;
}

/**
 * Every text data file of the points tokenized once into shared/<name>-<hash>.ids.json (the hash covers the text and
 * the tokenizer, so a changed file is tokenized again), and the points' configs pointing to those files. Token-id
 * files (.json) are left as they are. `warn` gets the tokenizer's warnings (bytes that are not UTF-8).
 */
export function shareTokens(points: PlannedPoint[], sweepDir: string, warn: (message: string) => void): PlannedPoint[] {
  const idFiles = new Map<string, string>();
  const tokenizers = new Map<string, TextTokenizer>();
  const idsOf = (file: string, tokenizer: string): string => {
    const key = `${file}\n${tokenizer}`;
    let out = idFiles.get(key);
    if (!out) {
      out = path.join(sharedDir(sweepDir), `${path.basename(file).replace(/[^A-Za-z0-9._-]+/g, '_')}-${contentHash([file, tokenizer])}.ids.json`);
      if (!existsSync(out)) {
        if (!tokenizers.has(tokenizer)) tokenizers.set(tokenizer, loadTokenizer(tokenizer));
        writeFileAtomically(out, JSON.stringify(Array.from(readTokens(file, tokenizers.get(tokenizer), (m) => warn(`${file}: ${m}`)))));
      }
      idFiles.set(key, out);
    }
    return out;
  };
  const shared = (d: { path: string } | null | false, tokenizer: string) => (d && !/\.json$/i.test(d.path) ? { ...d, path: idsOf(d.path, tokenizer) } : d);
  return points.map((p) => {
    const c = p.config;
    const config: ResolvedConfig = { ...c, calibration: shared(c.calibration, c.tokenizer) as ResolvedConfig['calibration'], evaluation: shared(c.evaluation, c.tokenizer) as ResolvedConfig['evaluation'] };
    return { ...p, config };
  });
}

function contentHash(files: string[]): string {
  const h = createHash('sha256');
  for (const f of files) h.update(readFileSync(f)).update('\0');
  return h.digest('hex').slice(0, 12);
}

/** The dense perplexities of a sweep, in shared/dense-perplexity.json (read again at every get: another task may have added one). */
export function fileDenseStore(sweepDir: string): DenseStore {
  const file = path.join(sharedDir(sweepDir), 'dense-perplexity.json');
  const read = (): Record<string, EventBody<'evaluation.finished'>> => {
    try {
      return JSON.parse(readFileSync(file, 'utf8')) as Record<string, EventBody<'evaluation.finished'>>;
    } catch {
      return {}; // none yet (or unreadable: measured again, and rewritten)
    }
  };
  return {
    get: (key) => read()[key],
    put: (key, evaluation) => writeFileAtomically(file, JSON.stringify({ ...read(), [key]: evaluation }, null, 2) + '\n'),
  };
}

const SUMS_FORMAT = 'prunekit-calibration-sums/1';

/** Where each statistic's arrays lie in a sums file's data (byte offsets from the data's start). */
interface SumsHeader {
  format: string;
  key: string;
  /** sha256 of the arrays (as `stats` orders them, each padded to 8 bytes) and then of `stats` as JSON. */
  sha256: string;
  bytes: number;
  stats: (Omit<SavedSums, 'xtx' | 'colSq'> & { key: string; xtx: number; colSq: number })[];
}

/**
 * The first block's calibration sums of a sweep, one file per pass: a uint32 header length, the JSON header, then
 * each statistic's XᵀX (float32) and Σx² (float64, as CalibrationSums keeps it: bit-identical results), 8-byte aligned.
 * Read and written array by array (no copy of the whole file in memory); a file that fails any check (the key, the
 * sizes, a sha256 of the arrays and counts) is not used.
 */
export function fileCalibrationStore(sweepDir: string): CalibrationStore {
  const fileOf = (key: string) => path.join(sharedDir(sweepDir), `calibration-${createHash('sha256').update(key).digest('hex').slice(0, 16)}.bin`);
  return {
    get: (key, warn) => {
      const file = fileOf(key);
      if (!existsSync(file)) return undefined;
      try {
        return readSums(file, key);
      } catch (e) {
        warn(`${file}: not used (${(e as Error).message}); the first block is calibrated again`, file);
        return undefined;
      }
    },
    put: (key, sums, warn) => {
      const file = fileOf(key);
      try {
        writeSums(file, key, sums);
      } catch (e) {
        warn(`${file}: not written (${(e as Error).message}); the other points calibrate the first block themselves`, file);
      }
    },
  };
}

const align8 = (n: number) => Math.ceil(n / 8) * 8;
const bytesOf = (a: Float32Array | Float64Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const padding = (a: Float32Array | Float64Array) => new Uint8Array(align8(a.byteLength) - a.byteLength);

function writeSums(file: string, key: string, sums: Map<string, SavedSums>): void {
  const arrays: (Float32Array | Float64Array)[] = [];
  const stats: SumsHeader['stats'] = [];
  const hash = createHash('sha256');
  let at = 0;
  const place = (a: Float32Array | Float64Array) => {
    const offset = at;
    arrays.push(a);
    hash.update(bytesOf(a)).update(padding(a));
    at += align8(a.byteLength);
    return offset;
  };
  for (const [k, { xtx, colSq, ...rest }] of sums) stats.push({ key: k, ...rest, xtx: place(xtx), colSq: place(colSq) });
  hash.update(JSON.stringify(stats));
  const header = Buffer.from(JSON.stringify({ format: SUMS_FORMAT, key, sha256: hash.digest('hex'), bytes: at, stats } satisfies SumsHeader));
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = temporaryName(file);
  const fd = openSync(tmp, 'w');
  let written = false;
  try {
    const lead = Buffer.alloc(align8(4 + header.length));
    lead.writeUInt32LE(header.length, 0);
    header.copy(lead, 4);
    writeSync(fd, lead);
    for (const a of arrays) {
      writeSync(fd, bytesOf(a));
      writeSync(fd, padding(a));
    }
    written = true;
  } finally {
    closeSync(fd);
    if (!written) rmSync(tmp, { force: true });
  }
  renameSync(tmp, file);
}

function readSums(file: string, key: string): Map<string, SavedSums> {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const lead = Buffer.alloc(4);
    readAt(fd, lead, 0);
    const length = lead.readUInt32LE(0);
    if (length > Math.min(size, 1 << 24)) throw new Error('bad header length');
    const raw = Buffer.alloc(length);
    readAt(fd, raw, 4);
    const h = JSON.parse(raw.toString('utf8')) as SumsHeader;
    if (h.format !== SUMS_FORMAT) throw new Error(`format ${JSON.stringify(h.format)}, expected ${SUMS_FORMAT}`);
    if (h.key !== key) throw new Error('made for other settings');
    const start = align8(4 + length);
    if (size !== start + h.bytes) throw new Error(`${size} bytes, the header says ${start + h.bytes}`);
    const hash = createHash('sha256');
    const arrayAt = <T extends Float32Array | Float64Array>(a: T, offset: number): T => {
      if (!Number.isSafeInteger(offset) || offset < 0 || offset + a.byteLength > h.bytes) throw new Error('an array beyond the data');
      readAt(fd, bytesOf(a), start + offset);
      hash.update(bytesOf(a)).update(padding(a));
      return a;
    };
    const out = new Map<string, SavedSums>();
    for (const { key: k, xtx, colSq, ...rest } of h.stats) {
      const n = rest.groups * rest.cols;
      if (!Number.isSafeInteger(n) || n <= 0 || n * (rest.cols * 4 + 8) > h.bytes) throw new Error(`statistic ${k}: ${rest.groups} × ${rest.cols} columns do not fit the data`);
      out.set(k, { ...rest, xtx: arrayAt(new Float32Array(n * rest.cols), xtx), colSq: arrayAt(new Float64Array(n), colSq) });
    }
    if (hash.update(JSON.stringify(h.stats)).digest('hex') !== h.sha256) throw new Error('checksum mismatch');
    return out;
  } finally {
    closeSync(fd);
  }
}

/** Reads view.length bytes at `position` (in chunks: readSync reads at most 2 GiB); a short file is an error. */
function readAt(fd: number, view: Uint8Array, position: number): void {
  for (let done = 0; done < view.length;) {
    const n = readSync(fd, view, done, Math.min(view.length - done, 1 << 30), position + done);
    if (n === 0) throw new Error('truncated');
    done += n;
  }
}
