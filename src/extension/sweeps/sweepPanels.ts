// The Sweep panels (`prunekit.sweep`, one per sweep folder): perplexity against sparsity and a table of the points,
// drawn by webview/sweepPanel.ts from a SweepSnapshot sent at `ready` and at every change of the sweep. Clicking a
// point asks (openPoint) for its run panel: the point's run folder is loaded as a finished run and shown.

import * as path from 'node:path';
import * as vscode from 'vscode';
import { HostMessage, toSweepPanelMessage, toSweepPanelState } from '../../protocol/webview';
import { pathKey } from '../backendInvocation';
import { attachPanelPage, panelOptions } from '../panels/panelHtml';
import type { SweepManager } from './sweepManager';

export const SWEEP_VIEW_TYPE = 'prunekit.sweep';

interface OpenSweepPanel {
  panel: vscode.WebviewPanel;
  dir: string;
  ready: boolean;
}

export class SweepPanels implements vscode.Disposable {
  private readonly open = new Map<string, OpenSweepPanel>();
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly sweeps: SweepManager,
    /** Shows the run panel of a sweep's point. */
    private readonly openPoint: (dir: string, point: string) => void,
  ) {
    this.disposables.push(
      sweeps.onDidChange((dir) => {
        const open = this.open.get(pathKey(dir));
        if (open) this.post(open);
      }),
      vscode.window.registerWebviewPanelSerializer(SWEEP_VIEW_TYPE, { deserializeWebviewPanel: (panel, state) => this.restore(panel, state) }),
    );
  }

  show(dir: string): void {
    const open = this.open.get(pathKey(dir));
    if (open) return open.panel.reveal();
    const panel = vscode.window.createWebviewPanel(SWEEP_VIEW_TYPE, titleOf(dir), vscode.ViewColumn.Active, panelOptions(this.extensionUri));
    this.attach(panel, dir);
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
    for (const open of [...this.open.values()]) open.panel.dispose();
  }

  private async restore(panel: vscode.WebviewPanel, raw: unknown): Promise<void> {
    const state = toSweepPanelState(raw);
    if (state === null || this.open.has(pathKey(state.dir))) return panel.dispose();
    this.sweeps.refresh(state.dir);
    if (!this.sweeps.get(state.dir)) return panel.dispose(); // the sweep folder is gone
    this.attach(panel, state.dir);
  }

  private attach(panel: vscode.WebviewPanel, dir: string): void {
    const open: OpenSweepPanel = { panel, dir, ready: false };
    this.open.set(pathKey(dir), open);
    panel.title = titleOf(dir);
    attachPanelPage(panel, this.extensionUri, 'sweep', open, {
      onMessage: (m) => this.onMessage(open, m),
      onDisposed: () => {
        if (this.open.get(pathKey(dir)) === open) this.open.delete(pathKey(dir));
      },
    });
  }

  private onMessage(open: OpenSweepPanel, raw: unknown): void {
    const message = toSweepPanelMessage(raw);
    if (message === null) return;
    if (message.type === 'ready') {
      open.ready = true;
      return this.post(open);
    }
    this.openPoint(open.dir, message.point);
  }

  private post(open: OpenSweepPanel): void {
    const sweep = this.sweeps.get(open.dir);
    if (!open.ready || !sweep) return;
    const message: HostMessage = { type: 'sweep.reset', sweep };
    void open.panel.webview.postMessage(message);
  }
}

function titleOf(dir: string): string {
  return `Sweep ${path.basename(dir)}`;
}
