// Reads byte ranges of a file through one file descriptor, one bounded `readSync` at a time.
// Checkpoint files (model.onnx, external data) go through here and never through readFileSync: Node refuses
// files over 2 GiB in one piece, and a single read(2) call moves at most ~2 GiB. Offsets are plain numbers
// (exact up to 2^53), so ranges past 2 GiB and 4 GiB are addressed directly.

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { CheckpointError, errnoCode } from './errors';

/** Default bytes per read call: large enough to amortize syscalls, small enough to bound a reused buffer. */
export const DEFAULT_CHUNK_SIZE = 64 * 1024 * 1024;
/** Largest single read we ask of the OS (Linux caps one read at 0x7ffff000 bytes). */
export const MAX_CHUNK_SIZE = 1024 * 1024 * 1024;

export interface RangeReaderStats {
  /** readSync calls made. */
  reads: number;
  /** Bytes read. */
  bytes: number;
}

export class RangeReader {
  readonly stats: RangeReaderStats = { reads: 0, bytes: 0 };
  readonly chunkSize: number;
  private fd: number | undefined;

  private constructor(readonly file: string, fd: number, readonly size: number, chunkSize: number) {
    this.fd = fd;
    this.chunkSize = chunkSize;
  }

  /** Opens `file` for reading (fs errors such as ENOENT propagate unchanged: the caller knows the file's role). */
  static open(file: string, chunkSize = DEFAULT_CHUNK_SIZE): RangeReader {
    if (!Number.isInteger(chunkSize) || chunkSize < 1 || chunkSize > MAX_CHUNK_SIZE) {
      throw new RangeError(`chunk size must be an integer in [1, ${MAX_CHUNK_SIZE}], got ${chunkSize}`);
    }
    const fd = openSync(file, 'r');
    try {
      const st = fstatSync(fd);
      if (st.isDirectory()) throw Object.assign(new Error(`EISDIR: ${file} is a folder`), { code: 'EISDIR' });
      return new RangeReader(file, fd, st.size, chunkSize);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  private handle(): number {
    if (this.fd === undefined) throw new Error(`${this.file}: reader already closed`);
    return this.fd;
  }

  private checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new CheckpointError(
        'external-range',
        `byte range [${offset}, ${offset + length}) is outside ${this.file} (${this.size} bytes)`,
        this.file,
      );
    }
  }

  /** Fills `into` (or a new array) with bytes [offset, offset + length), `chunkSize` bytes per read call. */
  read(offset: number, length: number, into?: Uint8Array): Uint8Array {
    this.checkRange(offset, length);
    const out = into ? into.subarray(0, length) : new Uint8Array(length);
    if (out.length < length) throw new RangeError(`destination holds ${out.length} bytes, ${length} requested`);
    let done = 0;
    while (done < length) {
      const want = Math.min(this.chunkSize, length - done);
      done += this.readSome(out, done, want, offset + done);
    }
    return out;
  }

  /**
   * Yields bytes [offset, offset + length) in consecutive chunks of at most `chunkSize` bytes. The chunks are views
   * of ONE reused buffer: consume (or copy) each before asking for the next.
   */
  *chunks(offset: number, length: number): Generator<Uint8Array, void, undefined> {
    this.checkRange(offset, length);
    if (length === 0) return;
    const buf = new Uint8Array(Math.min(this.chunkSize, length));
    let done = 0;
    while (done < length) {
      const want = Math.min(buf.length, length - done);
      let got = 0;
      while (got < want) got += this.readSome(buf, got, want - got, offset + done + got);
      done += want;
      yield buf.subarray(0, want);
    }
  }

  /** The whole file, read by ranges (works for files over 2 GiB, memory permitting). */
  readAll(): Uint8Array {
    return this.read(0, this.size);
  }

  private readSome(buf: Uint8Array, at: number, want: number, position: number): number {
    let n: number;
    try {
      n = readSync(this.handle(), buf, at, want, position);
    } catch (e) {
      throw new CheckpointError('external-range', `cannot read ${this.file} at byte ${position}: ${(e as Error).message}`, this.file, { cause: e });
    }
    this.stats.reads++;
    this.stats.bytes += n;
    if (n === 0) {
      // The file shrank since it was opened.
      throw new CheckpointError('external-range', `unexpected end of ${this.file} at byte ${position} (it changed while being read?)`, this.file);
    }
    return n;
  }

  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    try {
      closeSync(fd);
    } catch (e) {
      if (errnoCode(e) !== 'EBADF') throw e;
    }
  }
}

/** Runs `fn` with a reader on `file` and closes it afterwards. */
export function withRangeReader<T>(file: string, chunkSize: number | undefined, fn: (r: RangeReader) => T): T {
  const r = RangeReader.open(file, chunkSize);
  try {
    return fn(r);
  } finally {
    r.close();
  }
}
