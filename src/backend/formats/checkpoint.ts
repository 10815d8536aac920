// One checkpoint abstraction, two front ends: an ONNX model (file or folder) or a Hugging Face folder
// (config.json + safetensors). Both open to an ONNX graph the pipeline discovers, segments and prunes, with
// the tensors' bytes read on demand, and both write the result in their own format (atomically, every tensor
// that is not replaced kept byte for byte).

import { existsSync } from 'node:fs';
import * as path from 'node:path';
import type { DataType, ModelProto } from '../onnx/proto';
import type { ModelSource } from '../onnx/session';
import type { WriteHooks } from './atomicFolder';
import { HfCheckpoint, isHfFolder, openHfCheckpoint } from './hfCheckpoint';
import { exposeLoopInputs } from '../pipeline/loopLayers';
import { noPastGraph } from './mergedDecoder';
import { OnnxCheckpoint, openOnnxCheckpoint, OpenOptions } from './onnxReader';
import { outputModelFile, writeOnnxCheckpoint } from './onnxWriter';
import type { Replacement } from './tensorSource';


export interface CheckpointWriteOptions {
  overwrite?: boolean;
  signal?: AbortSignal;
  /** Runs when the output is complete in its temporary folder, before the rename; `written` runs it. */
  beforeCommit?(written: { dir: string; sessionSource(): ModelSource }): Promise<void>;
  hooks?: Omit<WriteHooks, 'beforeCommit'>;
}

export interface Checkpoint {
  readonly format: 'onnx' | 'huggingface';
  /** The model file (ONNX) or folder (Hugging Face) that messages and events name. */
  readonly path: string;
  /** The graph (initializers may be external: read their bytes through tensorData). */
  readonly model: ModelProto;
  readonly configPath: string | undefined;
  readonly tokenizerPath: string | undefined;
  readonly hasExternalData: boolean;
  /** The dtype the weights are stored in (`float32`, `float16`, `bfloat16`). */
  readonly storageDtype: string;
  /** An initializer's bytes in the graph's own element type (raw little-endian form, a fresh copy). */
  tensorData(name: string): Uint8Array;
  weightAsFloat32(name: string): Float32Array;
  /** The element type `write` stores an initializer in (its dtype in the checkpoint's files). */
  storedType(name: string): DataType;
  sessionSource(): ModelSource;
  /**
   * Writes the checkpoint to the new folder `out` with `replacements` (initializer name → float32 values, or a
   * TensorSource read only when that tensor is written), each stored in its storedType.
   */
  write(out: string, replacements: ReadonlyMap<string, Replacement>, opts?: CheckpointWriteOptions): Promise<void>;
}

/** The ONNX front end: an OnnxCheckpoint as it is; a merged decoder's graph is seen through its no-past branch
 *  (mergedDecoder.ts), a Loop's with its body's layer inputs exposed (loopLayers.ts), while the file written is
 *  the original one with the pruned weights. */
export class OnnxFormat implements Checkpoint {
  readonly format = 'onnx' as const;
  readonly model: ModelProto;

  constructor(readonly onnx: OnnxCheckpoint) {
    this.model = exposeLoopInputs(noPastGraph(onnx.model) ?? onnx.model);
  }

  get path(): string { return this.onnx.modelPath; }
  get configPath(): string | undefined { return this.onnx.configPath; }
  get tokenizerPath(): string | undefined { return this.onnx.tokenizerPath; }
  get hasExternalData(): boolean { return this.onnx.hasExternalData; }
  get storageDtype(): string {
    const types = new Set(this.onnx.initializers().filter((t) => t.dims.length === 2).map((t) => t.dtype.toLowerCase()));
    return types.has('float16') ? 'float16' : types.has('bfloat16') ? 'bfloat16' : 'float32';
  }
  tensorData(name: string): Uint8Array { return this.onnx.tensorData(name); }
  weightAsFloat32(name: string): Float32Array { return this.onnx.weightAsFloat32(name); }
  storedType(name: string): DataType { return this.onnx.tensor(name).dataType; }
  sessionSource(): ModelSource { return this.onnx.modelPath; }

  async write(out: string, replacements: ReadonlyMap<string, Replacement>, opts: CheckpointWriteOptions = {}): Promise<void> {
    await writeOnnxCheckpoint(this.onnx, out, replacements, {
      overwrite: opts.overwrite,
      signal: opts.signal,
      hooks: {
        ...opts.hooks,
        beforeCommit: async (tmp) => opts.beforeCommit?.({ dir: tmp, sessionSource: () => path.join(tmp, outputModelFile(this.onnx)) }),
      },
    });
  }
}

/** Opens `p`: a Hugging Face folder (config.json and safetensors, no .onnx file in it) or an ONNX checkpoint. */
export function openCheckpoint(p: string, opts: OpenOptions = {}): Checkpoint {
  const abs = path.resolve(p);
  if (existsSync(abs) && isHfFolder(abs)) return openHfCheckpoint(abs, opts);
  return new OnnxFormat(openOnnxCheckpoint(abs, opts));
}

export { HfCheckpoint };
export type { Replacement, TensorSource } from './tensorSource';
export type { ModelSource };
