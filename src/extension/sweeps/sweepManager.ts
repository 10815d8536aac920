// The sweeps the extension knows: sweep folders found in the workspace (their sweep.json) and those started here
// (`prunekit sweep <config> --json`, a child process). The folder is the truth: a sweep is read again from its
// sweep.json and point folders at every change (a line from the child, a watched sweep.json), so a Slurm sweep, a
// sweep run from a terminal and a sweep after a reload show the same way. No vscode: the views listen to onDidChange.

import { ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import { CANCEL_REQUEST } from '../../protocol/cancelRequest';
import { readPointResult, readSweepIndex } from '../../protocol/sweep';
import type { SweepSnapshot } from '../../protocol/webview';
import { BackendInvocation, pathKey } from '../backendInvocation';
import { LineSplitter } from '../runs/ndjson';

export interface SweepManagerOptions {
  backend(cliArgs: string[]): BackendInvocation;
  log(line: string): void;
}

/** A sweep folder as its files tell it now; null when it holds no readable sweep.json. */
export function readSweep(dir: string): SweepSnapshot | null {
  const index = readSweepIndex(dir);
  if (!index) return null;
  const results = Object.fromEntries(index.points.map((p) => [p.name, p.status === 'finished' ? readPointResult(dir, p.name) : null]));
  return { dir, label: `${path.basename(dir)} · ${index.points.length} points`, index, results };
}

export class SweepManager {
  private readonly sweeps = new Map<string, SweepSnapshot>();
  /** The `prunekit sweep` processes started here, by sweep folder key once their first line names it. */
  private readonly children = new Map<string, ChildProcess>();
  private readonly listeners = new Set<(dir: string) => void>();

  constructor(private readonly options: SweepManagerOptions) {}

  onDidChange(listener: (dir: string) => void): { dispose(): void } {
    this.listeners.add(listener);
    return { dispose: () => this.listeners.delete(listener) };
  }

  list(): SweepSnapshot[] {
    return [...this.sweeps.values()];
  }

  get(dir: string): SweepSnapshot | undefined {
    return this.sweeps.get(pathKey(dir));
  }

  /** Whether `folder` is a point's run folder of a known sweep (the Runs view lists it under its sweep). */
  owns(folder: string): boolean {
    return this.sweeps.has(pathKey(path.dirname(folder)));
  }

  isLive(dir: string): boolean {
    return this.children.has(pathKey(dir));
  }

  /** Reads (or reads again) a sweep folder; a folder without a sweep.json is ignored. */
  refresh(dir: string): void {
    const snapshot = readSweep(path.resolve(dir));
    if (!snapshot) return;
    this.sweeps.set(pathKey(dir), snapshot);
    for (const l of this.listeners) l(snapshot.dir);
  }

  /** `prunekit sweep <config> --json` in the config's folder; `onFolder` gets the sweep folder once the backend names it. */
  start(configFile: string, onFolder: (dir: string) => void): void {
    const invocation = this.options.backend(['sweep', configFile, '--json']);
    const child = spawn(invocation.command, invocation.args, { env: invocation.env, cwd: path.dirname(configFile), stdio: ['pipe', 'pipe', 'pipe'], shell: false, windowsHide: true });
    child.stdin?.on('error', () => {}); // exited before a cancel was written
    const tag = `[sweep ${path.basename(configFile)}]`;
    this.options.log(`${tag} started: ${invocation.command} ${invocation.args.join(' ')}`);
    let dir: string | null = null;
    const lines = new LineSplitter((line) => {
      const folder = sweepFolderOf(line);
      if (folder === null) return void this.options.log(`${tag} ${line}`);
      if (dir === null) {
        dir = folder;
        this.children.set(pathKey(dir), child);
        onFolder(dir);
      }
      this.refresh(dir);
    });
    const errors = new LineSplitter((line) => this.options.log(`${tag} ${line}`));
    child.stdout?.on('data', (c: Buffer) => lines.push(c));
    child.stderr?.on('data', (c: Buffer) => errors.push(c));
    child.on('error', (e) => this.options.log(`${tag} ${e.message}`));
    child.on('close', (code, signal) => {
      lines.end();
      errors.end();
      this.options.log(`${tag} prunekit sweep ${signal ? `was killed by ${signal}` : `exited with code ${code}`}`);
      if (dir === null) return;
      this.children.delete(pathKey(dir));
      this.refresh(dir);
    });
  }

  /** Stops a sweep: the running local process (its running point removes its temporary output), or the Slurm array (scancel). */
  cancel(dir: string): void {
    const child = this.children.get(pathKey(dir));
    const index = this.get(dir)?.index;
    if (index?.slurm) {
      const invocation = this.options.backend(['sweep', index.config, '--cancel', '--json']);
      spawn(invocation.command, invocation.args, { env: invocation.env, stdio: 'ignore', shell: false, windowsHide: true }).on('close', () => this.refresh(dir));
    }
    child?.stdin?.write(`${CANCEL_REQUEST}\n`);
  }

  dispose(): void {
    for (const child of this.children.values()) child.stdin?.write(`${CANCEL_REQUEST}\n`);
    this.listeners.clear();
  }
}

/** The sweep folder a `prunekit sweep --json` line names (sweep.point, sweep.finished); null for other lines. */
function sweepFolderOf(line: string): string | null {
  if (!line.startsWith('{')) return null;
  try {
    const v = JSON.parse(line) as { type?: unknown; sweep?: unknown };
    return typeof v.type === 'string' && v.type.startsWith('sweep.') && typeof v.sweep === 'string' ? v.sweep : null;
  } catch {
    return null;
  }
}
