// The language features of *.prune.json on top of VS Code's JSON support (which brings the schema's
// completion, hovers and Problems): real layer names, layer hovers, the "prunekit" diagnostics and the
// "▶ Run pruning" CodeLens. Thin: the logic is in editing.ts, diagnostics.ts and layerInfo.ts.

import * as vscode from 'vscode';
import { parseConfigText, resolveConfig } from '../../protocol/config';
import { ConfigDiagnostic, configDiagnostics } from './diagnostics';
import { completionPlace, completionsAt, hoverAt } from './editing';
import { configSummary } from './layerInfo';
import { CONFIG_SELECTOR, ConfigServices, configDir, isConfigDocument, keepDenseOf, kindOf } from './services';

/** Internal command of the CodeLens (the palette's prunekit.runConfig belongs to the run manager). */
const RUN_FROM_LENS = 'prunekit.config.runFromLens';

export function registerProviders(services: ConfigServices): vscode.Disposable[] {
  const diagnostics = new ConfigDiagnostics(services);
  const lenses = new RunLenses(services);
  diagnostics.onRefreshed(() => lenses.changed.fire());
  return [
    diagnostics,
    lenses.changed,
    vscode.languages.registerCompletionItemProvider(CONFIG_SELECTOR, new LayerCompletions(services), '"', '.', '*'),
    vscode.languages.registerHoverProvider(CONFIG_SELECTOR, new LayerHovers(services)),
    vscode.languages.registerCodeLensProvider(CONFIG_SELECTOR, lenses),
    vscode.commands.registerCommand(RUN_FROM_LENS, (uri: vscode.Uri) => services.run(uri)),
  ];
}

class LayerCompletions implements vscode.CompletionItemProvider {
  constructor(private readonly services: ConfigServices) {}

  async provideCompletionItems(doc: vscode.TextDocument, position: vscode.Position): Promise<vscode.CompletionItem[] | undefined> {
    const text = doc.getText();
    const offset = doc.offsetAt(position);
    if (!completionPlace(text, offset)) return undefined; // not at a pattern: no need to inspect
    const found = await this.services.inspectFor(doc);
    if (!found) return undefined;
    if ('error' in found.info) {
      vscode.window.setStatusBarMessage(`$(warning) PruneKit: no layer names: ${found.info.error}`, 10_000);
      return undefined;
    }
    const result = completionsAt(text, offset, found.info, keepDenseOf(text));
    if (!result) return undefined;
    const range = new vscode.Range(doc.positionAt(result.place.offset), doc.positionAt(result.place.end));
    return result.items.map((s) => {
      const item = new vscode.CompletionItem(s.label, s.kind === 'layer' ? vscode.CompletionItemKind.Field : vscode.CompletionItemKind.Value);
      item.insertText = s.insertText;
      item.filterText = s.insertText;
      item.range = range;
      item.detail = s.detail;
      item.sortText = s.sortText;
      return item;
    });
  }
}

class LayerHovers implements vscode.HoverProvider {
  constructor(private readonly services: ConfigServices) {}

  async provideHover(doc: vscode.TextDocument, position: vscode.Position): Promise<vscode.Hover | undefined> {
    const found = await this.services.inspectFor(doc);
    if (!found || 'error' in found.info) return undefined;
    const text = doc.getText();
    const h = hoverAt(text, doc.offsetAt(position), found.info, keepDenseOf(text));
    return h && new vscode.Hover(new vscode.MarkdownString(h.markdown), new vscode.Range(doc.positionAt(h.offset), doc.positionAt(h.end)));
  }
}

/** The "prunekit" diagnostics of every open config, refreshed as it is edited (debounced) and saved. */
class ConfigDiagnostics implements vscode.Disposable {
  private readonly collection = vscode.languages.createDiagnosticCollection('prunekit');
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly refreshed = new vscode.EventEmitter<vscode.Uri>();
  readonly onRefreshed = this.refreshed.event;
  private readonly subscriptions: vscode.Disposable[];

  constructor(private readonly services: ConfigServices) {
    this.subscriptions = [
      this.collection,
      this.refreshed,
      vscode.workspace.onDidOpenTextDocument((d) => this.schedule(d, 0)),
      vscode.workspace.onDidChangeTextDocument((e) => this.schedule(e.document, 400)),
      vscode.workspace.onDidSaveTextDocument((d) => this.schedule(d, 0)),
      vscode.workspace.onDidCloseTextDocument((d) => this.collection.delete(d.uri)),
    ];
    for (const d of vscode.workspace.textDocuments) this.schedule(d, 0);
  }

  private schedule(doc: vscode.TextDocument, delayMs: number): void {
    if (!isConfigDocument(doc)) return;
    const key = doc.uri.toString();
    clearTimeout(this.timers.get(key));
    this.timers.set(key, setTimeout(() => void this.refresh(doc), delayMs));
  }

  private async refresh(doc: vscode.TextDocument): Promise<void> {
    const version = doc.version;
    const found = await this.services.inspectFor(doc);
    if (doc.isClosed || doc.version !== version) return; // a newer edit has its own refresh scheduled
    const problems = configDiagnostics({ text: doc.getText(), baseDir: configDir(doc), kindOf, inspect: found?.info });
    this.collection.set(doc.uri, problems.map((p) => toDiagnostic(doc, p)));
    this.refreshed.fire(doc.uri);
  }

  dispose(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    for (const s of this.subscriptions) s.dispose();
  }
}

function toDiagnostic(doc: vscode.TextDocument, p: ConfigDiagnostic): vscode.Diagnostic {
  const severity = { error: vscode.DiagnosticSeverity.Error, warning: vscode.DiagnosticSeverity.Warning, information: vscode.DiagnosticSeverity.Information }[p.severity];
  const d = new vscode.Diagnostic(new vscode.Range(doc.positionAt(p.offset), doc.positionAt(p.end)), p.message, severity);
  d.source = 'prunekit';
  d.code = p.path;
  return d;
}

/** "▶ Run pruning" (or "▶ Run sweep") and the config's summary ("apt · 2:4 · 35 layers") on the first line. */
class RunLenses implements vscode.CodeLensProvider {
  readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeCodeLenses = this.changed.event;

  constructor(private readonly services: ConfigServices) {}

  async provideCodeLenses(doc: vscode.TextDocument): Promise<vscode.CodeLens[]> {
    const top = new vscode.Range(0, 0, 0, 0);
    let summary: string;
    let sweep = false;
    try {
      const raw = parseConfigText(doc.getText());
      // A config with a `sweep` runs as a sweep (prunekit prune refuses it).
      sweep = typeof raw === 'object' && raw !== null && 'sweep' in raw;
      const config = resolveConfig(raw, configDir(doc));
      const found = await this.services.inspectFor(doc);
      summary = configSummary(config, found && !('error' in found.info) ? found.info : undefined);
    } catch {
      summary = '⚠ not runnable yet: see Problems';
    }
    const run = sweep
      ? new vscode.CodeLens(top, { title: '▶ Run sweep', tooltip: 'Run every point of this sweep (PruneKit)', command: 'prunekit.runSweep', arguments: [doc.uri] })
      : new vscode.CodeLens(top, { title: '▶ Run pruning', tooltip: 'Prune the checkpoint with this config (PruneKit)', command: RUN_FROM_LENS, arguments: [doc.uri] });
    return [run, new vscode.CodeLens(top, { title: summary, command: '' })];
  }
}
