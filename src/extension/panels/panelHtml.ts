// The HTML of both panels: one element the webview bundle draws into, its stylesheet and its script, under a
// strict Content Security Policy (vscode-extension-samples' webview pattern): nothing loads unless it comes
// from the extension's dist/ or media/ folders, and only the script and style carrying this page's nonce apply.

import { randomBytes } from 'node:crypto';
import * as vscode from 'vscode';

export type PanelKind = 'run' | 'compare' | 'sweep';

/** What the host lets a panel load: the bundle and the stylesheet. */
export function panelResourceRoots(extensionUri: vscode.Uri): vscode.Uri[] {
  return [vscode.Uri.joinPath(extensionUri, 'dist'), vscode.Uri.joinPath(extensionUri, 'media')];
}

export function panelOptions(extensionUri: vscode.Uri): vscode.WebviewOptions & vscode.WebviewPanelOptions {
  // Not retained when hidden: the panel asks with `ready` when shown again and is sent a snapshot.
  return { enableScripts: true, localResourceRoots: panelResourceRoots(extensionUri), retainContextWhenHidden: false };
}

/** A panel's page and its wiring, as every panel has it: `open.ready` drops when the panel is hidden (not retained:
 *  the reloaded page says `ready` again before it is sent anything), messages go to `onMessage`, `onDisposed` last. */
export function attachPanelPage(
  panel: vscode.WebviewPanel,
  extensionUri: vscode.Uri,
  kind: PanelKind,
  open: { ready: boolean },
  handlers: { onMessage(message: unknown): void; onDisposed(): void },
): void {
  panel.iconPath = vscode.Uri.joinPath(extensionUri, 'media', 'prunekit.svg');
  panel.webview.options = panelOptions(extensionUri);
  panel.webview.html = panelHtml(panel.webview, extensionUri, kind, panel.title);
  const subscriptions = [
    panel.webview.onDidReceiveMessage((m: unknown) => handlers.onMessage(m)),
    panel.onDidChangeViewState(() => {
      if (!panel.visible) open.ready = false;
    }),
  ];
  panel.onDidDispose(() => {
    for (const s of subscriptions) s.dispose();
    handlers.onDisposed();
  });
}

export function panelHtml(webview: vscode.Webview, extensionUri: vscode.Uri, kind: PanelKind, title: string): string {
  const nonce = randomBytes(16).toString('base64');
  const script = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'dist', 'webview.js'));
  const style = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'media', 'panel.css'));
  const src = webview.cspSource;
  const csp = [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    `style-src ${src} 'nonce-${nonce}'`,
    `img-src ${src} data:`,
    `font-src ${src}`,
  ].join('; ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <meta http-equiv="Content-Security-Policy" content="${csp}">
  <!-- The webview toolkit (FAST) adds one <style> element and takes its nonce from here. -->
  <meta property="csp-nonce" content="${nonce}">
  <meta name="viewport" content="width=device-width, initial-scale=1.0">
  <link rel="stylesheet" href="${style}">
  <title>${escapeHtml(title)}</title>
</head>
<body>
  <div id="app" data-kind="${kind}"></div>
  <script nonce="${nonce}" src="${script}"></script>
</body>
</html>`;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
