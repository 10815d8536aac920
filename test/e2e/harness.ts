// End-to-end harness: PruneKit in a real VS Code. Packages the VSIX, installs it into code-server (installed by
// scripts/e2e/install.sh into .e2e/), serves a fresh temporary workspace holding the fixture model and text,
// and drives the workbench with playwright-core through Debian's Chromium. Everything it starts runs in its
// own process group and is killed on close(), on failure and on exit; nothing is written into the repository
// except screenshots in docs/images/.

import { ChildProcess, execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Browser, chromium, FrameLocator, Locator, Page } from 'playwright-core';

const execFileAsync = promisify(execFile);

export const repoRoot = path.resolve(__dirname, '..', '..');
export const imagesDir = path.join(repoRoot, 'docs', 'images');
// The read-only fixtures beside the checkout (test/helpers/realLayers.ts resolves them the same way).
const fixturesDir = path.resolve(repoRoot, '..', 'shared', 'fixtures');
const codeServerBin = path.join(process.env.PRUNEKIT_E2E_DIR ?? path.join(repoRoot, '.e2e'), 'code-server', 'node_modules', '.bin', 'code-server');
const chromiumPath = process.env.PRUNEKIT_E2E_CHROMIUM ?? '/usr/bin/chromium';

/** The workspace layout every test sees (relative to the workspace root). */
export const WORKSPACE = {
  model: 'models/stories260K/model.onnx',
  /** The same model as a Hugging Face folder (config.json + model.safetensors + tokenizer.json). */
  hfFolder: 'models/stories260K-hf',
  /** A Mamba Hugging Face folder (MambaForCausalLM). */
  mambaFolder: 'models/stories-mamba-hf',
  text: 'data/tinystories_valid_head.txt',
} as const;

/** What the extension contributes, read from the package.json that code-server actually installed. */
export interface InstalledManifest {
  version: string;
  commands: string[];
  /** The installed extension's folder (what the VSIX unpacked to). */
  folder: string;
}

export interface LaunchOptions {
  /** Extra user settings (merged over the harness defaults). */
  settings?: Record<string, unknown>;
  /** Files to create in the workspace before VS Code opens it: relative path -> text. */
  files?: Record<string, string>;
}

export const log = (msg: string) => process.stderr.write(`[e2e ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

/** Seconds since `t0` with one decimal, for the timings the harness prints. */
const since = (t0: number) => `${((Date.now() - t0) / 1000).toFixed(1)} s`;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (e) {
      lastError = e;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
}

let packaged: Promise<string> | undefined;

/** `npm run package` (production build + this machine's VSIX) into a temp folder, once per test process. */
export function packageVsix(): Promise<string> {
  packaged ??= (async () => {
    const t0 = Date.now();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prunekit-vsix-'));
    process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
    const out = path.join(dir, 'prunekit.vsix');
    await execFileAsync('npm', ['run', 'package', '--', '--target', `${process.platform}-${process.arch}`, '--out', out], { cwd: repoRoot, maxBuffer: 64 << 20 });
    log(`packaged ${path.relative(os.tmpdir(), out)} (${(fs.statSync(out).size / 2 ** 20).toFixed(1)} MB) in ${since(t0)}`);
    return out;
  })();
  return packaged;
}

/** A fresh workspace: the fixture model as models/stories260K/ (ONNX) and models/stories260K-hf/, the Mamba
 *  fixture as models/stories-mamba-hf/, the text as data/, plus `files`. */
function makeWorkspace(root: string, files: Record<string, string>): string {
  const ws = path.join(root, 'workspace');
  const modelDir = path.join(ws, path.dirname(WORKSPACE.model));
  fs.cpSync(path.join(fixturesDir, 'stories260K-onnx'), modelDir, { recursive: true });
  fs.cpSync(path.join(fixturesDir, 'stories260K-hf'), path.join(ws, WORKSPACE.hfFolder), { recursive: true });
  fs.cpSync(path.join(fixturesDir, 'stories-mamba-hf'), path.join(ws, WORKSPACE.mambaFolder), { recursive: true });
  fs.mkdirSync(path.join(ws, 'data'), { recursive: true });
  fs.copyFileSync(path.join(fixturesDir, 'data', path.basename(WORKSPACE.text)), path.join(ws, WORKSPACE.text));
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(ws, rel)), { recursive: true });
    fs.writeFileSync(path.join(ws, rel), text);
  }
  // The fixtures are read-only; the workspace must not be (outputs and configs are written beside the model).
  const makeWritable = (p: string) => {
    fs.chmodSync(p, fs.statSync(p).isDirectory() ? 0o755 : 0o644);
    if (fs.statSync(p).isDirectory()) for (const child of fs.readdirSync(p)) makeWritable(path.join(p, child));
  };
  makeWritable(ws);
  return ws;
}

function defaultSettings(ws: string): Record<string, unknown> {
  return {
    'workbench.startupEditor': 'none',
    'workbench.tips.enabled': false,
    'workbench.enableExperiments': false,
    'workbench.welcomePage.walkthroughs.openOnInstall': false,
    'telemetry.telemetryLevel': 'off',
    'update.mode': 'none',
    'extensions.autoCheckUpdates': false,
    'extensions.autoUpdate': false,
    'security.workspace.trust.enabled': false,
    'chat.commandCenter.enabled': false,
    'git.enabled': false,
    // models/ holds a single folder: compact folders would show one "models/stories260K" row.
    'explorer.compactFolders': false,
    'files.autoSave': 'off',
    'json.schemaDownload.enable': false,
    'prunekit.device': 'cpu',
    'prunekit.calibrationPath': path.join(ws, WORKSPACE.text),
    'prunekit.evaluationPath': path.join(ws, WORKSPACE.text),
  };
}

/** Kills a process group: SIGTERM, then SIGKILL if it is still there after `graceMs`. */
async function killGroup(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {
    return; // already gone
  }
  const timer = new Promise<'late'>((r) => setTimeout(() => r('late'), graceMs));
  if ((await Promise.race([exited, timer])) === 'late') {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* gone meanwhile */
    }
  }
}

/** Errors a step already took a screenshot of (an enclosing step does not take another). */
const reported = new WeakSet<object>();

/** Process groups still alive; killed synchronously if the test process exits without close(). */
const liveGroups = new Set<number>();
process.on('exit', () => {
  for (const pgid of liveGroups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

/** One code-server + Chromium session on a fresh workspace. */
export class VsCode {
  private constructor(
    readonly page: Page,
    readonly workspace: string,
    readonly manifest: InstalledManifest,
    private readonly browser: Browser,
    private readonly server: ChildProcess,
    private readonly tempRoot: string,
    private readonly serverLog: () => string,
  ) {}

  static async launch(options: LaunchOptions = {}): Promise<VsCode> {
    if (!fs.existsSync(codeServerBin)) throw new Error(`code-server is not installed at ${codeServerBin}: run scripts/e2e/install.sh`);
    if (!fs.existsSync(chromiumPath)) throw new Error(`Chromium is not installed at ${chromiumPath}: run scripts/e2e/install.sh`);
    const t0 = Date.now();
    const vsix = await packageVsix();

    const tempRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'prunekit-e2e-'));
    const userData = path.join(tempRoot, 'user-data');
    const extensions = path.join(tempRoot, 'extensions');
    const ws = makeWorkspace(tempRoot, options.files ?? {});
    fs.mkdirSync(path.join(userData, 'User'), { recursive: true });
    const settings = { ...defaultSettings(ws), ...options.settings };
    fs.writeFileSync(path.join(userData, 'User', 'settings.json'), JSON.stringify(settings, null, 2));

    let server: ChildProcess | undefined;
    let browser: Browser | undefined;
    try {
      const dirs = ['--user-data-dir', userData, '--extensions-dir', extensions];
      // code-server writes a default config.yaml and state under XDG dirs whenever it starts: keep them in tempRoot.
      // TMPDIR too: the backend's demo writes its model there.
      const tmp = path.join(tempRoot, 'tmp');
      fs.mkdirSync(tmp);
      const env = { ...process.env, TMPDIR: tmp, XDG_CONFIG_HOME: path.join(tempRoot, 'xdg-config'), XDG_DATA_HOME: path.join(tempRoot, 'xdg-data') };
      await execFileAsync(codeServerBin, ['--install-extension', vsix, ...dirs], { env });
      const listed = (await execFileAsync(codeServerBin, ['--list-extensions', '--show-versions', ...dirs], { env })).stdout;
      const manifest = readInstalledManifest(extensions);
      if (!listed.includes(`prunekit.prunekit@${manifest.version}`)) throw new Error(`code-server does not list the installed VSIX:\n${listed}`);

      const port = await freePort();
      const config = path.join(tempRoot, 'code-server.yaml');
      fs.writeFileSync(config, `bind-addr: 127.0.0.1:${port}\nauth: none\ncert: false\n`);
      const logChunks: string[] = [];
      server = spawn(
        codeServerBin,
        ['--config', config, '--auth', 'none', '--bind-addr', `127.0.0.1:${port}`, ...dirs,
          '--disable-telemetry', '--disable-update-check', '--disable-workspace-trust', '--disable-getting-started-override', ws],
        // Own process group: close() kills code-server with its extension host and the backend it spawned.
        { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env },
      );
      liveGroups.add(server.pid!);
      server.stdout?.on('data', (d: Buffer) => logChunks.push(d.toString()));
      server.stderr?.on('data', (d: Buffer) => logChunks.push(d.toString()));
      const serverLog = () => logChunks.join('');
      const url = `http://127.0.0.1:${port}`;
      const running = server;
      await waitFor('code-server /healthz', 60_000, async () => {
        if (running.exitCode !== null) throw new Error(`code-server exited with ${running.exitCode}:\n${serverLog()}`);
        const res = await fetch(`${url}/healthz`).catch(() => undefined);
        return res?.ok ? true : undefined;
      });
      log(`code-server up on port ${port} after ${since(t0)}`);

      browser = await chromium.launch({
        executablePath: chromiumPath,
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
          '--disable-component-update', '--disable-sync', '--no-first-run'],
      });
      const context = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
      const page = await context.newPage();
      await page.goto(`${url}/?folder=${encodeURIComponent(ws)}`);
      await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
      await page.locator('.explorer-folders-view .monaco-list-row').first().waitFor({ timeout: 60_000 });
      log(`workbench ready after ${since(t0)}`);
      return new VsCode(page, ws, manifest, browser, server, tempRoot, serverLog);
    } catch (e) {
      await browser?.close().catch(() => undefined);
      if (server) {
        await killGroup(server);
        liveGroups.delete(server.pid!);
      }
      fs.rmSync(tempRoot, { recursive: true, force: true });
      throw e;
    }
  }

  /** Tears everything down; safe to call twice. */
  async close(): Promise<void> {
    await this.browser.close().catch(() => undefined);
    await killGroup(this.server);
    liveGroups.delete(this.server.pid!);
    if (!process.env.PRUNEKIT_E2E_KEEP) fs.rmSync(this.tempRoot, { recursive: true, force: true });
  }

  /** code-server's own stdout/stderr so far (for failure messages). */
  log(): string {
    return this.serverLog();
  }

  /** Absolute path of a workspace file. */
  file(rel: string): string {
    return path.join(this.workspace, rel);
  }

  /** A PNG of the whole window into docs/images/<name>.png. */
  async screenshot(name: string): Promise<string> {
    fs.mkdirSync(imagesDir, { recursive: true });
    const file = path.join(imagesDir, `${name}.png`);
    await this.page.screenshot({ path: file });
    return file;
  }

  /**
   * Runs `body` (a named step, or a whole test); on failure saves docs/images/e2e-failure-<name>.png (gitignored)
   * once per error, prints the tail of code-server's log, and rethrows.
   */
  async step<T>(name: string, body: () => Promise<T>): Promise<T> {
    const t0 = Date.now();
    try {
      const result = await body();
      log(`step "${name}" passed in ${since(t0)}`);
      return result;
    } catch (e) {
      if (typeof e === 'object' && e !== null && !reported.has(e)) {
        reported.add(e);
        const shot = await this.screenshot(`e2e-failure-${name.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}`).catch(() => undefined);
        log(`step "${name}" failed after ${since(t0)}${shot ? `; screenshot ${path.relative(repoRoot, shot)}` : ''}`);
        log(`code-server log (tail):\n${this.serverLog().split('\n').slice(-30).join('\n')}`);
      }
      throw e;
    }
  }

  // --- Command palette --------------------------------------------------------------------------------------

  private quickInput(): Locator {
    return this.page.locator('.quick-input-widget input');
  }

  /**
   * Opens the quick input with `value`: `>command`, `:line:column`, or a file name. Always through F1 and the
   * prefix: Ctrl+P and Ctrl+G get lost once a webview had the focus.
   */
  private async openQuickInput(value: string): Promise<void> {
    const input = this.quickInput();
    const succeeds = (p: Promise<unknown>) => p.then(() => true, () => false);
    for (let attempt = 1; ; attempt++) {
      await this.page.keyboard.press('Escape');
      await this.page.keyboard.press('F1');
      // The quick input closes when it loses the focus, so it can vanish between opening and the fill:
      // a fill that waits for it (30 s by default) would outlast every retry around it.
      if (await succeeds(input.waitFor({ state: 'visible', timeout: 3_000 }))) {
        if (await succeeds(input.fill(value, { timeout: 3_000 }))) return;
        log(`the quick input closed before "${value}" was typed (try ${attempt})`);
      } else {
        log(`F1 did not open the quick input (try ${attempt})`);
      }
      if (attempt === 5) throw new Error(`the quick input did not stay open for "${value}" in ${attempt} tries`);
      // A webview that took the focus as it updated (a run's panel) swallows keys and closes the quick input:
      // give the workbench the focus back (the status bar's empty middle does nothing when clicked).
      const bar = await this.page.locator('.part.statusbar').boundingBox();
      if (bar) await this.page.mouse.click(bar.x + bar.width / 2, bar.y + bar.height / 2);
    }
  }

  private async openPalette(text: string): Promise<void> {
    await this.openQuickInput(`>${text}`);
  }

  /**
   * The palette's command labels matching `filter` (e.g. "PruneKit: Run Demo (prune a generated model)").
   * Reopens the palette until some label starts with `filter`: extension contributions register a moment
   * after the workbench appears, and an open palette does not pick them up.
   */
  async paletteCommands(filter: string, timeoutMs = 30_000): Promise<string[]> {
    const rows = this.page.locator('.quick-input-list .monaco-list-row');
    let last: string[] = [];
    try {
      return await waitFor(`palette entries for "${filter}"`, timeoutMs, async () => {
        await this.openPalette(filter);
        await rows.first().waitFor({ state: 'visible', timeout: 5_000 });
        // Row labels may carry a keybinding or "recently used" after the title.
        last = (await rows.evaluateAll((els) => els.map((e) => e.getAttribute('aria-label') ?? ''))).map((l) => l.split(',')[0].trim());
        await this.page.keyboard.press('Escape');
        return last.some((l) => l.startsWith(filter)) ? last : undefined;
      }, 1_000);
    } catch (e) {
      throw new Error(`${(e as Error).message}; palette shows: [${last.join(' | ')}]`);
    }
  }

  /** Runs a palette command by its full title ("Category: Title"), reopening the palette until it is offered. */
  async runCommand(title: string, timeoutMs = 30_000): Promise<void> {
    const row = this.page.locator('.quick-input-list .monaco-list-row').filter({ hasText: title }).first();
    await waitFor(`the command "${title}" in the palette`, timeoutMs, async () => {
      await this.openPalette(title);
      return (await row.waitFor({ state: 'visible', timeout: 3_000 }).then(() => true, () => false)) ? true : undefined;
    }, 500);
    await row.click();
    await this.quickInput().waitFor({ state: 'hidden' });
  }

  /** Opens a workspace file by relative path in an editor (Quick Open), waiting for its tab. */
  async openFile(rel: string): Promise<void> {
    await this.openQuickInput(rel);
    const row = this.page.locator('.quick-input-list .monaco-list-row').filter({ hasText: path.basename(rel) }).first();
    await row.waitFor({ state: 'visible', timeout: 15_000 });
    await this.page.keyboard.press('Enter');
    await this.activeTab(path.basename(rel)).waitFor({ state: 'visible', timeout: 15_000 });
  }

  /** Clicks a CodeLens of the active editor once no hover covers it: a hover opens wherever the last step left the
   *  pointer (an editor tab's path tooltip can cover the next group's first line), so the pointer first moves to the
   *  empty bottom of the active editor and Escape closes what is open. */
  async clickInEditor(target: Locator): Promise<void> {
    const editor = await this.page.locator('.editor-group-container.active .monaco-editor').first().boundingBox();
    if (editor) await this.page.mouse.move(editor.x + editor.width / 2, editor.y + editor.height - 20);
    await this.page.keyboard.press('Escape');
    await this.page.locator('.context-view p').first().waitFor({ state: 'hidden', timeout: 10_000 });
    await target.click();
  }

  /** The active editor tab when it shows `label`. */
  activeTab(label: string): Locator {
    return this.page.locator('.editor-group-container.active .tabs-container .tab.active', { hasText: label });
  }

  /** Moves the cursor of the active editor to 1-based `line`:`column` (Go to Line). */
  async goTo(line: number, column: number): Promise<void> {
    await this.openQuickInput(`:${line}:${column}`);
    await this.page.keyboard.press('Enter');
    await this.quickInput().waitFor({ state: 'hidden' });
  }

  /** The text Monaco renders for the active editor (visible lines only, no trailing newline handling). */
  editorText(): Promise<string> {
    return monacoText(this.page.locator('.editor-group-container.active .monaco-editor .view-lines .view-line'));
  }

  // --- Completions -----------------------------------------------------------------------------------------

  /**
   * Ctrl+Space at 1-based `line`:`column` of the active editor until the suggest widget lists something
   * satisfying `accept` (language servers answer late: the JSON schema reaches the JSON server about a second
   * after the file opens). Returns every label (quotes stripped) and leaves the widget open at its top for a
   * screenshot; Escape closes it.
   */
  async completionsAt(line: number, column: number, accept: (labels: string[]) => boolean = (l) => l.length > 0, timeoutMs = 30_000): Promise<string[]> {
    let last: string[] = [];
    try {
      return await waitFor('completions', timeoutMs, async () => {
        await this.goTo(line, column);
        await this.page.keyboard.press('Control+Space');
        last = await this.suggestLabels();
        return accept(last) ? last : undefined;
      }, 500);
    } catch (e) {
      throw new Error(`${(e as Error).message}; last completions at ${line}:${column}: [${last.join(', ')}]`);
    }
  }

  /**
   * All labels of the open suggest widget. The list is virtualized (about 12 rows in the DOM) and PageDown does
   * not page it in the browser, so it walks the focus down with ArrowDown until it wraps to the first entry,
   * then reopens the widget at its top.
   */
  private async suggestLabels(): Promise<string[]> {
    const widget = this.page.locator('.suggest-widget.visible');
    const clean = (t: string | null) => (t ?? '').trim().replace(/^"|"$/g, '');
    const focused = () => widget.locator('.monaco-list-row.focused .label-name').first().textContent({ timeout: 3_000 }).then(clean);
    if (!(await widget.locator('.monaco-list-row .label-name').first().waitFor({ state: 'visible', timeout: 3_000 }).then(() => true, () => false))) return [];
    const first = await focused();
    const seen = [first];
    let previous = first;
    for (let i = 0; i < 1000; i++) {
      // Never an ArrowDown without the widget: it would move the cursor instead.
      if (!(await widget.isVisible())) return [];
      await this.page.keyboard.press('ArrowDown');
      // The focus moves a frame or two after the key: wait for it (a one-entry list never moves).
      let label = await focused();
      for (const t0 = Date.now(); label === previous && Date.now() - t0 < 1_000; label = await focused()) await this.page.waitForTimeout(25);
      if (label === first) break;
      seen.push(label);
      previous = label;
    }
    await this.page.keyboard.press('Escape');
    await this.page.keyboard.press('Control+Space');
    await widget.locator('.monaco-list-row').first().waitFor({ state: 'visible', timeout: 3_000 }).catch(() => undefined);
    return seen;
  }

  // --- Explorer --------------------------------------------------------------------------------------------

  /** Shows the Explorer and expands the folders leading to `rel`; returns the row of `rel`. */
  async revealInExplorer(rel: string): Promise<Locator> {
    await this.runCommand('View: Show Explorer');
    const explorer = this.page.locator('.explorer-folders-view');
    const parts = rel.split('/');
    for (let i = 0; i < parts.length - 1; i++) {
      const folder = explorer.getByRole('treeitem', { name: parts[i], exact: true });
      await folder.waitFor({ state: 'visible', timeout: 15_000 });
      if ((await folder.getAttribute('aria-expanded')) !== 'true') await folder.click();
      await waitFor(`folder ${parts[i]} expanded`, 10_000, async () => ((await folder.getAttribute('aria-expanded')) === 'true' ? true : undefined));
    }
    const item = explorer.getByRole('treeitem', { name: parts[parts.length - 1], exact: true });
    await item.waitFor({ state: 'visible', timeout: 15_000 });
    return item;
  }

  /**
   * Right-clicks `rel` in the Explorer and returns the context menu's item labels.
   *
   * The menu acts on the row that took the click. The Explorer re-renders when files appear (a run's output
   * folder, renamed into place a moment earlier, sorts in above its siblings and pushes them down), so a row
   * located just before the click may have moved by the time the click lands. Hence: wait until the
   * Explorer lists what is on disk beside `rel`, click, and check the row is still where the click went;
   * otherwise close the menu and try again.
   */
  async explorerContextMenu(rel: string): Promise<string[]> {
    const actions = this.page.locator('.context-view .monaco-menu .action-item .action-label');
    for (let attempt = 1; ; attempt++) {
      const item = await this.revealInExplorer(rel);
      await this.explorerShowsSiblings(rel);
      const before = await item.boundingBox();
      if (!before) throw new Error(`the Explorer row of ${rel} has no box`);
      const at = { x: before.x + before.width / 2, y: before.y + before.height / 2 };
      await this.page.mouse.click(at.x, at.y, { button: 'right' });
      await actions.first().waitFor({ state: 'visible', timeout: 10_000 });
      const after = await item.boundingBox();
      if (after && at.y >= after.y && at.y <= after.y + after.height) {
        return (await actions.allTextContents()).map((t) => t.trim()).filter(Boolean);
      }
      log(`the Explorer row of ${rel} moved under the right-click (attempt ${attempt}); retrying`);
      await this.page.keyboard.press('Escape');
      if (attempt === 3) throw new Error(`the Explorer row of ${rel} kept moving under the right-click`);
    }
  }

  /** Waits (up to 15 s) until the Explorer has a row for every entry on disk in `rel`'s folder. */
  private async explorerShowsSiblings(rel: string): Promise<void> {
    const onDisk = fs.readdirSync(path.join(this.workspace, path.dirname(rel))).filter((n) => !n.startsWith('.'));
    const explorer = this.page.locator('.explorer-folders-view');
    try {
      await waitFor(`the Explorer to list ${onDisk.join(', ')}`, 15_000, async () => {
        const shown = new Set(await explorer.getByRole('treeitem').evaluateAll((els) => els.map((e) => e.getAttribute('aria-label') ?? '')));
        return onDisk.every((n) => shown.has(n)) ? true : undefined;
      });
    } catch (e) {
      // Rows scrolled out of view are not in the DOM: go on, the check after the click still guards it.
      log(String(e));
    }
  }

  /** Right-clicks `rel` in the Explorer and chooses `action` from its context menu. */
  async explorerAction(rel: string, action: string): Promise<void> {
    const labels = await this.explorerContextMenu(rel);
    if (!labels.includes(action)) throw new Error(`the context menu of ${rel} has no "${action}": [${labels.join(', ')}]`);
    const menu = this.page.locator('.context-view .monaco-menu');
    const item = menu.locator('.action-item', { hasText: action }).first();
    // A menu ignores clicks that come right after it opened (the right-click's own mouse-up): click until it closes.
    await waitFor(`"${action}" to be chosen`, 10_000, async () => {
      await this.page.waitForTimeout(300);
      if (await menu.isVisible()) await item.click({ timeout: 2_000 }).catch(() => undefined);
      return (await menu.isVisible()) ? undefined : true;
    }, 0);
  }

  // --- Panels ----------------------------------------------------------------------------------------------

  /** The messages of the Problems panel (opens it). */
  async problems(): Promise<string[]> {
    await this.runCommand('View: Focus Problems (Errors, Warnings, Infos)');
    const rows = this.page.locator('.markers-panel .monaco-list-row');
    return (await rows.evaluateAll((els) => els.map((e) => e.getAttribute('aria-label') ?? e.textContent ?? ''))).filter(Boolean);
  }

  /** Polls the Problems panel until one message satisfies `match`. */
  async waitForProblem(match: RegExp, timeoutMs = 30_000): Promise<string[]> {
    let last: string[] = [];
    try {
      return await waitFor(`a problem matching ${match}`, timeoutMs, async () => {
        last = await this.problems();
        return last.some((p) => match.test(p)) ? last : undefined;
      }, 500);
    } catch (e) {
      throw new Error(`${(e as Error).message}; problems: [${last.join(' | ')}]`);
    }
  }

  /** Clears notifications and hides the panel, so screenshots show the editor and the run panel. */
  async tidy(): Promise<void> {
    await this.runCommand('Notifications: Clear All Notifications');
    // "Hide Panel" is offered only while the panel shows.
    if (await this.page.locator('.part.panel').isVisible()) await this.runCommand('View: Hide Panel');
  }

  /** The document inside the (first visible) webview panel: the host's iframe, then VS Code's #active-frame. */
  webview(): FrameLocator {
    return this.page.frameLocator('iframe.webview.ready >> visible=true').first().frameLocator('#active-frame');
  }

  /** Opens an activity-bar view container by its title (e.g. "PruneKit") and returns the side bar. */
  async openViewContainer(title: string): Promise<Locator> {
    const icon = this.page.locator(`.activitybar .action-item .action-label[aria-label^="${title}"]`).first();
    await icon.waitFor({ state: 'visible', timeout: 15_000 });
    const expanded = await icon.evaluate((e) => e.closest('.action-item')?.classList.contains('checked') ?? false);
    if (!expanded) await icon.click();
    const sidebar = this.page.locator('.part.sidebar');
    await sidebar.locator('.composite.title', { hasText: title.toUpperCase() }).or(sidebar.locator('.title-label', { hasText: title })).first().waitFor({ timeout: 15_000 });
    return sidebar;
  }
}

/** The text of a Monaco editor's rendered lines, in screen order (Monaco absolutely positions them). */
async function monacoText(lines: Locator): Promise<string> {
  const texts = await lines.evaluateAll((els) =>
    els
      .map((e) => ({ top: parseFloat((e as HTMLElement).style.top) || 0, text: (e.textContent ?? '').replace(/\u00a0/g, ' ') }))
      .sort((a, b) => a.top - b.top)
      .map((l) => l.text),
  );
  return texts.join('\n');
}

/** Reads the package.json of the installed extension (what the VSIX really shipped). */
function readInstalledManifest(extensionsDir: string): InstalledManifest {
  const dir = fs.readdirSync(extensionsDir).find((d) => d.startsWith('prunekit.prunekit-'));
  if (!dir) throw new Error(`no prunekit.prunekit-* folder in ${extensionsDir}: the VSIX did not install`);
  const pkg = JSON.parse(fs.readFileSync(path.join(extensionsDir, dir, 'package.json'), 'utf8')) as {
    version: string;
    contributes?: { commands?: { command: string }[] };
  };
  return { version: pkg.version, commands: (pkg.contributes?.commands ?? []).map((c) => c.command), folder: path.join(extensionsDir, dir) };
}
