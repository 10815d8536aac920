// The sweep commands (Run Sweep from a config's CodeLens, the Explorer or the palette; open, open a point, cancel
// from the Runs view) and where the extension finds sweeps: every sweep.json in the workspace, now and as they appear.

import * as path from 'node:path';
import * as vscode from 'vscode';
import { pointPaths, SWEEP_INDEX_FILE } from '../../protocol/sweep';
import type { RunPanels } from '../panels/runPanels';
import type { RunManager } from '../runs/runManager';
import type { SweepManager } from './sweepManager';
import { isSweepNode } from './sweepNodes';
import { SweepPanels } from './sweepPanels';

export interface SweepHost {
  context: vscode.ExtensionContext;
  sweeps: SweepManager;
  runs: RunManager;
  runPanels: RunPanels;
  log(line: string): void;
}

export const RUN_SWEEP = 'prunekit.runSweep';

export function registerSweeps(host: SweepHost): void {
  const { sweeps, context } = host;
  const panels = new SweepPanels(context.extensionUri, sweeps, (dir, point) => openPoint(host, dir, point));
  const watcher = vscode.workspace.createFileSystemWatcher(`**/${SWEEP_INDEX_FILE}`);
  const seen = (uri: vscode.Uri) => sweeps.refresh(path.dirname(uri.fsPath));
  watcher.onDidCreate(seen);
  watcher.onDidChange(seen);
  const register = (id: string, fn: (...args: unknown[]) => unknown) => context.subscriptions.push(vscode.commands.registerCommand(id, fn));
  register(RUN_SWEEP, async (arg) => {
    const config = arg instanceof vscode.Uri ? arg : await pickSweepConfig();
    if (!config) return;
    await vscode.workspace.textDocuments.find((d) => d.uri.fsPath === config.fsPath && d.isDirty)?.save();
    sweeps.start(config.fsPath, (dir) => panels.show(dir));
  });
  register('prunekit.openSweep', (node) => isSweepNode(node) && panels.show(node.dir));
  register('prunekit.openSweepPoint', (node) => isSweepNode(node) && node.kind === 'sweepPoint' && openPoint(host, node.dir, node.point));
  register('prunekit.cancelSweep', (node) => isSweepNode(node) && sweeps.cancel(node.dir));
  context.subscriptions.push(panels, watcher, { dispose: () => sweeps.dispose() });
  void findSweeps(sweeps, host.log);
}

/** A point's run panel: its run folder loaded as a finished run (once) and shown. */
function openPoint(host: SweepHost, dir: string, point: string): void {
  const { output } = pointPaths(dir, point);
  host.runs.addOutputFolders([output]);
  const run = host.runs.get(output);
  if (run) host.runPanels.showRun(run, { beside: true });
  else void vscode.window.showInformationMessage(`PruneKit: point ${point} has no finished run yet.`);
}

async function findSweeps(sweeps: SweepManager, log: (line: string) => void): Promise<void> {
  try {
    for (const uri of await vscode.workspace.findFiles(`**/${SWEEP_INDEX_FILE}`, '**/node_modules/**', 200)) sweeps.refresh(path.dirname(uri.fsPath));
  } catch (e) {
    log(`looking for sweeps in the workspace failed: ${(e as Error).message}`);
  }
}

async function pickSweepConfig(): Promise<vscode.Uri | undefined> {
  const found = await vscode.workspace.findFiles('**/*.prune.json', '**/node_modules/**', 200);
  const picked = await vscode.window.showQuickPick(found.map((uri) => ({ label: vscode.workspace.asRelativePath(uri), uri })), { placeHolder: 'Run the sweep of which config?' });
  return picked?.uri;
}
