// The cheap checks a run makes before any real work (in this order: output, then input paths), and the clean-up of
// temporaries that killed runs left beside the output.

import { accessSync, closeSync, constants, openSync, readSync, renameSync, rmSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { ResolvedConfig } from '../../protocol/config';
import { DataError, loadTokenizer, refuseBinary, TextTokenizer } from '../data/tokens';
import { checkExistingOutput, deadTemporaries, exists } from '../formats/atomicFolder';
import { RunError } from './errors';

/** An existing output without `overwrite`, or a place the output cannot be created in, is refused now. */
export function checkOutput(config: ResolvedConfig): void {
  if (!config.overwrite) checkExistingOutput(config.output, false, '');
  else if (exists(config.output) && !statSync(config.output).isDirectory()) checkExistingOutput(config.output, true, ''); // refuses a file
  let dir = path.dirname(config.output);
  while (!exists(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  if (!statSync(dir).isDirectory()) {
    throw new RunError('not-a-folder', `cannot create the output ${config.output}: ${dir} is a file, not a folder`, { file: dir }, 'choose another output folder (--out)');
  }
  try {
    accessSync(dir, constants.W_OK);
  } catch (e) {
    const readOnly = (e as NodeJS.ErrnoException).code === 'EROFS';
    throw new RunError(readOnly ? 'write-failed' : 'permission-denied', `cannot create the output ${config.output}: ${dir} is ${readOnly ? 'on a read-only file system' : 'not writable'}`, { file: dir }, 'choose an output folder (--out) on a writable disk');
  }
}

/** Calibration and evaluation files exist, are files, and text is not binary (its first 64 KiB hold no NUL byte). */
export function checkDataPaths(config: ResolvedConfig): void {
  for (const file of dataFiles(config)) {
    if (!exists(file)) throw new DataError('data-not-found', file, `${file}: data file not found`);
    if (statSync(file).isDirectory()) throw new RunError('not-a-file', `${file} is a folder: give a text (.txt, .jsonl) or token-id (.json) file`, { file });
    if (path.extname(file).toLowerCase() !== '.json') refuseBinary(file, head(file, 65536));
  }
}

/** The tokenizer, loaded only when some data file is text. */
export function tokenizerFor(config: ResolvedConfig): TextTokenizer | undefined {
  return dataFiles(config).some((f) => path.extname(f).toLowerCase() !== '.json') ? loadTokenizer(config.tokenizer) : undefined;
}

function dataFiles(config: ResolvedConfig): string[] {
  return [config.calibration ? config.calibration.path : null, config.evaluation ? config.evaluation.path : null].filter((f): f is string => f !== null);
}

function head(file: string, bytes: number): Uint8Array {
  const fd = openSync(file, 'r');
  try {
    const buf = new Uint8Array(bytes);
    return buf.subarray(0, readSync(fd, buf, 0, bytes, 0));
  } finally {
    closeSync(fd);
  }
}

/**
 * Cleans up after dead runs beside the output, one line each of what was done: a previous output that a killed
 * `--overwrite` run had moved aside (`<out>.old-<pid>`) goes back in place when nothing replaced it, so nothing
 * is lost; every other temporary is removed.
 */
export function removeDeadTemporaries(out: string): string[] {
  const done: string[] = [];
  for (const p of deadTemporaries(out)) {
    if (/\.old-\d+$/.test(p) && !exists(out)) {
      renameSync(p, out);
      done.push(`${p} (the previous output: moved back to ${out})`);
    } else {
      rmSync(p, { recursive: true, force: true });
      done.push(`${p} (removed)`);
    }
  }
  return done;
}
