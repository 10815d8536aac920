// Session factory: one place that turns a graph into an onnxruntime session on the requested device.
// `auto` tries CUDA, then WebGPU on a hardware adapter (Metal, D3D12, Vulkan), then CPU. A GPU device is checked
// first (adapter.ts: the missing CUDA file, Dawn's refusal), and onnxruntime-node THROWS when a provider cannot load
// (even with 'cpu' listed after it), so each attempt is caught and the next one tried; every session records the
// device it actually runs on.

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import type { Transfer } from '../../protocol/events';
import { DEVICE_RE, DeviceName } from '../../protocol/pruning';
import { AdapterQuery, cpuName, cudaDeviceName, cudaProblem, cudaProviderPath, webgpuAdapterHere, webgpuProblem } from './adapter';
import { encodeModel, ModelProto } from './proto';

/** The `device` a run asks for (the protocol's DeviceName: one definition for config, CLI and engine). */
export type DeviceRequest = DeviceName;
export type Device = 'cpu' | 'webgpu' | `cuda:${number}`;

export interface EngineOptions {
  device: DeviceRequest;
  /** onnxruntime intra-op threads; 0 = onnxruntime's default (one per core). */
  threads: number;
}

export type Feeds = Record<string, ort.Tensor>;

/** What onnxruntime opens to run a whole model: a model file (external data resolved beside it), or the model's
 *  bytes with its external data files given in memory (by the `location` its initializers name). */
export type ModelSource = string | { model: Uint8Array; externalData: { path: string; data: Uint8Array }[] };

export interface KernelOptions {
  /** A CPU memory arena for the session: for small graphs run many times whose intermediates are bounded. */
  arena?: boolean;
  /** Outputs left in the device's memory (`location` 'gpu-buffer') when the kernel runs on WebGPU, to be fed to
   *  later graph calls without crossing to the host; elsewhere they come back as host tensors (onnxruntime-node
   *  1.30 binds device outputs for WebGPU only: its binding knows no CUDA memory). */
  deviceOutputs?: readonly string[];
}

/** The bytes of the host tensors among `values`. Kernels count what their graph calls pass in and get back as host
 *  tensors (a Transfer): on a GPU device each of them crosses host↔device (every `run` copies its host inputs to the
 *  device and its host outputs back); on the CPU the same count crosses nothing. Tensors left on the device
 *  (`location` 'gpu-buffer') do not cross and are not counted. */
function hostBytes(values: Iterable<ort.Tensor>): number {
  let n = 0;
  for (const v of values) if (v.location === 'cpu') n += (v.data as ArrayBufferView).byteLength;
  return n;
}

/** What moved between two readings of a Transfer counter. */
export function transferSince(now: Transfer, before: Transfer): Transfer {
  return { toDevice: now.toDevice - before.toDevice, fromDevice: now.fromDevice - before.fromDevice };
}

export class Kernel {
  /** The outputs this kernel leaves in the device's memory (KernelOptions.deviceOutputs, on WebGPU). */
  readonly onDevice: ReadonlySet<string>;

  constructor(readonly session: ort.InferenceSession, readonly device: Device, private readonly moved: Transfer = { toDevice: 0, fromDevice: 0 }, deviceOutputs: readonly string[] = []) {
    this.onDevice = new Set(device === 'webgpu' ? deviceOutputs : []);
  }

  /** Runs the graph; `outputs` may pre-allocate output tensors (onnxruntime writes into their memory, except in a
   *  kernel with device outputs on WebGPU: read the results there). Given, it names every output wanted (null: one
   *  onnxruntime allocates). */
  async run(feeds: Feeds, outputs?: Record<string, ort.Tensor | null>): Promise<Record<string, ort.Tensor>> {
    this.moved.toDevice += hostBytes(Object.values(feeds));
    const result = (await (outputs ? this.session.run(feeds, outputs) : this.session.run(feeds))) as Record<string, ort.Tensor>;
    this.moved.fromDevice += hostBytes(Object.values(result));
    return result;
  }
}

/** What keeps fp32 math in fp32 on an NVIDIA GPU. onnxruntime's CUDA provider turns TF32 on by default (`use_tf32`:
 *  10-bit mantissas in the Hessian products, the factor updates and the loss on Ampere and newer), and the
 *  onnxruntime-node 1.30 binding hands the provider only `deviceId` (its other keys are dropped), so the option
 *  cannot reach it: NVIDIA_TF32_OVERRIDE=0 makes cuBLAS and cuDNN refuse TF32 whatever their caller asks. It must be
 *  in the environment before the provider loads them (the first CUDA session), which Engine ensures. */
export const CUDA_FP32_ENV: Readonly<Record<string, string>> = { NVIDIA_TF32_OVERRIDE: '0' };

/** The provider options a device's sessions are created with. `use_tf32: '0'` states the intent for a binding that
 *  passes provider options through (onnxruntime's own spelling); with 1.30 CUDA_FP32_ENV is what takes effect. */
export function deviceToProvider(device: Device): ort.InferenceSession.ExecutionProviderConfig {
  if (device === 'cpu') return 'cpu';
  if (device === 'webgpu') return 'webgpu';
  return { name: 'cuda', deviceId: Number(device.slice(5)), use_tf32: '0' } as ort.InferenceSession.ExecutionProviderConfig;
}

/** What device choice asks of the machine (faked in tests to choose as on other machines). */
export interface DeviceProbe {
  platform: NodeJS.Platform;
  /** onnxruntime's CUDA provider library is installed beside its binding. */
  cudaProviderInstalled(): boolean;
  /** The adapter WebGPU would use, and whether it is hardware. */
  webgpuAdapter(): Promise<AdapterQuery>;
  /** Why WebGPU cannot run a graph here (onnxruntime's and Dawn's reasons), or null. */
  webgpuProblem(): Promise<string | null>;
  /** Why CUDA's provider cannot load here (the missing file), or null. */
  cudaProblem(): Promise<string | null>;
  /** The model name of CUDA device `index`, or null. */
  cudaDeviceName(index: number): Promise<string | null>;
}

export const THIS_MACHINE: DeviceProbe = {
  platform: process.platform,
  cudaProviderInstalled: () => process.platform !== 'darwin' && existsSync(cudaProviderPath()),
  webgpuAdapter: () => webgpuAdapterHere(),
  webgpuProblem: () => webgpuProblem(),
  cudaProblem: () => cudaProblem(),
  cudaDeviceName,
};

/** The devices `auto` tries, in order: CUDA (Linux, Windows), WebGPU on a hardware adapter (Metal on macOS, D3D12
 *  on Windows, Vulkan on Linux; never a software one, slower than the CPU provider), the CPU; and why the ones left
 *  out were. */
export async function autoDeviceOrder(probe: DeviceProbe): Promise<{ order: Device[]; skipped: string[] }> {
  const order: Device[] = [];
  const skipped: string[] = [];
  if (probe.platform === 'darwin') skipped.push('cuda: not available on macOS');
  else if (probe.cudaProviderInstalled()) order.push('cuda:0');
  else skipped.push('cuda: provider libraries not installed (see README, "GPU")');
  const adapter = await probe.webgpuAdapter();
  if ('unknown' in adapter) skipped.push(`webgpu: ${adapter.unknown}`);
  else if (!adapter.hardware) skipped.push(`webgpu: only a software adapter, ${adapter.name} (slower than the CPU provider)`);
  else order.push('webgpu');
  order.push('cpu');
  return { order, skipped };
}

/** A named device that cannot run here: the message says why, the hint what to do. */
export class DeviceError extends Error {
  constructor(message: string, readonly hint: string) {
    super(message);
  }
}

const DEVICE_HINTS: Record<'cuda' | 'webgpu', string> = {
  cuda: 'install the CUDA provider, CUDA 12 and cuDNN 9 (README, "GPU (CUDA)"), or run with --device cpu',
  webgpu: 'install a Vulkan driver for the GPU (a software one: Mesa 25 lavapipe, README "WebGPU"), or run with --device cpu',
};

export class Engine {
  private readonly cache = new Map<string, Kernel>();
  private resolved: Device | undefined;
  /** Why devices earlier in the `auto` order were not used (for the run report). */
  readonly fallbacks: string[] = [];
  /** Host↔device bytes of every kernel's graph calls so far (read it before and after a job: transferSince). */
  readonly moved: Transfer = { toDevice: 0, fromDevice: 0 };

  constructor(readonly options: EngineOptions = { device: 'auto', threads: 0 }, private readonly probe: DeviceProbe = THIS_MACHINE) {
    if (!DEVICE_RE.test(options.device)) {
      throw new Error(`device '${options.device}' is not one of auto, cpu, cuda, cuda:N, webgpu`);
    }
  }

  /** The device sessions run on (known after the first kernel is created). */
  get device(): Device | undefined {
    return this.resolved;
  }

  /** Whether kernels with device outputs keep them in the device's memory (WebGPU; see KernelOptions). */
  get keepsOnDevice(): boolean {
    return this.resolved === 'webgpu';
  }

  /** What the resolved device runs on: the GPU's or the CPU's model name, or the WebGPU adapter's (null if unknown). */
  get adapter(): string | null {
    return this.adapterName;
  }

  private adapterName: string | null = null;
  private webgpuAdapter: AdapterQuery | undefined;

  private async candidates(): Promise<Device[]> {
    const d = this.options.device;
    if (d === 'cpu' || d === 'webgpu') return [d];
    if (d === 'cuda') return ['cuda:0'];
    if (d.startsWith('cuda:')) return [d as Device];
    const { order, skipped } = await autoDeviceOrder({ ...this.probe, webgpuAdapter: () => this.queryAdapter() });
    this.fallbacks.push(...skipped);
    return order;
  }

  private async queryAdapter(): Promise<AdapterQuery> {
    this.webgpuAdapter ??= await this.probe.webgpuAdapter();
    return this.webgpuAdapter;
  }

  /** Why `device` cannot run here, found before onnxruntime tries (whose own messages omit the cause), or null. */
  private problem(device: Device): Promise<string | null> {
    if (device === 'webgpu') return this.probe.webgpuProblem();
    if (device.startsWith('cuda')) return this.probe.cudaProblem();
    return Promise.resolve(null);
  }

  private async nameOf(device: Device): Promise<string | null> {
    if (device === 'cpu') return cpuName();
    if (device === 'webgpu') {
      const a = await this.queryAdapter();
      return 'name' in a ? a.name : null;
    }
    return this.probe.cudaDeviceName(Number(device.slice(5)));
  }

  /** In-memory external data of sessions made by modelSession, kept alive with the session. */
  private readonly retained = new WeakMap<ort.InferenceSession, ModelSource>();

  private async createOn(device: Device, source: Uint8Array | string, externalData?: { path: string; data: Uint8Array }[], options: KernelOptions = {}): Promise<ort.InferenceSession> {
    const opts: ort.InferenceSession.SessionOptions = {
      executionProviders: [deviceToProvider(device)],
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
      // Model graphs run once per block on ever-changing shapes: an arena would keep the largest intermediate
      // of the run alive for good, so they allocate per run. Small kernels whose intermediates are bounded by
      // design ask for one (KernelOptions.arena): run thousands of times, their per-run allocations otherwise
      // churn the C allocator, which keeps the freed memory (≈ 80 MB more peak RSS on a 4096² layer).
      enableCpuMemArena: options.arena ?? false,
      enableMemPattern: false,
      // onnxruntime's intra-op threads otherwise spin after each run, waiting for the next: our sessions
      // alternate with JavaScript work (worker threads solving rows), which the spinning threads would starve.
      extra: { session: { intra_op: { allow_spinning: '0' } } },
    };
    if (this.options.threads > 0) opts.intraOpNumThreads = this.options.threads;
    if (externalData) opts.externalData = externalData;
    if (device === 'webgpu' && options.deviceOutputs?.length) opts.preferredOutputLocation = Object.fromEntries(options.deviceOutputs.map((n) => [n, 'gpu-buffer' as const]));
    if (device.startsWith('cuda')) Object.assign(process.env, CUDA_FP32_ENV);
    return typeof source === 'string' ? ort.InferenceSession.create(source, opts) : ort.InferenceSession.create(source, opts);
  }

  /** The cache key of each model object already seen: the sweep asks for the same few graphs thousands of times,
   *  and encoding one to hash it leaves ≈ 0.2 MB of garbage per call (models are not changed once built). */
  private readonly keys = new WeakMap<ModelProto, string>();

  /** A cached session for `model`; the key is the model's bytes, so equal graphs share one session. */
  async kernel(model: ModelProto, options: KernelOptions = {}): Promise<Kernel> {
    let digest = this.keys.get(model);
    let bytes: Uint8Array | undefined;
    if (digest === undefined) {
      bytes = encodeModel(model);
      digest = createHash('sha1').update(bytes).digest('hex');
      this.keys.set(model, digest);
    }
    const key = `${digest}${options.arena ? ':arena' : ''}:${options.deviceOutputs?.join(',') ?? ''}`;
    const hit = this.cache.get(key);
    if (hit) return hit;
    const kernel = await this.open(bytes ?? encodeModel(model), undefined, options);
    this.cache.set(key, kernel);
    return kernel;
  }

  /** Drops `kernel` from the cache and releases its session (a graph made for one block, never run again). */
  async forget(kernel: Kernel): Promise<void> {
    for (const [key, k] of this.cache) if (k === kernel) this.cache.delete(key);
    await kernel.session.release();
  }

  /** An uncached session for a model file (external data resolved beside it); release it when done. */
  async fileSession(file: string): Promise<ort.InferenceSession> {
    return (await this.open(file)).session;
  }

  /** An uncached session for a whole model (a file, or bytes with in-memory external data); release it when done. */
  async modelSession(source: ModelSource): Promise<ort.InferenceSession> {
    if (typeof source === 'string') return this.fileSession(source);
    const session = (await this.open(source.model, source.externalData)).session;
    this.retained.set(session, source);
    return session;
  }

  private async open(source: Uint8Array | string, externalData?: { path: string; data: Uint8Array }[], options: KernelOptions = {}): Promise<Kernel> {
    if (this.resolved) return new Kernel(await this.createOn(this.resolved, source, externalData, options), this.resolved, this.moved, options.deviceOutputs);
    const errors: string[] = [];
    for (const device of await this.candidates()) {
      try {
        const why = await this.problem(device);
        if (why) throw new Error(why);
        const kernel = new Kernel(await this.createOn(device, source, externalData, options), device, this.moved, options.deviceOutputs);
        this.resolved = device;
        this.adapterName = await this.nameOf(device);
        return kernel;
      } catch (e) {
        const msg = `${device}: ${(e as Error).message.split('\n')[0]}`;
        errors.push(msg);
        if (this.options.device === 'auto') this.fallbacks.push(msg);
      }
    }
    const asked = this.options.device;
    const hint = asked === 'webgpu' ? DEVICE_HINTS.webgpu : asked.startsWith('cuda') ? DEVICE_HINTS.cuda : 'run with --device cpu';
    throw new DeviceError(`no onnxruntime device could run the graph: ${errors.join('; ')}`, hint);
  }

  async release(): Promise<void> {
    for (const k of this.cache.values()) await k.session.release();
    this.cache.clear();
  }
}

export function f32(data: Float32Array, dims: number[]): ort.Tensor {
  // onnxruntime reads the memory in place; a view into a larger buffer is fine.
  return new ort.Tensor('float32', data as Float32Array<ArrayBuffer>, dims);
}
