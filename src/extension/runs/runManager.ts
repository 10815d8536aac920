// The runs the extension knows: backends it started (several at once), runs persisted from earlier sessions,
// and finished runs found in the workspace (output folders holding prune-report.json + events.ndjson).
// No vscode here, so Node tests drive it against a fake backend and the real one.
//
// A started run lives in its own folder under the storage dir:
//   run.json       checkpoint, config, label, startedAt, pid; `ended` once the process exited
//   events.ndjson  the backend's events, appended as they arrive (same format as the output's events.ndjson)
//   times.txt      the host clock of each event, one per line (foldProgress's ETA needs arrival times)
// so a panel can be rebuilt after a reload; a run without `ended` was live when VS Code went away and comes
// back as interrupted.

import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, WriteStream, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import * as path from 'node:path';
import { CANCEL_REQUEST } from '../../protocol/cancelRequest';
import type { Event } from '../../protocol/events';
import { removeTemporaries } from '../../protocol/outputTemporaries';
import { BackendInvocation, pathKey } from '../backendInvocation';
import { describeEnd, modelName } from './describe';
import { LineSplitter, NdjsonReader, readNdjson } from './ndjson';
import { Run, RunInfo } from './run';

export const RUN_FILE = 'run.json';
export const EVENTS_FILE = 'events.ndjson';
export const TIMES_FILE = 'times.txt';
/** What the backend writes into a finished output folder (src/backend/pipeline/run.ts). */
export const REPORT_FILE = 'prune-report.json';

export type RunChange =
  | { kind: 'added'; run: Run }
  | { kind: 'event'; run: Run; event: Event; time: number }
  /** The backend exited; `run.interruption` is set when it ended without a terminal event. */
  | { kind: 'ended'; run: Run }
  | { kind: 'removed'; run: Run };

export interface StartRunRequest {
  /** `prune` (default), or `demo`: the backend generates a small model and prunes it (checkpoint and config
   *  are then ignored). */
  command?: 'prune' | 'demo';
  /** The .onnx file or the model folder. */
  checkpoint: string;
  /** The *.prune.json (null: the run is described by `extraArgs` alone). */
  config: string | null;
  /** Passed as --device when set. */
  device?: string;
  /** More CLI flags (they override the config's fields). */
  extraArgs?: string[];
  /** Shown until run.started gives the method; default: the model's name. */
  label?: string;
}

export interface RunManagerOptions {
  /** Where run folders are kept (the extension's workspace storage). */
  storageDir: string;
  /** How to start `prunekit <cliArgs>` (backendInvocation in the extension; node + tsx in tests). */
  backend(cliArgs: string[]): BackendInvocation;
  /** Backend stderr and stdout lines that are not events, and the manager's own notes. */
  log?(line: string): void;
  /** Seconds between SIGTERM and SIGKILL on cancel (read at each cancel, so a settings change applies). */
  cancelGraceSeconds?(): number;
  now?(): number;
}

/** The CLI arguments of a run: `prune <checkpoint> [--config FILE] --json [--device D] [extra...]`
 *  (`demo --json ...` for the demo). */
export function pruneArgs(req: StartRunRequest): string[] {
  return [
    ...(req.command === 'demo' ? ['demo'] : ['prune', req.checkpoint, ...(req.config !== null ? ['--config', req.config] : [])]),
    '--json',
    ...(req.device !== undefined ? ['--device', req.device] : []),
    ...(req.extraArgs ?? []),
  ];
}

/** Stderr lines kept for the interruption message. */
const STDERR_TAIL = 5;

export class RunManager {
  private readonly runs = new Map<string, Run>();
  private readonly listeners = new Set<(change: RunChange) => void>();
  /** Found output folders removed from the list without deleting them: not found again this session. */
  private readonly dismissed = new Set<string>();
  private readonly now: () => number;
  private readonly log: (line: string) => void;

  constructor(private readonly options: RunManagerOptions) {
    this.now = options.now ?? Date.now;
    this.log = options.log ?? (() => {});
  }

  onDidChange(listener: (change: RunChange) => void): { dispose(): void } {
    this.listeners.add(listener);
    return { dispose: () => this.listeners.delete(listener) };
  }

  get(id: string): Run | undefined {
    return this.runs.get(id);
  }

  /** Newest first. */
  list(): Run[] {
    return [...this.runs.values()].sort((a, b) => b.info.startedAt - a.info.startedAt);
  }

  start(req: StartRunRequest): Run {
    const startedAt = this.now();
    const stamp = new Date(startedAt).toISOString().replace(/[:.]/g, '-');
    const folder = path.join(this.options.storageDir, `${stamp}-${Math.random().toString(36).slice(2, 8)}`);
    mkdirSync(folder, { recursive: true });
    const cliArgs = pruneArgs(req);
    const invocation = this.options.backend(cliArgs);
    const run = new Run(folder, 'live', {
      checkpoint: req.checkpoint, config: req.config, label: req.label ?? (req.command === 'demo' ? 'demo' : modelName(req.checkpoint)), startedAt, pid: null, args: invocation.args,
    });
    const eventsOut = createWriteStream(path.join(folder, EVENTS_FILE), { flags: 'a' });
    const timesOut = createWriteStream(path.join(folder, TIMES_FILE), { flags: 'a' });

    // argv, never a shell (on Windows too): paths with spaces, quotes and non-ASCII characters pass through as
    // they are. stdin is the cancel channel (src/protocol/cancelRequest.ts).
    const child = spawn(invocation.command, invocation.args, {
      env: invocation.env,
      cwd: req.command === 'demo' ? undefined : path.dirname(req.config ?? req.checkpoint),
      stdio: ['pipe', 'pipe', 'pipe'],
      shell: false,
      windowsHide: true,
    });
    // A backend that exits before reading its stdin makes a later cancel write fail with EPIPE: nothing to do then.
    child.stdin?.on('error', () => {});
    run.child = child;
    run.info.pid = child.pid ?? null;
    writeRunInfo(run);
    this.runs.set(run.id, run);
    this.log(`[${run.label}] started: ${invocation.command} ${invocation.args.map(quoteForLog).join(' ')}`);
    this.emit({ kind: 'added', run });

    const stdout = new NdjsonReader({
      onEvent: (event, line) => {
        const time = this.now();
        run.record(event, time);
        eventsOut.write(line + '\n');
        timesOut.write(`${time}\n`);
        this.emit({ kind: 'event', run, event, time });
      },
      // Plain text (a library's console.log) is passed on as is; a JSON line that fails the protocol says why.
      onInvalid: (line, error) => this.log(`[${run.label}] ${line.trimStart().startsWith('{') ? `${line}  (not a valid event: ${error.path}: ${error.problem})` : line}`),
    });
    const stderrTail: string[] = [];
    const stderr = new LineSplitter((line) => {
      this.log(`[${run.label}] ${line}`);
      if (line.trim() === '') return;
      stderrTail.push(line);
      if (stderrTail.length > STDERR_TAIL) stderrTail.shift();
    });
    child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));

    let finished = false;
    const finish = async (code: number | null, signal: NodeJS.Signals | null, spawnError?: Error) => {
      if (finished) return;
      finished = true;
      stdout.end();
      stderr.end();
      clearTimeout(run.killTimer);
      if (run.killedAfterGrace !== undefined) this.removeTemporariesOf(run, child.pid);
      if (run.status === 'running') {
        run.interrupt(interruptionMessage(code, signal, spawnError, run.killedAfterGrace, stderrTail, invocation.command));
      }
      run.child = undefined;
      await Promise.all([closeStream(eventsOut), closeStream(timesOut)]);
      run.info.ended = { at: this.now(), code, signal, ...(run.interruption !== undefined ? { interruption: run.interruption } : {}) };
      writeRunInfo(run);
      this.log(`[${run.label}] ${describeEnd(run.progress, run.interruption)}`);
      this.log(`[${run.label}] prunekit ${cliArgs[0]} ${signal !== null ? `was killed by ${signal}` : `exited with code ${code}`}`);
      this.emit({ kind: 'ended', run });
      run.markEnded();
    };
    // 'close' comes after both pipes are drained, so no event is lost; a failed spawn (ENOENT) only says 'error'.
    child.on('close', (code, signal) => void finish(code, signal));
    child.on('error', (e) => {
      if (child.pid === undefined) void finish(null, null, e);
      else this.log(`[${run.label}] ${e.message}`);
    });
    return run;
  }

  /** The cancel line on the backend's stdin, on every platform (it stops at the next layer and removes its
   *  temporary output), then SIGKILL after the grace period (TerminateProcess on Windows), after which the
   *  manager removes the temporary output itself. Resolves when the process has exited. */
  async cancel(id: string, graceSeconds: number = this.options.cancelGraceSeconds?.() ?? 5): Promise<void> {
    const run = this.runs.get(id);
    const child = run?.child;
    if (!run || !child) return;
    if (!run.cancelRequested) {
      run.cancelRequested = true;
      child.stdin?.write(`${CANCEL_REQUEST}\n`);
      const grace = Math.max(0, graceSeconds);
      run.killTimer = setTimeout(() => {
        if (run.child) {
          run.killedAfterGrace = grace;
          this.log(`[${run.label}] still running ${grace} s after the cancel request: SIGKILL`);
          run.child.kill('SIGKILL');
        }
      }, grace * 1000);
    }
    await run.ended;
  }

  /** What a killed backend leaves beside its output (it had no chance to remove it). */
  private removeTemporariesOf(run: Run, pid: number | undefined): void {
    const output = run.plannedOutput;
    if (output === null || pid === undefined) return;
    try {
      removeTemporaries(output, pid);
      this.log(`[${run.label}] removed the killed backend's temporary output beside ${output}`);
    } catch (e) {
      this.log(`[${run.label}] could not remove the temporary output beside ${output}: ${(e as Error).message}`);
    }
  }

  /** Reads the runs of earlier sessions from the storage dir. A run that never recorded its end was live when
   *  VS Code went away: it comes back interrupted (and is recorded so). */
  restore(): Run[] {
    const dir = this.options.storageDir;
    if (!existsSync(dir)) return [];
    const restored: Run[] = [];
    for (const name of readdirSync(dir).sort()) {
      const folder = path.join(dir, name);
      if (this.runs.has(folder) || !existsSync(path.join(folder, RUN_FILE))) continue;
      try {
        const info = JSON.parse(readFileSync(path.join(folder, RUN_FILE), 'utf8')) as RunInfo;
        const run = new Run(folder, 'stored', info);
        const events = this.readEvents(path.join(folder, EVENTS_FILE));
        const times = readTimes(path.join(folder, TIMES_FILE));
        events.forEach((e, i) => run.record(e, times[i] ?? info.ended?.at ?? info.startedAt));
        if (run.status === 'running') {
          run.interrupt(info.ended?.interruption ?? 'VS Code closed while the run was live; the backend was stopped with it');
          if (!info.ended) {
            info.ended = { at: this.now(), code: null, signal: null, interruption: run.interruption };
            writeRunInfo(run);
          }
        } else if (info.ended?.interruption !== undefined) {
          run.interruption = info.ended.interruption;
        }
        run.markEnded();
        this.runs.set(run.id, run);
        restored.push(run);
        this.emit({ kind: 'added', run });
      } catch (e) {
        this.log(`skipping run folder ${folder}: ${(e as Error).message}`);
      }
    }
    return restored;
  }

  /**
   * Adds finished runs found as output folders (each holding prune-report.json and events.ndjson). Folders
   * already known (as a run's id or as the output of a stored run) are skipped. Returns the runs added.
   */
  addOutputFolders(folders: readonly string[]): Run[] {
    const known = new Set<string>();
    for (const r of this.runs.values()) {
      known.add(pathKey(r.folder));
      // A live run's output appears on disk just before its run.finished arrives: run.started names it.
      const output = r.output ?? r.plannedOutput;
      if (output !== null) known.add(pathKey(output));
    }
    const added: Run[] = [];
    for (const f of folders) {
      const folder = path.resolve(f);
      if (known.has(pathKey(folder)) || this.dismissed.has(pathKey(folder))) continue;
      const eventsFile = path.join(folder, EVENTS_FILE);
      if (!existsSync(path.join(folder, REPORT_FILE)) || !existsSync(eventsFile)) continue;
      const events = this.readEvents(eventsFile);
      const started = events.find((e) => e.type === 'run.started');
      if (!started) {
        this.log(`${eventsFile}: no run.started event; not listed`);
        continue;
      }
      // Arrival times were not kept: the log's file time stands for all (ETA is moot for a finished run).
      const time = statSync(eventsFile).mtimeMs;
      const run = new Run(folder, 'output', {
        checkpoint: started.config.checkpoint, config: null, label: modelName(started.model.file), startedAt: time, pid: null, args: [],
      });
      for (const e of events) run.record(e, time);
      if (run.status === 'running') run.interrupt(`${eventsFile} ends without a terminal event`);
      run.markEnded();
      this.runs.set(run.id, run);
      known.add(pathKey(folder));
      added.push(run);
      this.emit({ kind: 'added', run });
    }
    return added;
  }

  /**
   * Removes a run that is not live: its record under the storage dir and, with `deleteOutput`, its output
   * folder. A found output folder kept on disk is only hidden for this session.
   */
  async delete(id: string, options: { deleteOutput: boolean }): Promise<void> {
    const run = this.runs.get(id);
    if (!run) return;
    if (run.live) throw new Error(`run "${run.label}" is still running; cancel it first`);
    const output = run.output;
    if (options.deleteOutput && output !== null && existsSync(output)) await rm(output, { recursive: true, force: true });
    if (run.origin === 'output') {
      if (!options.deleteOutput) this.dismissed.add(pathKey(run.folder));
    } else {
      await rm(run.folder, { recursive: true, force: true });
    }
    this.runs.delete(id);
    this.emit({ kind: 'removed', run });
  }

  /** Stops every live backend (deactivate): the cancel request, SIGKILL after at most `maxGraceSeconds`. */
  async disposeAll(maxGraceSeconds = 3): Promise<void> {
    const live = [...this.runs.values()].filter((r) => r.live);
    const grace = Math.min(maxGraceSeconds, this.options.cancelGraceSeconds?.() ?? maxGraceSeconds);
    await Promise.all(live.map((r) => this.cancel(r.id, grace)));
    this.listeners.clear();
  }

  private readEvents(file: string): Event[] {
    if (!existsSync(file)) return [];
    return readNdjson(readFileSync(file, 'utf8'), (line, e) => this.log(`${file}: skipped a line that is not an event (${e.path}: ${e.problem}): ${line.slice(0, 120)}`));
  }

  private emit(change: RunChange): void {
    for (const l of [...this.listeners]) {
      try {
        l(change);
      } catch (e) {
        this.log(`a run listener failed: ${(e as Error).stack ?? String(e)}`);
      }
    }
  }
}

function interruptionMessage(code: number | null, signal: NodeJS.Signals | null, spawnError: Error | undefined, killedAfter: number | undefined, stderrTail: string[], command: string): string {
  if (spawnError) return `could not start the backend (${command}): ${spawnError.message}; check the prunekit.nodePath setting`;
  let how: string;
  if (killedAfter !== undefined) how = `did not stop within ${killedAfter} s of the cancel request and was killed (SIGKILL)`;
  else if (signal !== null) how = `was killed by ${signal}`;
  else how = `exited with code ${code}`;
  const tail = stderrTail.length > 0 ? `; last output:\n${stderrTail.join('\n')}` : '';
  return `the backend ${how} without finishing the run${tail}`;
}

function writeRunInfo(run: Run): void {
  const file = path.join(run.folder, RUN_FILE);
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(run.info, null, 2) + '\n');
  renameSync(tmp, file);
}

function readTimes(file: string): number[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '').map(Number);
}

function closeStream(s: WriteStream): Promise<void> {
  return new Promise((resolve) => s.end(() => resolve()));
}

function quoteForLog(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : JSON.stringify(arg);
}
