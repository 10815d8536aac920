// What the machine says about its GPUs, asked before any data is read: the adapter WebGPU would use (its name, and
// whether it is hardware: Dawn takes a software Vulkan driver such as llvmpipe as readily as a GPU), whether WebGPU
// can run a graph at all (in a child process, where Dawn's own reasons on stderr can be read), and what keeps CUDA's
// provider from loading (the missing file). Hand-written: no library answers these; each is a small query.

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GraphBuilder } from './graph';
import { DataType, encodeModel } from './proto';

/** The GPU adapter WebGPU would take, as the machine describes it; `unknown` says why it cannot tell. */
export type AdapterQuery = { name: string; hardware: boolean } | { unknown: string };

export interface VulkanDevice {
  name: string;
  /** Vulkan's VkPhysicalDeviceType without its prefix: DISCRETE_GPU, INTEGRATED_GPU, VIRTUAL_GPU, CPU, OTHER. */
  type: string;
}

/** Dawn's order under its high-performance preference (onnxruntime's): discrete first, a CPU (software) device last. */
const VULKAN_RANK = ['DISCRETE_GPU', 'INTEGRATED_GPU', 'VIRTUAL_GPU', 'OTHER', 'CPU'];

/** The devices of `vulkaninfo --summary`, best first in Dawn's order. */
export function parseVulkanSummary(text: string): VulkanDevice[] {
  const devices: VulkanDevice[] = [];
  for (const block of text.split(/^GPU\d+:\s*$/m).slice(1)) {
    const type = /^\s*deviceType\s*=\s*PHYSICAL_DEVICE_TYPE_(\w+)/m.exec(block)?.[1];
    const name = /^\s*deviceName\s*=\s*(.+?)\s*$/m.exec(block)?.[1];
    if (type && name) devices.push({ name, type });
  }
  const rank = (d: VulkanDevice): number => (VULKAN_RANK.includes(d.type) ? VULKAN_RANK.indexOf(d.type) : VULKAN_RANK.length);
  return devices.sort((a, b) => rank(a) - rank(b));
}

/** The Vulkan device Dawn would choose on Linux, from vulkaninfo's summary (or the error running it). */
export function vulkanAdapter(summary: string | Error): AdapterQuery {
  if (summary instanceof Error) {
    const missing = (summary as NodeJS.ErrnoException).code === 'ENOENT';
    return { unknown: missing ? 'vulkaninfo is not installed (Debian: apt-get install vulkan-tools), so a hardware adapter cannot be told from a software one' : `vulkaninfo failed: ${summary.message.split('\n')[0]}` };
  }
  const best = parseVulkanSummary(summary)[0];
  if (!best) return { unknown: 'Vulkan lists no device' };
  return { name: best.name, hardware: best.type !== 'CPU' };
}

/** `cmd args` with a time limit: its stdout, or the error (ENOENT when it is not installed). */
export function commandOutput(cmd: string, args: string[], timeoutMs = 15_000, env: NodeJS.ProcessEnv = process.env): Promise<string | Error> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', env, timeout: timeoutMs, maxBuffer: 1 << 20 }, (err, stdout) => resolve(err ? err : stdout));
  });
}

/** The WebGPU adapter of this machine: Metal on macOS and D3D12 on Windows are hardware; on Linux Vulkan says. */
export async function webgpuAdapterHere(platform: NodeJS.Platform = process.platform): Promise<AdapterQuery> {
  if (platform === 'darwin') return { name: 'Metal (the Mac\'s GPU)', hardware: true };
  if (platform === 'win32') return { name: 'D3D12 (the default adapter)', hardware: true };
  return vulkanAdapter(await commandOutput('vulkaninfo', ['--summary'], undefined, { ...process.env, ...PROBE_CACHES_OFF }));
}

/** A question about the adapter leaves nothing behind: Vulkan drivers otherwise start their shader caches under
 *  $HOME (Mesa's mesa_shader_cache_db, NVIDIA's GLCache) for a run that may not use the GPU at all. */
const PROBE_CACHES_OFF = { MESA_SHADER_CACHE_DISABLE: 'true', __GL_SHADER_DISK_CACHE: '0' };

/** The name of CUDA device `index` (nvidia-smi), or null when it cannot be asked. */
export async function cudaDeviceName(index: number): Promise<string | null> {
  const out = await commandOutput('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader', '-i', String(index)]);
  return typeof out === 'string' && out.trim() ? out.trim().split('\n')[0] : null;
}

export function cpuName(): string {
  return os.cpus()[0]?.model.trim() || `${os.arch()} CPU`;
}

/** Where onnxruntime-node looks for the CUDA provider library (Linux and Windows; macOS has no CUDA). */
export function cudaProviderPath(platform: NodeJS.Platform = process.platform, arch: string = process.arch): string {
  const pkg = path.dirname(require.resolve('onnxruntime-node/package.json'));
  const file = platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so';
  return path.join(pkg, 'bin', 'napi-v6', platform, arch, file);
}

const CUDA_INSTALL = 'ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install (README, "GPU (CUDA)")';

/** The libraries `ldd` reports as not found. */
export function missingLibraries(lddOutput: string): string[] {
  return [...lddOutput.matchAll(/^\s*(\S+)\s*=>\s*not found/gm)].map((m) => m[1]);
}

/** Why the CUDA provider cannot load here, naming the missing file (the provider itself, or a CUDA/cuDNN library it
 *  links), or null when nothing is seen missing. onnxruntime's own error says only "Failed to load shared library". */
export async function cudaProblem(providerPath: string = cudaProviderPath(), platform: NodeJS.Platform = process.platform): Promise<string | null> {
  if (!existsSync(providerPath)) return `${providerPath} is missing: the CUDA provider is installed separately: ${CUDA_INSTALL}`;
  if (platform !== 'linux') return null;
  const ldd = await commandOutput('ldd', [providerPath]);
  const missing = typeof ldd === 'string' ? missingLibraries(ldd) : [];
  if (missing.length === 0) return null;
  return `${missing.join(', ')} not found (needed by ${path.basename(providerPath)}): install CUDA 12 and cuDNN 9 and put their library folders on LD_LIBRARY_PATH`;
}

/** A one-node graph for the WebGPU check. */
function negModel(): string {
  const g = new GraphBuilder('webgpu_check');
  const x = g.input('x', DataType.FLOAT, [1]);
  g.output(g.op('Neg', [x]), 'y', DataType.FLOAT, [1]);
  return Buffer.from(encodeModel(g.build())).toString('base64');
}

const CHECK_SCRIPT = `
const ort = require(process.argv[1]);
ort.InferenceSession.create(Buffer.from(process.argv[2], 'base64'), { executionProviders: ['webgpu'], logSeverityLevel: 3 })
  .then((s) => s.run({ x: new ort.Tensor('float32', Float32Array.of(2), [1]) }))
  .then((r) => { process.stdout.write('ok ' + r.y.data[0]); }, (e) => { process.stdout.write('error ' + e.message); process.exitCode = 1; });
`;

/** Dawn's reasons among a child's stderr lines ("Warning: Vulkan … required."), without the loader's noise. */
export function dawnReasons(stderr: string): string[] {
  return stderr.split('\n').map((l) => l.trim()).filter((l) => /^(Warning|Error): /.test(l) && !/XDG_RUNTIME_DIR/.test(l)).map((l) => l.replace(/^(Warning|Error): /, ''));
}

/** The message of onnxruntime's failure without its source location (the part after "was false."). */
export function ortReason(message: string): string {
  const first = message.split('\n')[0].trim();
  return /was false\.\s*(.+)$/.exec(first)?.[1] ?? first;
}

/** Why WebGPU cannot run a graph on this machine (onnxruntime's reason and Dawn's), or null when it ran one. A child
 *  process runs it: Dawn writes why it refused an adapter to stderr, which this process cannot read back. */
export async function webgpuProblem(env: NodeJS.ProcessEnv = process.env, timeoutMs = 120_000): Promise<string | null> {
  const ortPath = require.resolve('onnxruntime-node');
  const result = await new Promise<{ stdout: string; stderr: string; err: Error | null }>((resolve) => {
    execFile(process.execPath, ['-e', CHECK_SCRIPT, ortPath, negModel()], { encoding: 'utf8', env, timeout: timeoutMs, maxBuffer: 1 << 20 },
      (err, stdout, stderr) => resolve({ stdout, stderr, err }));
  });
  if (result.stdout === 'ok -2') return null;
  const why = result.stdout.startsWith('error ') ? ortReason(result.stdout.slice(6)) : (result.err?.message.split('\n')[0] ?? `unexpected answer ${JSON.stringify(result.stdout.slice(0, 80))}`);
  const dawn = dawnReasons(result.stderr);
  return dawn.length ? `${why} (Dawn: ${dawn.join('; ')})` : why;
}
