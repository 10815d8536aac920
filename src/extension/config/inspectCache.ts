// Runs `prunekit inspect <checkpoint> --json` in the backend and keeps the answer per checkpoint, keyed by the
// model file's path and modification time, so completions and diagnostics of every config on one model share
// one run, and a re-exported model is inspected again. Node only (no vscode): tests run the real backend.

import { execFile } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { splitVariants } from '../../protocol/variants';
import { InspectInfo, parseInspectOutput } from './layerInfo';

/** How to start `prunekit <args...>`: the extension passes backendInvocation's, tests a tsx one. */
export type Launcher = (cliArgs: string[]) => { command: string; args: string[]; env?: NodeJS.ProcessEnv };

export class InspectError extends Error {
  constructor(message: string, readonly checkpoint: string) {
    super(message);
    this.name = 'InspectError';
  }
}

/**
 * The model file a checkpoint path stands for, found as the backend finds it (a .onnx file; a folder's
 * model.onnx, onnx/model.onnx or single .onnx; else a Hugging Face folder's weights: the safetensors index, or
 * its model.safetensors), or an InspectError saying why there is none. Its mtime keys the inspect cache.
 */
export function modelFileOf(checkpoint: string): string {
  let st;
  try {
    st = statSync(checkpoint);
  } catch {
    throw new InspectError(`checkpoint not found: ${checkpoint} does not exist`, checkpoint);
  }
  if (!st.isDirectory()) {
    if (!/\.onnx$/i.test(checkpoint)) throw new InspectError(`${checkpoint} is not an ONNX model: expected a .onnx file or a folder holding model.onnx`, checkpoint);
    return checkpoint;
  }
  if (isFile(path.join(checkpoint, 'model.onnx'))) return path.join(checkpoint, 'model.onnx');
  const variants = isDir(path.join(checkpoint, 'onnx')) ? splitVariants(readdirSync(path.join(checkpoint, 'onnx'))) : undefined;
  if (variants && variants.float.length === 1) return path.join(checkpoint, 'onnx', `${variants.float[0]}.onnx`);
  if (variants && variants.float.length > 1) throw new InspectError(`${checkpoint} has several float ONNX variants (${variants.float.join(', ')}): set "variant"`, checkpoint);
  const files = readdirSync(checkpoint).sort();
  const onnx = files.filter((f) => /\.onnx$/i.test(f));
  if (onnx.length === 1) return path.join(checkpoint, onnx[0]);
  if (onnx.length > 1) throw new InspectError(`no model.onnx in ${checkpoint}, and several .onnx files (${onnx.join(', ')}): name the .onnx file`, checkpoint);
  const weights = files.find((f) => f === 'model.safetensors.index.json') ?? files.find((f) => /\.safetensors$/i.test(f));
  if (weights && files.includes('config.json')) return path.join(checkpoint, weights);
  throw new InspectError(`no model in ${checkpoint}: neither model.onnx (or another .onnx file) nor a Hugging Face checkpoint (config.json with *.safetensors)`, checkpoint);
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

export interface InspectCacheOptions {
  launcher: Launcher;
  /** Milliseconds before inspect is killed (a large model is only parsed, not run: seconds). Default 60 s. */
  timeoutMs?: number;
}

export class InspectCache {
  private readonly entries = new Map<string, Promise<InspectInfo>>();

  constructor(private readonly options: InspectCacheOptions) {}

  /** The inspect output for a checkpoint (a .onnx file or a model folder); rejects with an InspectError. */
  get(checkpoint: string): Promise<InspectInfo> {
    let key: string;
    try {
      const model = modelFileOf(checkpoint);
      key = `${model}\0${statSync(model).mtimeMs}`;
    } catch (e) {
      return Promise.reject(e instanceof InspectError ? e : new InspectError((e as Error).message, checkpoint));
    }
    let entry = this.entries.get(key);
    if (!entry) {
      entry = this.run(checkpoint);
      this.entries.set(key, entry);
      // A failure is not kept: the next request tries again (the user may be fixing the model or the backend).
      entry.catch(() => this.entries.delete(key));
    }
    return entry;
  }

  private run(checkpoint: string): Promise<InspectInfo> {
    const timeout = this.options.timeoutMs ?? 60_000;
    const { command, args, env } = this.options.launcher(['inspect', checkpoint, '--json']);
    return new Promise((resolve, reject) => {
      execFile(command, args, { env, timeout, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, windowsHide: true }, (error, stdout, stderr) => {
        if (error) {
          const killed = (error as NodeJS.ErrnoException & { killed?: boolean }).killed;
          const why = killed ? `timed out after ${timeout >= 1000 ? `${Math.round(timeout / 1000)} s` : `${timeout} ms`}` : (stderr.trim().split('\n').pop() ?? error.message);
          reject(new InspectError(`prunekit inspect ${checkpoint} failed: ${why || error.message}`, checkpoint));
          return;
        }
        try {
          resolve(parseInspectOutput(stdout));
        } catch (e) {
          reject(new InspectError(`prunekit inspect ${checkpoint}: ${(e as Error).message}`, checkpoint));
        }
      });
    });
  }
}
