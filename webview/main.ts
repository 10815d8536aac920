// Panel entry point (bundled by esbuild into dist/webview.js, loaded under the host's nonce CSP). Says `ready`,
// then draws what the host sends: run.reset + run.events (the run panel), compare.reset (the Compare panel) or
// sweep.reset (the Sweep panel).
// It persists only which run(s) it shows (PanelState); after a reload the host sends everything again.

import type { HostMessage, PanelMessage, PanelState, SweepPanelMessage, SweepPanelState } from '../src/protocol/webview';
import { ComparePanel } from './comparePanel';
import { RunModel } from './model';
import { RunPanel } from './runPanel';
import { SweepPanel } from './sweepPanel';
import { watchTheme } from './theme';
import { registerToolkit } from './toolkit';

interface VsCodeApi {
  postMessage(message: PanelMessage | SweepPanelMessage): void;
  setState(state: PanelState | SweepPanelState): void;
}
declare function acquireVsCodeApi(): VsCodeApi;

const vscode = acquireVsCodeApi();
registerToolkit();

const app = document.getElementById('app');
if (!app) throw new Error('PruneKit panel: #app missing from the page');

let run: { model: RunModel; panel: RunPanel } | null = null;
let compare: ComparePanel | null = null;
let sweep: SweepPanel | null = null;

// Events can arrive faster than frames; draw at most once per frame.
let drawPending = false;
function scheduleDraw(): void {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    run?.panel.draw();
  });
}

function handle(m: HostMessage): void {
  switch (m.type) {
    case 'run.reset': {
      const model = RunModel.fromSnapshot(m.run);
      const runId = model.id;
      compare?.destroy();
      compare = null;
      if (run) {
        run.model = model;
        run.panel.setModel(model);
      } else {
        // The actions name the run shown when clicked (a later run.reset may replace it).
        const shown = () => run!.model.id;
        run = {
          model,
          panel: new RunPanel(app!, model, {
            cancel: () => vscode.postMessage({ type: 'cancel', runId: shown() }),
            revealOutput: () => vscode.postMessage({ type: 'revealOutput', runId: shown() }),
            openReport: () => vscode.postMessage({ type: 'openReport', runId: shown() }),
          }),
        };
      }
      vscode.setState({ kind: 'run', runId });
      break;
    }
    case 'run.event':
      if (run?.model.id !== m.runId) return;
      run.model.add(m.event, m.time);
      scheduleDraw();
      break;
    case 'run.interrupted':
      if (run?.model.id !== m.runId) return;
      run.model.interrupt(m.message);
      scheduleDraw();
      break;
    case 'compare.reset':
      run?.panel.destroy();
      run = null;
      if (compare) compare.setRuns(m.runs);
      else compare = new ComparePanel(app!, m.runs);
      vscode.setState({ kind: 'compare', runIds: m.runs.map((r) => r.id) });
      break;
    case 'sweep.reset':
      if (sweep) sweep.setSweep(m.sweep);
      else sweep = new SweepPanel(app!, m.sweep, (point) => vscode.postMessage({ type: 'openPoint', point }));
      vscode.setState({ kind: 'sweep', dir: m.sweep.dir });
      break;
  }
}

window.addEventListener('message', (e: MessageEvent<unknown>) => {
  const m = e.data;
  if (typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string') handle(m as HostMessage);
});

watchTheme(() => {
  run?.panel.themeChanged();
  compare?.themeChanged();
  sweep?.themeChanged();
});

app.dataset.layersCharted = '0';
vscode.postMessage({ type: 'ready' });
