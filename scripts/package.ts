// `npm run package`: one VSIX per platform VS Code runs on (the Marketplace convention for native code), each
// carrying only its own onnxruntime binaries. `.vscodeignore` lists what every VSIX leaves out; TARGETS adds
// back, per target, that platform's binaries (and onnxruntime-node's CUDA installer where it can install).
//
//   node --import tsx scripts/package.ts [--target linux-x64 ...] [--out FILE.vsix | --out FOLDER] [--no-build]

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { createVSIX } from '@vscode/vsce';

export const repoRoot = path.resolve(__dirname, '..');

/** Where onnxruntime-node keeps a platform's binaries (its own layout: bin/napi-v6/<platform>/<arch>/). */
export const ORT_BIN = 'node_modules/onnxruntime-node/bin/napi-v6';

export interface Target {
  /** vsce's --target, `<platform>-<arch>`. */
  name: string;
  platform: 'darwin' | 'linux' | 'win32';
  arch: 'arm64' | 'x64';
  /** The files of ORT_BIN/<platform>/<arch>/ the binding loads: the binding and its shared libraries. */
  binaries: readonly string[];
  /** Ship onnxruntime-node's script/install.js (Set Up GPU fetches the CUDA provider with it). */
  cudaInstaller: boolean;
}

const WINDOWS_LIBS = ['onnxruntime_binding.node', 'onnxruntime.dll', 'DirectML.dll', 'dxcompiler.dll', 'dxil.dll'];

/**
 * The five platforms onnxruntime-node 1.30 ships binaries for. macOS: the npm tarball has the dylib twice
 * (libonnxruntime.1.30.0.dylib, a symlink flattened into a copy); the binding loads @rpath/libonnxruntime.1.dylib
 * only. CUDA installer: onnxruntime-node's install metadata has a CUDA manifest for linux/x64 only (win32/x64 has
 * a NuGet package entry but no manifest, so its installer throws there).
 */
export const TARGETS: readonly Target[] = [
  { name: 'darwin-arm64', platform: 'darwin', arch: 'arm64', binaries: ['onnxruntime_binding.node', 'libonnxruntime.1.dylib'], cudaInstaller: false },
  { name: 'linux-x64', platform: 'linux', arch: 'x64', binaries: ['onnxruntime_binding.node', 'libonnxruntime.so.1'], cudaInstaller: true },
  { name: 'linux-arm64', platform: 'linux', arch: 'arm64', binaries: ['onnxruntime_binding.node', 'libonnxruntime.so.1'], cudaInstaller: false },
  { name: 'win32-x64', platform: 'win32', arch: 'x64', binaries: WINDOWS_LIBS, cudaInstaller: false },
  { name: 'win32-arm64', platform: 'win32', arch: 'arm64', binaries: WINDOWS_LIBS, cudaInstaller: false },
];

/** onnxruntime-node's CUDA installer and the modules it loads (global-agent for proxies, adm-zip for the .nupkg). */
const CUDA_INSTALLER = [
  'node_modules/onnxruntime-node/script/install.js',
  'node_modules/onnxruntime-node/script/install-utils.js',
  'node_modules/onnxruntime-node/script/install-metadata.js',
  'node_modules/onnxruntime-node/script/install-metadata-versions.js',
  ...['global-agent', 'globalthis', 'define-properties', 'define-data-property', 'es-define-property', 'es-errors', 'gopd',
    'has-property-descriptors', 'object-keys', 'matcher', 'escape-string-regexp', 'semver', 'serialize-error', 'type-fest', 'adm-zip']
    .map((m) => `node_modules/${m}/**`),
];

export function binaryDir(t: Target): string {
  return `${ORT_BIN}/${t.platform}/${t.arch}`;
}

/** `.vscodeignore` plus the negations that put back this target's binaries (and installer). */
export function ignoreFileFor(t: Target, base: string): string {
  const keep = [...t.binaries.map((f) => `${binaryDir(t)}/${f}`), ...(t.cudaInstaller ? CUDA_INSTALLER : [])];
  return `${base.trimEnd()}\n# ${t.name}\n${keep.map((p) => `!${p}`).join('\n')}\n`;
}

export function targetNamed(name: string): Target {
  const t = TARGETS.find((x) => x.name === name);
  if (!t) throw new Error(`--target ${name}: not one of ${TARGETS.map((x) => x.name).join(', ')}`);
  return t;
}

/** The production bundle (dist/extension.js, backend.js, webview.js), as `npm run build -- --production`. */
export function buildProduction(): void {
  const r = spawnSync(process.execPath, [path.join(repoRoot, 'esbuild.js'), '--production'], { cwd: repoRoot, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`esbuild.js --production failed:\n${r.stderr}`);
}

/** Packages `t` into `out`; every binary the table names must exist, so an onnxruntime update that renames one fails here. */
export async function packageTarget(t: Target, out: string): Promise<void> {
  const missing = t.binaries.filter((f) => !existsSync(path.join(repoRoot, binaryDir(t), f)));
  if (missing.length > 0) throw new Error(`${t.name}: ${missing.join(', ')} not in ${binaryDir(t)} (did the onnxruntime-node version change?)`);
  const scratch = mkdtempSync(path.join(os.tmpdir(), `prunekit-ignore-${t.name}-`));
  try {
    const ignoreFile = path.join(scratch, '.vscodeignore');
    writeFileSync(ignoreFile, ignoreFileFor(t, readFileSync(path.join(repoRoot, '.vscodeignore'), 'utf8')));
    await createVSIX({ cwd: repoRoot, packagePath: out, target: t.name, ignoreFile, rewriteRelativeLinks: false, allowMissingRepository: true });
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** Builds once, then packages each target into `outDir` (or into `out` itself for one target named *.vsix). */
export async function packageAll(targets: readonly Target[], out: string, build = true): Promise<Map<Target, string>> {
  if (build) buildProduction();
  const single = targets.length === 1 && out.endsWith('.vsix');
  if (!single) mkdirSync(out, { recursive: true });
  const version = (JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
  const files = new Map(targets.map((t) => [t, single ? path.resolve(out) : path.join(out, `prunekit-${t.name}-${version}.vsix`)]));
  // Concurrently: each waits mostly on `npm list` and on zlib's thread pool.
  await Promise.all([...files].map(([t, file]) => packageTarget(t, file)));
  return files;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { target: { type: 'string', multiple: true }, out: { type: 'string' }, 'no-build': { type: 'boolean' } } });
  const targets = values.target ? values.target.map(targetNamed) : TARGETS;
  const files = await packageAll(targets, values.out ?? repoRoot, !values['no-build']);
  for (const [t, file] of files) console.log(`${t.name.padEnd(13)} ${(statSync(file).size / 2 ** 20).toFixed(1).padStart(6)} MB  ${file}`);
}

if (require.main === module) {
  main().catch((e: Error) => {
    console.error(`package: ${e.message}`);
    process.exit(1);
  });
}
