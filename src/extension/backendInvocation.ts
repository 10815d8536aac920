// How the extension starts its backend: the bundled dist/backend.js run by VS Code's own runtime (Electron as
// Node, so users need no Node install) or by the `prunekit.nodePath` setting. Always argv, never a shell, so
// paths with spaces, quotes and non-ASCII characters pass through untouched (on Windows too: no cmd.exe quoting).

import * as path from 'node:path';
import { BACKEND_ENV } from '../protocol/backendEnv';

export interface BackendInvocation {
  /** The executable: process.execPath (Electron) or a Node binary. */
  command: string;
  /** The script and the CLI arguments. */
  args: string[];
  env: NodeJS.ProcessEnv;
}

/** What the invocation depends on in the running process (faked in tests to build Windows or macOS invocations). */
export interface Host {
  platform: NodeJS.Platform;
  /** VS Code's runtime: Code.exe on Windows, the Electron helper on macOS, `code` on Linux. */
  execPath: string;
}

export const THIS_HOST: Host = { platform: process.platform, execPath: process.execPath };

/** The path functions of `platform` (path.win32 for Windows paths, whatever platform this runs on). */
export function pathsOf(platform: NodeJS.Platform): path.PlatformPath {
  return platform === 'win32' ? path.win32 : path.posix;
}

/** A key that is equal for two spellings of one folder: on Windows, paths differ in case without naming different
 *  files (and VS Code's fsPath writes the drive letter lower-case where Node writes it upper-case). */
export function pathKey(p: string, platform: NodeJS.Platform = process.platform): string {
  const resolved = pathsOf(platform).resolve(p);
  return platform === 'win32' ? resolved.toLowerCase() : resolved;
}

/** The invocation of `prunekit <cliArgs...>`; `nodePath` empty means VS Code's own runtime. */
export function backendInvocation(extensionPath: string, nodePath: string, cliArgs: readonly string[], baseEnv: NodeJS.ProcessEnv = process.env, host: Host = THIS_HOST): BackendInvocation {
  const script = pathsOf(host.platform).join(extensionPath, 'dist', 'backend.js');
  const useOwnRuntime = nodePath.trim() === '';
  return {
    command: useOwnRuntime ? host.execPath : nodePath,
    args: [script, ...cliArgs],
    // ELECTRON_RUN_AS_NODE makes VS Code's Electron behave as plain Node; harmless for a real Node.
    env: { ...baseEnv, ...BACKEND_ENV, ELECTRON_RUN_AS_NODE: '1' },
  };
}
