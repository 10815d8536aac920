// The `prunekit.checkpointFolders` context key: fsPaths of workspace folders that hold a model (model.onnx,
// config.json with *.safetensors, or config.json with onnx/*.onnx variants as transformers.js repositories lay
// them out), so the Explorer offers "Prune Model…" on exactly those folders
// (`explorerResourceIsFolder && resourcePath in prunekit.checkpointFolders`). Kept current by a watcher.

import * as path from 'node:path';
import * as vscode from 'vscode';
import { splitVariants } from '../../protocol/variants';

const MARKERS = '**/{config.json,*.onnx,*.safetensors}';
const EXCLUDE = '**/{node_modules,.git}/**';
const MAX_FILES = 20_000;
const DEBOUNCE_MS = 500;

/** The folders among `files` (fsPaths of marker files) that are checkpoints. */
export function checkpointFoldersOf(files: readonly string[]): string[] {
  const byFolder = new Map<string, Set<string>>();
  const mark = (dir: string, name: string) => {
    if (!byFolder.has(dir)) byFolder.set(dir, new Set());
    (byFolder.get(dir) as Set<string>).add(name);
  };
  for (const f of files) {
    const dir = path.dirname(f);
    const name = path.basename(f);
    if (name.endsWith('.safetensors')) mark(dir, '*.safetensors');
    else if (name.endsWith('.onnx') && path.basename(dir) === 'onnx') mark(path.dirname(dir), 'onnx/*.onnx');
    else mark(dir, name);
  }
  return [...byFolder]
    .filter(([, names]) => names.has('model.onnx') || (names.has('config.json') && (names.has('*.safetensors') || names.has('onnx/*.onnx'))))
    .map(([dir]) => dir).sort();
}

/**
 * For a repository folder with several float `onnx/*.onnx` variants, the one the user picks (its file: the backend
 * keeps the repository layout for it); the folder itself otherwise. undefined: the pick was dismissed.
 */
export async function pickVariant(checkpoint: vscode.Uri): Promise<vscode.Uri | undefined> {
  let files: [string, vscode.FileType][];
  try {
    files = await vscode.workspace.fs.readDirectory(vscode.Uri.joinPath(checkpoint, 'onnx'));
  } catch {
    return checkpoint; // a file, or a folder without variants
  }
  const { float, quantized } = splitVariants(files.map(([name]) => name));
  if (float.length < 2) return checkpoint;
  const picked = await vscode.window.showQuickPick(
    float.map((v) => ({ label: v, description: `onnx/${v}.onnx` })),
    { placeHolder: `Prune which variant? (float ones${quantized.length ? `; quantized ${quantized.join(', ')} cannot be pruned: quantize after` : ''})` },
  );
  return picked && vscode.Uri.joinPath(checkpoint, 'onnx', `${picked.label}.onnx`);
}

export class CheckpointFolders implements vscode.Disposable {
  private folders: string[] = [];
  private readonly watcher = vscode.workspace.createFileSystemWatcher(MARKERS);
  // Deleting a whole folder reports the folder only, which the marker glob does not match.
  private readonly deletions = vscode.workspace.createFileSystemWatcher('**/*', true, true, false);
  private timer: NodeJS.Timeout | undefined;

  constructor() {
    const soon = () => this.refreshSoon();
    this.watcher.onDidCreate(soon);
    this.watcher.onDidDelete(soon);
    this.deletions.onDidDelete((uri) => {
      const gone = uri.fsPath + path.sep;
      if (this.folders.some((f) => f === uri.fsPath || f.startsWith(gone))) soon();
    });
    void this.refresh();
  }

  /** The current list (for the Prune Model… picker). */
  get list(): readonly string[] {
    return this.folders;
  }

  async refresh(): Promise<void> {
    const files = await vscode.workspace.findFiles(MARKERS, EXCLUDE, MAX_FILES);
    this.folders = checkpointFoldersOf(files.map((u) => u.fsPath));
    await vscode.commands.executeCommand('setContext', 'prunekit.checkpointFolders', this.folders);
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.watcher.dispose();
    this.deletions.dispose();
  }

  private refreshSoon(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.refresh(), DEBOUNCE_MS);
  }
}

/**
 * A QuickPick of the workspace's checkpoints (model folders, then other .onnx files) plus Browse…, for the
 * commands run from the palette. `listed`: the folders a CheckpointFolders already knows (else found now).
 */
export async function pickCheckpoint(placeHolder: string, listed?: readonly string[]): Promise<vscode.Uri | undefined> {
  const folders = listed ?? checkpointFoldersOf((await vscode.workspace.findFiles(MARKERS, EXCLUDE, MAX_FILES)).map((u) => u.fsPath));
  const known = new Set(folders);
  const onnxFiles = await vscode.workspace.findFiles('**/*.onnx', EXCLUDE, 500);
  const items: (vscode.QuickPickItem & { uri?: vscode.Uri })[] = [
    ...folders.map((f) => ({ label: `$(folder) ${vscode.workspace.asRelativePath(f)}`, description: 'checkpoint folder', uri: vscode.Uri.file(f) })),
    // A model.onnx inside a listed folder is that folder already.
    ...onnxFiles.filter((u) => !(path.basename(u.fsPath) === 'model.onnx' && known.has(path.dirname(u.fsPath)))).map((uri) => ({ label: `$(file) ${vscode.workspace.asRelativePath(uri)}`, uri })),
    { label: '$(folder-opened) Browse…', description: 'a .onnx file, a folder holding model.onnx, or a Hugging Face folder' },
  ];
  const picked = await vscode.window.showQuickPick(items, { placeHolder });
  if (!picked) return undefined;
  if (picked.uri) return picked.uri;
  const chosen = await vscode.window.showOpenDialog({ canSelectFiles: true, canSelectFolders: true, canSelectMany: false, openLabel: 'Use this checkpoint', filters: { 'ONNX model': ['onnx'], 'All files': ['*'] } });
  return chosen?.[0];
}
