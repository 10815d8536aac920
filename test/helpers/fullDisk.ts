// A full disk, simulated, for tests that cannot mount a small filesystem (not root, no tmpfs): preload it into
// the process under test (`node --import tsx --import ./test/helpers/fullDisk.ts …`) with
//   PRUNEKIT_FULL_DISK_DIR   a folder: files opened under it (node:fs/promises `open`, which the checkpoint
//                            writer uses) share
//   PRUNEKIT_FULL_DISK_BYTES bytes of free space; the write that would go past it fails the way the kernel's
//                            does (an Error with code 'ENOSPC', errno −28, syscall 'write').
// Everything else (reading, creating and removing folders, renaming) is the real filesystem.

import { createRequire, syncBuiltinESMExports } from 'node:module';
import * as path from 'node:path';

type Open = typeof import('node:fs/promises').open;
type Write = (buffer: Uint8Array, offset?: number, length?: number, position?: number | null) => Promise<{ bytesWritten: number; buffer: Uint8Array }>;

const dir = process.env.PRUNEKIT_FULL_DISK_DIR;
const quota = Number(process.env.PRUNEKIT_FULL_DISK_BYTES ?? 0);
if (dir) {
  const fsp = createRequire(path.join(process.cwd(), 'index.js'))('node:fs/promises') as { open: Open };
  const open = fsp.open;
  const root = path.resolve(dir) + path.sep;
  let used = 0;
  fsp.open = (async (file: Parameters<Open>[0], ...rest: unknown[]) => {
    const fh = await (open as (...a: unknown[]) => ReturnType<Open>)(file, ...rest);
    if (typeof file === 'string' && path.resolve(file).startsWith(root)) {
      const write = (fh.write as unknown as Write).bind(fh);
      (fh as unknown as { write: Write }).write = async (buffer, offset = 0, length = buffer.byteLength - offset, position) => {
        if (used + length > quota) {
          throw Object.assign(new Error(`ENOSPC: no space left on device, write`), { code: 'ENOSPC', errno: -28, syscall: 'write' });
        }
        used += length;
        return write(buffer, offset, length, position);
      };
    }
    return fh;
  }) as Open;
  syncBuiltinESMExports();
}
