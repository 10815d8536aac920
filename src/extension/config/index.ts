// PLACEHOLDER — replaced on merge by the editor-features helper's src/extension/config/ (CodeLens "Run",
// diagnostics, completion, the real "Prune Model…" flow that creates `<model>.prune.json`). It exists so the
// host builds and runs on its own; it keeps the contract's signatures exactly.

import * as vscode from 'vscode';

export interface ConfigFeatureHost {
  runConfig(config: vscode.Uri): Promise<void>;
  nodePath(): string;
}

/** Placeholder: only registers `prunekit.newConfig`, which opens an untitled JSON document to start from. */
export function registerConfigFeatures(context: vscode.ExtensionContext, _host: ConfigFeatureHost): void {
  context.subscriptions.push(
    vscode.commands.registerCommand('prunekit.newConfig', async () => {
      const doc = await vscode.workspace.openTextDocument({ language: 'json', content: '{\n  "checkpoint": "",\n  "method": "apt",\n  "sparsity": 0.5\n}\n' });
      await vscode.window.showTextDocument(doc);
    }),
  );
}

/** Placeholder: offers the workspace's existing *.prune.json files; undefined when there are none or none is picked. */
export async function pickOrCreateConfig(checkpoint: vscode.Uri): Promise<vscode.Uri | undefined> {
  const files = await vscode.workspace.findFiles('**/*.prune.json', '**/node_modules/**', 200);
  if (files.length === 0) {
    void vscode.window.showInformationMessage(`No *.prune.json config found for ${vscode.workspace.asRelativePath(checkpoint)}. Create one with "PruneKit: New Pruning Config".`);
    return undefined;
  }
  const picked = await vscode.window.showQuickPick(
    files.map((uri) => ({ label: vscode.workspace.asRelativePath(uri), uri })),
    { title: `Prune ${vscode.workspace.asRelativePath(checkpoint)}`, placeHolder: 'Pick a pruning config to run' },
  );
  return picked?.uri;
}
