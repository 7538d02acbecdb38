/**
 * Deletion without orphans (§1.4, §10.3), with finalizers so the API keeps an object until what
 * depends on it is gone:
 *
 * - A NodeRole that is a parent carries `crowbar.dev/children-first` (the binder adds it when it
 *   creates the noderole or makes it a parent). Deleted, its children are deleted first; each
 *   waits for its own children, so they go in cohort-descending order. A run in flight on it is
 *   cancelled by the annealer; the finalizer goes once that run has ended.
 * - A Node carries `crowbar.dev/node-cleanup` (added with the auto-bound mark). Deleted, its
 *   noderoles are deleted (children first, on any node) and its addresses released; then it goes.
 *   The admission webhook refuses to delete the last admin node.
 * - A noderole whose parent is gone anyway (a finalizer removed by hand, objects written around
 *   the binder) is deleted, once a fresh read confirms the parent is missing: nothing in the API
 *   is left pointing at a missing object.
 */
import type { NodeRole } from '../../../generated/crowbar.ts';
import { apiMessage, isConflict, isNotFound } from '../../kube/errors.ts';
import type { Logger } from '../../log.ts';
import type { Controller, Manager } from '../../manager.ts';
import type { Recorder } from '../../events.ts';
import type { Annealer } from '../annealer/annealer.ts';

export const CHILDREN_FIRST = 'crowbar.dev/children-first';
export const NODE_CLEANUP = 'crowbar.dev/node-cleanup';
/** How soon a deletion waiting on its dependents looks again (their events also wake it). */
const WAIT_MS = 500;

type Kind = 'NodeRole' | 'Node';

export class Deletion {
  private readonly mgr: Manager;
  private readonly annealer: Annealer;
  private readonly recorder: Recorder;
  private readonly fieldManager: string;
  private readonly log: Logger;

  constructor(o: {
    mgr: Manager;
    annealer: Annealer;
    recorder: Recorder;
    fieldManager: string;
    log: Logger;
  }) {
    this.mgr = o.mgr;
    this.annealer = o.annealer;
    this.recorder = o.recorder;
    this.fieldManager = o.fieldManager;
    this.log = o.log.child({ controller: 'deletion' });
    // A parent that went away without its children first: look at each child (see orphan).
    o.mgr.caches.NodeRole.on({
      onDelete: (nr) => {
        for (const child of this.annealer.view.childrenIndex().get(nr.metadata.name ?? '') ?? [])
          o.mgr.enqueue('deletion', `orphan/${child}`);
      },
    });
  }

  controller(): Controller {
    return {
      name: 'deletion',
      coalesceMs: 50,
      watches: {
        // A noderole's own deletion, a deleting parent waiting for it, a deleting node waiting
        // for it, and a child whose parent may be gone.
        NodeRole: (nr) => {
          const keys: string[] = [];
          const name = nr.metadata.name ?? '';
          if (nr.metadata.deletionTimestamp) keys.push(`nr/${name}`);
          for (const p of nr.status?.parents ?? []) keys.push(`nr/${p}`);
          keys.push(`node/${nr.spec.node}`);
          return keys;
        },
        Node: (n) => (n.metadata.deletionTimestamp ? [`node/${n.metadata.name ?? ''}`] : []),
        NetworkAllocation: (a) => [`node/${a.spec.node}`],
      },
      reconcile: async (key) => {
        const slash = key.indexOf('/');
        const kind = key.slice(0, slash);
        const name = key.slice(slash + 1);
        if (kind === 'nr') return this.noderole(name);
        if (kind === 'node') return this.node(name);
        if (kind === 'orphan') return this.orphan(name);
        return undefined;
      },
    };
  }

  private async noderole(name: string): Promise<{ requeueAfterMs: number } | undefined> {
    const nr = this.annealer.view.get(name);
    if (!nr?.metadata.deletionTimestamp || !nr.metadata.finalizers?.includes(CHILDREN_FIRST))
      return undefined;
    const children = this.annealer.view.childrenIndex().get(name) ?? [];
    const left = await this.deleteAll(children, `its parent ${name} is being deleted`);
    if (left > 0 || this.annealer.running.has(name)) return { requeueAfterMs: WAIT_MS };
    await this.dropFinalizer('NodeRole', name, CHILDREN_FIRST);
    return undefined;
  }

  private async node(name: string): Promise<{ requeueAfterMs: number } | undefined> {
    const node = this.mgr.caches.Node.get(name);
    if (!node?.metadata.deletionTimestamp || !node.metadata.finalizers?.includes(NODE_CLEANUP))
      return undefined;
    const mine = [...this.annealer.view.names('node', name)];
    const left = await this.deleteAll(mine, `its node ${name} is being deleted`);
    const addresses = this.mgr.caches.NetworkAllocation.list().filter(
      (a) => a.spec.node === name,
    ).length;
    if (left > 0 || addresses > 0) return { requeueAfterMs: WAIT_MS };
    await this.dropFinalizer('Node', name, NODE_CLEANUP);
    this.log.info(
      { node: name },
      'node deleted: its noderoles are gone and its addresses released',
    );
    return undefined;
  }

  /** Deletes a noderole whose parent no longer exists (confirmed by a fresh read). */
  private async orphan(name: string): Promise<undefined> {
    const nr = this.annealer.view.get(name);
    if (!nr || nr.metadata.deletionTimestamp) return undefined;
    for (const p of nr.status?.parents ?? []) {
      if (this.annealer.view.get(p)) continue;
      if (await this.mgr.client.get('NodeRole', p)) continue;
      this.recorder.warning(
        { kind: 'NodeRole', name, uid: nr.metadata.uid },
        'ParentGone',
        `parent ${p} no longer exists; deleting this noderole, which depended on it`,
      );
      await this.deleteAll([name], `its parent ${p} no longer exists`);
      return undefined;
    }
    return undefined;
  }

  /** Deletes those not already going; returns how many still exist. */
  private async deleteAll(names: readonly string[], why: string): Promise<number> {
    let left = 0;
    for (const n of names) {
      const cur: Readonly<NodeRole> | undefined = this.annealer.view.get(n);
      if (!cur) continue;
      left++;
      if (cur.metadata.deletionTimestamp) continue;
      try {
        await this.mgr.client.delete('NodeRole', n);
        this.log.info({ noderole: n, why }, 'deleting noderole');
      } catch (e) {
        // The webhook may refuse it (its children are active on other nodes): say so and retry.
        this.log.warn({ noderole: n, err: apiMessage(e) }, 'could not delete noderole');
        if (!isNotFound(e))
          this.recorder.warning(
            { kind: 'NodeRole', name: n, uid: cur.metadata.uid },
            'DeleteRefused',
            `could not delete it although ${why}: ${apiMessage(e)}`,
          );
      }
    }
    return left;
  }

  private async dropFinalizer(kind: Kind, name: string, finalizer: string): Promise<void> {
    for (let attempt = 0; attempt < 8; attempt++) {
      const cur = await this.mgr.client.get(kind, name);
      const finalizers = cur?.metadata.finalizers ?? [];
      if (!cur || !finalizers.includes(finalizer)) return;
      try {
        await this.mgr.client.mergePatch(
          kind,
          name,
          {
            metadata: {
              resourceVersion: cur.metadata.resourceVersion,
              finalizers: finalizers.filter((f) => f !== finalizer),
            },
          },
          this.fieldManager,
        );
        return;
      } catch (e) {
        if (isNotFound(e)) return;
        if (!isConflict(e)) throw e;
      }
    }
    throw new Error(
      `could not remove finalizer ${finalizer} from ${kind} ${name}: kept conflicting`,
    );
  }
}

/** `finalizers` with `f` added, or undefined when it is already there. */
export function withFinalizer(
  finalizers: readonly string[] | undefined,
  f: string,
): string[] | undefined {
  return finalizers?.includes(f) ? undefined : [...(finalizers ?? []), f];
}
