// Preloaded into a CLI child by test/helpers/hostileRun.ts: writes the process's peak RSS (KiB) and CPU time
// (user + system, µs) at exit, so a test can assert the bounds without an external `time` binary.
import { writeFileSync } from 'node:fs';

process.on('exit', () => {
  const file = process.env.PRUNEKIT_TEST_RSS_FILE;
  const u = process.resourceUsage();
  if (file) writeFileSync(file, JSON.stringify({ maxRss: u.maxRSS, cpu: u.userCPUTime + u.systemCPUTime }));
});
