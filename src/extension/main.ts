// Extension host entry point. The host is a thin client: pruning runs in the bundled backend process
// (dist/backend.js). The Explorer menu, run panel and Runs view arrive with the extension issue; for now
// the one command runs the backend's demo and shows its output.

import { spawn } from 'node:child_process';
import * as path from 'node:path';
import * as vscode from 'vscode';

export function activate(context: vscode.ExtensionContext): void {
  const output = vscode.window.createOutputChannel('PruneKit');
  context.subscriptions.push(
    output,
    vscode.commands.registerCommand('prunekit.demo', () => {
      output.show(true);
      const child = spawn(process.execPath, [path.join(context.extensionPath, 'dist', 'backend.js'), 'demo'], {
        env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
      });
      child.stdout.on('data', (d: Buffer) => output.append(d.toString()));
      child.stderr.on('data', (d: Buffer) => output.append(d.toString()));
      child.on('close', (code) => output.appendLine(`\n[prunekit demo exited with code ${code}]`));
    }),
  );
}

export function deactivate(): void {}
