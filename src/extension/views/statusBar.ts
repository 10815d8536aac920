// The status-bar item of the active run (the most recently started live one): its progress and ETA; a click
// opens its panel. Hidden while nothing runs.

import * as vscode from 'vscode';
import { describeShort } from '../runs/describe';
import type { RunManager } from '../runs/runManager';

const REFRESH_MS = 500;

export class RunStatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('prunekit.activeRun', vscode.StatusBarAlignment.Left, 10);
  private readonly subscription: { dispose(): void };
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly manager: RunManager) {
    this.item.name = 'PruneKit Run';
    this.subscription = manager.onDidChange(() => this.updateSoon());
    this.update();
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.subscription.dispose();
    this.item.dispose();
  }

  private updateSoon(): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.update();
    }, REFRESH_MS);
  }

  private update(): void {
    const live = this.manager.list().filter((r) => r.live);
    const run = live[0];
    if (!run) return this.item.hide();
    const more = live.length > 1 ? ` (+${live.length - 1})` : '';
    this.item.text = `$(sync~spin) PruneKit ${describeShort(run.progress)}${more}`;
    this.item.tooltip = `${run.label}\n${run.progress.phase}\nClick to open the run`;
    this.item.command = { command: 'prunekit.openRun', title: 'Open Run', arguments: [run.id] };
    this.item.show();
  }
}
