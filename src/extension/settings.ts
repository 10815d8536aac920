// The `prunekit.*` settings, read in one place with their defaults (package.json documents each one).
// Read on every use, so a change applies to the next run without a reload.

import * as vscode from 'vscode';
import { DEVICE_RE, DeviceName, KNOWN_METHODS, MethodName, PATTERN_RE, PatternString } from '../protocol/pruning';

export interface Settings {
  device: DeviceName;
  /** "" = VS Code's own runtime. */
  nodePath: string;
  /** "" = beside the checkpoint (the config's default). */
  outputDirectory: string;
  defaultMethod: MethodName;
  defaultSparsity: number;
  defaultPattern: PatternString;
  calibrationPath: string;
  evaluationPath: string;
  cancelGraceSeconds: number;
}

export function readSettings(): Settings {
  const c = vscode.workspace.getConfiguration('prunekit');
  const device = c.get<string>('device', 'auto');
  const method = c.get<string>('defaultMethod', 'apt');
  const pattern = c.get<string>('defaultPattern', 'unstructured');
  const sparsity = c.get<number>('defaultSparsity', 0.5);
  const grace = c.get<number>('cancelGraceSeconds', 5);
  return {
    // A hand-edited settings.json can hold anything: fall back to the default rather than pass it on.
    device: DEVICE_RE.test(device) ? (device as DeviceName) : 'auto',
    nodePath: c.get<string>('nodePath', '').trim(),
    outputDirectory: c.get<string>('outputDirectory', '').trim(),
    defaultMethod: (KNOWN_METHODS as readonly string[]).includes(method) ? (method as MethodName) : 'apt',
    defaultSparsity: sparsity >= 0 && sparsity < 1 ? sparsity : 0.5,
    defaultPattern: PATTERN_RE.test(pattern) ? (pattern as PatternString) : 'unstructured',
    calibrationPath: c.get<string>('calibrationPath', '').trim(),
    evaluationPath: c.get<string>('evaluationPath', '').trim(),
    cancelGraceSeconds: Number.isFinite(grace) && grace >= 0 ? grace : 5,
  };
}
