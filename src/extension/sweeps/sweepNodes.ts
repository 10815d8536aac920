// A sweep in the Runs view: one node (its folder's name, how many points finished, the Slurm array job) whose
// children are its points, each with its status, perplexity and Slurm task id. contextValue `prunekit.sweep.live` /
// `prunekit.sweep` and `prunekit.sweepPoint.<status>` drive the menus in package.json.

import * as vscode from 'vscode';
import type { PointStatus, SweepPoint } from '../../protocol/sweep';
import type { SweepSnapshot } from '../../protocol/webview';
import type { SweepManager } from './sweepManager';

export type SweepNode = { kind: 'sweep'; dir: string } | { kind: 'sweepPoint'; dir: string; point: string };

const ICONS: Record<PointStatus, vscode.ThemeIcon> = {
  queued: new vscode.ThemeIcon('clock'),
  running: new vscode.ThemeIcon('sync~spin'),
  finished: new vscode.ThemeIcon('pass', new vscode.ThemeColor('testing.iconPassed')),
  failed: new vscode.ThemeIcon('error', new vscode.ThemeColor('testing.iconFailed')),
  cancelled: new vscode.ThemeIcon('circle-slash'),
};

export function isSweepNode(x: unknown): x is SweepNode {
  return typeof x === 'object' && x !== null && ((x as SweepNode).kind === 'sweep' || (x as SweepNode).kind === 'sweepPoint');
}

export function sweepChildren(sweeps: SweepManager, node?: SweepNode): SweepNode[] {
  if (!node) return sweeps.list().map((s) => ({ kind: 'sweep', dir: s.dir }));
  if (node.kind === 'sweepPoint') return [];
  return (sweeps.get(node.dir)?.index.points ?? []).map((p) => ({ kind: 'sweepPoint', dir: node.dir, point: p.name }));
}

export function sweepTreeItem(sweeps: SweepManager, node: SweepNode): vscode.TreeItem {
  const s = sweeps.get(node.dir);
  if (node.kind === 'sweep') return sweepItem(node, s, sweeps.isLive(node.dir));
  const p = s?.index.points.find((q) => q.name === node.point);
  const item = new vscode.TreeItem(node.point, vscode.TreeItemCollapsibleState.None);
  item.id = `${node.dir}\n${node.point}`;
  if (!s || !p) return item;
  item.iconPath = ICONS[p.status];
  item.description = pointDescription(p, s);
  item.tooltip = `${p.name}: ${p.status}${p.message ? ` (${p.message})` : ''}${p.jobId ? `\nSlurm task ${p.jobId}` : ''}`;
  item.contextValue = `prunekit.sweepPoint.${p.status}`;
  if (p.status === 'finished') item.command = { command: 'prunekit.openSweepPoint', title: 'Open Run', arguments: [node] };
  return item;
}

function sweepItem(node: SweepNode, s: SweepSnapshot | undefined, live: boolean): vscode.TreeItem {
  const item = new vscode.TreeItem(s?.label ?? node.dir, vscode.TreeItemCollapsibleState.Collapsed);
  item.id = node.dir;
  if (!s) return item;
  const finished = s.index.points.filter((p) => p.status === 'finished').length;
  // Live: its process runs here, or its Slurm array still has points to run.
  const active = live || (s.index.slurm !== null && s.index.points.some((p) => p.status === 'running' || p.status === 'queued'));
  item.iconPath = new vscode.ThemeIcon(active ? 'sync~spin' : 'graph-line');
  item.description = `${finished}/${s.index.points.length} finished${s.index.slurm ? ` · Slurm job ${s.index.slurm.jobId}` : ''}`;
  item.tooltip = `${s.dir}\nfrom ${s.index.config}`;
  item.contextValue = active ? 'prunekit.sweep.live' : 'prunekit.sweep';
  item.command = { command: 'prunekit.openSweep', title: 'Open Sweep', arguments: [node] };
  return item;
}

function pointDescription(p: SweepPoint, s: SweepSnapshot): string {
  const ppl = s.results[p.name]?.prunedPerplexity;
  return [p.status, ppl != null ? `ppl ${ppl.toFixed(3)}` : '', p.jobId ? `job ${p.jobId}` : ''].filter(Boolean).join(' · ');
}
