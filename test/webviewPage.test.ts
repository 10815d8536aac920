// The real panel page in headless Chromium: dist/webview.js bundled as esbuild.js bundles it, loaded under a
// strict nonce CSP like the host's, fed a real backend run event by event. The chart must hold exactly the
// stream's losses, the table and summary its numbers, the buttons must post the host's messages, and the page
// must run without console errors or CSP violations.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as esbuild from 'esbuild';
import { Browser, chromium, Page } from 'playwright-core';
import type { EventOf } from '../src/protocol/events';
import type { HostMessage, PanelMessage, PanelState, SweepPanelMessage, SweepPanelState } from '../src/protocol/webview';
import { readPointResult } from '../src/protocol/sweep';
import { readSweep } from '../src/extension/sweeps/sweepManager';
import { planSweep } from '../src/backend/sweep/expand';
import { runLocally } from '../src/backend/sweep/local';
import { shareTokens } from '../src/backend/sweep/shared';
import { indexOf, writePointConfigs } from '../src/backend/sweep/sweepFolder';
import { rowPool } from '../src/backend/methods/rowKernels';
import { layerKind } from '../webview/model';
import { RecordedRun, recordRun } from './helpers/recordedRuns';
import { repoRoot } from './helpers/realLayers';

const ORIGIN = 'http://prunekit.test';
const NONCE = 'bm9uY2UtZm9yLXRlc3Rz';

/** What the page's stand-in for VS Code recorded. */
interface PageRecord {
  posted: (PanelMessage | SweepPanelMessage)[];
  state: PanelState | SweepPanelState | null;
  violations: string[];
}

interface Point {
  x: number;
  y: number;
}

// The host's page: one stylesheet, one bundle, a CSP allowing nothing else. The nonce'd inline script stands
// in for VS Code's acquireVsCodeApi and records CSP violations; the script without a nonce proves the CSP is
// enforced (it must be blocked, and is the one expected violation). The toolkit (FAST) probes :focus-visible
// support with a <style> element carrying the nonce of <meta property="csp-nonce">, so the host's page needs
// that meta and the nonce in style-src too.
function html(kind: 'run' | 'compare' | 'sweep'): string {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src ${ORIGIN} 'nonce-${NONCE}'; font-src ${ORIGIN}; img-src ${ORIGIN} data:; script-src 'nonce-${NONCE}';">
<meta property="csp-nonce" content="${NONCE}">
<link rel="stylesheet" href="${ORIGIN}/media/panel.css">
</head><body>
<div id="app" data-kind="${kind}"></div>
<script nonce="${NONCE}">
  window.__record = { posted: [], state: null, violations: [] };
  document.addEventListener('securitypolicyviolation', (e) => window.__record.violations.push(e.violatedDirective + ' ' + e.blockedURI));
  window.acquireVsCodeApi = () => ({
    postMessage: (m) => window.__record.posted.push(m),
    setState: (s) => { window.__record.state = s; },
    getState: () => window.__record.state,
  });
</script>
<script>window.__unnonced = true;</script>
<script nonce="${NONCE}" src="${ORIGIN}/dist/webview.js"></script>
</body></html>`;
}

let bundle: string;
let browser: Browser;
let apt: RecordedRun;
let nm: RecordedRun;
let failed: RecordedRun;

before(async () => {
  // As esbuild.js builds dist/webview.js (browser, iife); a node: import anywhere under webview/ fails here.
  const built = await esbuild.build({ entryPoints: [path.join(repoRoot, 'webview', 'main.ts')], bundle: true, platform: 'browser', format: 'iife', target: 'es2022', write: false, metafile: true });
  bundle = built.outputFiles[0].text;
  const inputs = Object.keys(built.metafile.inputs);
  assert.ok(!inputs.some((i) => i.startsWith('node:')), 'no Node built-ins in the webview bundle');
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu'] });
  apt = await recordRun({ method: 'apt', sparsity: 0.5 });
  nm = await recordRun({ method: 'sparsegpt', pattern: '2:4' });
  failed = await recordRun({ calibration: '/nonexistent/calibration.txt', evaluate: false });
  assert.equal(apt.exitCode, 0, apt.stderr);
  assert.equal(nm.exitCode, 0, nm.stderr);
});

after(async () => {
  await browser?.close();
  await rowPool.close(); // the sweep's Wanda points started its workers
  for (const r of [apt, nm, failed]) r?.dispose();
});

/** A fresh page serving the bundle and panel.css, with console errors collected. */
async function openPanel(kind: 'run' | 'compare' | 'sweep'): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  await page.route(`${ORIGIN}/**`, (route) => {
    const url = new URL(route.request().url());
    if (url.pathname === '/panel.html') return route.fulfill({ contentType: 'text/html', body: html(kind) });
    if (url.pathname === '/dist/webview.js') return route.fulfill({ contentType: 'text/javascript', body: bundle });
    if (url.pathname === '/media/panel.css') return route.fulfill({ contentType: 'text/css', body: readFileSync(path.join(repoRoot, 'media', 'panel.css'), 'utf8') });
    return route.fulfill({ status: 404, body: '' });
  });
  await page.goto(`${ORIGIN}/panel.html`);
  await page.waitForFunction(() => (window as unknown as { __record: PageRecord }).__record.posted.some((m) => m.type === 'ready'));
  return { page, errors };
}

const record = (page: Page) => page.evaluate(() => (window as unknown as { __record: PageRecord }).__record);
const send = (page: Page, m: HostMessage) => page.evaluate((msg) => window.postMessage(msg, '*'), m);
const attr = (page: Page, selector: string, name: string) => page.getAttribute(selector, name);
const text = async (page: Page, selector: string) => (await page.textContent(selector))?.trim();

/** Every point of the chart.js instance drawn on #loss-chart (or another canvas), per dataset label. */
function chartData(page: Page, id = 'loss-chart'): Promise<{ label: string; data: Point[] }[]> {
  return page.evaluate((id) => {
    const canvas = document.getElementById(id) as HTMLCanvasElement & { chart: { data: { datasets: { label: string; data: Point[] }[] } } };
    return canvas.chart.data.datasets.map((d) => ({ label: d.label, data: d.data.map((p) => ({ x: p.x, y: p.y })) }));
  }, id);
}

/** The page is clean: the only CSP violation is the un-nonced script the page carries on purpose. */
async function assertClean(page: Page, errors: string[]): Promise<void> {
  const r = await record(page);
  assert.deepEqual(r.violations, ['script-src-elem inline'], 'CSP violations');
  assert.equal(await page.evaluate(() => (window as unknown as { __unnonced?: boolean }).__unnonced), undefined, 'the CSP blocks scripts without the nonce');
  assert.deepEqual(errors.filter((e) => !(/inline script/i.test(e) && /Content Security Policy/.test(e))), [], 'console errors');
}

describe('run panel in Chromium, fed a real APT run', () => {
  test('chart, progress, table and summary follow the stream; buttons post the host messages', async () => {
    const { page, errors } = await openPanel('run');
    const runId = apt.out;
    await send(page, { type: 'run.reset', run: { id: runId, label: 'stories260K · apt 50%', status: 'running', events: [], times: [] } });
    await page.waitForSelector('#loss-chart');
    assert.deepEqual((await record(page)).state, { kind: 'run', runId });

    const started = apt.events.find((e): e is EventOf<'run.started'> => e.type === 'run.started')!;
    const axis = started.layers.filter((l) => l.target !== null).map((l) => l.name);
    let layers = 0;
    let cancelled = false;
    for (const [i, event] of apt.events.entries()) {
      await send(page, { type: 'run.event', runId, event, time: apt.times[i] });
      if (event.type === 'run.started') {
        await page.waitForSelector('#progress[data-layers-total="35"]');
        assert.equal(await text(page, '#header [data-field="device"]'), started.adapter ? `${started.device} (${started.adapter})` : started.device);
        assert.equal(await text(page, '#header [data-field="method"]'), 'apt');
      }
      if (event.type === 'layer.pruned') {
        layers += 1;
        await page.waitForSelector(`#app[data-layers-charted="${layers}"]`);
        assert.equal(await attr(page, '#progress', 'data-layers-done'), String(layers));
        assert.equal(await page.locator('#layer-table tbody tr').count(), layers);
      }
      // Mid-run, Cancel asks the host (which stops the backend; this recorded run went on to finish).
      if (event.type === 'block.finished' && !cancelled) {
        cancelled = true;
        await page.click('vscode-button[data-action="cancel"]');
        assert.deepEqual((await record(page)).posted.at(-1), { type: 'cancel', runId });
        assert.equal(await attr(page, 'vscode-button[data-action="cancel"]', 'disabled'), '');
      }
    }
    await page.waitForSelector('#app[data-status="finished"]');
    assert.equal(await page.isVisible('vscode-button[data-action="cancel"]'), false, 'no Cancel once finished');

    // The chart holds one point per pruned layer: at the layer's axis position, its loss, in its kind's dataset.
    const pruned = apt.events.filter((e): e is EventOf<'layer.pruned'> => e.type === 'layer.pruned');
    const expectPoints = async (mode: 'loss' | 'relLoss') => {
      const datasets = await chartData(page);
      assert.equal(datasets.reduce((s, d) => s + d.data.length, 0), pruned.length, mode);
      for (const e of pruned) {
        const ds = datasets.find((d) => d.label === layerKind(e.layer));
        assert.ok(ds?.data.some((p) => p.x === axis.indexOf(e.layer) && p.y === e[mode]), `${e.layer} ${mode} = ${e[mode]} charted`);
      }
    };
    await expectPoints('loss');
    await page.click('vscode-radio[value="relLoss"]');
    await expectPoints('relLoss');
    await page.click('vscode-radio[value="loss"]');
    await expectPoints('loss');

    // Table: layer order first; Loss sorts largest first; Enter on the focused header flips it.
    const firstRow = () => attr(page, '#layer-table tbody tr:first-child', 'data-layer');
    assert.equal(await firstRow(), axis[0]);
    const byLoss = [...pruned].sort((a, b) => b.loss! - a.loss!);
    await page.click('#layer-table th button[data-sort="loss"]');
    assert.equal(await firstRow(), byLoss[0].layer);
    assert.equal(await attr(page, '#layer-table th:has(button[data-sort="loss"])', 'aria-sort'), 'descending');
    await page.focus('#layer-table th button[data-sort="loss"]');
    await page.keyboard.press('Enter');
    assert.equal(await firstRow(), byLoss.at(-1)!.layer);
    assert.equal(await attr(page, '#layer-table th:has(button[data-sort="loss"])', 'aria-sort'), 'ascending');

    // Summary: the stream's perplexities to 4 decimals, and the output folder.
    const finished = apt.events.at(-1) as EventOf<'run.finished'>;
    assert.equal(finished.type, 'run.finished');
    assert.equal(await text(page, '#summary [data-field="densePerplexity"]'), finished.totals.densePerplexity!.toFixed(4));
    assert.equal(await text(page, '#summary [data-field="prunedPerplexity"]'), finished.totals.prunedPerplexity!.toFixed(4));
    assert.equal(await text(page, '#summary [data-field="output"]'), apt.out);
    assert.equal(await attr(page, '#progress', 'data-layers-done'), '35');

    await page.click('vscode-button[data-action="revealOutput"]');
    assert.deepEqual((await record(page)).posted.at(-1), { type: 'revealOutput', runId });
    await page.keyboard.press('Tab'); // focus moves on from Reveal to Open report; Enter activates it
    await page.keyboard.press('Enter');
    assert.deepEqual((await record(page)).posted.at(-1), { type: 'openReport', runId });
    assert.deepEqual((await record(page)).posted.map((m) => m.type), ['ready', 'cancel', 'revealOutput', 'openReport']);

    await assertClean(page, errors);
    await page.close();
  });

  test('failed and interrupted runs show their code, message and hint', async () => {
    const { page, errors } = await openPanel('run');
    const f = failed.events.find((e): e is EventOf<'run.failed'> => e.type === 'run.failed')!;
    assert.ok(f, failed.stderr);
    await send(page, { type: 'run.reset', run: failed.snapshot('bad data') });
    await page.waitForSelector('#app[data-status="failed"]');
    assert.equal(await page.isVisible('#ending'), true);
    assert.equal(await text(page, '#ending [data-field="errorCode"]'), 'data-not-found');
    assert.equal(await text(page, '#ending [data-field="errorMessage"]'), f.message);
    if (f.hint !== undefined) assert.equal(await text(page, '#ending [data-field="errorHint"]'), f.hint);

    // A run cut short after its first block, then the host reports the process gone.
    const cut = apt.events.findIndex((e) => e.type === 'block.finished') + 1;
    const runId = 'cut-run';
    await send(page, { type: 'run.reset', run: { id: runId, label: 'cut', status: 'running', events: apt.events.slice(0, cut), times: apt.times.slice(0, cut) } });
    await page.waitForSelector('#app[data-status="running"][data-layers-charted="7"]');
    assert.equal(await page.isVisible('#ending'), false);
    assert.equal(await page.isVisible('vscode-button[data-action="cancel"]'), true);
    await send(page, { type: 'run.interrupted', runId, message: 'backend exited with code 9' });
    await page.waitForSelector('#app[data-status="interrupted"]');
    assert.equal(await text(page, '#ending [data-field="errorMessage"]'), 'backend exited with code 9');
    assert.equal(await page.isVisible('vscode-button[data-action="cancel"]'), false);
    // Events for another run are not drawn here.
    await send(page, { type: 'run.event', runId: 'other', event: apt.events[cut], time: 0 });
    assert.equal(await attr(page, '#progress', 'data-layers-done'), '7');
    assert.deepEqual((await record(page)).state, { kind: 'run', runId });

    await assertClean(page, errors);
    await page.close();
  });
});

describe('run panel: keyboard and theme', () => {
  test('arrow keys switch absolute/relative; colours follow the theme\'s --vscode-charts-* variables', async () => {
    const { page, errors } = await openPanel('run');
    await send(page, { type: 'run.reset', run: apt.snapshot('apt') });
    await page.waitForSelector('#app[data-layers-charted="35"]');
    const pruned = apt.events.filter((e): e is EventOf<'layer.pruned'> => e.type === 'layer.pruned');
    const ys = async () => (await chartData(page)).flatMap((d) => d.data.map((p) => p.y)).sort((a, b) => a - b);
    const sorted = (mode: 'loss' | 'relLoss') => pruned.map((e) => e[mode]!).sort((a, b) => a - b);
    assert.deepEqual(await ys(), sorted('loss'));
    await page.focus('vscode-radio[value="loss"]');
    await page.keyboard.press('ArrowRight');
    assert.deepEqual(await ys(), sorted('relLoss'));
    await page.keyboard.press('ArrowLeft');
    assert.deepEqual(await ys(), sorted('loss'));

    // VS Code switches theme by changing the variables and the body's class; the canvas is recoloured.
    const colors = () =>
      page.evaluate(() => {
        const canvas = document.getElementById('loss-chart') as HTMLCanvasElement & { chart: { data: { datasets: { label: string; borderColor: string }[] } } };
        return Object.fromEntries(canvas.chart.data.datasets.map((d) => [d.label, d.borderColor]));
      });
    await page.evaluate(() => {
      document.documentElement.style.setProperty('--vscode-charts-blue', '#102030');
      document.documentElement.style.setProperty('--vscode-charts-orange', '#405060');
      document.body.className = 'vscode-light';
    });
    await page.waitForFunction(() => (document.getElementById('loss-chart') as HTMLCanvasElement & { chart: { data: { datasets: { borderColor: string }[] } } }).chart.data.datasets[0].borderColor === '#102030');
    assert.deepEqual(await colors(), { q: '#102030', k: '#102030', v: '#102030', o: '#102030', gate: '#405060', up: '#405060', down: '#405060' });

    await assertClean(page, errors);
    await page.close();
  });
});

describe('Compare panel in Chromium', () => {
  test('compare.reset with two real runs: one dataset per run on one axis, one table row per run', async () => {
    const { page, errors } = await openPanel('compare');
    const runs = [apt.snapshot('apt 50%'), nm.snapshot('sparsegpt 2:4')];
    await send(page, { type: 'compare.reset', runs });
    await page.waitForSelector('#compare-table tbody tr');
    assert.deepEqual((await record(page)).state, { kind: 'compare', runIds: runs.map((r) => r.id) });
    assert.equal(await page.locator('#compare-table tbody tr').count(), 2);

    const started = apt.events.find((e): e is EventOf<'run.started'> => e.type === 'run.started')!;
    const axis = started.layers.filter((l) => l.target !== null).map((l) => l.name);
    const datasets = await chartData(page);
    assert.deepEqual(datasets.map((d) => d.label), ['apt 50%', 'sparsegpt 2:4']);
    for (const [i, rec] of [apt, nm].entries()) {
      const pruned = rec.events.filter((e): e is EventOf<'layer.pruned'> => e.type === 'layer.pruned');
      assert.deepEqual(
        datasets[i].data,
        pruned.map((e) => ({ x: axis.indexOf(e.layer), y: e.loss })).sort((a, b) => a.x - b.x),
      );
      const f = rec.events.at(-1) as EventOf<'run.finished'>;
      const cells = await page.locator(`#compare-table tbody tr:nth-child(${i + 1}) td`).allTextContents();
      assert.equal(f.type, 'run.finished');
      assert.equal(cells[2], pruned[0].method);
      assert.equal(cells[3], pruned[0].pattern);
      assert.equal(cells[5], f.totals.densePerplexity!.toFixed(4));
      assert.equal(cells[6], f.totals.prunedPerplexity!.toFixed(4));
    }
    assert.equal(await attr(page, '#app', 'data-layers-charted'), '35');
    await assertClean(page, errors);
    await page.close();
  });
});

describe('Sweep panel in Chromium, fed a real local sweep', () => {
  test('one line per method through each finished point\'s perplexity, the dense point, a table; a row opens its point; log scale', async () => {
    const work = mkdtempSync(path.join(os.tmpdir(), 'prunekit-sweep-page-'));
    const fixtures = path.join(repoRoot, '..', 'shared', 'fixtures');
    const data = path.join(fixtures, 'data', 'tinystories_valid_head.txt');
    const plan = planSweep(path.join(work, 'grid.prune.json'), {
      checkpoint: path.join(fixtures, 'stories260K-onnx'), threads: 1,
      calibration: { path: data, nsamples: 4, seqlen: 64, skipTokens: 65536 }, evaluation: { path: data, maxWindows: 4 },
      sweep: { method: ['magnitude', 'wanda'], sparsity: [0.3, 0.6] },
    });
    const points = shareTokens(plan.points, plan.folder, () => undefined);
    writePointConfigs(plan, points);
    await runLocally(plan.folder, indexOf(plan, 'local'), points, { onPoint: () => undefined });
    const sweep = readSweep(plan.folder)!;
    assert.deepEqual(sweep.index.points.map((p) => p.status), ['finished', 'finished', 'finished', 'finished']);

    const { page, errors } = await openPanel('sweep');
    await send(page, { type: 'sweep.reset', sweep });
    await page.waitForSelector('#app[data-points-charted="4"]');
    assert.deepEqual((await record(page)).state, { kind: 'sweep', dir: plan.folder });
    const ppl = (name: string) => readPointResult(plan.folder, name)!;
    assert.deepEqual(await chartData(page, 'sweep-chart'), [
      { label: 'magnitude unstructured', data: [{ x: 0.3, y: ppl('magnitude-30').prunedPerplexity! }, { x: 0.6, y: ppl('magnitude-60').prunedPerplexity! }] },
      { label: 'wanda unstructured', data: [{ x: 0.3, y: ppl('wanda-30').prunedPerplexity! }, { x: 0.6, y: ppl('wanda-60').prunedPerplexity! }] },
      { label: 'dense', data: [{ x: 0, y: ppl('wanda-30').densePerplexity! }] },
    ]);
    assert.deepEqual(await page.locator('#sweep-table tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-point'))), ['magnitude-30', 'magnitude-60', 'wanda-30', 'wanda-60']);
    assert.equal((await page.locator('#sweep-table tbody tr:nth-child(4) td').allTextContents())[5], ppl('wanda-60').prunedPerplexity!.toFixed(4));
    await page.click('#sweep-table tbody tr:nth-child(3)');
    assert.deepEqual((await record(page)).posted.at(-1), { type: 'openPoint', point: 'wanda-30' });

    const yType = () => page.evaluate(() => (document.getElementById('sweep-chart') as HTMLCanvasElement & { chart: { options: { scales: { y: { type: string } } } } }).chart.options.scales.y.type);
    assert.equal(await yType(), 'linear');
    await page.focus('vscode-radio[value="linear"]');
    await page.keyboard.press('ArrowRight');
    assert.equal(await yType(), 'logarithmic');
    await assertClean(page, errors);
    await page.close();
    rmSync(work, { recursive: true, force: true });
  });
});
