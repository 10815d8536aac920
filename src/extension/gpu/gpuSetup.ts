// What "Set Up GPU" needs, without vscode: onnxruntime-node ships its CPU binaries, but on Linux x64 the CUDA
// execution provider (libonnxruntime_providers_cuda.so and _shared.so, ~400 MB) is not in the npm package;
// its script/install.js downloads it from NuGet (Microsoft.ML.OnnxRuntime.Gpu.Linux) when
// ONNXRUNTIME_NODE_INSTALL=cuda12. The provider then needs the NVIDIA driver, CUDA 12 and cuDNN 9 on the machine.

import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

/** The files the CUDA provider needs beside onnxruntime's binding. */
export const CUDA_PROVIDER_FILES = ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'] as const;

export interface GpuProviderStatus {
  /** Only Linux x64 gets CUDA through the installer (Windows and macOS binaries come complete). */
  platformSupported: boolean;
  /** node_modules/onnxruntime-node of the extension. */
  runtimeDir: string;
  /** Where the provider libraries go. */
  binDir: string;
  version: string | null;
  missing: string[];
  /** script/install.js is present (the packaged extension may leave it out). */
  installerPresent: boolean;
}

export function gpuProviderStatus(extensionPath: string, platform: string = process.platform, arch: string = process.arch): GpuProviderStatus {
  const runtimeDir = path.join(extensionPath, 'node_modules', 'onnxruntime-node');
  const binDir = path.join(runtimeDir, 'bin', 'napi-v6', platform, arch);
  let version: string | null = null;
  try {
    version = (JSON.parse(readFileSync(path.join(runtimeDir, 'package.json'), 'utf8')) as { version?: string }).version ?? null;
  } catch {
    // no onnxruntime-node at all: version stays null and every file is missing
  }
  const platformSupported = platform === 'linux' && arch === 'x64';
  return {
    platformSupported,
    runtimeDir,
    binDir,
    version,
    missing: platformSupported ? CUDA_PROVIDER_FILES.filter((f) => !existsSync(path.join(binDir, f))) : [],
    installerPresent: existsSync(path.join(runtimeDir, 'script', 'install.js')),
  };
}

export interface InstallResult {
  ok: boolean;
  /** The download failed for lack of a network (no DNS, refused, timed out, proxy unreachable). */
  offline: boolean;
  /** The installer could not load its own modules (global-agent, adm-zip). */
  incomplete: boolean;
  exitCode: number | null;
  output: string;
}

const OFFLINE_RE = /\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|getaddrinfo)\b|socket hang up|Failed to download/;

/** Runs onnxruntime-node's installer for the CUDA 12 provider with `command` (VS Code's runtime as Node, or a Node binary). */
export function installCudaProvider(status: GpuProviderStatus, command: string, onOutput: (text: string) => void = () => {}, extraEnv: NodeJS.ProcessEnv = {}): Promise<InstallResult> {
  return new Promise((resolve) => {
    let output = '';
    const child = spawn(command, [path.join('script', 'install.js')], {
      cwd: status.runtimeDir,
      env: { ...withoutNpmVariables(process.env), ...extraEnv, ONNXRUNTIME_NODE_INSTALL: 'cuda12', ELECTRON_RUN_AS_NODE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
      windowsHide: true,
    });
    const take = (d: Buffer) => {
      const text = d.toString();
      output += text;
      onOutput(text);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    const done = (exitCode: number | null, error?: Error) => {
      if (error) output += `\n${error.message}`;
      const ok = exitCode === 0 && CUDA_PROVIDER_FILES.every((f) => existsSync(path.join(status.binDir, f)));
      resolve({ ok, offline: !ok && OFFLINE_RE.test(output), incomplete: !ok && /MODULE_NOT_FOUND|Cannot find module/.test(output), exitCode, output });
    };
    child.on('error', (e) => done(null, e));
    child.on('close', (code) => done(code));
  });
}

/**
 * The environment without npm's variables. Under `npm run` the installer sees npm_config_local_prefix and
 * npm_package_json, takes itself for a local `npm ci` of onnxruntime itself and exits 0 without installing
 * (and npm_config_onnxruntime_node_install=skip, from a project's .npmrc, would skip it too).
 */
function withoutNpmVariables(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !/^npm_/i.test(k)));
}

/** What to do by hand when the machine has no internet (or the installer is not shipped). */
export function offlineInstructions(status: GpuProviderStatus): string {
  const v = status.version ?? '<onnxruntime-node version>';
  return [
    `Download Microsoft.ML.OnnxRuntime.Gpu.Linux ${v} (https://www.nuget.org/packages/Microsoft.ML.OnnxRuntime.Gpu.Linux/${v}) on a machine with internet access.`,
    'A .nupkg is a zip file: from runtimes/linux-x64/native/ copy ' + CUDA_PROVIDER_FILES.join(' and ') + ` into ${status.binDir}`,
    'Then install the NVIDIA driver, CUDA 12 and cuDNN 9 on this machine (their libraries must be on the loader path, e.g. LD_LIBRARY_PATH), and run with "prunekit.device": "cuda".',
  ].join('\n');
}
