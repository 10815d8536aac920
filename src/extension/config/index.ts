// Editing *.prune.json files and launching from a checkpoint (the editor half of the extension). The run
// manager calls registerConfigFeatures once at activation and pickOrCreateConfig from "Prune Model…" (the
// ConfigFeatureHost interface in services.ts is the contract).
//
// Layout: vscode glue here and in services.ts, providers.ts, commands.ts; the logic, tested with Node, in
// editing.ts (completions, hovers), diagnostics.ts, layerInfo.ts (inspect output), inspectCache.ts,
// discovery.ts (configs of a checkpoint, new file names), template.ts (new config text); the JSON-with-comments
// tree and cursor locations are Microsoft's jsonc-parser (VS Code's own), typing.ts adds what it leaves out.

import * as vscode from 'vscode';
import { newConfigCommand, pickOrCreateConfig as pickOrCreate } from './commands';
import { registerProviders } from './providers';
import { ConfigFeatureHost, ConfigServices } from './services';

export type { ConfigFeatureHost } from './services';

let services: ConfigServices | undefined;

/** Completions, hovers, diagnostics and the Run CodeLens of *.prune.json, and the prunekit.newConfig command. */
export function registerConfigFeatures(context: vscode.ExtensionContext, host: ConfigFeatureHost): void {
  const s = new ConfigServices(context, host);
  services = s;
  context.subscriptions.push(
    ...registerProviders(s),
    vscode.commands.registerCommand('prunekit.newConfig', (target?: vscode.Uri) => newConfigCommand(s, target)),
    { dispose: () => void (services === s && (services = undefined)) },
  );
}

/**
 * The Prune Model… flow for a checkpoint (a .onnx file or a model folder): the config to run now, picked
 * among the workspace's configs pointing at it; or undefined when a new config was created and opened for
 * review (its CodeLens and the notification's Run button call host.runConfig) or nothing was picked.
 */
export function pickOrCreateConfig(checkpoint: vscode.Uri): Promise<vscode.Uri | undefined> {
  if (!services) return Promise.reject(new Error('PruneKit: pickOrCreateConfig called before registerConfigFeatures'));
  return pickOrCreate(services, checkpoint);
}
