// A notification when a run ends (the panel may be hidden): what came out, and the next step.

import * as vscode from 'vscode';
import type { Run } from '../runs/run';
import type { RunManager } from '../runs/runManager';

export function notifyRunEnds(manager: RunManager, open: (run: Run) => void, reveal: (run: Run) => void): { dispose(): void } {
  return manager.onDidChange((c) => {
    if (c.kind !== 'ended') return;
    const run = c.run;
    const p = run.progress;
    const openRun = 'Open Run';
    const act = (choice: string | undefined) => {
      if (choice === openRun) open(run);
      else if (choice === 'Reveal Output') reveal(run);
    };
    switch (run.status) {
      case 'finished': {
        const ppl = p.prunedPerplexity !== null && p.densePerplexity !== null ? `: perplexity ${p.densePerplexity.toFixed(3)} → ${p.prunedPerplexity.toFixed(3)}` : '';
        void vscode.window.showInformationMessage(`PruneKit: ${run.label} finished${ppl}.`, openRun, 'Reveal Output').then(act);
        break;
      }
      case 'failed':
        void vscode.window.showErrorMessage(`PruneKit: ${run.label} failed: ${p.error?.message ?? 'unknown error'}${p.error?.hint ? ` (${p.error.hint})` : ''}`, openRun).then(act);
        break;
      case 'interrupted':
        void vscode.window.showErrorMessage(`PruneKit: ${run.label}: ${(run.interruption ?? '').split('\n')[0]}`, openRun).then(act);
        break;
      case 'cancelled':
        vscode.window.setStatusBarMessage(`PruneKit: ${run.label} cancelled; no output was written`, 5000);
        break;
      default:
    }
  });
}
