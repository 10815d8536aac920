// ONNX checkpoints: open (model, external data, tokenizer and config beside it) and write (replaced initializers
// in their original type, everything else byte for byte, atomically into a new folder).
// Implementation: onnxReader.ts (open/read), onnxWriter.ts (write), rangeReader.ts (bounded reads of big files),
// dtype.ts (float16/bfloat16), tensors.ts (walking a model's tensors), errors.ts (CheckpointError).

export { CheckpointError, type CheckpointErrorCode } from './errors';
export {
  MODEL_FILE,
  OnnxCheckpoint,
  openOnnxCheckpoint,
  resolveModelPath,
  SIDE_FILES,
  type ExternalRef,
  type InitializerInfo,
  type OpenOptions,
  type TensorStorage,
} from './onnxReader';
export {
  DATA_FILE,
  EXTERNAL_MIN_BYTES,
  MAX_INLINE_BYTES,
  writeOnnxCheckpoint,
  type WriteHooks,
  type WriteOptions,
  type WriteResult,
} from './onnxWriter';
export { DEFAULT_CHUNK_SIZE, RangeReader } from './rangeReader';
