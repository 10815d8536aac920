// Errors from checkpoint reading and writing. Each carries a stable `code` (for the pipeline's error events) and
// the file or folder it concerns, and its message names that file, so a user can act on it without a stack trace.

export type CheckpointErrorCode =
  | 'missing-model'
  | 'corrupt-model'
  | 'unsupported-model'
  | 'missing-external-data'
  | 'external-range'
  | 'missing-tokenizer'
  | 'no-such-tensor'
  | 'unsupported-dtype'
  | 'bad-replacement'
  | 'model-too-large'
  | 'output-exists'
  | 'output-is-input'
  | 'no-space'
  | 'write-failed'
  | 'cancelled';

export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';

  constructor(
    readonly code: CheckpointErrorCode,
    message: string,
    /** The file or folder the error concerns (absolute). */
    readonly file?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Node's errno code of a caught value (`ENOENT`, `ENOSPC`, ...), if it has one. */
export function errnoCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof (e as { code: unknown }).code === 'string'
    ? (e as { code: string }).code
    : undefined;
}
