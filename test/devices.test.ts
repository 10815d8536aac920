// Device choice and provider settings (src/backend/onnx/session.ts, adapter.ts): CUDA sessions in full fp32, `auto`
// never on a software adapter, and one-line reasons when a named device cannot run.

import assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { failureEvent } from '../src/backend/cli/failures';
import { AdapterQuery, cpuName, cudaProblem, missingLibraries, parseVulkanSummary, vulkanAdapter, webgpuAdapterHere, webgpuProblem } from '../src/backend/onnx/adapter';
import { GraphBuilder } from '../src/backend/onnx/graph';
import { DataType, ModelProto } from '../src/backend/onnx/proto';
import { Kernels, mat } from '../src/backend/linalg/kernels';
import { CUDA_FP32_ENV, DeviceError, DeviceProbe, deviceToProvider, Engine, THIS_MACHINE, transferSince } from '../src/backend/onnx/session';

const negGraph = (): ModelProto => {
  const g = new GraphBuilder('neg');
  const x = g.input('x', DataType.FLOAT, ['n']);
  g.output(g.op('Neg', [x]), 'y', DataType.FLOAT, ['n']);
  return g.build();
};

describe('CUDA in full fp32', () => {
  test('the CUDA provider options ask for TF32 off, and the device id', () => {
    assert.deepEqual(deviceToProvider('cuda:1'), { name: 'cuda', deviceId: 1, use_tf32: '0' });
    assert.equal(deviceToProvider('cpu'), 'cpu');
  });

  test('a CUDA session is created with NVIDIA_TF32_OVERRIDE=0 in the environment (what cuBLAS and cuDNN obey)', async () => {
    assert.deepEqual(CUDA_FP32_ENV, { NVIDIA_TF32_OVERRIDE: '0' });
    const before = process.env.NVIDIA_TF32_OVERRIDE;
    process.env.NVIDIA_TF32_OVERRIDE = '1'; // a user's setting that would allow TF32
    try {
      // Here the provider is not installed: past the file check, onnxruntime's creation fails after the environment is set.
      const engine = new Engine({ device: 'cuda', threads: 1 }, { ...THIS_MACHINE, cudaProblem: () => Promise.resolve(null) });
      await engine.kernel(negGraph()).then(() => engine.release(), () => undefined);
      assert.equal(process.env.NVIDIA_TF32_OVERRIDE, '0');
    } finally {
      if (before === undefined) delete process.env.NVIDIA_TF32_OVERRIDE;
      else process.env.NVIDIA_TF32_OVERRIDE = before;
    }
  });
});

// What vulkaninfo 1.3 prints for Mesa 25 lavapipe (trimmed), and for a machine with a GPU beside it.
const LAVAPIPE_SUMMARY = `==========
VULKANINFO
==========

Devices:
========
GPU0:
\tapiVersion         = 1.4.305
\tvendorID           = 0x10005
\tdeviceType         = PHYSICAL_DEVICE_TYPE_CPU
\tdeviceName         = llvmpipe (LLVM 15.0.6, 256 bits)
\tdriverID           = DRIVER_ID_MESA_LLVMPIPE
`;
const WITH_GPU = LAVAPIPE_SUMMARY + `GPU1:
\tapiVersion         = 1.3.277
\tvendorID           = 0x10de
\tdeviceType         = PHYSICAL_DEVICE_TYPE_DISCRETE_GPU
\tdeviceName         = NVIDIA GeForce RTX 4090
\tdriverID           = DRIVER_ID_NVIDIA_PROPRIETARY
`;

/** A machine whose WebGPU adapter query answers `adapter`; checks that fail the test if `auto` reaches them. */
function fakeProbe(adapter: AdapterQuery, webgpu: () => Promise<string | null> = () => Promise.reject(new Error('not to be asked'))): DeviceProbe {
  return {
    platform: 'linux', cudaProviderInstalled: () => false, webgpuAdapter: () => Promise.resolve(adapter), webgpuProblem: webgpu,
    cudaProblem: () => Promise.resolve(null), cudaDeviceName: () => Promise.resolve(null),
  };
}

describe('the WebGPU adapter and `auto`', () => {
  test("vulkaninfo's summary: the device Dawn would take, and whether it is software", () => {
    assert.deepEqual(parseVulkanSummary(WITH_GPU), [
      { name: 'NVIDIA GeForce RTX 4090', type: 'DISCRETE_GPU' }, { name: 'llvmpipe (LLVM 15.0.6, 256 bits)', type: 'CPU' },
    ]);
    assert.deepEqual(vulkanAdapter(LAVAPIPE_SUMMARY), { name: 'llvmpipe (LLVM 15.0.6, 256 bits)', hardware: false });
    assert.deepEqual(vulkanAdapter(WITH_GPU), { name: 'NVIDIA GeForce RTX 4090', hardware: true });
    assert.deepEqual(vulkanAdapter('Devices:\n========\n'), { unknown: 'Vulkan lists no device' });
    const enoent = Object.assign(new Error('spawn vulkaninfo ENOENT'), { code: 'ENOENT' });
    assert.match((vulkanAdapter(enoent) as { unknown: string }).unknown, /^vulkaninfo is not installed \(Debian: apt-get install vulkan-tools\)/);
  });

  test('`auto` refuses a software adapter: the run goes to the CPU and the notes say why', async () => {
    const engine = new Engine({ device: 'auto', threads: 1 }, fakeProbe(vulkanAdapter(LAVAPIPE_SUMMARY)));
    const k = await engine.kernel(negGraph());
    assert.equal(k.device, 'cpu');
    assert.deepEqual(engine.fallbacks.slice(1), ['webgpu: only a software adapter, llvmpipe (LLVM 15.0.6, 256 bits) (slower than the CPU provider)']);
    assert.equal(engine.adapter, cpuName(), 'the CPU run names the CPU');
    await engine.release();
  });

  test('`auto` on a hardware adapter tries WebGPU, checked first; its refusal is noted and the CPU runs', async () => {
    let asked = 0;
    const probe = fakeProbe(vulkanAdapter(WITH_GPU), () => Promise.resolve(`Failed to get a WebGPU adapter: No supported adapters (Dawn: asked ${++asked})`));
    const engine = new Engine({ device: 'auto', threads: 1 }, probe);
    assert.equal((await engine.kernel(negGraph())).device, 'cpu');
    assert.equal(asked, 1);
    assert.deepEqual(engine.fallbacks.slice(1), ['webgpu: Failed to get a WebGPU adapter: No supported adapters (Dawn: asked 1)']);
    await engine.release();
  });

  test("vulkaninfo here names the adapter the Vulkan loader offers (this machine's)", async (t) => {
    const q = await webgpuAdapterHere('linux');
    t.diagnostic(JSON.stringify(q));
    if ('unknown' in q) assert.match(q.unknown, /vulkaninfo|Vulkan/);
    else assert.ok(q.name.length > 0);
  });
});

describe('a named device that cannot run says why and what to do', () => {
  test('webgpu with no usable adapter: Dawn\'s reason, one line, run.failed device-unavailable with a hint', async () => {
    // A Vulkan loader pointed at no driver: Dawn finds no adapter (the same path as a machine without a GPU driver).
    const noDriver = { ...process.env, VK_ICD_FILENAMES: '/nonexistent/icd.json', VK_DRIVER_FILES: '/nonexistent/icd.json' };
    const why = await webgpuProblem(noDriver);
    assert.match(why ?? '', /^Failed to get a WebGPU adapter: No supported adapters/);
    assert.doesNotMatch(why ?? '', /onnxruntime_src|\.cc:\d+/, 'no source locations');
    const probe: DeviceProbe = { ...fakeProbe({ unknown: 'no Vulkan device' }), webgpuProblem: () => webgpuProblem(noDriver) };
    const engine = new Engine({ device: 'webgpu', threads: 1 }, probe);
    const err = await engine.kernel(negGraph()).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof DeviceError);
    assert.equal(err.message, `no onnxruntime device could run the graph: webgpu: ${why}`);
    const event = failureEvent(err);
    assert.equal(event.code, 'device-unavailable');
    assert.doesNotMatch(event.message, /\n/);
    assert.match(event.hint ?? '', /Vulkan driver.*--device cpu/);
  });

  test('cuda without its provider names the missing file; ldd names the missing CUDA libraries', async () => {
    const missing = await cudaProblem('/nonexistent/libonnxruntime_providers_cuda.so');
    assert.match(missing ?? '', /^\/nonexistent\/libonnxruntime_providers_cuda\.so is missing: .*ONNXRUNTIME_NODE_INSTALL=cuda12/);
    const ldd = [
      '\tlinux-vdso.so.1 (0x00007ffd)',
      '\tlibcublasLt.so.12 => not found',
      '\tlibonnxruntime_providers_shared.so => /x/libonnxruntime_providers_shared.so (0x00007f)',
      '\tlibcudnn.so.9 => not found',
    ].join('\n');
    assert.deepEqual(missingLibraries(ldd), ['libcublasLt.so.12', 'libcudnn.so.9']);
    // A real library whose dependencies all resolve: nothing missing.
    assert.equal(await cudaProblem(path.join(path.dirname(require.resolve('onnxruntime-node/package.json')), 'bin/napi-v6/linux/x64/libonnxruntime.so.1')), null);
  });
});

describe('bytes moved', () => {
  test('each graph call counts its host inputs as sent and its host outputs as read back, exactly', async () => {
    const engine = new Engine({ device: 'cpu', threads: 1 });
    const kernels = new Kernels(engine);
    const a = mat(3, 5, Float32Array.from({ length: 15 }, (_, i) => i));
    const b = mat(5, 2, Float32Array.from({ length: 10 }, (_, i) => i - 4));
    const before = { ...engine.moved };
    const y = await kernels.ab(a, b);
    assert.deepEqual(transferSince(engine.moved, before), { toDevice: (15 + 10) * 4, fromDevice: 3 * 2 * 4 });
    assert.equal(y.data[0], [0, 1, 2, 3, 4].reduce((s, v, k) => s + v * (k * 2 - 4), 0)); // the product ran
    await kernels.ab(a, b, mat(3, 2)); // written into a caller's array: still read back
    assert.deepEqual(transferSince(engine.moved, before), { toDevice: 2 * (15 + 10) * 4, fromDevice: 2 * 3 * 2 * 4 });
    await engine.release();
  });
});
