// Bundles the three programs: the extension host (Node, `vscode` external), the pruning backend (Node,
// onnxruntime-node external: its native binaries ship in node_modules) and the webview (browser).
const fs = require('node:fs');
const path = require('node:path');
const esbuild = require('esbuild');

const production = process.argv.includes('--production');
const watch = process.argv.includes('--watch');

// jsonc-parser's main is a UMD module whose requires esbuild cannot follow: bundle its ES module build instead.
const alias = { 'jsonc-parser': 'jsonc-parser/lib/esm/main.js' };
const common = { bundle: true, sourcemap: !production, minify: production, logLevel: 'info', alias };

const builds = [
  { ...common, entryPoints: ['src/extension/main.ts'], outfile: 'dist/extension.js', platform: 'node', format: 'cjs', target: 'node20', external: ['vscode', 'onnxruntime-node'] },
  { ...common, entryPoints: ['src/backend/cli/main.ts'], outfile: 'dist/backend.js', platform: 'node', format: 'cjs', target: 'node20', external: ['onnxruntime-node'], banner: { js: '#!/usr/bin/env node' } },
  { ...common, entryPoints: ['webview/main.ts'], outfile: 'dist/webview.js', platform: 'browser', format: 'iife', target: 'es2022' },
];

async function main() {
  if (watch) {
    for (const b of builds) await (await esbuild.context(b)).watch();
    return;
  }
  // Each file is written beside itself and renamed into place: a test running dist/backend.js while another
  // rebuilds (npm run package in test/package.test.ts) reads the old or the new file, never half of one.
  const results = await Promise.all(builds.map((b) => esbuild.build({ ...b, write: false })));
  for (const file of results.flatMap((r) => r.outputFiles)) {
    fs.mkdirSync(path.dirname(file.path), { recursive: true });
    const tmp = `${file.path}.tmp-${process.pid}`;
    fs.writeFileSync(tmp, file.contents);
    fs.renameSync(tmp, file.path);
  }
}

// Tests that bundle a program themselves (test/extensionHost.test.ts) resolve packages the same way.
module.exports = { alias };

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
