// "PruneKit: New Pruning Config" and the Prune Model… flow's pickOrCreateConfig: find the configs that point
// at a checkpoint, or write a new one beside it from the prunekit.* settings, open it, and offer to run it.
// Thin: naming, discovery and the text itself are in discovery.ts and template.ts.

import { accessSync, constants, readdirSync, realpathSync, writeFileSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { LIMITS } from '../../protocol/limits';
import { KNOWN_METHODS, MethodName } from '../../protocol/pruning';
import { checkpointKey, ConfigFile, configsForCheckpoint, newConfigPath } from './discovery';
import { modelFileOf } from './inspectCache';
import { pickCheckpoint } from '../views/checkpointFolders';
import { ConfigServices, kindOf } from './services';
import { newConfigText, NewConfigSettings } from './template';

const EXCLUDE = '{**/node_modules/**,**/.git/**}';

/** The Prune Model… flow: a config to run now, or undefined (a new config was opened for review, or nothing picked). */
export async function pickOrCreateConfig(services: ConfigServices, checkpoint: vscode.Uri): Promise<vscode.Uri | undefined> {
  const existing = await configsPointingAt(checkpoint.fsPath);
  if (existing.length === 0) {
    await createConfig(services, checkpoint);
    return undefined;
  }
  type Item = vscode.QuickPickItem & { config?: vscode.Uri };
  const items: Item[] = existing.map((c) => ({
    label: `$(file-code) ${path.basename(c.path)}`,
    description: vscode.workspace.asRelativePath(path.dirname(c.path)),
    config: vscode.Uri.file(c.path),
  }));
  items.push({ label: '$(add) Create new config…', description: `a new *.prune.json for ${path.basename(checkpointKey(checkpoint.fsPath))}` });
  const picked = await vscode.window.showQuickPick(items, { title: `Prune ${path.basename(checkpoint.fsPath)}`, placeHolder: 'Run an existing pruning config, or create a new one' });
  if (!picked) return undefined;
  if (picked.config) return picked.config;
  await createConfig(services, checkpoint);
  return undefined;
}

/** prunekit.newConfig: for the Explorer's .onnx file or folder, else a checkpoint the user picks. */
export async function newConfigCommand(services: ConfigServices, target?: vscode.Uri): Promise<void> {
  const checkpoint = target instanceof vscode.Uri ? target : await pickCheckpoint('Which checkpoint will this config prune?');
  if (checkpoint) await createConfig(services, checkpoint);
}

/** Writes `<model>.prune.json` beside the checkpoint (never over a file), opens it, offers Run. */
async function createConfig(services: ConfigServices, checkpoint: vscode.Uri): Promise<vscode.Uri | undefined> {
  const ckpt = checkpoint.fsPath;
  try {
    modelFileOf(ckpt); // a folder without a model is not a checkpoint: say so now, not in the new file
  } catch (e) {
    void vscode.window.showErrorMessage(`PruneKit: ${(e as Error).message}`);
    return undefined;
  }
  const key = checkpointKey(ckpt);
  const besideModel = path.dirname(key);
  const root = workspaceRootOf(checkpoint);
  const dir = isWritable(besideModel) ? besideModel : root;
  if (!dir) {
    void vscode.window.showErrorMessage(`PruneKit: cannot write a config beside ${key} (read-only) and no workspace folder is open.`);
    return undefined;
  }
  const settings = readSettings(checkpoint);
  const dataCandidates = await nearbyDataFiles(key);
  let target = '';
  for (let attempt = 0; ; attempt++) {
    target = newConfigPath(ckpt, (p) => kindOf(p) !== undefined, dir);
    try {
      // 'wx': fails rather than overwrite a file created since newConfigPath looked.
      writeFileSync(target, newConfigText({ configPath: target, checkpoint: key, settings, dataCandidates }), { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 3) {
        void vscode.window.showErrorMessage(`PruneKit: could not write ${target}: ${(e as Error).message}`);
        return undefined;
      }
    }
  }
  const uri = vscode.Uri.file(target);
  await vscode.window.showTextDocument(uri);
  void vscode.window.showInformationMessage(`Created ${path.basename(target)}. Review it, then run.`, 'Run').then((choice) => {
    if (choice === 'Run') void services.run(uri);
  });
  return uri;
}

/** The *.prune.json files of the workspace (and beside the checkpoint) whose checkpoint is this one. */
async function configsPointingAt(checkpoint: string): Promise<ConfigFile[]> {
  const paths = new Set((await vscode.workspace.findFiles('**/*.prune.json', EXCLUDE, 2000)).map((u) => u.fsPath));
  const beside = path.dirname(checkpointKey(checkpoint));
  for (const f of safeReaddir(beside)) if (f.endsWith('.prune.json')) paths.add(path.join(beside, f));
  const files: ConfigFile[] = [];
  for (const p of [...paths].sort()) {
    const open = vscode.workspace.textDocuments.find((d) => d.uri.fsPath === p);
    try {
      if (!open && (await stat(p)).size > LIMITS.configBytes) continue; // never read a bomb into the host
      files.push({ path: p, text: open ? open.getText() : await readFile(p, 'utf8') });
    } catch {
      // deleted since the search: not a candidate
    }
  }
  return configsForCheckpoint(checkpoint, files, realpathSync.native);
}


/** The prunekit.* settings for this checkpoint's workspace folder, relative paths made absolute against it. */
function readSettings(scope: vscode.Uri): NewConfigSettings {
  const c = vscode.workspace.getConfiguration('prunekit', scope);
  const root = workspaceRootOf(scope) ?? path.dirname(scope.fsPath);
  const pathSetting = (name: string) => {
    const v = (c.get<string>(name) ?? '').trim();
    return v === '' ? '' : path.resolve(root, v.replace(/^~(?=$|[\\/])/, process.env.HOME ?? '~'));
  };
  const method = c.get<string>('defaultMethod') ?? 'apt';
  return {
    method: (KNOWN_METHODS as readonly string[]).includes(method) ? (method as MethodName) : 'apt',
    sparsity: c.get<number>('defaultSparsity') ?? 0.5,
    pattern: c.get<string>('defaultPattern') ?? 'unstructured',
    device: c.get<string>('device') ?? 'auto',
    calibrationPath: pathSetting('calibrationPath'),
    evaluationPath: pathSetting('evaluationPath'),
    outputDirectory: pathSetting('outputDirectory'),
  };
}

/** Text files that may be calibration or evaluation data: beside the model, one folder up, then the workspace. */
async function nearbyDataFiles(checkpointKeyPath: string): Promise<string[]> {
  const isData = (f: string) => /\.(txt|jsonl|raw)$/i.test(f);
  const out: string[] = [];
  const modelDir = kindOf(checkpointKeyPath) === 'folder' ? checkpointKeyPath : path.dirname(checkpointKeyPath);
  for (const dir of [modelDir, path.dirname(modelDir), path.join(path.dirname(modelDir), 'data')]) {
    for (const f of safeReaddir(dir)) if (isData(f)) out.push(path.join(dir, f));
  }
  const inWorkspace = await vscode.workspace.findFiles('**/*.{txt,jsonl,raw}', EXCLUDE, 500);
  out.push(...inWorkspace.map((u) => u.fsPath).sort());
  return [...new Set(out)];
}

function workspaceRootOf(uri: vscode.Uri): string | undefined {
  return (vscode.workspace.getWorkspaceFolder(uri) ?? vscode.workspace.workspaceFolders?.[0])?.uri.fsPath;
}

function isWritable(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
