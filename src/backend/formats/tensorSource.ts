// Replacement tensors for the checkpoint writers. A replacement is either float32 values in memory or a
// TensorSource: bytes already in some element type, read only when the writer writes that tensor (the pipeline
// spills each pruned weight to a file as it is made, so a run never holds the whole model's pruned weights).
// Either way the writer stores the tensor in its own element type; bytes already in that type are written as
// they are (no decode, no re-rounding).

import { openSync, closeSync, rmSync, mkdirSync, write, writeSync } from 'node:fs';
import * as path from 'node:path';
import type { DataType } from '../onnx/proto';
import { byteLengthOf, bytesToFloat32, dataTypeName, float32ToBytes } from './dtype';
import { CheckpointError, errnoCode } from './errors';
import { withRangeReader } from './rangeReader';

export interface TensorSource {
  /** Element type of `bytes()`. */
  readonly dataType: DataType;
  readonly elements: number;
  /** The tensor's little-endian bytes in the stored layout (a fresh array, read now). */
  bytes(): Uint8Array;
}

export type Replacement = Float32Array | TensorSource;

export function replacementElements(r: Replacement): number {
  return r instanceof Float32Array ? r.length : r.elements;
}

/** The replacement's bytes in element type `t` (exact when the source is already in `t` or is float32 → FLOAT). */
export function replacementBytes(r: Replacement, t: DataType): Uint8Array {
  if (r instanceof Float32Array) return float32ToBytes(t, r);
  const bytes = r.bytes();
  return r.dataType === t ? bytes : float32ToBytes(t, bytesToFloat32(r.dataType, bytes));
}

/** Largest single write we ask of the OS (Linux caps one write at 0x7ffff000 bytes). */
const MAX_WRITE = 1 << 30;

/**
 * An append-only scratch file of tensors: `add` writes a tensor's bytes at the end and returns a TensorSource
 * that reads them back (one range read) when asked. The file is created by the first `add` (its folder too);
 * `remove` closes and deletes it: the owner calls it in a `finally`, and the CLI's hard-exit path deletes the
 * file by name (atomicFolder.ts removeTemporaries).
 */
export class SpillFile {
  private fd: number | undefined;
  private size = 0;
  private removed = false;
  /** addLater's writes, one after another; the first failure is kept in `failure`. */
  private writing: Promise<void> = Promise.resolve();
  private failure: CheckpointError | undefined;

  constructor(readonly file: string) {}

  /** Bytes written so far. */
  get bytes(): number {
    return this.size;
  }

  private handle(): number {
    if (this.removed) throw new Error(`${this.file}: spill file already removed`);
    if (this.fd === undefined) {
      try {
        mkdirSync(path.dirname(this.file), { recursive: true });
        rmSync(this.file, { force: true }); // a leftover of an earlier process with this id
        this.fd = openSync(this.file, 'wx');
      } catch (e) {
        throw spillError(e, this.file);
      }
    }
    return this.fd;
  }

  add(dataType: DataType, elements: number, bytes: Uint8Array): TensorSource {
    const { fd, offset, source } = this.reserve(dataType, elements, bytes.length);
    try {
      for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, Math.min(MAX_WRITE, bytes.length - done), offset + done);
    } catch (e) {
      throw spillError(e, this.file);
    }
    return source;
  }

  /**
   * add, with the write left to libuv's threads while the caller goes on (the pipeline: to the next layer's solve).
   * Writes land in order at their reserved offsets. `bytes` must not change, and the source must not be read, until
   * `flushed()` has resolved; a failed write fails the next add and `flushed()`.
   */
  addLater(dataType: DataType, elements: number, bytes: Uint8Array): TensorSource {
    if (this.failure) throw this.failure;
    const { fd, offset, source } = this.reserve(dataType, elements, bytes.length);
    this.writing = this.writing.then(async () => {
      if (this.failure) return;
      try {
        for (let done = 0; done < bytes.length; ) done += await writeAt(fd, bytes, done, Math.min(MAX_WRITE, bytes.length - done), offset + done);
      } catch (e) {
        this.failure = spillError(e, this.file);
      }
    });
    return source;
  }

  /** Every addLater's bytes are in the file; throws the first failed write's error. */
  async flushed(): Promise<void> {
    await this.writing;
    if (this.failure) throw this.failure;
  }

  /** The next `length` bytes of the file for a tensor, and the source that reads them back. */
  private reserve(dataType: DataType, elements: number, length: number): { fd: number; offset: number; source: TensorSource } {
    if (byteLengthOf(dataType, elements) !== length) {
      throw new RangeError(`spill: ${length} bytes for ${elements} elements of ${dataTypeName(dataType)}`);
    }
    const fd = this.handle();
    const offset = this.size;
    this.size += length;
    const file = this.file;
    return { fd, offset, source: { dataType, elements, bytes: () => withRangeReader(file, undefined, (r) => r.read(offset, length)) } };
  }

  /** Closes and deletes the file (idempotent); later adds and reads fail. */
  remove(): void {
    this.removed = true;
    const created = this.fd !== undefined; // never created: nothing to delete (and its folder may not be one)
    if (this.fd !== undefined) {
      const fd = this.fd;
      this.fd = undefined;
      try {
        closeSync(fd);
      } catch {
        // already closed: deleting it below is what matters
      }
    }
    if (created) rmSync(this.file, { force: true });
  }
}

/** fs.write at a position, as a promise of the bytes written. */
function writeAt(fd: number, bytes: Uint8Array, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => write(fd, bytes, offset, length, position, (e, n) => (e ? reject(e) : resolve(n))));
}

function spillError(e: unknown, file: string): CheckpointError {
  const code = errnoCode(e);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new CheckpointError('no-space', `no space left on the device while writing pruned weights to the scratch file ${file} (the run stops; no output is written)`, file, { cause: e });
  }
  return new CheckpointError('write-failed', `cannot write the scratch file of pruned weights ${file}: ${(e as Error)?.message ?? String(e)}`, file, { cause: e });
}
