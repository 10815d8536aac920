// The Runs view (`prunekit.runs`): every run the manager knows, newest first, each with its progress in
// words ("apt 2:4 · 12/35 layers · ETA 40s"), an icon per status and a tooltip with the perplexities.
// contextValue `prunekit.run.<status>` drives the inline and context menu items in package.json. Sweeps come first,
// one node each with their points (sweeps/sweepNodes.ts); a point's run folder is not listed again as a run.

import * as vscode from 'vscode';
import type { RunStatus } from '../../protocol/progress';
import { describeDetails, describeProgress } from '../runs/describe';
import type { Run } from '../runs/run';
import type { RunManager } from '../runs/runManager';
import type { SweepManager } from '../sweeps/sweepManager';
import { isSweepNode, SweepNode, sweepChildren, sweepTreeItem } from '../sweeps/sweepNodes';

const ICONS: Record<RunStatus, vscode.ThemeIcon> = {
  running: new vscode.ThemeIcon('sync~spin'),
  finished: new vscode.ThemeIcon('pass', new vscode.ThemeColor('testing.iconPassed')),
  failed: new vscode.ThemeIcon('error', new vscode.ThemeColor('testing.iconFailed')),
  cancelled: new vscode.ThemeIcon('circle-slash'),
  interrupted: new vscode.ThemeIcon('warning', new vscode.ThemeColor('list.warningForeground')),
};

/** Live events arrive many times a second; the view is redrawn at most this often. */
const REFRESH_MS = 300;

export class RunsTreeProvider implements vscode.TreeDataProvider<Run | SweepNode>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<Run | SweepNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly subscriptions: { dispose(): void }[];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly manager: RunManager,
    private readonly sweeps: SweepManager,
  ) {
    this.subscriptions = [
      manager.onDidChange((c) => (c.kind === 'event' ? this.refreshSoon() : this.changed.fire(undefined))),
      sweeps.onDidChange(() => this.refreshSoon()),
    ];
  }

  getTreeItem(node: Run | SweepNode): vscode.TreeItem {
    return isSweepNode(node) ? sweepTreeItem(this.sweeps, node) : this.runItem(node);
  }

  getChildren(element?: Run | SweepNode): (Run | SweepNode)[] {
    if (element) return isSweepNode(element) ? sweepChildren(this.sweeps, element) : [];
    return [...sweepChildren(this.sweeps), ...this.manager.list().filter((r) => !this.sweeps.owns(r.folder))];
  }

  private runItem(run: Run): vscode.TreeItem {
    const item = new vscode.TreeItem(run.label, vscode.TreeItemCollapsibleState.None);
    item.id = run.id;
    item.description = describeProgress(run.progress);
    item.iconPath = ICONS[run.status];
    item.contextValue = `prunekit.run.${run.status}`;
    const tooltip = new vscode.MarkdownString(`**${escapeMarkdown(run.label)}**\n\n`);
    tooltip.appendText(describeDetails(run.progress).join('\n'));
    if (run.interruption !== undefined && run.status === 'interrupted') tooltip.appendText(`\n${run.interruption}`);
    item.tooltip = tooltip;
    item.command = { command: 'prunekit.openRun', title: 'Open Run', arguments: [run.id] };
    return item;
  }

  dispose(): void {
    clearTimeout(this.timer);
    for (const s of this.subscriptions) s.dispose();
    this.changed.dispose();
  }

  private refreshSoon(): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.changed.fire(undefined);
    }, REFRESH_MS);
  }
}

function escapeMarkdown(s: string): string {
  return s.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, '\\$&');
}
