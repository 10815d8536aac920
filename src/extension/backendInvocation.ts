// How the extension starts its backend: the bundled dist/backend.js run by VS Code's own runtime (Electron as
// Node, so users need no Node install) or by the `prunekit.nodePath` setting. Always argv, never a shell, so
// paths with spaces, quotes and non-ASCII characters pass through untouched.

import * as path from 'node:path';
import { BACKEND_ENV } from '../protocol/backendEnv';

export interface BackendInvocation {
  /** The executable: process.execPath (Electron) or a Node binary. */
  command: string;
  /** The script and the CLI arguments. */
  args: string[];
  env: NodeJS.ProcessEnv;
}

/** The invocation of `prunekit <cliArgs...>`; `nodePath` empty means VS Code's own runtime. */
export function backendInvocation(extensionPath: string, nodePath: string, cliArgs: readonly string[], baseEnv: NodeJS.ProcessEnv = process.env): BackendInvocation {
  const script = path.join(extensionPath, 'dist', 'backend.js');
  const useOwnRuntime = nodePath.trim() === '';
  return {
    command: useOwnRuntime ? process.execPath : nodePath,
    args: [script, ...cliArgs],
    // ELECTRON_RUN_AS_NODE makes VS Code's Electron behave as plain Node; harmless for a real Node.
    env: { ...baseEnv, ...BACKEND_ENV, ELECTRON_RUN_AS_NODE: '1' },
  };
}
