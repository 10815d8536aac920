// PruneKit in a real VS Code: code-server serving the packaged VSIX, driven through Chromium (test/e2e/harness.ts).
// Run with `npm run test:e2e` (installs code-server and Chromium first). One session serves all tests, in order.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseConfigText, resolveConfig } from '../../src/protocol/config';
import { log, VsCode, WORKSPACE } from './harness';
import { gpuProviderStatus, installCudaProvider } from '../../src/extension/gpu/gpuSetup';

const DEMO_TITLE = 'PruneKit: Run Demo (prune a generated model)';
/** stories260K: 5 blocks of 7 prunable projections. */
const FIXTURE_LAYERS = 35;
/** stories-mamba: 4 blocks of in_proj, x_proj, dt_proj, out_proj. */
const MAMBA_LAYERS = 16;
/** Not the schema's default (0.5), so the test sees whether Prune Model… prefills from the settings. */
const SETTINGS_SPARSITY = 0.6;

// Configs the schema tests open. Their checkpoint is not the fixture model, so Prune Model… does not offer them
// (the sweep's config, below, does point at it: Prune Model… on the model offers it, or a new config).
const KEYS_CONFIG = 'configs/keys.prune.json';
const BROKEN_CONFIG = 'configs/broken.prune.json';
/** A 2 × 2 local sweep on the fixture model (magnitude and Wanda at two sparsities), run from its CodeLens. */
const SWEEP_CONFIG = 'configs/grid.prune.json';

describe('PruneKit in a real VS Code (code-server)', { timeout: 20 * 60_000 }, () => {
  let vscode: VsCode | undefined;
  const session = (): VsCode => {
    assert.ok(vscode, 'VS Code did not start (see the before hook)');
    return vscode;
  };

  before(async () => {
    vscode = await VsCode.launch({
      settings: { 'prunekit.defaultSparsity': SETTINGS_SPARSITY, 'prunekit.defaultMethod': 'apt' },
      files: {
        [KEYS_CONFIG]: '{\n  \n  "checkpoint": "elsewhere.onnx"\n}\n',
        [BROKEN_CONFIG]: '{\n  "checkpoint": "elsewhere.onnx",\n  "method": "nope"\n}\n',
        [SWEEP_CONFIG]: `${JSON.stringify({
          checkpoint: `../${WORKSPACE.model}`,
          calibration: { path: `../${WORKSPACE.text}`, nsamples: 8, seqlen: 64 },
          evaluation: { path: `../${WORKSPACE.text}`, seqlen: 64, maxWindows: 8 },
          sweep: { method: ['magnitude', 'wanda'], sparsity: [0.3, 0.6] },
        }, null, 2)}\n`,
      },
    });
  });

  after(async () => {
    await vscode?.close();
  });

  test('the VSIX installs and the extension activates: commands in the palette, Run Demo runs the backend', () => session().step('activation', async () => {
    const vs = session();
    assert.ok(vs.manifest.commands.includes('prunekit.demo'), `installed commands: ${vs.manifest.commands.join(', ')}`);

    const commands = await vs.step('palette lists PruneKit', () => vs.paletteCommands('PruneKit'));
    assert.ok(commands.includes(DEMO_TITLE), `palette shows: ${commands.join(' | ')}`);

    // The demo generates a random Llama-shaped model (4 blocks of 7 projections), prunes it with APT in the
    // backend process and shows the run in a run panel.
    await vs.runCommand(DEMO_TITLE);
    assertRunUi(vs);
    const panel = vs.webview();
    await vs.step('demo run panel', () =>
      waitUntil('the demo to prune its 28 layers', 5 * 60_000, async () => (await panel.locator('#progress').getAttribute('data-layers-done')) === '28'));
    assert.equal(await panel.locator('#progress').getAttribute('data-layers-total'), '28');
    assert.match((await panel.locator('#header [data-field="method"]').textContent()) ?? '', /apt/i);
    await vs.runCommand('View: Close Editor'); // the demo's panel: the main flow reads its own
  }));

  test('the installed VSIX carries the CUDA installer: offline, Set Up GPU fails as "offline", not "incomplete"', async () => {
    // The installer's proxy (global-agent) points at a closed local port, so no network is used.
    const status = gpuProviderStatus(session().manifest.folder);
    assert.equal(status.installerPresent, true);
    const r = await installCudaProvider(status, process.execPath, () => {}, { GLOBAL_AGENT_HTTP_PROXY: 'http://127.0.0.1:9', GLOBAL_AGENT_HTTPS_PROXY: 'http://127.0.0.1:9' });
    const seen = JSON.stringify({ ...r, folder: session().manifest.folder });
    assert.equal(r.ok, false, seen);
    assert.equal(r.incomplete, false, seen);
    assert.equal(r.offline, true, seen);
  });

  test('*.prune.json: Ctrl+Space offers schema keys, an invalid value shows in Problems', () => session().step('schema', async () => {
    const vs = session();
    const keys = await vs.step('schema completions', async () => {
      await vs.openFile(KEYS_CONFIG);
      return vs.completionsAt(2, 3, (l) => l.includes('method') && l.includes('sparsity'));
    });
    // The JSON language server applies the schema contributed by jsonValidation.
    assert.ok(keys.includes('calibration') && keys.includes('pattern'), `completions: ${keys.join(', ')}`);
    await vs.screenshot('e2e-config-completions');
    await vs.page.keyboard.press('Escape');

    const problems = await vs.step('invalid value in Problems', async () => {
      await vs.openFile(BROKEN_CONFIG);
      return vs.waitForProblem(/Value is not accepted.*"apt"/);
    });
    assert.ok(problems.some((p) => /"sparsegpt".*"wanda".*"magnitude"/.test(p)), `problems: ${problems.join(' | ')}`);
    await vs.screenshot('e2e-problems');
  }));

  test('main flow: Prune Model… → config → Run → live run panel → Runs view → layer-name completions', async () => {
    const vs = session();
    assertRunUi(vs);
    await vs.step('main flow', () => mainFlow(vs));
  });

  test('a sweep: its config\'s Run sweep CodeLens runs four points locally; the Sweep panel charts each one', () => session().step('sweep', () => sweepFlow(session())));

  test('a Hugging Face folder: Explorer → Prune Model… → Run → both perplexities, a safetensors folder out', async () => {
    const vs = session();
    assertRunUi(vs);
    const folder = vs.file(WORKSPACE.hfFolder);
    const configFile = await pruneFromExplorer(vs, WORKSPACE.hfFolder, [folder]);
    await vs.step('the Hugging Face run finishes', () => waitForRunEnd(vs));
    await assertFinishedRun(vs, configFile);
  });

  test('a Mamba folder: Explorer → Prune Model… → Run → both perplexities', async () => {
    const vs = session();
    assertRunUi(vs);
    const configFile = await pruneFromExplorer(vs, WORKSPACE.mambaFolder, [vs.file(WORKSPACE.mambaFolder)]);
    await vs.step('the Mamba run finishes', () => waitForRunEnd(vs));
    await assertFinishedRun(vs, configFile, MAMBA_LAYERS);
  });
});

/** The sweep config's Run sweep CodeLens → four local points → the Sweep panel's chart and table match their reports. */
async function sweepFlow(vs: VsCode): Promise<void> {
  await vs.tidy();
  await vs.openFile(SWEEP_CONFIG);
  await vs.step('click Run sweep', async () => {
    const lens = vs.page.locator('.editor-group-container.active .monaco-editor .codelens-decoration a', { hasText: /Run sweep/ }).first();
    await lens.waitFor({ state: 'visible', timeout: 30_000 });
    await vs.clickInEditor(lens);
  });
  const panel = vs.webview();
  await vs.step('the Sweep panel charts every point', async () => {
    await panel.locator('#app[data-kind="sweep"]').waitFor({ state: 'attached', timeout: 60_000 });
    await waitUntil('four points on the chart', 5 * 60_000, async () => (await panel.locator('#app').getAttribute('data-points-charted')) === '4');
  });
  const rows = await panel.locator('#sweep-table tbody tr').evaluateAll((els) => els.map((e) => `${e.getAttribute('data-point')} ${e.getAttribute('data-status')}`));
  assert.deepEqual(rows, ['magnitude-30 finished', 'magnitude-60 finished', 'wanda-30 finished', 'wanda-60 finished']);
  const sweepDir = path.join(path.dirname(vs.file(SWEEP_CONFIG)), 'grid-sweep');
  for (const name of ['magnitude-30', 'magnitude-60', 'wanda-30', 'wanda-60']) {
    const report = JSON.parse(fs.readFileSync(path.join(sweepDir, name, 'prune-report.json'), 'utf8')) as { totals: { prunedPerplexity: number } };
    const cells = await panel.locator(`#sweep-table tbody tr[data-point="${name}"] td`).allTextContents();
    assert.equal(cells[5], report.totals.prunedPerplexity.toFixed(4), `${name}: the table shows its report's perplexity`);
  }
  await vs.screenshot('e2e-sweep-panel');
}

/** Prune Model… → config → Run → live run panel → Runs view → layer-name completions. */
async function mainFlow(vs: VsCode): Promise<void> {
  const modelDir = path.dirname(vs.file(WORKSPACE.model));
  // Four times the other flows' calibration: the pruning then lasts long enough to be watched after the panel loads.
  const configFile = await pruneFromExplorer(vs, WORKSPACE.model, [vs.file(WORKSPACE.model), modelDir], 256);
  const configRel = path.relative(vs.workspace, configFile);

  const panel = vs.webview();
  const samples: number[] = [];
  let total = 0;
  let livePictured = false;
  await vs.step('the run panel charts the layers live', () =>
    waitForRunEnd(vs, async (charted, layers) => {
      total = layers;
      samples.push(charted);
      if (!livePictured && charted > 0 && charted < layers) {
        livePictured = true;
        await vs.screenshot('e2e-run-panel-live');
      }
    }),
  );
  const live = [...new Set(samples.filter((n) => Number.isFinite(n) && n < total))];
  log(`data-layers-charted while live: ${live.join(', ')} (${samples.length} samples)`);
  assert.equal(total, FIXTURE_LAYERS);
  assert.ok(live.length >= 2 && Math.max(...live) > 0, `data-layers-charted never grew while live: samples ${samples.join(',')}`);
  assert.deepEqual(live, [...live].sort((a, b) => a - b), `data-layers-charted went backwards: ${samples.join(',')}`);
  await assertFinishedRun(vs, configFile);
  assert.match((await panel.locator('#header [data-field="method"]').textContent()) ?? '', /apt/i);
  await vs.tidy();
  await vs.screenshot('e2e-run-panel-finished');

  await vs.step('the Runs view lists the run', async () => {
    const sidebar = await vs.openViewContainer('PruneKit');
    const rows = sidebar.getByRole('treeitem');
    await waitUntil('a run in the Runs view', 20_000, async () => (await rows.count()) > 0);
    const labels = await rows.evaluateAll((els) => els.map((e) => e.getAttribute('aria-label') ?? e.textContent ?? ''));
    assert.ok(labels.some((l) => /stories260K|model|apt/i.test(l)), `Runs view rows: ${labels.join(' | ')}`);
    await vs.screenshot('e2e-runs-view');
  });

  const layerNames = await vs.step('Ctrl+Space in layers.exclude offers layer names', async () => {
    await vs.openFile(configRel);
    const current = parseConfigText(fs.readFileSync(configFile, 'utf8')) as Record<string, unknown>;
    const text = `${JSON.stringify({ ...current, layers: { exclude: [''] } }, null, 2)}\n`;
    fs.writeFileSync(configFile, text);
    await waitUntil('the editor to show layers.exclude', 20_000, async () => (await vs.editorText()).includes('"exclude"'));
    const at = text.indexOf('""', text.indexOf('"exclude"')) + 1; // between the quotes
    const before = text.slice(0, at).split('\n');
    return vs.completionsAt(before.length, before[before.length - 1].length + 1, (l) => l.includes('layers.0.self_attn.q_proj'));
  });
  // Names come from the model itself: stories260K has blocks 0-4 only.
  const blocks = layerNames.map((l) => /^layers\.(\d+)\./.exec(l)?.[1]).filter((b) => b !== undefined).map(Number);
  assert.ok(blocks.length > 0 && blocks.every((b) => b < 5), `completions: ${layerNames.join(', ')}`);
  await vs.screenshot('e2e-layer-completions');
  await vs.page.keyboard.press('Escape');
}

/**
 * Right-click `target` → Prune Model… → the new *.prune.json (prefilled from the settings, pointing at one of
 * `checkpoints`) → calibration shrunk to `nsamples` windows of 128 tokens → its Run CodeLens (or the notification's Run) clicked.
 * Returns the config file.
 */
async function pruneFromExplorer(vs: VsCode, target: string, checkpoints: string[], nsamples = 64): Promise<string> {
  await vs.tidy();
  const before = new Set(pruneConfigs(vs.workspace));
  let configFile = '';
  await vs.step(`Prune Model… on ${target} creates and opens a config`, async () => {
    await vs.explorerAction(target, 'Prune Model…');
    // A checkpoint that configs already point at (the sweep's grid.prune.json) first gets a quick pick of them.
    const createNew = vs.page.locator('.quick-input-list .monaco-list-row').filter({ hasText: 'Create new config…' }).first();
    let offered = false;
    await waitUntil('a new *.prune.json', 30_000, async () => {
      if (!offered && (await createNew.isVisible())) {
        offered = true;
        await createNew.click();
      }
      configFile = pruneConfigs(vs.workspace).find((f) => !before.has(f)) ?? '';
      return configFile !== '';
    });
    if (target === WORKSPACE.model) assert.ok(offered, `Prune Model… on ${target} did not offer ${SWEEP_CONFIG}, which points at it`);
    await vs.activeTab(path.basename(configFile)).waitFor({ state: 'visible', timeout: 30_000 });
  });
  const created = parseConfigText(fs.readFileSync(configFile, 'utf8')) as Record<string, unknown>;
  const checkpoint = path.resolve(path.dirname(configFile), String(created.checkpoint));
  assert.ok(checkpoints.includes(checkpoint), `${path.relative(vs.workspace, configFile)} points to ${checkpoint}`);
  assert.equal(created.sparsity, SETTINGS_SPARSITY, `the config is not prefilled from prunekit.defaultSparsity: ${JSON.stringify(created)}`);

  // Keep the run short (seconds) but long enough to watch it live: few, short calibration windows.
  await vs.step('shrink the calibration', async () => {
    if ((await vs.page.locator('.editor-group-container.active .tab.active.dirty').count()) > 0) await vs.runCommand('File: Save');
    const text = vs.file(WORKSPACE.text);
    const small = {
      ...created,
      calibration: { ...asObject(created.calibration), path: text, nsamples, seqlen: 128 },
      evaluation: { ...asObject(created.evaluation), path: text, seqlen: 128, maxWindows: 16 },
    };
    fs.writeFileSync(configFile, `${JSON.stringify(small, null, 2)}\n`);
    await waitUntil('the editor to show the new config', 20_000, async () => (await vs.editorText()).includes(`"nsamples": ${nsamples}`));
  });

  await vs.step('click Run', async () => {
    const codeLens = vs.page.locator('.editor-group-container.active .monaco-editor .codelens-decoration a', { hasText: /\bRun\b/ }).first();
    const notificationRun = vs.page.locator('.notifications-toasts .monaco-button', { hasText: /^Run$/ }).first();
    await codeLens.or(notificationRun).first().waitFor({ state: 'visible', timeout: 30_000 });
    if (await codeLens.isVisible()) await vs.clickInEditor(codeLens);
    else await notificationRun.click();
  });
  return configFile;
}

/** Polls the visible run panel until its summary shows the pruned perplexity; `sample` sees each poll. */
async function waitForRunEnd(vs: VsCode, sample: (charted: number, total: number) => Promise<void> = async () => {}): Promise<void> {
  const panel = vs.webview();
  await panel.locator('#app[data-kind="run"]').waitFor({ state: 'attached', timeout: 60_000 });
  await waitUntil('the run to finish', 5 * 60_000, async () => {
    await sample(Number(await panel.locator('#app').getAttribute('data-layers-charted')), Number(await panel.locator('#progress').getAttribute('data-layers-total')));
    return isNumber(await panel.locator('#summary [data-field="prunedPerplexity"]').textContent());
  }, 100);
}

/** The finished panel charts and lists every layer, shows both perplexities, and the pruned model exists. */
async function assertFinishedRun(vs: VsCode, configFile: string, layers = FIXTURE_LAYERS): Promise<void> {
  const panel = vs.webview();
  assert.equal(Number(await panel.locator('#app').getAttribute('data-layers-charted')), layers);
  assert.equal(await panel.locator('#layer-table tbody tr').count(), layers);
  const dense = Number(await panel.locator('#summary [data-field="densePerplexity"]').textContent());
  const pruned = Number(await panel.locator('#summary [data-field="prunedPerplexity"]').textContent());
  assert.ok(dense > 1 && Number.isFinite(dense), `dense perplexity ${dense}`);
  // Removing 60% of every projection's weights costs this tiny model real quality.
  assert.ok(pruned > dense, `pruned perplexity ${pruned} not above dense ${dense}`);
  // Where the config says the pruned model goes (the protocol's own resolution of `output`).
  const output = resolveConfig(parseConfigText(fs.readFileSync(configFile, 'utf8')), path.dirname(configFile)).output;
  assert.ok(fs.readdirSync(output).some((f) => f === 'model.onnx' || f.endsWith('.safetensors')), `no pruned model at ${output}`);
}

/** The installed extension has the run UI these flows drive (a command gone from the manifest fails them). */
function assertRunUi(vs: VsCode): void {
  assert.ok(vs.manifest.commands.includes('prunekit.pruneModel'), `the packaged extension has no prunekit.pruneModel; its commands: ${vs.manifest.commands.join(', ')}`);
}

/** Every *.prune.json under `dir`. */
function pruneConfigs(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.prune.json')).map((f) => path.join(dir, f));
}

function asObject(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {};
}

function isNumber(text: string | null): boolean {
  return text !== null && /^\s*\d+(\.\d+)?\s*$/.test(text);
}

async function waitUntil(what: string, timeoutMs: number, ok: () => boolean | Promise<boolean>, intervalMs = 250): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
