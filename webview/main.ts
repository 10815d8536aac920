// Run panel webview entry point (bundled by esbuild into dist/webview.js). The live loss chart arrives with
// the extension issue; this entry keeps the three-bundle build honest until then.

const root = document.getElementById('root');
if (root) root.textContent = 'PruneKit';
