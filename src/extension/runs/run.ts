// One run as the host knows it: its record (run.json), its events with their arrival times, and the progress
// folded from them (foldProgress, the one fold every surface uses). The manager (runManager.ts) creates, feeds
// and ends runs; panels and views only read them.

import type { ChildProcess } from 'node:child_process';
import type { Event } from '../../protocol/events';
import { emptyProgress, foldProgress, markInterrupted, RunProgress, RunStatus } from '../../protocol/progress';
import type { RunSnapshot } from '../../protocol/webview';
import { runLabel } from './describe';

/** run.json. */
export interface RunInfo {
  checkpoint: string;
  config: string | null;
  label: string;
  startedAt: number;
  pid: number | null;
  /** The backend's argv after the executable (for the log; never re-run through a shell). */
  args: string[];
  ended?: { at: number; code: number | null; signal: string | null; interruption?: string };
}

/** Where a run came from: started in this session, read back from the storage dir, or found as an output folder. */
export type RunOrigin = 'live' | 'stored' | 'output';

export class Run {
  events: Event[] = [];
  times: number[] = [];
  progress: RunProgress = emptyProgress();
  interruption: string | undefined;
  /** The backend, while it runs. */
  child: ChildProcess | undefined;
  /** Cancel bookkeeping: the cancel line sent; the SIGKILL timer; the grace after which SIGKILL was needed. */
  cancelRequested = false;
  killTimer: NodeJS.Timeout | undefined;
  killedAfterGrace: number | undefined;
  /** Resolves when the backend exited (at once for a run read from disk). */
  readonly ended: Promise<void>;
  /** Called once by whoever ends the run (the manager, or the loader of a run read from disk). */
  readonly markEnded: () => void;

  constructor(
    /** The run's folder: under the storage dir, or the output folder of a found run. Also its id. */
    readonly folder: string,
    readonly origin: RunOrigin,
    readonly info: RunInfo,
  ) {
    let resolve!: () => void;
    this.ended = new Promise((r) => (resolve = r));
    this.markEnded = resolve;
  }

  get id(): string {
    return this.folder;
  }

  get status(): RunStatus {
    return this.progress.status;
  }

  /** The backend process is still running. */
  get live(): boolean {
    return this.child !== undefined;
  }

  get label(): string {
    return this.progress.method === null ? this.info.label : runLabel(this.progress.model ?? this.info.checkpoint, this.progress);
  }

  /** The finished output folder (where it is now, for a found one). */
  get output(): string | null {
    if (this.origin === 'output') return this.folder;
    return this.progress.output;
  }

  /** The output folder run.started announced (the run may not have written it yet). */
  get plannedOutput(): string | null {
    const started = this.events.find((e) => e.type === 'run.started');
    return started?.type === 'run.started' ? started.config.output : null;
  }

  record(event: Event, time: number): void {
    this.events.push(event);
    this.times.push(time);
    this.progress = foldProgress(this.progress, event, time);
  }

  interrupt(message: string): void {
    this.interruption = message;
    this.progress = markInterrupted(this.progress, message);
  }

  snapshot(): RunSnapshot {
    return {
      id: this.id,
      label: this.label,
      status: this.status,
      events: [...this.events],
      times: [...this.times],
      ...(this.interruption !== undefined ? { interruption: this.interruption } : {}),
    };
  }
}
