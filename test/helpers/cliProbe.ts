// The prunekit CLI as a user meets it, measured: this source tree bundled once (as the extension ships it), each
// run's exit code, NDJSON events, wall time and peak RSS (GNU time's %M), and hashes to prove inputs unchanged.

import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { build } from 'esbuild';
import { Event, parseEvent } from '../../src/protocol/events';

export const repoRoot = path.resolve(__dirname, '..', '..');

/** Bundles src/backend/cli/main.ts to `outfile` (default `dist/<name>/backend.js`; onnxruntime-node resolved from the repository). */
export async function bundleCli(name: string, outfile = path.join(repoRoot, 'dist', name, 'backend.js')): Promise<string> {
  const { alias } = createRequire(__filename)(path.join(repoRoot, 'esbuild.js')) as { alias: Record<string, string> }; // as npm run build resolves packages
  await build({ entryPoints: [path.join(repoRoot, 'src/backend/cli/main.ts')], outfile, bundle: true, platform: 'node', format: 'cjs', target: 'node20', external: ['onnxruntime-node'], alias, logLevel: 'silent' });
  return outfile;
}

export interface CliRun {
  code: number | null;
  events: Event[];
  stderr: string;
  seconds: number;
  /** Peak resident set of the CLI process, bytes. */
  peakRss: number;
}

/** Runs `node cli args…` under /usr/bin/time, in `cwd`, with `env` added. */
/** `env` is added to this process's; a variable set to undefined is removed. */
export function runCli(cli: string, args: string[], opts: { cwd?: string; env?: Record<string, string | undefined>; timeoutMs?: number } = {}): CliRun {
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', 'maxrss=%M', process.execPath, cli, ...args], { encoding: 'utf8', cwd: opts.cwd, env: { ...process.env, ...opts.env }, timeout: opts.timeoutMs ?? 60_000 });
  const seconds = (performance.now() - t0) / 1000;
  const rss = /maxrss=(\d+)\s*$/.exec(r.stderr);
  const stdout = r.stdout ?? '';
  const events = stdout.split('\n').filter((l) => l.startsWith('{')).map(parseEvent);
  // GNU time reports a killed or failed child's status as its own: its exit code is the child's.
  return { code: r.status, events, stderr: r.stderr.replace(/(Command exited with non-zero status \d+\n)?maxrss=\d+\s*$/, ''), seconds, peakRss: rss ? Number(rss[1]) * 1024 : NaN };
}

/** A run in the background: its events as they come, and a way to kill it. */
export function startCli(cli: string, args: string[], onEvent: (e: Event) => void): { child: ReturnType<typeof spawn>; closed: Promise<number | null> } {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let buf = '';
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.startsWith('{')) onEvent(parseEvent(line));
    }
  });
  child.stderr?.resume();
  const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, closed };
}

/** sha256 over a file or a folder tree (names and bytes), so any change to an input shows. */
export function hashTree(p: string): string {
  const h = createHash('sha256');
  const walk = (q: string) => {
    const st = lstatSync(q);
    if (st.isDirectory()) {
      for (const f of readdirSync(q).sort()) {
        h.update(`${f}/`);
        walk(path.join(q, f));
      }
    } else if (st.isFile()) {
      h.update(readFileSync(q));
    }
  };
  if (existsSync(p)) walk(p);
  return h.digest('hex');
}

/** Names beside `out` (in its folder) that start with its name: the output and any temporary of it. */
export function besideOut(out: string): string[] {
  const dir = path.dirname(out);
  if (!existsSync(dir) || !lstatSync(dir).isDirectory()) return [];
  return readdirSync(dir).filter((f) => f === path.basename(out) || f.startsWith(`${path.basename(out)}.`));
}

/** A read-only folder: a read-only tmpfs where mounting is allowed (root), else a folder without write permission. */
export function readOnlyFolder(dir: string): { expected: 'write-failed' | 'permission-denied'; release(): void } {
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', dir], { encoding: 'utf8' });
  if (m.status === 0) return { expected: 'write-failed', release: () => void spawnSync('umount', [dir]) };
  spawnSync('chmod', ['0555', dir]);
  return { expected: 'permission-denied', release: () => rmSync(dir, { recursive: true, force: true }) };
}
