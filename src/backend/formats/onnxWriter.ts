// Writing a checkpoint: a new folder with model.onnx (some initializers replaced, stored in their original data
// type), external data when the input had it or the model would not fit one protobuf, and the tokenizer/config
// files copied. Tensors that are not replaced are copied byte for byte (never decoded to values and re-encoded).
// A replacement is float32 values or a TensorSource (tensorSource.ts) whose bytes are read only when written.
// The folder is built under `<out>.tmp-<pid>` and renamed into place when complete; a failure or a cancel removes
// the temporary folder and leaves any previous output as it was. The input is only ever read.

import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { encodeModelParts, TensorProto } from '../onnx/proto';
import { checkExistingOutput, checkNotInput, WriteHooks, writeFolder } from './atomicFolder';
import { byteLengthOf, dataTypeName, isFloatType } from './dtype';
import { CheckpointError } from './errors';
import { MODEL_FILE, OnnxCheckpoint, openOnnxCheckpoint } from './onnxReader';
import { DEFAULT_CHUNK_SIZE } from './rangeReader';
import { Replacement, replacementBytes, replacementElements } from './tensorSource';
import { DATA_LOCATION_EXTERNAL, elementCount, forEachTensor, inlineBytes, isExternal, mapTensors } from './tensors';

/** The external data file written beside model.onnx (onnxruntime resolves it through each tensor's location). */
export const DATA_FILE = 'model.onnx_data';
/** The model file's path in the output folder: model.onnx, or for a repository input its own `onnx/<variant>.onnx`
 *  (so transformers.js finds it); its external data file is that path + `_data`. */
export function outputModelFile(ckpt: OnnxCheckpoint): string {
  return ckpt.repository ? path.join('onnx', `${ckpt.repository.variant}.onnx`) : MODEL_FILE;
}

/** A protobuf over 2 GiB cannot be parsed; stay clearly below it. */
export const MAX_INLINE_BYTES = 2_000_000_000;
/** Tensors smaller than this stay inline when the writer chooses what goes external (onnx's size_threshold). */
export const EXTERNAL_MIN_BYTES = 1024;
/** Tensors over ALIGN_THRESHOLD start at a multiple of ALIGNMENT in the data file (onnx's defaults, for mmap). */
const ALIGN_THRESHOLD = 1024 * 1024;
const ALIGNMENT = 64 * 1024;

export type { WriteHooks } from './atomicFolder';

export interface WriteOptions {
  /** Replace an existing output folder (only one that is empty or holds a model.onnx). Default false. */
  overwrite?: boolean;
  /**
   * 'auto' (default): external data when the input had it or the model would exceed `maxInlineBytes`; tensors keep
   * their placement otherwise. 'always': every initializer of at least `externalMinBytes` goes external.
   * 'never': everything inline (refused when the model would exceed `maxInlineBytes`).
   */
  externalData?: 'auto' | 'always' | 'never';
  maxInlineBytes?: number;
  externalMinBytes?: number;
  /** Bytes per read and write call (default 64 MiB). */
  chunkSize?: number;
  /** More files for the output folder: name → contents (string, bytes) written with the model. */
  extraFiles?: Record<string, string | Uint8Array>;
  /** fsync written files before the rename (default true). */
  fsync?: boolean;
  /** Aborting stops at the next chunk, removes the temporary folder and rejects with code 'cancelled'. */
  signal?: AbortSignal;
  hooks?: WriteHooks;
}

export interface WriteResult {
  dir: string;
  modelPath: string;
  /** The external data file, when one was written. */
  dataPath?: string;
  modelBytes: number;
  dataBytes: number;
  /** Initializers written from replacements. */
  replaced: string[];
  /** Names of the side and extra files written beside the model. */
  files: string[];
  /** Problems that did not fail the write (a previous output that could not be removed after the swap). */
  warnings: string[];
}

/** One tensor of the output's data file. */
interface DataEntry {
  source: TensorProto;
  replacement?: { source: Replacement; dataType: number };
  offset: number;
  length: number;
}

const DATA_KEYS = ['rawData', 'floatData', 'int32Data', 'int64Data', 'doubleData', 'uint64Data', 'externalData', 'dataLocation'] as const;

/** A copy of `t` without any data fields (name, dims, type, doc and unknown fields kept). */
function withoutData(t: TensorProto): TensorProto {
  const copy: TensorProto = { ...t };
  for (const k of DATA_KEYS) delete copy[k];
  return copy;
}

/**
 * Writes `src` with the initializers in `replacements` (name → float32 values or a TensorSource, stored in the
 * initializer's own type) to the new folder `outDir`. See WriteOptions for external data and overwriting.
 */
export async function writeOnnxCheckpoint(
  src: OnnxCheckpoint | string,
  outDir: string,
  replacements: ReadonlyMap<string, Replacement> = new Map(),
  opts: WriteOptions = {},
): Promise<WriteResult> {
  const ckpt = typeof src === 'string' ? openOnnxCheckpoint(src) : src;
  const out = path.resolve(outDir);
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const mode = opts.externalData ?? 'auto';
  const maxInline = opts.maxInlineBytes ?? MAX_INLINE_BYTES;
  const minExternal = opts.externalMinBytes ?? EXTERNAL_MIN_BYTES;

  // --- Check everything that can be checked before touching the disk.
  for (const [name, r] of replacements) {
    const t = ckpt.tensor(name);
    if (!isFloatType(t.dataType)) {
      throw new CheckpointError('unsupported-dtype', `cannot replace '${name}' in ${ckpt.modelPath}: it is ${dataTypeName(t.dataType)}, not a floating-point tensor`, ckpt.modelPath);
    }
    const n = elementCount(t);
    const got = replacementElements(r);
    if (got !== n) {
      throw new CheckpointError(
        'bad-replacement',
        `replacement for '${name}' has ${got} values; the initializer in ${ckpt.modelPath} has shape [${t.dims.join(', ')}] (${n} values)`,
        ckpt.modelPath,
      );
    }
  }
  for (const name of Object.keys(opts.extraFiles ?? {})) {
    if (!name || name !== path.basename(name) || name === '.' || name === '..' || name === MODEL_FILE || name === DATA_FILE) {
      throw new RangeError(`extra output file name '${name}' must be a plain file name other than ${MODEL_FILE} and ${DATA_FILE}`);
    }
  }
  checkNotInput(out, [ckpt.modelPath, ...ckpt.externalFiles, ...ckpt.sideFiles.values()]);
  const modelFile = outputModelFile(ckpt);
  const dataFile = `${modelFile}_data`;
  const marker = modelFile.split(path.sep)[0]; // what a folder this tool wrote holds: model.onnx, or onnx/
  checkExistingOutput(out, !!opts.overwrite, marker);

  // --- Plan: which tensors go to the data file, and the output model.
  const mainInits = new Set(ckpt.model.graph.initializer);
  const replacementOf = (t: TensorProto): Replacement | undefined => (mainInits.has(t) ? replacements.get(t.name) : undefined);
  /** Bytes of a tensor kept inline (0 for STRING and layouts without a raw form: those always stay inline). */
  const inlineSize = (t: TensorProto): number => {
    try {
      return inlineBytes(t)?.length ?? 0;
    } catch {
      return 0;
    }
  };
  const sizeOf = (t: TensorProto): number => {
    const r = replacementOf(t);
    if (r) return byteLengthOf(t.dataType, replacementElements(r)) as number;
    return ckpt.externalRef(t)?.length ?? inlineSize(t);
  };
  let inlineTensorBytes = 0;
  let allTensorBytes = 0;
  const initializers = new Set<TensorProto>();
  forEachTensor(ckpt.model, (t, _where, initializer) => {
    if (initializer) initializers.add(t);
    const ext = ckpt.externalRef(t);
    if (ext) {
      allTensorBytes += ext.length;
    } else {
      const n = inlineSize(t);
      inlineTensorBytes += n;
      allTensorBytes += n;
    }
  });
  const structureBytes = Math.max(0, ckpt.modelFileBytes - inlineTensorBytes);
  const allInlineEstimate = structureBytes + allTensorBytes;
  const tooLarge = allInlineEstimate > maxInline;
  if (mode === 'never' && tooLarge) {
    throw new CheckpointError(
      'model-too-large',
      `${ckpt.modelPath} would be about ${allInlineEstimate} bytes as one protobuf, over the ${maxInline}-byte limit: write it with external data`,
      ckpt.modelPath,
    );
  }
  const externalOut = mode === 'always' || (mode === 'auto' && (ckpt.hasExternalData || tooLarge));
  const moveInline = mode === 'always' || tooLarge;

  const entries: DataEntry[] = [];
  let dataBytes = 0;
  const replaced: string[] = [];
  const outModel = mapTensors(ckpt.model, (t) => {
    const replacement = replacementOf(t);
    if (replacement) replaced.push(t.name);
    const wasExternal = isExternal(t);
    // Only initializers move out of the protobuf; attribute tensors (Constant values) stay where they are.
    const goesExternal = externalOut && (wasExternal || (moveInline && initializers.has(t) && sizeOf(t) >= minExternal));
    if (goesExternal) {
      const length = sizeOf(t);
      if (length > ALIGN_THRESHOLD) dataBytes = Math.ceil(dataBytes / ALIGNMENT) * ALIGNMENT;
      const entry: DataEntry = { source: t, offset: dataBytes, length };
      if (replacement) entry.replacement = { source: replacement, dataType: t.dataType };
      entries.push(entry);
      dataBytes += length;
      const kept = replacement ? [] : (t.externalData ?? []).filter((e) => !['location', 'offset', 'length', 'basepath'].includes(e.key));
      return {
        ...withoutData(t),
        dataLocation: DATA_LOCATION_EXTERNAL,
        externalData: [
          { key: 'location', value: path.basename(dataFile) },
          { key: 'offset', value: String(entry.offset) },
          { key: 'length', value: String(length) },
          ...kept,
        ],
      };
    }
    if (replacement) return { ...withoutData(t), rawData: replacementBytes(replacement, t.dataType) };
    if (wasExternal) return { ...withoutData(t), rawData: ckpt.tensorBytes(t) };
    return t; // unchanged: re-encoded from the same raw bytes / typed values
  });

  // --- Write into the temporary folder, then rename it into place.
  const folderOpts = { overwrite: !!opts.overwrite, marker, chunkSize, signal: opts.signal, hooks: opts.hooks };
  const { result, warnings } = await writeFolder(out, folderOpts, async (tmp, sink) => {
    let dataPath: string | undefined;
    await mkdir(path.dirname(path.join(tmp, modelFile)), { recursive: true });
    if (externalOut) {
      await sink.file(path.join(tmp, dataFile), opts.fsync !== false, async (write) => {
        let at = 0;
        for (const e of entries) {
          if (e.offset > at) await write(new Uint8Array(e.offset - at));
          if (e.replacement) {
            await write(replacementBytes(e.replacement.source, e.replacement.dataType));
          } else {
            for (const chunk of ckpt.tensorChunks(e.source)) await write(chunk);
          }
          at = e.offset + e.length;
        }
      });
      dataPath = path.join(out, dataFile);
    }
    const modelBytes = await sink.file(path.join(tmp, modelFile), opts.fsync !== false, async (write) => {
      for (const part of encodeModelParts(outModel)) await write(part);
    });
    const files: string[] = [];
    for (const [name, from] of ckpt.sideFiles) {
      sink.current = path.join(tmp, name);
      await copyFile(from, sink.current);
      files.push(name);
    }
    for (const [name, contents] of Object.entries(opts.extraFiles ?? {})) {
      sink.current = path.join(tmp, name);
      await writeFile(sink.current, contents);
      if (!files.includes(name)) files.push(name);
    }
    return { dataPath, modelBytes, files };
  });
  return {
    dir: out,
    modelPath: path.join(out, modelFile),
    dataPath: result.dataPath,
    modelBytes: result.modelBytes,
    dataBytes: externalOut ? dataBytes : 0,
    replaced,
    files: result.files,
    warnings,
  };
}
