// The extension's commands (package.json `contributes.commands`): starting runs (Prune Model…, Run Pruning
// Config, the demo) and acting on them (open, cancel, reveal output, delete, compare). Each run command takes
// its run from the Runs view (a Run), from a panel or the status bar (a run id), or asks with a quick pick.

import { existsSync } from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { ConfigError, parseConfigText, resolveConfig } from '../../protocol/config';
import { configSizeProblem } from '../../protocol/limits';
import { pickOrCreateConfig } from '../config';
import { describeProgress } from '../runs/describe';
import { Run } from '../runs/run';
import { REPORT_FILE, RunManager } from '../runs/runManager';
import type { RunPanels } from '../panels/runPanels';
import { setUpGpu } from '../gpu/setUpGpu';
import { readSettings } from '../settings';
import { CheckpointFolders, pickCheckpoint, pickVariant } from '../views/checkpointFolders';

export interface CommandHost {
  context: vscode.ExtensionContext;
  manager: RunManager;
  panels: RunPanels;
  checkpoints: CheckpointFolders;
  output: vscode.OutputChannel;
}

export function registerRunCommands(host: CommandHost): void {
  const { manager, panels } = host;
  const register = (id: string, fn: (...args: unknown[]) => unknown) => host.context.subscriptions.push(vscode.commands.registerCommand(id, fn));

  register('prunekit.pruneModel', async (arg) => {
    const chosen = arg instanceof vscode.Uri ? arg : await pickCheckpoint('Prune which model?', host.checkpoints.list);
    const checkpoint = chosen && await pickVariant(chosen);
    if (!checkpoint) return;
    const config = await pickOrCreateConfig(checkpoint);
    if (config) await runConfig(host, config);
  });
  register('prunekit.runConfig', async (arg) => {
    const config = arg instanceof vscode.Uri ? arg : await pickConfig();
    if (config) await runConfig(host, config);
  });
  register('prunekit.demo', () => {
    const device = readSettings().device;
    const run = manager.start({ command: 'demo', checkpoint: '', config: null, device: device === 'auto' ? undefined : device });
    panels.showRun(run);
  });
  register('prunekit.openRun', async (arg) => {
    const run = await pickRun(manager, arg, () => true, 'Open which run?');
    if (run) panels.showRun(run);
  });
  register('prunekit.cancelRun', async (arg) => {
    const run = await pickRun(manager, arg, (r) => r.live, 'Cancel which run?', 'running');
    if (run) cancelRun(manager, run);
  });
  register('prunekit.revealOutput', async (arg) => {
    const run = await pickRun(manager, arg, (r) => r.output !== null, 'Reveal the output of which run?', 'finished');
    if (run) await revealOutput(run);
  });
  register('prunekit.deleteRun', async (arg) => {
    const run = await pickRun(manager, arg, (r) => !r.live, 'Delete which run?', 'ended');
    if (run) await deleteRun(manager, run);
  });
  register('prunekit.compareRuns', async (arg, selected) => {
    const runs = await pickRunsToCompare(manager, arg, selected);
    if (runs) panels.showCompare(runs);
  });
  register('prunekit.setUpGpu', () => setUpGpu(host.context.extensionPath, readSettings().nodePath, host.output));
}

/** The panel's and the view's actions. */
export function cancelRun(manager: RunManager, run: Run): void {
  if (!run.live) return;
  vscode.window.setStatusBarMessage(`PruneKit: cancelling ${run.label}…`, manager.cancel(run.id));
}

export async function revealOutput(run: Run): Promise<void> {
  const output = run.output;
  if (output === null || !existsSync(output)) {
    void vscode.window.showWarningMessage(`PruneKit: ${run.label} has no output folder${output ? ` (${output} is gone)` : ''}.`);
    return;
  }
  const uri = vscode.Uri.file(output);
  // In the workspace: show it in the Explorer; elsewhere: the OS file manager.
  await vscode.commands.executeCommand(vscode.workspace.getWorkspaceFolder(uri) ? 'revealInExplorer' : 'revealFileInOS', uri);
}

export async function openReport(run: Run): Promise<void> {
  const report = run.output === null ? null : path.join(run.output, REPORT_FILE);
  if (report === null || !existsSync(report)) {
    void vscode.window.showWarningMessage(`PruneKit: ${run.label} has no ${REPORT_FILE}${report ? ` (${report} is gone)` : ''}.`);
    return;
  }
  await vscode.window.showTextDocument(vscode.Uri.file(report), { preview: true });
}

/**
 * Runs a *.prune.json: saves it if it is open and dirty, checks it with the protocol's resolver (errors name
 * their JSON path), applies the device and output-directory settings where the file leaves them out, and
 * starts the backend with the run panel open beside the config.
 */
export async function runConfig(host: CommandHost, uri: vscode.Uri): Promise<void> {
  const open = vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri.toString());
  if (open?.isDirty) await open.save();
  const name = vscode.workspace.asRelativePath(uri);
  let raw: Record<string, unknown>;
  let config: ReturnType<typeof resolveConfig>;
  try {
    // A file over the size limit is refused by its size, never read into the host.
    const size = open ? 0 : (await vscode.workspace.fs.stat(uri)).size;
    const tooBig = configSizeProblem(size);
    if (tooBig) throw new ConfigError([tooBig], 'limit-exceeded');
    const text = open ? open.getText() : new TextDecoder().decode(await vscode.workspace.fs.readFile(uri));
    raw = parseConfigText(text) as Record<string, unknown>;
    config = resolveConfig(raw, path.dirname(uri.fsPath));
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return showConfigErrors(host, uri, name, e);
  }

  const settings = readSettings();
  const extraArgs: string[] = [];
  let output = config.output;
  if ((raw.output === undefined || raw.output === null) && settings.outputDirectory !== '') {
    const base = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? path.dirname(uri.fsPath);
    output = path.join(path.resolve(base, settings.outputDirectory), path.basename(config.output));
    extraArgs.push('--out', output);
  }
  if (!config.overwrite && existsSync(output)) {
    const replace = 'Replace';
    const choice = await vscode.window.showWarningMessage(`The output folder already exists: ${output}`, {
      modal: true,
      detail: 'Replace it with this run\'s pruned model? The old folder is replaced only when the new run completes.',
    }, replace);
    if (choice !== replace) return;
    extraArgs.push('--overwrite');
  }
  // The config's own device wins; the setting fills in when the file says nothing.
  const device = raw.device === undefined && settings.device !== 'auto' ? settings.device : undefined;
  const run = host.manager.start({ checkpoint: config.checkpoint, config: uri.fsPath, device, extraArgs });
  host.panels.showRun(run, { beside: true });
}

function showConfigErrors(host: CommandHost, uri: vscode.Uri, name: string, e: ConfigError): void {
  const [first, ...rest] = e.problems;
  host.output.appendLine(`${uri.fsPath}: the config is not valid:\n${e.problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}`);
  const more = rest.length > 0 ? ` (and ${rest.length} more problem${rest.length > 1 ? 's' : ''})` : '';
  void vscode.window.showErrorMessage(`PruneKit: ${name}: ${first.path}: ${first.message}${more}`, 'Open Config', 'Show All').then((choice) => {
    if (choice === 'Open Config') void vscode.window.showTextDocument(uri);
    if (choice === 'Show All') host.output.show(true);
  });
}

async function deleteRun(manager: RunManager, run: Run): Promise<void> {
  if (run.live) {
    void vscode.window.showWarningMessage(`PruneKit: ${run.label} is still running; cancel it first.`);
    return;
  }
  const output = run.output !== null && existsSync(run.output) ? run.output : null;
  let deleteOutput = false;
  if (output !== null) {
    const both = 'Delete Run and Output Folder';
    const listOnly = 'Remove from List Only';
    const choice = await vscode.window.showWarningMessage(`Delete the run "${run.label}"?`, { modal: true, detail: `Its output folder holds the pruned model:\n${output}` }, both, listOnly);
    if (choice === undefined) return;
    deleteOutput = choice === both;
  }
  try {
    await manager.delete(run.id, { deleteOutput });
  } catch (e) {
    void vscode.window.showErrorMessage(`PruneKit: could not delete ${run.label}: ${(e as Error).message}`);
  }
}

async function pickRunsToCompare(manager: RunManager, arg: unknown, selected: unknown): Promise<Run[] | undefined> {
  // From the Runs view with several finished runs selected: those.
  if (Array.isArray(selected)) {
    const runs = selected.filter((r): r is Run => r instanceof Run && r.status === 'finished');
    if (runs.length >= 2) return runs;
  }
  const finished = manager.list().filter((r) => r.status === 'finished');
  if (finished.length < 2) {
    void vscode.window.showInformationMessage(`PruneKit: comparing needs at least two finished runs (${finished.length === 0 ? 'there are none' : 'there is one'}).`);
    return undefined;
  }
  const first = arg instanceof Run ? arg : typeof arg === 'string' ? manager.get(arg) : undefined;
  const picked = await vscode.window.showQuickPick(
    finished.map((run) => ({ ...runItem(run), picked: run === first })),
    { canPickMany: true, title: 'Compare Runs', placeHolder: 'Pick the finished runs to compare' },
  );
  return picked && picked.length > 0 ? picked.map((p) => p.run) : undefined;
}

async function pickRun(manager: RunManager, arg: unknown, allowed: (r: Run) => boolean, placeHolder: string, kind = ''): Promise<Run | undefined> {
  if (arg instanceof Run) return arg;
  if (typeof arg === 'string') return manager.get(arg);
  const runs = manager.list().filter(allowed);
  if (runs.length === 0) {
    void vscode.window.showInformationMessage(`PruneKit: no ${kind ? `${kind} ` : ''}runs.`);
    return undefined;
  }
  return (await vscode.window.showQuickPick(runs.map(runItem), { placeHolder }))?.run;
}

function runItem(run: Run): vscode.QuickPickItem & { run: Run } {
  return { label: run.label, description: describeProgress(run.progress), detail: run.output ?? run.info.checkpoint, run };
}

async function pickConfig(): Promise<vscode.Uri | undefined> {
  const active = vscode.window.activeTextEditor?.document.uri;
  if (active && active.path.endsWith('.prune.json')) return active;
  const files = await vscode.workspace.findFiles('**/*.prune.json', '**/node_modules/**', 500);
  if (files.length === 0) {
    void vscode.window.showInformationMessage('PruneKit: no *.prune.json config in the workspace. Create one with "PruneKit: New Pruning Config" or "PruneKit: Prune Model…".');
    return undefined;
  }
  if (files.length === 1) return files[0];
  return (await vscode.window.showQuickPick(files.map((uri) => ({ label: vscode.workspace.asRelativePath(uri), uri })), { placeHolder: 'Run which pruning config?' }))?.uri;
}
