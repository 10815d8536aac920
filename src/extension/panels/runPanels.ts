// The host side of the webview panels: one panel per run (`prunekit.run`) and the Compare panel
// (`prunekit.compare`). The host owns the runs; a panel is sent a whole snapshot when it says `ready` (first
// load, shown again after being hidden, restored after a reload) and each event after that. Panel messages are
// untrusted input, checked by toPanelMessage; the actions they ask for go back to the extension's commands.

import * as vscode from 'vscode';
import { HostMessage, PanelState, toPanelMessage, toPanelState } from '../../protocol/webview';
import type { Run } from '../runs/run';
import type { RunChange, RunManager } from '../runs/runManager';
import { attachPanelPage, PanelKind, panelOptions } from './panelHtml';

export const RUN_VIEW_TYPE = 'prunekit.run';
export const COMPARE_VIEW_TYPE = 'prunekit.compare';

/** What a panel can ask the host to do with a run. */
export interface PanelActions {
  cancel(run: Run): void;
  revealOutput(run: Run): void;
  openReport(run: Run): void;
}

interface OpenPanel {
  panel: vscode.WebviewPanel;
  state: PanelState;
  /** The webview said `ready` since it was (re)loaded: events may be forwarded. */
  ready: boolean;
}

export class RunPanels implements vscode.Disposable {
  private readonly runPanels = new Map<string, OpenPanel>();
  private compare: OpenPanel | undefined;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly manager: RunManager,
    private readonly actions: PanelActions,
    private readonly log: (line: string) => void,
    /** Resolves once stored and found runs are loaded (a restored panel may show one of them). */
    private readonly runsLoaded: Promise<void>,
  ) {
    const restore = (panel: vscode.WebviewPanel, state: unknown) => this.restore(panel, state);
    this.disposables.push(
      manager.onDidChange((c) => this.onRunChange(c)),
      vscode.window.registerWebviewPanelSerializer(RUN_VIEW_TYPE, { deserializeWebviewPanel: restore }),
      vscode.window.registerWebviewPanelSerializer(COMPARE_VIEW_TYPE, { deserializeWebviewPanel: restore }),
    );
  }

  /** Opens (or reveals) the panel of a run; `beside` the active editor when started from a config. */
  showRun(run: Run, options: { beside?: boolean; preserveFocus?: boolean } = {}): void {
    const preserveFocus = options.preserveFocus ?? false;
    const open = this.runPanels.get(run.id);
    if (open) return open.panel.reveal(undefined, preserveFocus);
    const viewColumn = options.beside ? vscode.ViewColumn.Beside : vscode.ViewColumn.Active;
    const panel = vscode.window.createWebviewPanel(RUN_VIEW_TYPE, run.label, { viewColumn, preserveFocus }, panelOptions(this.extensionUri));
    this.attach(panel, { kind: 'run', runId: run.id });
  }

  /** Opens (or refills) the Compare panel with these runs. */
  showCompare(runs: readonly Run[]): void {
    const state: PanelState = { kind: 'compare', runIds: runs.map((r) => r.id) };
    if (this.compare) {
      this.refillCompare(this.compare, state);
      return this.compare.panel.reveal();
    }
    const panel = vscode.window.createWebviewPanel(COMPARE_VIEW_TYPE, compareTitle(runs.length), vscode.ViewColumn.Active, panelOptions(this.extensionUri));
    this.attach(panel, state);
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
    for (const open of [...this.runPanels.values()]) open.panel.dispose();
    this.compare?.panel.dispose();
  }

  private async restore(panel: vscode.WebviewPanel, raw: unknown): Promise<void> {
    await this.runsLoaded;
    const state = toPanelState(raw);
    const known = state === null ? false : state.kind === 'run' ? this.manager.get(state.runId) !== undefined : state.runIds.some((id) => this.manager.get(id));
    if (state === null || !known || (state.kind === 'run' && this.runPanels.has(state.runId))) {
      // The run was deleted (or the state is unreadable): nothing to show.
      panel.dispose();
      return;
    }
    this.attach(panel, state.kind === 'compare' ? { kind: 'compare', runIds: state.runIds.filter((id) => this.manager.get(id)) } : state);
  }

  private attach(panel: vscode.WebviewPanel, state: PanelState): void {
    const kind: PanelKind = state.kind;
    const open: OpenPanel = { panel, state, ready: false };
    if (state.kind === 'run') {
      this.runPanels.set(state.runId, open);
      panel.title = this.manager.get(state.runId)?.label ?? panel.title;
    } else {
      this.compare = open;
      panel.title = compareTitle(state.runIds.length);
    }
    attachPanelPage(panel, this.extensionUri, kind, open, {
      onMessage: (m) => this.onMessage(open, m),
      onDisposed: () => {
        if (open.state.kind === 'run') {
          if (this.runPanels.get(open.state.runId) === open) this.runPanels.delete(open.state.runId);
        } else if (this.compare === open) {
          this.compare = undefined;
        }
      },
    });
  }

  private onMessage(open: OpenPanel, raw: unknown): void {
    const message = toPanelMessage(raw);
    if (message === null) {
      this.log(`ignored a malformed panel message: ${JSON.stringify(raw)?.slice(0, 200)}`);
      return;
    }
    if (message.type === 'ready') {
      open.ready = true;
      this.post(open, this.resetMessage(open.state));
      return;
    }
    const run = this.manager.get(message.runId);
    if (!run) return void vscode.window.showWarningMessage('PruneKit: that run no longer exists.');
    if (message.type === 'cancel') this.actions.cancel(run);
    else if (message.type === 'revealOutput') this.actions.revealOutput(run);
    else this.actions.openReport(run);
  }

  private resetMessage(state: PanelState): HostMessage {
    if (state.kind === 'compare') {
      const runs = state.runIds.map((id) => this.manager.get(id)).filter((r): r is Run => r !== undefined);
      return { type: 'compare.reset', runs: runs.map((r) => r.snapshot()) };
    }
    const run = this.manager.get(state.runId);
    // A run deleted while its panel loads: an empty interrupted snapshot says so rather than a blank page.
    return { type: 'run.reset', run: run?.snapshot() ?? { id: state.runId, label: 'deleted run', status: 'interrupted', events: [], times: [], interruption: 'this run was deleted' } };
  }

  private onRunChange(change: RunChange): void {
    const open = this.runPanels.get(change.run.id);
    switch (change.kind) {
      case 'event':
        if (!open) break;
        if (change.event.type === 'run.started') open.panel.title = change.run.label;
        this.post(open, { type: 'run.event', runId: change.run.id, event: change.event, time: change.time });
        break;
      case 'ended':
        if (open && change.run.interruption !== undefined) this.post(open, { type: 'run.interrupted', runId: change.run.id, message: change.run.interruption });
        break;
      case 'removed':
        open?.panel.dispose();
        if (this.compare?.state.kind === 'compare' && this.compare.state.runIds.includes(change.run.id)) {
          this.refillCompare(this.compare, { kind: 'compare', runIds: this.compare.state.runIds.filter((id) => id !== change.run.id) });
        }
        break;
      case 'added':
        break;
    }
  }

  private refillCompare(open: OpenPanel, state: PanelState & { kind: 'compare' }): void {
    open.state = state;
    open.panel.title = compareTitle(state.runIds.length);
    this.post(open, this.resetMessage(state));
  }

  private post(open: OpenPanel, message: HostMessage): void {
    if (!open.ready) return;
    void open.panel.webview.postMessage(message);
  }
}

function compareTitle(n: number): string {
  return `Compare ${n} run${n === 1 ? '' : 's'}`;
}
