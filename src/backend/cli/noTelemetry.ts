// onnxruntime-node keeps a telemetry store under ~/.cache/Microsoft/DeveloperTools/.onnxruntime/ (and writes
// `:memory:.ses` into the working folder when $HOME is not writable) unless this is set before it loads.
import { BACKEND_ENV } from '../../protocol/backendEnv';

for (const [k, v] of Object.entries(BACKEND_ENV)) process.env[k] ??= v;
