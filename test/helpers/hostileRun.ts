// Runs the CLI from sources on a hostile input and measures what issue 12 promises of every refusal: the exit
// code, the run.failed event, the wall time, the child's peak RSS (written by a preload at exit), the inputs'
// bytes (hashed before and after) and nothing left at or beside --out.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Event } from '../../src/protocol/events';
import { repoRoot } from './realLayers';

const CLI = path.join(repoRoot, 'src', 'backend', 'cli', 'main.ts');
const RSS_PRELOAD = pathToFileURL(path.join(__dirname, 'maxRssAtExit.mjs')).href;

export interface HostileResult {
  status: number | null;
  failed: Extract<Event, { type: 'run.failed' }> | undefined;
  seconds: number;
  /** The child's peak resident set, bytes. */
  maxRss: number;
  /** The child's CPU time (user + system), seconds. */
  cpuSeconds: number;
  stderr: string;
}

/** sha256 of every file under the paths (folders walked, symlinks followed), by path. */
export function hashInputs(paths: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (p: string) => {
    if (statSync(p).isDirectory()) for (const f of readdirSync(p).sort()) walk(path.join(p, f));
    else out.set(p, createHash('sha256').update(readFileSync(p)).digest('hex'));
  };
  for (const p of paths) walk(p);
  return out;
}

/**
 * The wall-time bound scaled by how overloaded the machine is (load average per core, at least 1): on an idle
 * machine exactly `seconds`; the CPU-time bound is never scaled.
 */
export function loadScaled(seconds: number): number {
  return seconds * Math.max(1, os.loadavg()[0] / os.cpus().length);
}

/** `prunekit <args> --json` from sources, with its peak RSS and CPU time recorded. */
export function runHostile(args: readonly string[], cwd: string): HostileResult {
  const rssFile = path.join(cwd, `.max-rss-${process.pid}-${Date.now()}`);
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--import', RSS_PRELOAD, CLI, ...args, '--json'], {
    cwd: repoRoot, encoding: 'utf8', timeout: 60_000, env: { ...process.env, PRUNEKIT_TEST_RSS_FILE: rssFile }, maxBuffer: 64 << 20,
  });
  const seconds = (performance.now() - t0) / 1000;
  const usage = existsSync(rssFile) ? (JSON.parse(readFileSync(rssFile, 'utf8')) as { maxRss: number; cpu: number }) : { maxRss: NaN, cpu: NaN };
  rmSync(rssFile, { force: true });
  const events = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Event);
  const failed = events.find((e): e is Extract<Event, { type: 'run.failed' }> => e.type === 'run.failed');
  return { status: r.status, failed, seconds, maxRss: usage.maxRss * 1024, cpuSeconds: usage.cpu / 1e6, stderr: r.stderr };
}

/** Entries at `out` or beside it whose names start with its name (temporary folders, spill files). */
export function leftoversOf(out: string): string[] {
  const dir = path.dirname(out);
  const base = path.basename(out);
  return existsSync(dir) ? readdirSync(dir).filter((f) => f === base || f.startsWith(`${base}.`)) : [];
}

/** A copy of a Hugging Face fixture folder in `dir` (created, so writable) with config.json rewritten by `edit`
 *  (returning the new object, or the file's whole text). */
export function editedHfCopy(fixture: string, dir: string, edit: (config: Record<string, unknown>) => Record<string, unknown> | string): string {
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(fixture)) if (f !== 'config.json') copyFileSync(path.join(fixture, f), path.join(dir, f));
  const edited = edit(JSON.parse(readFileSync(path.join(fixture, 'config.json'), 'utf8')) as Record<string, unknown>);
  writeFileSync(path.join(dir, 'config.json'), typeof edited === 'string' ? edited : JSON.stringify(edited));
  return dir;
}
