// ONNX model repositories (transformers.js / onnx-community layout: config.json and tokenizer.json at the root,
// onnx/model.onnx, onnx/model_fp16.onnx, onnx/model_quantized.onnx, …): which files are float variants PruneKit can
// prune. Shared by the backend (opening) and the extension (the variant quick pick).

/** Name suffixes of quantized variants (model_quantized, model_int8, model_q4f16, …), which cannot be pruned. */
export const QUANTIZED_VARIANT = /_(?:quantized|int8|uint8|int4|uint4|q4|q4f16|q8|bnb4)$/i;

/** The `.onnx` file names of a repository's onnx/ folder as variant names, float and quantized apart, sorted. */
export function splitVariants(fileNames: readonly string[]): { float: string[]; quantized: string[] } {
  const names = fileNames.filter((f) => f.toLowerCase().endsWith('.onnx')).map((f) => f.slice(0, -'.onnx'.length)).sort();
  return { float: names.filter((n) => !QUANTIZED_VARIANT.test(n)), quantized: names.filter((n) => QUANTIZED_VARIANT.test(n)) };
}
