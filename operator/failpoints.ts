/**
 * Crash points for chaos tests, as etcd's gofail: `CROWBAR_FAILPOINTS=<name>[,<name>...]` makes
 * the process kill itself with SIGKILL the first time it reaches a named point, so a test can stop
 * the operator between two writes whose window is milliseconds wide (after the boot sidecar's
 * acknowledgement and before the power cycle, say), which no external kill can hit reliably.
 * Unset (production), `failpoint()` is a Set lookup that finds nothing.
 */
const armed = new Set(
  (process.env['CROWBAR_FAILPOINTS'] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== ''),
);

/** Kills this process (SIGKILL, no clean-up: a crash) when `name` is armed. */
export function failpoint(name: string): void {
  if (!armed.has(name)) return;
  // stderr, synchronously: the test reads the operator's log to know which point fired.
  process.stderr.write(`failpoint ${name}: killing the process\n`);
  process.kill(process.pid, 'SIGKILL');
}
