// Every way a run can fail, as the one-line run.failed event the user sees: a protocol code, a message naming the
// file, field or layer and what to do, and a stack only under --debug (for a bug report).

import { readFileSync } from 'node:fs';
import { ConfigError } from '../../protocol/config';
import { ErrorCode, EventOf, makeEvent } from '../../protocol/events';
import { DataError } from '../data/tokens';
import { CheckpointError, errnoCode } from '../formats/errors';
import { PruneError } from '../methods/types';
import { DeviceError } from '../onnx/session';
import { RunError } from '../pipeline/errors';

type Failure = Omit<EventOf<'run.failed'>, 'v' | 'type'>;

export interface FailureContext {
  /** The checkpoint being pruned: what onnxruntime's graph errors are about. */
  checkpoint?: string;
  /** Keep the stack in the message (--debug). */
  debug?: boolean;
}

const CHECKPOINT_CODES: Record<string, ErrorCode> = {
  'missing-model': 'checkpoint-not-found', 'corrupt-model': 'checkpoint-invalid', 'unsupported-model': 'checkpoint-invalid', 'unsupported-dtype': 'checkpoint-invalid',
  'missing-external-data': 'external-data-missing', 'external-range': 'external-data-missing', 'missing-tokenizer': 'tokenizer-missing', 'output-exists': 'output-exists',
  'output-is-input': 'config-invalid', 'no-space': 'no-space', 'write-failed': 'write-failed', 'model-too-large': 'limit-exceeded',
};
const CHECKPOINT_HINTS: Partial<Record<string, string>> = {
  'output-exists': 'pass --overwrite (or "overwrite": true) to replace it, or choose another --out',
  'no-space': 'free space on the disk holding the output folder, or choose an output folder on another disk (--out)',
  'write-failed': 'choose an output folder (--out) on a writable disk',
};

/** An error as the run.failed event the extension shows: a code, the message, and what it concerns. */
export function failureEvent(e: unknown, context: FailureContext = {}): EventOf<'run.failed'> {
  const f = describeFailure(e, context);
  const oneLine = f.message.split('\n').map((l) => l.trim()).filter(Boolean).join(' ');
  const stack = context.debug && e instanceof Error && e.stack ? `\n${e.stack}` : '';
  return makeEvent('run.failed', { ...f, message: oneLine + stack });
}

function describeFailure(e: unknown, context: FailureContext): Failure {
  if (e instanceof ConfigError) {
    return { code: e.code, message: e.message, jsonPath: e.problems[0]?.path, problems: e.problems.map((p) => ({ jsonPath: p.path, message: p.message })) };
  }
  if (e instanceof RunError) return { code: e.code, message: e.message, ...e.where, ...(e.hint ? { hint: e.hint } : {}) };
  if (e instanceof DataError) return { code: e.code, message: e.message, file: e.file };
  if (e instanceof PruneError) return { code: e.field === 'H' ? 'numerical' : 'internal', message: e.message, layer: e.layer };
  if (e instanceof CheckpointError) {
    const hint = CHECKPOINT_HINTS[e.code];
    const errno = fileFailure(e.cause);
    if (e.code === 'write-failed' && errno) return { ...errno, code: 'write-failed', message: e.message, ...(hint ? { hint } : {}) };
    return { code: CHECKPOINT_CODES[e.code] ?? 'internal', message: e.message, ...(e.file ? { file: e.file } : {}), ...(hint ? { hint } : {}) };
  }
  const errno = fileFailure(e);
  if (errno) return errno;
  const msg = e instanceof Error ? e.message : String(e);
  if (e instanceof DeviceError) return { code: 'device-unavailable', message: msg, hint: e.hint };
  if (/no onnxruntime device could run/.test(msg)) return { code: 'device-unavailable', message: msg };
  const graph = onnxruntimeGraphFailure(msg, context.checkpoint);
  if (graph) return graph;
  if (e instanceof RangeError && /Array buffer allocation failed|Invalid array length|Invalid typed array length/.test(msg)) {
    return { code: 'out-of-memory', message: `out of memory: ${msg}`, hint: 'prune with fewer calibration windows (--nsamples) or a shorter --seqlen' };
  }
  return { code: 'internal', message: e instanceof Error ? (e.stack ?? msg) : msg, hint: 'this is a bug in PruneKit: please report it with the output of --debug' };
}

/** readFileSync that names the file in its errors (Node leaves the path out of some, e.g. EISDIR from read). */
export function readUserFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    if (errnoCode(e) && !(e as NodeJS.ErrnoException).path) (e as NodeJS.ErrnoException).path = file;
    throw e;
  }
}

/** Node's errno errors (ENOENT, EISDIR, EROFS, …) as one line naming the path and the next step, wherever they come from. */
export function fileFailure(e: unknown): Failure | undefined {
  const code = errnoCode(e);
  const file = typeof e === 'object' && e !== null && typeof (e as { path?: unknown }).path === 'string' ? (e as { path: string }).path : undefined;
  if (!code || !file) return undefined;
  switch (code) {
    case 'ENOENT':
      return { code: 'file-not-found', message: `${file}: no such file or folder`, file, hint: 'check the path (relative paths in a config are relative to the config file)' };
    case 'EISDIR':
      return { code: 'not-a-file', message: `${file} is a folder, not a file`, file, hint: 'give the path of a file inside it' };
    case 'ENOTDIR':
      return { code: 'not-a-folder', message: `${file}: a part of this path is a file, not a folder`, file };
    case 'ENOSPC':
    case 'EDQUOT':
      return { code: 'no-space', message: `${file}: no space left on the device`, file, hint: CHECKPOINT_HINTS['no-space'] };
    case 'EROFS':
      return { code: 'write-failed', message: `${file}: the file system is read-only`, file, hint: CHECKPOINT_HINTS['write-failed'] };
    case 'EACCES':
    case 'EPERM':
      return { code: 'permission-denied', message: `${file}: permission denied`, file, hint: 'check the permissions of this path, or choose another' };
    case 'ENAMETOOLONG':
    case 'ELOOP':
      return { code: 'bad-argument', message: `${file}: ${code === 'ELOOP' ? 'too many symbolic links' : 'the name is too long'}`, file };
    default:
      return { code: 'internal', message: `${file}: ${(e as Error).message}`, file };
  }
}

/** onnxruntime refusing the graph (an operator it does not know, a broken node): the checkpoint, not a bug. */
function onnxruntimeGraphFailure(msg: string, checkpoint: string | undefined): Failure | undefined {
  const op = /(?:ai\.onnx|[\w.]+):(\w+)\(-?\d+\) is not a registered function\/op|Could not find an implementation for (\w+)\(\d+\)/.exec(msg);
  const where = checkpoint ?? 'the checkpoint';
  if (op) {
    return { code: 'checkpoint-invalid', message: `${where}: onnxruntime has no operator ${op[1] ?? op[2]} (${firstLine(msg)})`, ...(checkpoint ? { file: checkpoint } : {}), hint: 'export the model with standard ONNX operators (opset ≤ 21)' };
  }
  if (/\[ONNXRuntimeError\]|Load model from .* failed|InferenceSession|Node \(.*\) Op \(/.test(msg)) {
    return { code: 'checkpoint-invalid', message: `${where}: onnxruntime cannot run the graph: ${firstLine(msg)}`, ...(checkpoint ? { file: checkpoint } : {}) };
  }
  return undefined;
}

function firstLine(s: string): string {
  const line = s.split('\n')[0].trim();
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}
