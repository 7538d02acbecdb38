/**
 * The Network controller (CROWBAR-MODEL §7.2, §7.5): gives each Network its role `network-<name>`,
 * resolves its IPv6 /64 (a literal, or `auto` from the cluster's RFC 4193 global ID and a subnet
 * ID claimed once for the network), and reports allocations, usage and validity in its status.
 */
import { randomBytes as cryptoRandomBytes } from 'node:crypto';
import type { Network } from '../../../generated/crowbar.ts';
import type { Recorder } from '../../events.ts';
import type { NetworkView } from '../../ipam/index.ts';
import { rangeUsage, resolvedV6Prefix } from '../../ipam/index.ts';
import { apiMessage, isConflict, isNotFound } from '../../kube/errors.ts';
import type { Logger } from '../../log.ts';
import type { Controller, Manager } from '../../manager.ts';
import { SYSTEM_DEPLOYMENT } from '../deployment/system.ts';
import type { Ledger } from './ledger.ts';
import {
  needsUla,
  networkOfRole,
  networkProblems,
  networkRoleName,
  networkRoleSpec,
  networkStatus,
  planUlaClaim,
  planUlaRelease,
  readUlaClaims,
  sameNetworkStatus,
} from './plan.ts';

/** Status writes that change only counts are spaced by this much (allocation bursts). */
const COUNT_WRITE_SPACING_MS = 1000;

export interface NetworkControllerOptions {
  mgr: Manager;
  ledger: Ledger;
  recorder: Recorder;
  fieldManager: string;
  log: Logger;
  /** Source of the global ID's random bytes; node:crypto's CSPRNG by default. */
  randomBytes?: (n: number) => Uint8Array;
}

export class NetworkController {
  private readonly o: NetworkControllerOptions;
  private readonly log: Logger;
  private readonly random: (n: number) => Uint8Array;
  private readonly lastCountWrite = new Map<string, number>();

  constructor(o: NetworkControllerOptions) {
    this.o = o;
    this.log = o.log.child({ controller: 'network' });
    this.random = o.randomBytes ?? ((n) => cryptoRandomBytes(n));
  }

  /** The /64 a network's addresses use right now: literal, or `auto` as recorded in its status. */
  static view(n: Readonly<Network>): NetworkView {
    return { name: n.metadata.name ?? '', spec: n.spec, v6prefix: n.status?.v6prefix };
  }

  controller(): Controller {
    const { mgr } = this.o;
    const all = (): string[] => mgr.caches.Network.list().map((n) => n.metadata.name ?? '');
    return {
      name: 'network',
      workers: 2,
      // A reconcile reads every allocation of the network (counts, usage, the ranges holding
      // them): while addresses are handed out by the hundred, one a second, not one each.
      coalesceMsByKind: { NetworkAllocation: COUNT_WRITE_SPACING_MS },
      watches: {
        // Group overlaps compare networks with each other: every network is re-derived.
        Network: (n) => [...new Set([n.metadata.name ?? '', ...all()])],
        NetworkAllocation: (a) => [a.spec.network],
        Role: (r) => {
          const net = networkOfRole(r.metadata.name ?? '');
          return net !== undefined && mgr.caches.Network.get(net) ? [net] : [];
        },
        Deployment: (d) => (d.metadata.name === SYSTEM_DEPLOYMENT ? all() : []),
      },
      reconcile: (name) => this.reconcile(name),
    };
  }

  private async reconcile(name: string): Promise<{ requeueAfterMs: number } | undefined> {
    const { mgr } = this.o;
    const net = mgr.caches.Network.get(name);
    if (!net) {
      await this.releaseClaim(name);
      this.lastCountWrite.delete(name);
      return undefined;
    }
    if (net.metadata.deletionTimestamp) return undefined;
    await this.ensureRole(net);

    let v6prefix: string | undefined;
    let subnetId: number | undefined;
    if (needsUla(net.spec)) {
      const claim = await this.claim(net);
      if (!claim) return { requeueAfterMs: 500 }; // the system deployment is not there yet
      v6prefix = claim.prefix;
      subnetId = claim.subnetId;
    } else {
      v6prefix = resolvedV6Prefix(net.spec);
    }
    const view: NetworkView = { name, spec: net.spec, v6prefix };
    const others = mgr.caches.Network.list()
      .filter((n) => n.metadata.name !== name)
      .map((n) => NetworkController.view(n));
    const allocations = this.o.ledger.allocations(name);
    const problems = networkProblems(view, others, allocations);
    const next = networkStatus({
      network: net,
      v6prefix,
      subnetId,
      allocated: allocations.length,
      usage: rangeUsage(view, this.o.ledger.sorted(name)),
      problems,
      now: new Date(),
    });
    if (sameNetworkStatus(net.status, next)) return undefined;

    // While addresses are handed out by the hundred, write counts at most once a second.
    const cur = net.status;
    const countsOnly =
      cur !== undefined &&
      sameNetworkStatus({ ...cur, allocated: 0, usage: [] }, { ...next, allocated: 0, usage: [] });
    const since = Date.now() - (this.lastCountWrite.get(name) ?? 0);
    if (countsOnly && since < COUNT_WRITE_SPACING_MS)
      return { requeueAfterMs: COUNT_WRITE_SPACING_MS - since };

    const wasValid = cur?.conditions?.find((c) => c.type === 'Valid')?.status;
    const valid = next.conditions?.[0];
    await mgr.client.mergePatchStatus(
      'Network',
      name,
      {
        status: {
          ...next,
          // Merge patch: null removes what no longer applies.
          v6prefix: next.v6prefix ?? null,
          subnetId: next.subnetId ?? null,
        },
      },
      this.o.fieldManager,
    );
    this.lastCountWrite.set(name, Date.now());
    if (valid && valid.status !== wasValid) {
      const target = { kind: 'Network', name, uid: net.metadata.uid };
      if (valid.status === 'False') this.o.recorder.warning(target, 'Invalid', valid.message);
      else if (wasValid === 'False') this.o.recorder.normal(target, 'Valid', valid.message);
    }
    return undefined;
  }

  /** §7.2: the role `network-<name>`, created once; the Network owns it (deleting one drops both). */
  private async ensureRole(net: Readonly<Network>): Promise<void> {
    const { mgr } = this.o;
    const name = net.metadata.name ?? '';
    const roleName = networkRoleName(name);
    if (mgr.caches.Role.get(roleName)) return;
    try {
      await mgr.client.create(
        'Role',
        {
          metadata: {
            name: roleName,
            ownerReferences: [
              {
                apiVersion: net.apiVersion,
                kind: 'Network',
                name,
                uid: net.metadata.uid ?? '',
              },
            ],
          },
          spec: networkRoleSpec(net),
        },
        this.o.fieldManager,
      );
      this.log.info({ network: name, role: roleName }, 'created network role');
    } catch (e) {
      if (isConflict(e)) return; // another replica, or a person, made it first
      throw new Error(`could not create role ${roleName}: ${apiMessage(e)}`, { cause: e });
    }
  }

  /**
   * The network's `auto` /64, claiming its subnet ID (and the cluster's global ID, the first
   * time) in the system Deployment's annotations. Read from the cache when the claim is there;
   * otherwise written with the Deployment's resourceVersion as precondition and retried on 409,
   * so replicas agree on one global ID and never give one subnet ID to two networks.
   */
  private async claim(
    net: Readonly<Network>,
  ): Promise<{ prefix: string; subnetId: number } | undefined> {
    const { mgr } = this.o;
    const name = net.metadata.name ?? '';
    const cached = mgr.caches.Deployment.get(SYSTEM_DEPLOYMENT);
    if (cached) {
      const plan = planUlaClaim(
        readUlaClaims(cached.metadata.annotations),
        name,
        net.status?.v6prefix,
        this.random,
      );
      if (plan.write === undefined) return plan;
    }
    for (let attempt = 0; attempt < 16; attempt++) {
      const d = await mgr.client.get('Deployment', SYSTEM_DEPLOYMENT);
      if (!d) return undefined;
      const plan = planUlaClaim(
        readUlaClaims(d.metadata.annotations),
        name,
        net.status?.v6prefix,
        this.random,
      );
      if (plan.write === undefined) return plan;
      try {
        await mgr.client.mergePatch(
          'Deployment',
          SYSTEM_DEPLOYMENT,
          { metadata: { resourceVersion: d.metadata.resourceVersion, annotations: plan.write } },
          this.o.fieldManager,
        );
        this.log.info(
          { network: name, subnetId: plan.subnetId, prefix: plan.prefix },
          'claimed an RFC 4193 subnet ID',
        );
        return plan;
      } catch (e) {
        if (!isConflict(e)) throw e;
      }
    }
    throw new Error(
      `could not claim a subnet ID for network ${name}: the system deployment keeps changing`,
    );
  }

  /** Frees a deleted network's subnet ID, after checking with the API server that it is gone. */
  private async releaseClaim(name: string): Promise<void> {
    const { mgr } = this.o;
    const cached = mgr.caches.Deployment.get(SYSTEM_DEPLOYMENT);
    if (!cached || planUlaRelease(readUlaClaims(cached.metadata.annotations), name) === undefined)
      return;
    for (let attempt = 0; attempt < 16; attempt++) {
      // The precondition below orders this read before any claim the network could make.
      const d = await mgr.client.get('Deployment', SYSTEM_DEPLOYMENT);
      if (!d) return;
      const write = planUlaRelease(readUlaClaims(d.metadata.annotations), name);
      if (write === undefined) return;
      if (await mgr.client.get('Network', name)) return;
      try {
        await mgr.client.mergePatch(
          'Deployment',
          SYSTEM_DEPLOYMENT,
          { metadata: { resourceVersion: d.metadata.resourceVersion, annotations: write } },
          this.o.fieldManager,
        );
        return;
      } catch (e) {
        if (isNotFound(e)) return;
        if (!isConflict(e)) throw e;
      }
    }
  }
}
