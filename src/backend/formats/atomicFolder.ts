// Writing an output folder atomically, shared by the ONNX and the Hugging Face writers: the folder is built under
// `<out>.tmp-<pid>` (temporaryFolderOf; bounded chunked writes with cancel checks and hooks) and renamed into place when complete; a
// failure or a cancel removes the temporary folder and leaves any previous output as it was.

import { lstatSync, readdirSync, realpathSync } from 'node:fs';
import { FileHandle, mkdir, open, rename, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { temporaryFolderOf } from '../../protocol/outputTemporaries';
import { CheckpointError, errnoCode } from './errors';

export { removeTemporaries, spillFileOf, temporaryFolderOf } from '../../protocol/outputTemporaries';

export interface WriteHooks {
  /** Called after each chunk written into the temporary folder. Throwing aborts the write (tests inject failures here). */
  afterChunk?(file: string, bytesWrittenToFile: number): void | Promise<void>;
  /** Called when everything is in the temporary folder, just before it is renamed into place. */
  beforeCommit?(tmpDir: string): void | Promise<void>;
}

/** The file-system calls that put a finished folder into place (tests fake Windows' rename with them). */
export interface FolderRenames {
  platform: NodeJS.Platform;
  rename(from: string, to: string): Promise<void>;
  rm(target: string): Promise<void>;
}

const NODE_RENAMES: FolderRenames = { platform: process.platform, rename, rm: (target) => rm(target, { recursive: true, force: true }) };

export interface FolderWriteOptions {
  overwrite: boolean;
  /** A file every folder this tool writes holds: an existing output without it is never overwritten. */
  marker: string;
  chunkSize: number;
  signal?: AbortSignal;
  hooks?: WriteHooks;
  renames?: FolderRenames;
}

/** True when `inner` is `outer` or inside it. */
export function isWithin(outer: string, inner: string): boolean {
  const rel = path.relative(outer, inner);
  return rel === '' || (!path.isAbsolute(rel) && rel !== '..' && !rel.startsWith(`..${path.sep}`));
}

export function realOrResolved(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    const parent = path.dirname(p);
    return parent === p ? p : path.join(realOrResolved(parent), path.basename(p));
  }
}

function exists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** Refuses an output folder that would contain (and so replace) one of the input files. */
export function checkNotInput(out: string, inputs: string[]): void {
  const realOut = realOrResolved(out);
  for (const p of inputs.map(realOrResolved)) {
    if (isWithin(realOut, p)) {
      throw new CheckpointError('output-is-input', `output folder ${out} would replace the input (${p}): choose a new folder`, out);
    }
  }
}

/** Refuses an existing output unless overwriting, and then only a folder that looks like one this tool wrote. */
export function checkExistingOutput(out: string, overwrite: boolean, marker: string): void {
  let st;
  try {
    st = lstatSync(out);
  } catch {
    return;
  }
  if (!overwrite) {
    throw new CheckpointError('output-exists', `output folder ${out} already exists: choose another output, or overwrite it (--overwrite)`, out);
  }
  if (!st.isDirectory()) {
    throw new CheckpointError('output-exists', `cannot overwrite ${out}: it is not a folder`, out);
  }
  let entries: string[] = [];
  try {
    entries = readdirSync(out);
  } catch {
    // unreadable: treated as not holding a model
  }
  if (entries.length > 0 && !entries.includes(marker)) {
    throw new CheckpointError(
      'output-exists',
      `refusing to overwrite ${out}: it is not empty and holds no ${marker}, so it does not look like a model folder this tool wrote`,
      out,
    );
  }
}

export function writeError(e: unknown, file: string, out: string): CheckpointError {
  if (e instanceof CheckpointError) return e;
  const code = errnoCode(e);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new CheckpointError('no-space', `no space left on the device while writing ${file} (output ${out} not written)`, file, { cause: e });
  }
  return new CheckpointError('write-failed', `writing ${out} failed at ${file}: ${(e as Error)?.message ?? String(e)}`, file, { cause: e });
}

/** Writes files in bounded chunks, with cancel checks and hooks between chunks; tracks open handles for cleanup. */
export class Sink {
  private readonly open = new Set<FileHandle>();
  /** The file being written (for error messages). */
  current: string;

  constructor(
    private readonly out: string,
    private readonly chunkSize: number,
    private readonly signal: AbortSignal | undefined,
    private readonly hooks: WriteHooks | undefined,
  ) {
    this.current = out;
  }

  checkCancel(): void {
    if (this.signal?.aborted) {
      throw new CheckpointError('cancelled', `writing ${this.out} was cancelled; its temporary folder is removed and nothing was written`, this.out);
    }
  }

  /** Creates `file`, lets `body` write to it, syncs and closes it; returns the bytes written. */
  async file(file: string, fsync: boolean, body: (write: (bytes: Uint8Array) => Promise<void>) => Promise<void>): Promise<number> {
    this.checkCancel();
    this.current = file;
    const fh = await open(file, 'wx');
    this.open.add(fh);
    let written = 0;
    const write = async (bytes: Uint8Array): Promise<void> => {
      for (let at = 0; at < bytes.length; ) {
        const piece = bytes.subarray(at, Math.min(bytes.length, at + this.chunkSize));
        let done = 0;
        while (done < piece.length) {
          const { bytesWritten } = await fh.write(piece, done, piece.length - done);
          done += bytesWritten;
        }
        at += piece.length;
        written += piece.length;
        this.checkCancel();
        await this.hooks?.afterChunk?.(file, written);
      }
    };
    await body(write);
    if (fsync) await fh.sync();
    this.open.delete(fh);
    await fh.close();
    return written;
  }

  async closeAll(): Promise<void> {
    for (const fh of this.open) await fh.close().catch(() => undefined);
    this.open.clear();
  }
}

/**
 * Renames the finished `tmp` to `out`. A rename onto an existing folder fails on Windows (and replaces only an
 * empty one elsewhere), so a previous output is moved aside first, then the new one renamed in (the old one moved
 * back if that fails), then the old one removed.
 */
async function moveIntoPlace(tmp: string, out: string, warnings: string[], fs: FolderRenames): Promise<void> {
  let old: string | undefined;
  if (exists(out)) {
    old = `${out}.old-${process.pid}`;
    await fs.rm(old);
    await renameRetrying(out, old, fs);
  }
  try {
    await renameRetrying(tmp, out, fs);
  } catch (e) {
    if (old) await renameRetrying(old, out, fs);
    throw e;
  }
  if (old) {
    try {
      await fs.rm(old);
    } catch (e) {
      warnings.push(`the previous output was moved to ${old} but could not be removed: ${(e as Error).message}`);
    }
  }
}

/** Windows refuses to rename a folder while another process has a file in it open (a virus scanner, an indexer,
 *  an editor's file watcher, usually for milliseconds): retried there for up to about 3 s, as graceful-fs does. */
const WINDOWS_RENAME_RETRIES_MS = [50, 100, 200, 400, 800, 1600];

async function renameRetrying(from: string, to: string, fs: FolderRenames): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fs.rename(from, to);
    } catch (e) {
      const transient = fs.platform === 'win32' && ['EPERM', 'EACCES', 'EBUSY'].includes(errnoCode(e) ?? '') && attempt < WINDOWS_RENAME_RETRIES_MS.length;
      if (!transient) throw e;
      await new Promise((r) => setTimeout(r, WINDOWS_RENAME_RETRIES_MS[attempt]));
    }
  }
}

/**
 * Builds the folder `out`: `body` fills the temporary folder through the sink (setting `sink.current` before work
 * that is not a sink.file), then `hooks.beforeCommit` runs, then the folder is renamed into place (swapping out a
 * previous output only now). Returns body's result and warnings that did not fail the write.
 */
export async function writeFolder<T>(out: string, opts: FolderWriteOptions, body: (tmp: string, sink: Sink) => Promise<T>): Promise<{ result: T; warnings: string[] }> {
  checkExistingOutput(out, opts.overwrite, opts.marker);
  const tmp = temporaryFolderOf(out);
  const warnings: string[] = [];
  const sink = new Sink(out, opts.chunkSize, opts.signal, opts.hooks);
  try {
    sink.current = tmp;
    await rm(tmp, { recursive: true, force: true });
    await mkdir(path.dirname(out), { recursive: true });
    await mkdir(tmp);
    const result = await body(tmp, sink);
    sink.checkCancel();
    sink.current = tmp;
    await opts.hooks?.beforeCommit?.(tmp);
    sink.checkCancel();

    sink.current = out;
    checkExistingOutput(out, opts.overwrite, opts.marker);
    await moveIntoPlace(tmp, out, warnings, opts.renames ?? NODE_RENAMES);
    return { result, warnings };
  } catch (e) {
    await sink.closeAll();
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw writeError(e, sink.current, out);
  }
}
