// Device choice and provider settings (src/backend/onnx/session.ts, adapter.ts): CUDA sessions in full fp32, `auto`
// never on a software adapter, and one-line reasons when a named device cannot run.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GraphBuilder } from '../src/backend/onnx/graph';
import { DataType, ModelProto } from '../src/backend/onnx/proto';
import { CUDA_FP32_ENV, deviceToProvider, Engine } from '../src/backend/onnx/session';

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
      const engine = new Engine({ device: 'cuda', threads: 1 });
      // Here the provider is not installed, so creation fails after the environment is set; on a GPU host it runs.
      await engine.kernel(negGraph()).then(() => engine.release(), () => undefined);
      assert.equal(process.env.NVIDIA_TF32_OVERRIDE, '0');
    } finally {
      if (before === undefined) delete process.env.NVIDIA_TF32_OVERRIDE;
      else process.env.NVIDIA_TF32_OVERRIDE = before;
    }
  });
});
