/** Writes an aliveness verdict to a Node's status, shared by the controller and the node API. */
import type { Node } from '../../../generated/crowbar.ts';
import type { CrowbarClient } from '../../kube/client.ts';
import { apiMessage, isConflict, isNotFound } from '../../kube/errors.ts';
import type { DampingRecord } from './damping.ts';
import { statusPatch, type Verdict } from './plan.ts';

/**
 * Merge-patches status.alive, aliveChecked and the Alive condition when the verdict changes them
 * (see statusPatch), conditional on the resourceVersion it was computed from; on a conflict it
 * re-reads the Node and tries again. Returns whether status.alive changed. A deleted Node is done.
 */
export async function writeVerdict(
  client: CrowbarClient,
  node: Readonly<Node>,
  v: Verdict,
  fieldManager: string,
  refreshMs: number,
  damping?: DampingRecord,
): Promise<boolean> {
  let cur: Readonly<Node> | undefined = node;
  for (let attempt = 0; attempt < 4 && cur; attempt++) {
    const patch = statusPatch(cur, v, new Date(), refreshMs, damping);
    if (!patch) return false;
    const name: string = cur.metadata.name ?? '';
    try {
      await client.mergePatchStatus(
        'Node',
        name,
        { metadata: { resourceVersion: cur.metadata.resourceVersion }, status: patch },
        fieldManager,
      );
      return patch['alive'] !== undefined && patch['alive'] !== cur.status?.alive;
    } catch (e) {
      if (isNotFound(e)) return false;
      if (!isConflict(e)) {
        throw new Error(`cannot write the aliveness of node ${name}: ${apiMessage(e)}`, {
          cause: e,
        });
      }
      cur = await client.get('Node', name);
    }
  }
  if (!cur) return false;
  throw new Error(`cannot write the aliveness of node ${node.metadata.name ?? ''}: conflicts`);
}
