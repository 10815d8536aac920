// What the editor features share: the host, the inspect cache (one backend run per checkpoint and mtime),
// and how a config document leads to its checkpoint and inspect output.

import { statSync } from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { findNodeAtLocation } from 'jsonc-parser';
import { backendInvocation } from '../backendInvocation';
import { KeepDenseConfig } from '../../protocol/config';
import { PathKind } from './diagnostics';
import { configModelPath } from './discovery';
import { InspectCache } from './inspectCache';
import { InspectInfo } from './layerInfo';
import { configTree } from './tree';

/** What the run manager gives the editor features. */
export interface ConfigFeatureHost {
  runConfig(config: vscode.Uri): Promise<void>;
  nodePath(): string;
}

export const CONFIG_SELECTOR: vscode.DocumentSelector = [{ scheme: 'file', pattern: '**/*.prune.json' }];

export function isConfigDocument(doc: vscode.TextDocument): boolean {
  return doc.uri.scheme === 'file' && doc.uri.fsPath.endsWith('.prune.json');
}

export class ConfigServices {
  readonly inspect: InspectCache;

  constructor(readonly context: vscode.ExtensionContext, readonly host: ConfigFeatureHost) {
    this.inspect = new InspectCache({
      launcher: (cliArgs) => backendInvocation(context.extensionPath, host.nodePath(), cliArgs),
      timeoutMs: 120_000,
    });
  }

  /** The document's checkpoint and its inspect output (or the error), undefined when it names no checkpoint. */
  async inspectFor(doc: vscode.TextDocument): Promise<{ checkpoint: string; info: InspectInfo | { error: string } } | undefined> {
    const checkpoint = configModelPath(doc.getText(), doc.uri.fsPath);
    if (!checkpoint) return undefined;
    try {
      return { checkpoint, info: await this.inspect.get(checkpoint) };
    } catch (e) {
      return { checkpoint, info: { error: (e as Error).message } };
    }
  }

  /** Saves the config if it has unsaved edits, then asks the host to run it. */
  async run(config: vscode.Uri): Promise<void> {
    const doc = vscode.workspace.textDocuments.find((d) => d.uri.toString() === config.toString());
    if (doc?.isDirty) await doc.save();
    await this.host.runConfig(config);
  }
}

/** keepDense's flags as written (absent: true), read leniently from a config being edited. */
export function keepDenseOf(text: string): KeepDenseConfig {
  const tree = configTree(text);
  const flag = (key: keyof KeepDenseConfig): boolean => !(tree && findNodeAtLocation(tree, ['keepDense', key])?.value === false);
  return { lmHead: flag('lmHead'), depthwiseConv: flag('depthwiseConv') };
}

export function kindOf(p: string): PathKind {
  try {
    return statSync(p).isDirectory() ? 'folder' : 'file';
  } catch {
    return undefined;
  }
}

export function configDir(doc: vscode.TextDocument): string {
  return path.dirname(doc.uri.fsPath);
}
