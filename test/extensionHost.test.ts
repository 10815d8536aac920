// The extension host end to end under Node: src/extension/main.ts activated against a recording stand-in for
// the vscode API (test/helpers/fakeVscode.ts), with the REAL bundled backend (dist/backend.js built into a
// temporary extension folder) pruning stories260K. Checks what the UI contract promises: the commands of
// package.json, the checkpoint-folder context key, Run Pruning Config → backend → run panel (strict CSP with a
// nonce; `ready` → run.reset, then every event exactly once), config errors with their JSON path, cancel from
// the panel, the serializer restoring a panel, Compare, delete, runs coming back after a reload, and a sweep (Run
// Sweep → the Runs view's sweep node and points → the Sweep panel → a point's run panel).

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Event } from '../src/protocol/events';
import type { HostMessage, SweepSnapshot } from '../src/protocol/webview';
import { readPointResult } from '../src/protocol/sweep';
import type { SweepNode } from '../src/extension/sweeps/sweepNodes';
import type { Run } from '../src/extension/runs/run';
import { bundleCli } from './helpers/cliProbe';
import { FakePanel, FakeVscode, Uri } from './helpers/fakeVscode';
import { editedHfCopy } from './helpers/hostileRun';
import { fixturesDir, repoRoot } from './helpers/realLayers';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'prunekit-host-'));
const extensionPath = path.join(tmp, 'extension');
const ws = path.join(tmp, 'workspace ü');
const storage = path.join(tmp, 'storage');

const fake = new FakeVscode(ws);
const uninstall = fake.install();
type Main = typeof import('../src/extension/main');
let main: Main;

const runsView = () => fake.treeProviders.get('prunekit.runs') as { getChildren(): Run[]; getTreeItem(r: Run): { description?: string; contextValue?: string } };
const runs = () => runsView().getChildren();
const context = () => ({ subscriptions: [] as { dispose(): unknown }[], extensionPath, extensionUri: Uri.file(extensionPath), storageUri: Uri.file(storage), globalStorageUri: Uri.file(path.join(tmp, 'global')) });
let ctx = context();

async function until(what: string, ok: () => boolean, ms = 120_000): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}\n${fake.outputLines.slice(-20).join('\n')}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The events a panel has drawn: its last run.reset plus every run.event after it. */
function drawnEvents(panel: FakePanel): Event[] {
  const posted = panel.webview.posted as HostMessage[];
  const last = posted.map((m) => m.type).lastIndexOf('run.reset');
  assert.ok(last >= 0, 'no run.reset was posted');
  const reset = posted[last] as Extract<HostMessage, { type: 'run.reset' }>;
  return [...reset.run.events, ...posted.slice(last + 1).flatMap((m) => (m.type === 'run.event' ? [m.event] : []))];
}

function writeConfig(name: string, config: Record<string, unknown>): Uri {
  const file = path.join(ws, name);
  writeFileSync(file, JSON.stringify(config, null, 2));
  return Uri.file(file);
}

before(async () => {
  // The extension folder as packaged: dist/backend.js, media/, and node_modules (onnxruntime-node's binaries).
  mkdirSync(path.join(extensionPath, 'dist'), { recursive: true });
  symlinkSync(path.join(repoRoot, 'node_modules'), path.join(extensionPath, 'node_modules'));
  symlinkSync(path.join(repoRoot, 'media'), path.join(extensionPath, 'media'));
  await bundleCli('extension-host-test', path.join(extensionPath, 'dist', 'backend.js'));
  // A workspace: the fixture model (linked, never written), an HF-style folder, and a folder that is neither.
  mkdirSync(path.join(ws, 'hf model'), { recursive: true });
  symlinkSync(path.join(fixturesDir, 'stories260K-onnx'), path.join(ws, 'stories260K-onnx'));
  writeFileSync(path.join(ws, 'hf model', 'config.json'), '{}');
  writeFileSync(path.join(ws, 'hf model', 'model-00001-of-00001.safetensors'), '');
  mkdirSync(path.join(ws, 'just config'));
  writeFileSync(path.join(ws, 'just config', 'config.json'), '{}');
  fake.settings['prunekit.device'] = 'cpu';
  fake.settings['prunekit.cancelGraceSeconds'] = 5;
  main = await import('../src/extension/main');
});

after(async () => {
  await main?.deactivate();
  uninstall();
  rmSync(tmp, { recursive: true, force: true });
});

describe('extension host', () => {
  test('activation registers every command of package.json and the three panel serializers; checkpoint folders become a context key', async () => {
    main.activate(ctx as never);
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { contributes: { commands: { command: string }[] } };
    // Every declared command is registered; the only undeclared one is the CodeLens's internal command.
    const declared = pkg.contributes.commands.map((c) => c.command);
    const registered = [...fake.commands.keys()];
    assert.deepEqual(declared.filter((c) => !registered.includes(c)), []);
    assert.deepEqual(registered.filter((c) => !declared.includes(c)), ['prunekit.config.runFromLens']);
    assert.deepEqual([...fake.serializers.keys()].sort(), ['prunekit.compare', 'prunekit.run', 'prunekit.sweep']);
    await until('the checkpoint folders', () => fake.context.has('prunekit.checkpointFolders'));
    assert.deepEqual(fake.context.get('prunekit.checkpointFolders'), [path.join(ws, 'hf model'), path.join(ws, 'stories260K-onnx')]);
    assert.deepEqual(runs(), []);
  });

  let first: Run;
  test('Run Pruning Config: the real backend runs, the panel gets run.reset then every event once, the view and status bar follow', async () => {
    const config = writeConfig('magnitude.prune.json', { checkpoint: 'stories260K-onnx', method: 'magnitude', sparsity: 0.5 });
    await fake.commands.get('prunekit.runConfig')?.(config);
    [first] = runs();
    assert.ok(first?.live, 'no live run after Run Pruning Config');
    const panel = fake.panels.at(-1) as FakePanel;
    assert.equal(panel.viewType, 'prunekit.run');

    // The HTML: strict CSP whose nonce is the script's, the contract's #app, dist/ and media/ only.
    const html = panel.webview.html;
    const nonce = /script-src 'nonce-([^']+)'/.exec(html)?.[1];
    assert.ok(nonce, html);
    assert.match(html, /default-src 'none'; script-src 'nonce-[^']+'; style-src https:\/\/fake\.vscode-cdn\.net 'nonce-[^']+'; img-src https:\/\/fake\.vscode-cdn\.net data:; font-src https:\/\/fake\.vscode-cdn\.net/);
    assert.ok(html.includes(`<script nonce="${nonce}" src="https://fake.vscode-cdn.net${path.join(extensionPath, 'dist', 'webview.js')}"></script>`));
    assert.ok(html.includes('<div id="app" data-kind="run"></div>'));
    assert.ok(html.includes(path.join(extensionPath, 'media', 'panel.css')));
    assert.deepEqual(panel.webview.options.localResourceRoots?.map((u) => u.fsPath), [path.join(extensionPath, 'dist'), path.join(extensionPath, 'media')]);
    assert.equal(panel.webview.options.enableScripts, true);

    // The webview loads while the backend already streams: what came before `ready` arrives in run.reset.
    await until('the first events', () => first.events.length > 0);
    assert.deepEqual(panel.webview.posted, [], 'nothing is posted before the webview says ready');
    panel.webview.send({ type: 'ready' });
    panel.webview.send({ type: 'bogus' }); // untrusted input: ignored
    await first.ended;
    assert.equal(first.status, 'finished', fake.outputLines.join('\n'));
    assert.equal(first.progress.layersDone, 35);
    assert.equal(first.progress.device, 'cpu', 'the prunekit.device setting reaches the backend');
    const reset = panel.webview.posted[0] as HostMessage;
    assert.ok(reset.type === 'run.reset' && reset.run.events.length > 0 && reset.run.times.length === reset.run.events.length);
    assert.deepEqual(drawnEvents(panel), first.events);
    assert.equal(runsView().getTreeItem(first).description, 'magnitude 50% · finished');
    assert.equal(runsView().getTreeItem(first).contextValue, 'prunekit.run.finished');
    assert.equal(first.output, path.join(ws, 'stories260K-onnx-magnitude-50'));
    await until('the status bar to hide', () => fake.statusBarItems.every((i) => !i.visible));
    assert.ok(fake.messages.some((m) => m.level === 'info' && /finished/.test(m.text)));
    assert.ok(fake.outputLines.some((l) => l.includes('malformed panel message')));

    // The panel's buttons: open the report, reveal the output (in the workspace: the Explorer).
    panel.webview.send({ type: 'openReport', runId: first.id });
    panel.webview.send({ type: 'revealOutput', runId: first.id });
    await until('the report to open', () => fake.opened.includes(path.join(first.output as string, 'prune-report.json')));
    await until('the reveal', () => fake.executed.some((e) => e.id === 'revealInExplorer'));
  });

  test('a config error names its JSON path and starts nothing', async () => {
    const before = runs().length;
    await fake.commands.get('prunekit.runConfig')?.(writeConfig('broken.prune.json', { checkpoint: 'stories260K-onnx', method: 'nope' }));
    assert.equal(runs().length, before);
    const error = fake.messages.at(-1);
    assert.equal(error?.level, 'error');
    assert.match(error?.text ?? '', /broken\.prune\.json: \$\.method: /);
  });

  test('a catastrophic pattern and a bomb config.json opened in the editor leave the host responsive', async () => {
    // A checkpoint whose config.json says 10⁹ layers, a config on it with patterns that backtrack for hours under
    // JavaScript's RegExp on real layer names, the same patterns on the fixture, a 1.5 MB config, and one nested 300 000 levels deep.
    editedHfCopy(path.join(fixturesDir, 'stories260K-hf'), path.join(ws, 'bomb model'), (c) => ({ ...c, num_hidden_layers: 1e9 }));
    const patterns = { include: ['re:^(.*)*x$'], exclude: [`${'*a'.repeat(40)}*b`] };
    const onBomb = writeConfig('hostile-bomb.prune.json', { checkpoint: './bomb model', method: 'magnitude', layers: patterns, blockPattern: '^(.*)*(\\d+)x$' });
    const onFixture = writeConfig('hostile-fixture.prune.json', { checkpoint: 'stories260K-onnx', method: 'magnitude', layers: patterns });
    const huge = path.join(ws, 'huge.prune.json');
    writeFileSync(huge, `{"checkpoint": "stories260K-onnx", "x": "${'x'.repeat(1_500_000)}"}`);
    const deep = path.join(ws, 'deep.prune.json');
    writeFileSync(deep, `{"checkpoint": "stories260K-onnx", "x": ${'['.repeat(300_000)}${']'.repeat(300_000)}}`);
    let worstGap = 0;
    let last = performance.now();
    const ticker = setInterval(() => {
      worstGap = Math.max(worstGap, performance.now() - last);
      last = performance.now();
    }, 10);
    try {
      for (const f of [onBomb.fsPath, onFixture.fsPath, huge, deep]) fake.openDocument(f);
      // A command answers at once while inspect and the diagnostics work: Run Pruning Config on the 1.5 MB file.
      const t0 = performance.now();
      await fake.commands.get('prunekit.runConfig')?.(Uri.file(huge));
      assert.ok(performance.now() - t0 < 1000, `runConfig took ${(performance.now() - t0).toFixed(0)} ms`);
      assert.match(fake.messages.at(-1)?.text ?? '', /huge\.prune\.json: \$: the file is \d+ bytes; a prune config may be at most 1048576 bytes/);
      const has = (uri: Uri, re: RegExp) => (fake.diagnostics.get(uri.toString()) ?? []).some((m) => re.test(m));
      await until('the diagnostics of every opened config', () =>
        has(onBomb, /num_hidden_layers \(= 1000000000\) needs tensor 'model\.layers\.5\.input_layernorm\.weight'/) &&
        has(onFixture, /"re:\^\(\.\*\)\*x\$" matches no prunable layer/) && has(onFixture, /"\*a\*a.*\*b" matches no prunable layer/) &&
        has(Uri.file(huge), /the file is \d+ bytes/) && has(Uri.file(deep), /nests deeper than 64 levels/), 60_000).catch((e: Error) => {
        throw new Error(`${e.message}\ndiagnostics: ${JSON.stringify([...fake.diagnostics])}`);
      });
    } finally {
      clearInterval(ticker);
    }
    assert.ok(worstGap < 1000, `the host's event loop stalled for ${worstGap.toFixed(0)} ms`);
  });

  let second: Run;
  test('an existing output asks before replacing; cancel from the panel stops the backend with no output', async () => {
    const config = writeConfig('magnitude.prune.json', { checkpoint: 'stories260K-onnx', method: 'magnitude', sparsity: 0.5 });
    fake.answers.push('Replace');
    await fake.commands.get('prunekit.runConfig')?.(config);
    second = runs()[0];
    assert.notEqual(second.id, first.id);
    assert.match(fake.messages.at(-1)?.text ?? '', /already exists/);
    await second.ended;
    assert.equal(second.status, 'finished');

    const slow = writeConfig('sparsegpt.prune.json', {
      checkpoint: 'stories260K-onnx', method: 'sparsegpt', output: 'cancelled-out',
      calibration: { path: path.join(fixturesDir, 'stories260K-eval-ids.json'), nsamples: 128, seqlen: 64 },
    });
    await fake.commands.get('prunekit.runConfig')?.(slow);
    const run = runs()[0];
    const panel = fake.panels.at(-1) as FakePanel;
    panel.webview.send({ type: 'ready' });
    await until('calibration to start', () => run.events.some((e) => e.type === 'calibration.progressed') || !run.live);
    panel.webview.send({ type: 'cancel', runId: run.id });
    await run.ended;
    assert.equal(run.status, 'cancelled');
    assert.deepEqual(drawnEvents(panel), run.events);
    assert.equal((panel.webview.posted.at(-1) as HostMessage).type, 'run.event');
    assert.equal(readdirSync(ws).some((n) => n.startsWith('cancelled-out')), false);
  });

  test('the serializer restores a run panel from its state; a deleted run\'s panel closes', async () => {
    for (const p of fake.panels) p.dispose(); // as after a reload: no panel is open when VS Code revives them
    const panel = new FakePanel('prunekit.run', 'restored', -1);
    await fake.serializers.get('prunekit.run')?.deserializeWebviewPanel(panel, { kind: 'run', runId: second.id });
    assert.equal(panel.disposed, false);
    assert.match(panel.webview.html, /data-kind="run"/);
    panel.webview.send({ type: 'ready' });
    const reset = panel.webview.posted[0] as HostMessage;
    assert.equal(reset.type, 'run.reset');
    assert.equal(reset.type === 'run.reset' && reset.run.id, second.id);

    const gone = new FakePanel('prunekit.run', 'gone', -1);
    await fake.serializers.get('prunekit.run')?.deserializeWebviewPanel(gone, { kind: 'run', runId: path.join(storage, 'no-such-run') });
    assert.equal(gone.disposed, true);
    // A second revival of a run already shown would make two panels drawing one run: it closes instead.
    const twin = new FakePanel('prunekit.run', 'twin', -1);
    await fake.serializers.get('prunekit.run')?.deserializeWebviewPanel(twin, { kind: 'run', runId: second.id });
    assert.equal(twin.disposed, true);
  });

  test('Compare Runs: the picked finished runs go to the Compare panel', async () => {
    fake.answers.push((items) => items); // pick every finished run offered
    await fake.commands.get('prunekit.compareRuns')?.();
    const panel = fake.panels.at(-1) as FakePanel;
    assert.equal(panel.viewType, 'prunekit.compare');
    assert.match(panel.webview.html, /<div id="app" data-kind="compare"><\/div>/);
    panel.webview.send({ type: 'ready' });
    const reset = panel.webview.posted[0] as Extract<HostMessage, { type: 'compare.reset' }>;
    assert.equal(reset.type, 'compare.reset');
    assert.deepEqual(reset.runs.map((r) => r.id).sort(), [first.id, second.id].sort());
    assert.ok(reset.runs.every((r) => r.status === 'finished' && r.events.length === first.events.length));
  });

  test('after a reload the runs come back from storage, and Delete removes a record (asking about its output)', async () => {
    await main.deactivate();
    for (const d of ctx.subscriptions) d.dispose();
    ctx = context();
    main.activate(ctx as never);
    await until('the runs to be restored', () => runs().length === 3);
    assert.deepEqual(runs().map((r) => r.status).sort(), ['cancelled', 'finished', 'finished']);
    const restored = runs().find((r) => r.id === second.id) as Run;
    assert.deepEqual(restored.events, second.events);

    fake.answers.push('Remove from List Only');
    await fake.commands.get('prunekit.deleteRun')?.(restored);
    assert.equal(runs().length, 2);
    assert.match(fake.messages.at(-1)?.text ?? '', /Delete the run/);
    assert.ok(readdirSync(ws).includes('stories260K-onnx-magnitude-50'), 'the output folder is kept');
  });

  test('Run Sweep: the backend runs each point; the Runs view shows the sweep and its points, the Sweep panel draws it, a point opens its run', async () => {
    // The text's first 16 KiB: the points need 2 windows of 64 tokens, and the sweep tokenizes it before its first line.
    const text = path.join(ws, 'head.txt');
    writeFileSync(text, readFileSync(path.join(fixturesDir, 'data', 'tinystories_valid_head.txt')).subarray(0, 16384));
    const config = writeConfig('grid.prune.json', { checkpoint: 'stories260K-onnx', method: 'magnitude', evaluation: { path: text, seqlen: 64, maxWindows: 2 }, sweep: { sparsity: [0.3, 0.6] } });
    await fake.commands.get('prunekit.runSweep')?.(config);
    await until('the Sweep panel', () => fake.panels.some((p) => p.viewType === 'prunekit.sweep'));
    const panel = fake.panels.find((p) => p.viewType === 'prunekit.sweep') as FakePanel;
    assert.ok(panel.webview.html.includes('<div id="app" data-kind="sweep"></div>'));
    panel.webview.send({ type: 'ready' });
    const dir = path.join(ws, 'grid-sweep');
    const drawn = () => (panel.webview.posted as HostMessage[]).filter((m): m is Extract<HostMessage, { type: 'sweep.reset' }> => m.type === 'sweep.reset').at(-1)?.sweep;
    const done = (s: SweepSnapshot | undefined) => s !== undefined && s.index.points.every((p) => p.status === 'finished') && Object.values(s.results).every((r) => r !== null);
    await until('both points drawn finished', () => done(drawn()));
    const sweep = drawn() as SweepSnapshot;
    assert.equal(sweep.dir, dir);
    for (const p of sweep.index.points) assert.deepEqual(sweep.results[p.name], readPointResult(dir, p.name), `${p.name}: the panel gets its report's numbers`);

    const view = fake.treeProviders.get('prunekit.runs') as unknown as { getChildren(e?: SweepNode): (SweepNode | Run)[]; getTreeItem(e: SweepNode): { description?: string; contextValue?: string; label?: string } };
    const top = view.getChildren();
    const node = top.find((n): n is SweepNode => 'kind' in n && n.kind === 'sweep') as SweepNode;
    assert.equal(view.getTreeItem(node).description, '2/2 finished');
    const points = view.getChildren(node);
    assert.deepEqual(points.map((p) => (p as SweepNode & { point: string }).point), ['magnitude-30', 'magnitude-60']);
    const ppl30 = readPointResult(dir, 'magnitude-30')?.prunedPerplexity as number;
    assert.equal(view.getTreeItem(points[0] as SweepNode).description, `finished · ppl ${ppl30.toFixed(3)}`);
    assert.ok(!top.some((n) => n instanceof Object && 'folder' in n && path.dirname((n as Run).folder) === dir), 'a point is listed under its sweep, not again as a run');

    const runPanels = () => fake.panels.filter((p) => p.viewType === 'prunekit.run').length;
    const before = runPanels();
    panel.webview.send({ type: 'openPoint', point: 'magnitude-30' });
    await until('the point\'s run panel', () => runPanels() === before + 1);
    const runPanel = fake.panels.filter((p) => p.viewType === 'prunekit.run').at(-1) as FakePanel;
    runPanel.webview.send({ type: 'ready' });
    const reset = runPanel.webview.posted[0] as HostMessage;
    assert.ok(reset.type === 'run.reset' && reset.run.id === path.join(dir, 'magnitude-30') && reset.run.status === 'finished', 'the point\'s run folder, loaded as a finished run');
  });

  test('after a reload the sweep is read back from its folder: the Runs view node, and the Sweep panel revived from its state', async () => {
    await main.deactivate();
    for (const d of ctx.subscriptions) d.dispose();
    for (const p of fake.panels) p.dispose();
    ctx = context();
    main.activate(ctx as never);
    const dir = path.join(ws, 'grid-sweep');
    const view = fake.treeProviders.get('prunekit.runs') as unknown as { getChildren(e?: SweepNode): (SweepNode | Run)[]; getTreeItem(e: SweepNode): { description?: string } };
    const sweepNode = () => view.getChildren().find((n): n is SweepNode => 'kind' in n && n.kind === 'sweep' && n.dir === dir);
    await until('the sweep in the Runs view', () => sweepNode() !== undefined);
    assert.equal(view.getTreeItem(sweepNode() as SweepNode).description, '2/2 finished');

    const panel = new FakePanel('prunekit.sweep', 'restored', -1);
    await fake.serializers.get('prunekit.sweep')?.deserializeWebviewPanel(panel, { kind: 'sweep', dir });
    assert.equal(panel.disposed, false);
    panel.webview.send({ type: 'ready' });
    const reset = panel.webview.posted[0] as HostMessage;
    assert.ok(reset.type === 'sweep.reset' && reset.sweep.dir === dir && reset.sweep.index.points.every((p) => reset.sweep.results[p.name]?.prunedPerplexity === readPointResult(dir, p.name)?.prunedPerplexity));
    const gone = new FakePanel('prunekit.sweep', 'gone', -1);
    await fake.serializers.get('prunekit.sweep')?.deserializeWebviewPanel(gone, { kind: 'sweep', dir: path.join(ws, 'no-such-sweep') });
    assert.equal(gone.disposed, true, 'a deleted sweep\'s panel closes');
  });
});
