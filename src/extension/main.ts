// Extension host entry point: a thin client (in the style of rust-analyzer's editors/code). Pruning runs in
// the bundled backend process (dist/backend.js); the host starts it, reads its NDJSON events
// (runs/), and shows them: the Runs view and status bar (views/), the run and Compare panels (panels/), GPU
// setup (gpu/), the *.prune.json editor features (config/) and sweeps (sweeps/).

import * as path from 'node:path';
import * as vscode from 'vscode';
import { backendInvocation } from './backendInvocation';
import { cancelRun, openReport, registerRunCommands, revealOutput, runConfig } from './commands/runCommands';
import { registerConfigFeatures } from './config';
import { RunPanels } from './panels/runPanels';
import { REPORT_FILE, RunManager } from './runs/runManager';
import { readSettings } from './settings';
import { SweepManager } from './sweeps/sweepManager';
import { registerSweeps } from './sweeps/sweepCommands';
import { CheckpointFolders } from './views/checkpointFolders';
import { notifyRunEnds } from './views/runNotifications';
import { RunsTreeProvider } from './views/runsTree';
import { RunStatusBar } from './views/statusBar';

let manager: RunManager | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const output = vscode.window.createOutputChannel('PruneKit');
  const log = (line: string) => output.appendLine(line);
  // Runs belong to the workspace; without one (an empty window) to the extension's global storage.
  const storageDir = path.join((context.storageUri ?? context.globalStorageUri).fsPath, 'runs');
  const runs = new RunManager({
    storageDir,
    backend: (cliArgs) => backendInvocation(context.extensionPath, readSettings().nodePath, cliArgs),
    log,
    cancelGraceSeconds: () => readSettings().cancelGraceSeconds,
  });
  manager = runs;
  runs.restore();
  const runsLoaded = findOutputRuns(runs, log);

  const panels = new RunPanels(context.extensionUri, runs, { cancel: (r) => cancelRun(runs, r), revealOutput, openReport }, log, runsLoaded);
  const sweeps = new SweepManager({ backend: (cliArgs) => backendInvocation(context.extensionPath, readSettings().nodePath, cliArgs), log });
  const tree = new RunsTreeProvider(runs, sweeps);
  const view = vscode.window.createTreeView('prunekit.runs', { treeDataProvider: tree, canSelectMany: true });
  const updateBadge = () => {
    const live = runs.list().filter((r) => r.live).length;
    view.badge = live > 0 ? { value: live, tooltip: `${live} pruning run${live > 1 ? 's' : ''} in progress` } : undefined;
  };
  const checkpoints = new CheckpointFolders();
  // Output folders written by runs outside VS Code (the CLI) appear in the Runs view as they land.
  const reports = vscode.workspace.createFileSystemWatcher(`**/${REPORT_FILE}`, false, true, true);
  reports.onDidCreate((uri) => runs.addOutputFolders([path.dirname(uri.fsPath)]));

  const host = { context, manager: runs, panels, checkpoints, output };
  registerRunCommands(host);
  registerSweeps({ context, sweeps, runs, runPanels: panels, log });
  registerConfigFeatures(context, { runConfig: (uri) => runConfig(host, uri), nodePath: () => readSettings().nodePath });
  context.subscriptions.push(
    output, panels, tree, view, checkpoints, reports,
    new RunStatusBar(runs),
    runs.onDidChange((c) => {
      if (c.kind !== 'event') updateBadge();
    }),
    notifyRunEnds(runs, (r) => panels.showRun(r), (r) => void revealOutput(r)),
  );
}

/** Live backends get SIGTERM (they remove their temporary output) and SIGKILL if they do not stop. */
export async function deactivate(): Promise<void> {
  await manager?.disposeAll();
  manager = undefined;
}

async function findOutputRuns(runs: RunManager, log: (line: string) => void): Promise<void> {
  try {
    const reports = await vscode.workspace.findFiles(`**/${REPORT_FILE}`, '**/node_modules/**', 1000);
    runs.addOutputFolders(reports.map((u) => path.dirname(u.fsPath)));
  } catch (e) {
    log(`looking for finished runs in the workspace failed: ${(e as Error).message}`);
  }
}
