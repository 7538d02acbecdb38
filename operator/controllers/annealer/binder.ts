/**
 * Binding (§6.1) as a controller. A NodeRole that people (or the CLI) create names a role, a node
 * and a deployment; until the operator has planned it, it has no status.cohort. The binder plans
 * it over the bound world, creates the parent noderoles it needs (create-if-absent by their
 * deterministic names), records parents and cohort, and hands it to the annealer as proposed.
 * It also binds bootstrap roles to new admin nodes and discovery roles to new other nodes (§6.3).
 */
import type { Node, NodeRole, Role } from '../../../generated/crowbar.ts';
import { applyBindPlan } from '../../annealer/apply.ts';
import { autoBindRoles, planBind, type BindPlan } from '../../annealer/binding.ts';
import {
  proposedBecause,
  type NodeRoleView as NodeRoleViewT,
  type World,
} from '../../annealer/world.ts';
import type { Recorder } from '../../events.ts';
import { setConditions } from '../../kube/condition.ts';
import { apiMessage, isConflict } from '../../kube/errors.ts';
import type { Logger } from '../../log.ts';
import type { Controller, Manager } from '../../manager.ts';
import type { Annealer } from './annealer.ts';
import { CHILDREN_FIRST, NODE_CLEANUP, withFinalizer } from '../deletion/deletion.ts';
import { isBound } from './view.ts';

const AUTOBIND = 'crowbar.dev/auto-bound';

/** An etcd revision as a number, or undefined when it is not one. */
function revision(rv: string | undefined): bigint | undefined {
  if (rv === undefined || !/^[0-9]+$/.test(rv)) return undefined;
  return BigInt(rv);
}

export class Binder {
  private readonly mgr: Manager;
  private readonly annealer: Annealer;
  private readonly recorder: Recorder;
  private readonly fieldManager: string;
  private readonly log: Logger;
  /** The last consistent read of Roles and Nodes, and the revision it is at least as new as. */
  private lastRead: { rv: bigint; roles: readonly Role[]; nodes: readonly Node[] } | undefined;

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
    this.log = o.log.child({ controller: 'binder' });
  }

  controller(): Controller {
    const unbound = (): string[] =>
      this.annealer.view
        .list()
        .filter((nr) => !isBound(nr))
        .map((nr) => `nr/${nr.metadata.name ?? ''}`);
    return {
      name: 'binder',
      workers: 1, // plans see each other's results
      watches: {
        NodeRole: (nr) => (isBound(nr) ? [] : [`nr/${nr.metadata.name ?? ''}`]),
        // A role created later may resolve a refused binding's requires (§1.3: late binding).
        Role: unbound,
        Node: (n) => (n.metadata.annotations?.[AUTOBIND] ? [] : [`node/${n.metadata.name ?? ''}`]),
      },
      reconcile: async (key) => {
        if (key.startsWith('nr/')) await this.bindNodeRole(key.slice(3));
        else if (key.startsWith('node/')) return this.autoBind(key.slice(5));
        return undefined;
      },
    };
  }

  private boundWorld(): World {
    return this.annealer.world();
  }

  private async bindNodeRole(name: string): Promise<void> {
    const nr = this.annealer.view.get(name);
    if (!nr || isBound(nr)) return;
    const plan = planBind(this.boundWorld(), {
      role: nr.spec.role,
      node: nr.spec.node,
      deployment: nr.spec.deployment,
    });
    if (!plan.ok) {
      if (nr.status?.message !== plan.reason) {
        await this.writeStatus(nr, {
          message: plan.reason,
          conditions: setConditions(
            nr.status?.conditions,
            [{ type: 'Bound', status: 'False', reason: 'BindRefused', message: plan.reason }],
            new Date(),
            nr.metadata.generation,
          ),
        });
        this.recorder.warning(
          { kind: 'NodeRole', name, uid: nr.metadata.uid },
          'BindRefused',
          plan.reason,
        );
      }
      return;
    }
    await this.execute(plan);
  }

  /** Carries out a bind plan: parents first, so a child never points at a missing parent. */
  private async execute(plan: Extract<BindPlan, { ok: true }>): Promise<void> {
    // A parent is deleted only after its children (deletion.ts): mark every noderole this plan
    // makes a parent before its first child points at it.
    const parents = new Set([
      ...plan.create.flatMap((c) => c.parents),
      ...plan.addParents.flatMap((u) => u.parents),
    ]);
    const creating = new Set(plan.create.map((c) => c.name));
    for (const p of parents) if (!creating.has(p)) await this.protect(p);
    for (const c of plan.create) await this.materialize(c);
    for (const u of plan.addParents) {
      const cur = this.annealer.view.get(u.name);
      if (cur) await this.writeStatus(cur, { parents: [...u.parents], cohort: u.cohort });
    }
    for (const r of plan.recohort) {
      const cur = this.annealer.view.get(r.name);
      if (cur) await this.writeStatus(cur, { cohort: r.cohort });
    }
    this.mgr.enqueue('annealer', 'anneal');
  }

  /** Adds the children-first finalizer to an existing noderole that lacks it. */
  private async protect(name: string): Promise<void> {
    const cur = this.annealer.view.get(name);
    const finalizers = cur && withFinalizer(cur.metadata.finalizers, CHILDREN_FIRST);
    if (!cur || !finalizers || cur.metadata.deletionTimestamp) return;
    try {
      const res = await this.mgr.client.mergePatch(
        'NodeRole',
        name,
        { metadata: { resourceVersion: cur.metadata.resourceVersion, finalizers } },
        this.fieldManager,
      );
      this.annealer.view.wrote(res);
    } catch (e) {
      if (isConflict(e))
        throw new Error(`noderole ${name} changed while binding; retrying`, { cause: e });
      throw e;
    }
  }

  private async materialize(c: NodeRoleViewT): Promise<void> {
    let cur = this.annealer.view.get(c.name);
    if (!cur) {
      try {
        cur = await this.mgr.client.create(
          'NodeRole',
          {
            metadata: { name: c.name, finalizers: [CHILDREN_FIRST] },
            spec: { node: c.node, role: c.role, deployment: c.deployment },
          },
          this.fieldManager,
        );
        this.annealer.view.wrote(cur);
      } catch (e) {
        if (!isConflict(e)) throw e;
        cur = await this.mgr.client.get('NodeRole', c.name);
        if (!cur) return;
      }
    }
    if (isBound(cur)) return;
    const res = await this.writeStatus(cur, {
      state: 'proposed',
      parents: [...c.parents],
      cohort: c.cohort,
      runCount: 0,
      message:
        proposedBecause(this.boundWorld(), c) ??
        (c.message || 'proposed: commit the deployment to run it'),
      conditions: setConditions(
        cur.status?.conditions,
        [
          {
            type: 'Bound',
            status: 'True',
            reason: 'Bound',
            message: `bound with ${c.parents.length} parent(s)`,
          },
        ],
        new Date(),
        cur.metadata.generation,
      ),
    });
    if (res)
      this.recorder.normal(
        { kind: 'NodeRole', name: c.name, uid: res.metadata.uid },
        'Bound',
        `bound ${c.role} to ${c.node} in ${c.deployment} (cohort ${c.cohort})`,
      );
  }

  private async writeStatus(
    cur: Readonly<NodeRole>,
    status: Record<string, unknown>,
  ): Promise<NodeRole | undefined> {
    const name = cur.metadata.name ?? '';
    try {
      const res = await this.mgr.client.mergePatchStatus(
        'NodeRole',
        name,
        { metadata: { resourceVersion: cur.metadata.resourceVersion }, status },
        this.fieldManager,
      );
      this.annealer.view.wrote(res);
      return res;
    } catch (e) {
      if (isConflict(e))
        throw new Error(`noderole ${name} changed while binding; retrying`, { cause: e });
      throw new Error(`could not write the binding of ${name}: ${apiMessage(e)}`, { cause: e });
    }
  }

  /**
   * Roles and Nodes as the API server has them at or after `rv` (the new Node's version): one
   * consistent list serves every node created before it, so a burst of new nodes costs one list,
   * not one per node. etcd revisions order every write; client-go's consistent reads rely on the
   * same ordering.
   */
  private async readSince(
    rv: string | undefined,
  ): Promise<{ roles: readonly Role[]; nodes: readonly Node[] }> {
    const need = revision(rv);
    const last = this.lastRead;
    if (last && need !== undefined && need <= last.rv) return last;
    const [roles, nodes] = await Promise.all([
      this.mgr.client.listAt('Role'),
      this.mgr.client.listAt('Node'),
    ]);
    // Both lists are at least as new as the older of their two versions.
    const a = revision(roles.resourceVersion) ?? 0n;
    const b = revision(nodes.resourceVersion) ?? 0n;
    const at = a < b ? a : b;
    const read = { rv: at, roles: roles.items, nodes: nodes.items };
    this.lastRead = read;
    return read;
  }

  /** §6.3: bootstrap roles on new admin nodes, discovery roles on new other nodes; once per node. */
  private async autoBind(node: string): Promise<{ requeueAfterMs: number } | undefined> {
    const n = this.mgr.caches.Node.get(node);
    if (!n || n.metadata.annotations?.[AUTOBIND]) return undefined;
    // Informers of different kinds arrive in any order: a Node can be seen before the Roles and
    // admin Nodes created before it. A list from the API server is a consistent read that holds
    // everything created before this Node, so binding waits until the caches hold as much.
    const { roles, nodes } = await this.readSince(n.metadata.resourceVersion);
    const lagging = roles.find((r) => !this.annealer.world().roles.has(r.metadata.name ?? ''));
    if (lagging) {
      this.log.debug({ node, role: lagging.metadata.name }, 'waiting for the role cache');
      return { requeueAfterMs: 100 };
    }
    // Admin nodes bootstrap first, so the services other nodes need are bound there (§10.5).
    // Which admin nodes exist comes from the consistent read; whether each is done, from the
    // cache (the read may be older than the mark).
    const adminPending = nodes.some(
      (x) =>
        x.spec.admin &&
        x.metadata.name !== node &&
        !this.mgr.caches.Node.get(x.metadata.name ?? '')?.metadata.annotations?.[AUTOBIND],
    );
    if (!n.spec.admin && adminPending) return { requeueAfterMs: 200 };
    let world = this.boundWorld();
    for (const req of autoBindRoles(world, node)) {
      const plan = planBind(world, req);
      if (!plan.ok) {
        this.recorder.warning(
          { kind: 'Node', name: node, uid: n.metadata.uid },
          'BindRefused',
          plan.reason,
        );
        this.log.warn({ node, role: req.role, reason: plan.reason }, 'automatic binding refused');
        continue;
      }
      await this.execute(plan);
      world = applyBindPlan(world, plan);
    }
    // The node-cleanup finalizer rides with the mark: deleting the Node then removes its
    // noderoles and addresses first (deletion.ts).
    const fresh = this.mgr.caches.Node.get(node) ?? n;
    const finalizers = withFinalizer(fresh.metadata.finalizers, NODE_CLEANUP);
    await this.mgr.client.mergePatch(
      'Node',
      node,
      {
        metadata: {
          annotations: { [AUTOBIND]: 'true' },
          ...(finalizers && !fresh.metadata.deletionTimestamp
            ? { resourceVersion: fresh.metadata.resourceVersion, finalizers }
            : {}),
        },
      },
      this.fieldManager,
    );
    return undefined;
  }
}
