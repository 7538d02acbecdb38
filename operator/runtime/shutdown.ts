/**
 * Clean stop on SIGTERM/SIGINT for every process we ship: run `stop` once, exit 0 when it
 * finishes, exit 1 when it fails or outlasts `timeoutMs` (a hung stop must not keep a pod alive).
 */
import type { Logger } from '../log.ts';

export function onShutdown(log: Logger, timeoutMs: number, stop: () => Promise<unknown>): void {
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    const force = setTimeout(() => {
      log.error('stop took too long; exiting');
      process.exit(1);
    }, timeoutMs);
    force.unref();
    stop()
      .then(() => {
        log.info('stopped');
        process.exit(0);
      })
      .catch((err: unknown) => {
        log.error({ err }, 'error while stopping');
        process.exit(1);
      });
  };
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      shutdown(sig);
    });
  }
}
