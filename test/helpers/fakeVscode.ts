// A recording stand-in for the part of the `vscode` API the extension host uses, so Node tests can activate
// src/extension/main.ts and drive its commands, views and panels with the REAL backend underneath. Dialogs
// answer from a queue the test fills; webview panels record what the host posts and let the test post back
// as the webview would. Installed by hooking Node's module loader for the specifier "vscode".

import { readdirSync, readFileSync, statSync } from 'node:fs';
import Module from 'node:module';
import * as path from 'node:path';

type Listener<T> = (value: T) => unknown;

export class EventEmitter<T> {
  private readonly listeners = new Set<Listener<T>>();
  readonly event = (listener: Listener<T>) => {
    this.listeners.add(listener);
    return { dispose: () => this.listeners.delete(listener) };
  };
  fire(value: T): void {
    for (const l of [...this.listeners]) l(value);
  }
  dispose(): void {
    this.listeners.clear();
  }
}

export class Uri {
  readonly scheme = 'file';
  private constructor(readonly fsPath: string) {}
  static file(p: string): Uri {
    return new Uri(path.resolve(p));
  }
  static joinPath(base: Uri, ...parts: string[]): Uri {
    return new Uri(path.join(base.fsPath, ...parts));
  }
  get path(): string {
    return this.fsPath;
  }
  toString(): string {
    return `file://${this.fsPath}`;
  }
}

export class FakeWebview {
  html = '';
  options: { enableScripts?: boolean; localResourceRoots?: Uri[] } = {};
  readonly cspSource = 'https://fake.vscode-cdn.net';
  /** Everything the host posted, in order. */
  readonly posted: unknown[] = [];
  private readonly incoming = new EventEmitter<unknown>();
  readonly onDidReceiveMessage = this.incoming.event;
  postMessage(message: unknown): Promise<boolean> {
    this.posted.push(structuredClone(message));
    return Promise.resolve(true);
  }
  asWebviewUri(uri: Uri): { toString(): string } {
    return { toString: () => `${this.cspSource}${uri.fsPath}` };
  }
  /** What the webview's script would post. */
  send(message: unknown): void {
    this.incoming.fire(message);
  }
}

export class FakePanel {
  readonly webview = new FakeWebview();
  visible = true;
  disposed = false;
  iconPath: unknown;
  private readonly disposeEvent = new EventEmitter<void>();
  private readonly viewState = new EventEmitter<unknown>();
  readonly onDidDispose = this.disposeEvent.event;
  readonly onDidChangeViewState = this.viewState.event;
  constructor(
    readonly viewType: string,
    public title: string,
    readonly column: unknown,
  ) {}
  reveal(): void {}
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.disposeEvent.fire();
  }
}

/** An open text document as the editor features read it (offsets ↔ line/character over its text). */
export class FakeDocument {
  readonly version = 1;
  readonly isClosed = false;
  readonly isDirty = false;
  readonly uri: Uri;
  constructor(file: string, private readonly text: string) {
    this.uri = Uri.file(file);
  }
  getText(): string {
    return this.text;
  }
  positionAt(offset: number): { line: number; character: number } {
    const before = this.text.slice(0, offset).split('\n');
    return { line: before.length - 1, character: before[before.length - 1].length };
  }
  offsetAt(p: { line: number; character: number }): number {
    const lines = this.text.split('\n');
    return lines.slice(0, p.line).reduce((a, l) => a + l.length + 1, 0) + p.character;
  }
}

export interface Message {
  level: 'info' | 'warning' | 'error';
  text: string;
  items: string[];
}

/** One picker or dialog answer: an item label (or a function choosing among the offered items). */
export type Answer = string | undefined | ((items: { label: string }[]) => unknown);

export class FakeVscode {
  readonly commands = new Map<string, (...args: unknown[]) => unknown>();
  readonly executed: { id: string; args: unknown[] }[] = [];
  readonly context = new Map<string, unknown>();
  readonly panels: FakePanel[] = [];
  readonly serializers = new Map<string, { deserializeWebviewPanel(panel: FakePanel, state: unknown): Promise<void> }>();
  readonly treeProviders = new Map<string, { getChildren(e?: unknown): unknown[]; getTreeItem(e: unknown): { description?: string; contextValue?: string; label?: string } }>();
  readonly messages: Message[] = [];
  readonly outputLines: string[] = [];
  readonly opened: string[] = [];
  readonly statusBarItems: { text: string; visible: boolean }[] = [];
  readonly answers: Answer[] = [];
  settings: Record<string, unknown> = {};
  /** The messages of every diagnostic collection's last set() per document URI. */
  readonly diagnostics = new Map<string, string[]>();
  readonly documents: FakeDocument[] = [];
  readonly documentOpened = new EventEmitter<FakeDocument>();

  constructor(readonly workspaceRoot: string) {}

  /** Opens a file as the editor would: it joins workspace.textDocuments and onDidOpenTextDocument fires. */
  openDocument(file: string): FakeDocument {
    const doc = new FakeDocument(file, readFileSync(file, 'utf8'));
    this.documents.push(doc);
    this.documentOpened.fire(doc);
    return doc;
  }

  /** Makes `import * as vscode from 'vscode'` load this fake (until the returned function is called). */
  install(): () => void {
    const api = vscodeApi(this);
    const loader = Module as unknown as { _load(request: string, ...rest: unknown[]): unknown };
    const original = loader._load;
    loader._load = function (request: string, ...rest: unknown[]) {
      return request === 'vscode' ? api : original.call(this, request, ...rest);
    };
    return () => {
      loader._load = original;
    };
  }
}

/** The `vscode` module object over a FakeVscode's records. */
function vscodeApi(fake: FakeVscode): Record<string, unknown> {
  const answer = (items: { label: string }[] | string[]): unknown => {
    const a = fake.answers.shift();
    const labelled = items.map((i) => (typeof i === 'string' ? { label: i } : i));
    if (typeof a === 'function') return a(labelled);
    const hit = labelled.find((i) => i.label === a);
    return typeof items[0] === 'string' ? hit?.label : hit;
  };
  const message = (level: Message['level']) => (text: string, ...rest: unknown[]) => {
    const items = rest.filter((r): r is string => typeof r === 'string');
    fake.messages.push({ level, text, items });
    return Promise.resolve(items.length > 0 ? answer(items) : undefined);
  };
  const watcher = () => ({ onDidCreate: () => ({ dispose() {} }), onDidDelete: () => ({ dispose() {} }), onDidChange: () => ({ dispose() {} }), dispose() {} });
  return {
    Uri,
    EventEmitter,
    Disposable: class {
      constructor(readonly dispose: () => void) {}
    },
    ThemeIcon: class {
      constructor(readonly id: string, readonly color?: unknown) {}
    },
    ThemeColor: class {
      constructor(readonly id: string) {}
    },
    Range: class {
      constructor(readonly start: unknown, readonly end: unknown) {}
    },
    Diagnostic: class {
      source = '';
      code: unknown;
      constructor(readonly range: unknown, readonly message: string, readonly severity: number) {}
    },
    DiagnosticSeverity: { Error: 0, Warning: 1, Information: 2 },
    TreeItem: class {
      constructor(readonly label: string, readonly collapsibleState: number) {}
    },
    MarkdownString: class {
      constructor(public value = '') {}
      appendText(t: string) {
        this.value += t;
        return this;
      }
    },
    ViewColumn: { Active: -1, Beside: -2 },
    StatusBarAlignment: { Left: 1, Right: 2 },
    ProgressLocation: { Notification: 15 },
    TreeItemCollapsibleState: { None: 0, Collapsed: 1 },
    commands: {
      registerCommand(id: string, fn: (...args: unknown[]) => unknown) {
        if (fake.commands.has(id)) throw new Error(`command '${id}' already exists`);
        fake.commands.set(id, fn);
        return { dispose: () => fake.commands.delete(id) };
      },
      async executeCommand(id: string, ...args: unknown[]) {
        fake.executed.push({ id, args });
        if (id === 'setContext') fake.context.set(args[0] as string, args[1]);
        const fn = fake.commands.get(id);
        return fn ? fn(...args) : undefined;
      },
    },
    window: {
      createOutputChannel: () => ({ appendLine: (l: string) => fake.outputLines.push(l), append: (t: string) => fake.outputLines.push(t), show() {}, dispose() {} }),
      createWebviewPanel(viewType: string, title: string, column: unknown, options: FakeWebview['options']) {
        const panel = new FakePanel(viewType, title, column);
        panel.webview.options = options;
        fake.panels.push(panel);
        return panel;
      },
      registerWebviewPanelSerializer(viewType: string, serializer: { deserializeWebviewPanel(panel: FakePanel, state: unknown): Promise<void> }) {
        fake.serializers.set(viewType, serializer);
        return { dispose: () => fake.serializers.delete(viewType) };
      },
      createTreeView(id: string, options: { treeDataProvider: never }) {
        fake.treeProviders.set(id, options.treeDataProvider);
        return { badge: undefined, dispose: () => fake.treeProviders.delete(id) };
      },
      createStatusBarItem() {
        const item = { text: '', tooltip: '', name: '', command: undefined as unknown, visible: false, show() { item.visible = true; }, hide() { item.visible = false; }, dispose() {} };
        fake.statusBarItems.push(item);
        return item;
      },
      showInformationMessage: message('info'),
      showWarningMessage: message('warning'),
      showErrorMessage: message('error'),
      showQuickPick: (items: { label: string }[]) => Promise.resolve(answer(items)),
      showOpenDialog: () => Promise.resolve(undefined),
      showTextDocument: (uri: Uri) => {
        fake.opened.push(uri.fsPath);
        return Promise.resolve({});
      },
      setStatusBarMessage: () => ({ dispose() {} }),
      withProgress: (_o: unknown, task: (p: unknown) => unknown) => task({ report() {} }),
      activeTextEditor: undefined,
    },
    // The editor features register these at activation; the host tests only need them to exist.
    languages: {
      createDiagnosticCollection: () => ({
        set: (uri: Uri, list: { message: string }[]) => fake.diagnostics.set(uri.toString(), list.map((d) => d.message)),
        delete() {},
        clear() {},
        dispose() {},
      }),
      registerCompletionItemProvider: () => ({ dispose() {} }),
      registerHoverProvider: () => ({ dispose() {} }),
      registerCodeLensProvider: () => ({ dispose() {} }),
    },
    workspace: {
      onDidOpenTextDocument: fake.documentOpened.event,
      onDidChangeTextDocument: () => ({ dispose() {} }),
      onDidSaveTextDocument: () => ({ dispose() {} }),
      onDidCloseTextDocument: () => ({ dispose() {} }),
      workspaceFolders: [{ uri: Uri.file(fake.workspaceRoot), name: 'ws', index: 0 }],
      textDocuments: fake.documents,
      getConfiguration: (section: string) => ({ get: <T>(key: string, def: T): T => (fake.settings[`${section}.${key}`] as T | undefined) ?? def }),
      findFiles: (glob: string, _exclude?: unknown, max = Infinity) => Promise.resolve(findFiles(fake.workspaceRoot, glob).slice(0, max).map((f) => Uri.file(f))),
      createFileSystemWatcher: watcher,
      asRelativePath: (p: Uri | string) => path.relative(fake.workspaceRoot, typeof p === 'string' ? p : p.fsPath),
      getWorkspaceFolder: (uri: Uri) => (uri.fsPath.startsWith(fake.workspaceRoot + path.sep) ? { uri: Uri.file(fake.workspaceRoot) } : undefined),
      openTextDocument: () => Promise.resolve({}),
      fs: {
        readFile: (uri: Uri) => Promise.resolve(new Uint8Array(readFileSync(uri.fsPath))),
        stat: (uri: Uri) => Promise.resolve({ size: statSync(uri.fsPath).size }),
      },
    },
  };
}

/** The workspace's files matching a findFiles glob (`**`, `*`, `{a,b}`), node_modules skipped; symlinks followed. */
function findFiles(root: string, glob: string): string[] {
  const source = glob
    .replace(/[.+^$()|[\]\\]/g, '\\$&')
    .replace(/\{([^}]*)\}/g, (_m, alts: string) => `(${alts.split(',').join('|')})`)
    .replace(/\*\*\//g, '\u0000')
    .replace(/\*/g, '[^/]*')
    .replace(/\u0000/g, '(?:.*/)?');
  const re = new RegExp(`^${source}$`);
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      if (name === 'node_modules' || name === '.git') continue;
      const full = path.join(dir, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (re.test(path.relative(root, full).split(path.sep).join('/'))) out.push(full);
    }
  };
  walk(root);
  return out;
}
