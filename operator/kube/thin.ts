/** Fields the operator's caches drop (see CachedInformer's transform). */
import type { NodeRole } from '../../generated/crowbar.ts';

/**
 * What the NodeRole cache does not keep: a run's input (the merged data it started with, up to the
 * CRD's limit per noderole) and its log tail (up to 4 KiB). Nothing decides on them; a re-adopted
 * run reads its input with a GET, and the executors read a run's report with a GET. The input's
 * digest stays (status.run.inputDigest).
 */
export function thinNodeRole(o: NodeRole): void {
  const run = o.status?.run;
  if (!run) return;
  delete run.input;
  delete run.logTail;
}
