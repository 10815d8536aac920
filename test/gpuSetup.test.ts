// "Set Up GPU" without the network: onnxruntime-node's real installer, run from a copy of the extension's
// node_modules layout, fails to reach NuGet and the result says so (offline), and an installer whose own
// modules were left out of the package is reported as incomplete. No network is used: the installer's
// proxy (global-agent) points at a closed local port.

import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { CUDA_PROVIDER_FILES, gpuProviderStatus, installCudaProvider, offlineInstructions } from '../src/extension/gpu/gpuSetup';
import { repoRoot } from './helpers/realLayers';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'prunekit-gpu-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const realModules = path.join(repoRoot, 'node_modules');
const noNetwork = { GLOBAL_AGENT_HTTP_PROXY: 'http://127.0.0.1:9', GLOBAL_AGENT_HTTPS_PROXY: 'http://127.0.0.1:9' };

/** An extension folder holding onnxruntime-node's package.json and installer, with or without its modules. */
function fakeExtension(name: string, withInstallerModules: boolean): string {
  const ext = path.join(tmp, name);
  const ort = path.join(ext, 'node_modules', 'onnxruntime-node');
  mkdirSync(ort, { recursive: true });
  cpSync(path.join(realModules, 'onnxruntime-node', 'package.json'), path.join(ort, 'package.json'));
  cpSync(path.join(realModules, 'onnxruntime-node', 'script'), path.join(ort, 'script'), { recursive: true });
  if (withInstallerModules) for (const m of ['global-agent', 'adm-zip']) symlinkSync(path.join(realModules, m), path.join(ext, 'node_modules', m));
  return ext;
}

describe('Set Up GPU', { skip: process.platform !== 'linux' || process.arch !== 'x64' ? 'the CUDA installer exists for Linux x64 only' : false }, () => {
  test('status lists the missing CUDA provider files and the installer', () => {
    const ext = fakeExtension('status', false);
    const s = gpuProviderStatus(ext);
    assert.equal(s.platformSupported, true);
    assert.deepEqual(s.missing, [...CUDA_PROVIDER_FILES]);
    assert.equal(s.installerPresent, true);
    assert.match(s.version ?? '', /^\d+\.\d+\.\d+/);
    assert.equal(s.binDir, path.join(ext, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', 'linux', 'x64'));
    assert.equal(gpuProviderStatus(ext, 'darwin', 'arm64').platformSupported, false);
    assert.match(offlineInstructions(s), new RegExp(`Gpu\\.Linux ${s.version?.replace(/\./g, '\\.')}`));
    assert.ok(offlineInstructions(s).includes(s.binDir));
  });

  test('without a network the real installer fails and the result says offline', async () => {
    const s = gpuProviderStatus(fakeExtension('offline', true));
    let streamed = '';
    const r = await installCudaProvider(s, process.execPath, (t) => (streamed += t), noNetwork);
    assert.equal(r.ok, false);
    assert.notEqual(r.exitCode, 0);
    assert.equal(r.offline, true, r.output);
    assert.equal(r.incomplete, false);
    assert.equal(streamed, r.output);
  });

  test('an installer without its modules is reported as incomplete', async () => {
    const r = await installCudaProvider(gpuProviderStatus(fakeExtension('incomplete', false)), process.execPath, () => {}, noNetwork);
    assert.equal(r.ok, false);
    assert.equal(r.incomplete, true, r.output);
    assert.match(r.output, /global-agent/);
  });
});
