// Environment variables every launcher of the backend process sets (the extension's run manager, the benchmarks'
// child processes, `npm run demo`).
//
// MALLOC_MMAP_THRESHOLD_: glibc serves allocations above this size with mmap, which returns them to the system when
// freed. Left alone, glibc raises the threshold after the first large free (up to 32 MiB), so the pruning's
// megabyte-sized buffers then come from the heap, fragment it, and stay in RSS: a 4096² SparseGPT or APT layer peaked
// at 480–545 MB with the default and at 447–453 MB with 4 MiB, at the same speed (a 128 KiB threshold made the
// prune 20–50% slower: every buffer then costs fresh page faults). Other C libraries ignore the variable.
//
// ORT_DISABLE_TELEMETRY: onnxruntime-node otherwise keeps a telemetry store under
// ~/.cache/Microsoft/DeveloperTools/.onnxruntime/ (and writes `:memory:.ses` into the working folder when $HOME is not
// writable). The CLI also sets it for itself before onnxruntime loads (src/backend/cli/noTelemetry.ts).
export const BACKEND_ENV: Readonly<Record<string, string>> = { MALLOC_MMAP_THRESHOLD_: '4194304', ORT_DISABLE_TELEMETRY: '1' };
