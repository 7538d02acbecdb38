/** Wires the provisioner API into the node API server (operator/main.ts calls this). */
import type { CoreV1Api } from '@kubernetes/client-node';
import type { Node } from '../../generated/crowbar.ts';
import type { ExtraRoute } from '../api/server.ts';
import type { NodeTokens } from '../api/tokens.ts';
import type { OperatorConfig } from '../config.ts';
import type { Recorder } from '../events.ts';
import type { SshKeySource } from '../jigs/script/wiring.ts';
import type { Logger } from '../log.ts';
import type { JigRegistry } from '../jigs/registry.ts';
import type { Controller, Manager } from '../manager.ts';
import { ensureBuiltins } from './builtins.ts';
import { OS_INSTALL_ROLE, osInstallJig } from './os-install.ts';
import { provisionerRoutes, publicKeyLine } from './api.ts';
import { PurposeTokens } from './tokens.ts';
import type { PowerDriverFor } from '../power/controller.ts';
import { powerRebooter } from './power-rebooter.ts';

export function provisionerApi(o: {
  mgr: Manager;
  config: OperatorConfig;
  recorder: Recorder;
  fieldManager: string;
  log: Logger;
}): (ctx: { core: CoreV1Api; tokens: NodeTokens; key: SshKeySource }) => ExtraRoute[] {
  const nodes = o.mgr.caches.Node;
  // Waiters of the network endpoint's long poll, woken by the informer's events for their Node.
  const waiters = new Map<string, Set<() => void>>();
  const wake = (n: Readonly<Node>): void => {
    for (const w of waiters.get(n.metadata.name ?? '') ?? []) w();
  };
  nodes.on({ onAdd: wake, onUpdate: wake });
  const waitForNode = (
    name: string,
    ready: (n: Readonly<Node>) => boolean,
    ms: number,
    signal: AbortSignal,
  ): Promise<Readonly<Node> | undefined> =>
    new Promise((resolve) => {
      if (signal.aborted) {
        resolve(undefined);
        return;
      }
      let set = waiters.get(name);
      if (!set) waiters.set(name, (set = new Set()));
      const s = set;
      const finish = (n: Readonly<Node> | undefined): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        s.delete(check);
        if (s.size === 0) waiters.delete(name);
        resolve(n);
      };
      const check = (): void => {
        const n = nodes.get(name);
        if (n && ready(n)) finish(n);
      };
      const onAbort = (): void => {
        finish(undefined);
      };
      const timer = setTimeout(onAbort, ms);
      signal.addEventListener('abort', onAbort, { once: true });
      s.add(check);
      check();
    });
  return ({ core, tokens, key }) => [
    provisionerRoutes({
      client: o.mgr.client,
      tokens: new PurposeTokens(core, o.config.leaseNamespace),
      ensureToken: (n) => tokens.ensure(n),
      verifyNodeToken: (fqdn, t) => tokens.verify(fqdn, t),
      getNode: async (name) =>
        o.mgr.caches.Node.hasSynced ? o.mgr.caches.Node.get(name) : o.mgr.client.get('Node', name),
      waitForNode,
      nodes: () => o.mgr.caches.Node.list(),
      network: (n) => o.mgr.caches.Network.get(n),
      provisionNetwork: o.config.provisionNetwork,
      domain: o.config.domain,
      discoveryBootEnv: o.config.discoveryBootEnv,
      bootEnv: (n) => o.mgr.client.get('BootEnv', n),
      provisionerUrl: o.config.provisionerUrl,
      sshPublicKey: async () => publicKeyLine(await key.get()),
      recorder: o.recorder,
      fieldManager: o.fieldManager,
      log: o.log,
    }),
  ];
}

/**
 * The os-install jig (restarts every Node through its power driver: `spec.power`, or the ssh
 * driver for a Node without one) and the leader's creation of the built-in Role and BootEnv.
 */
export function provisionerFlow(o: {
  mgr: Manager;
  config: OperatorConfig;
  recorder: Recorder;
  jigs: JigRegistry;
  fieldManager: string;
  log: Logger;
  /** A Node's power driver (PowerService.driverFor): the install flow's only restart. */
  power: PowerDriverFor;
}): Controller {
  o.jigs.register(
    osInstallJig({
      client: o.mgr.client,
      getNode: (n) => o.mgr.caches.Node.get(n),
      rebooter: powerRebooter(o.power),
      rebootEvidenceMs: o.config.installRebootEvidenceMs,
      recorder: o.recorder,
      fieldManager: o.fieldManager,
      log: o.log,
    }),
  );
  const ensure = async (): Promise<void> => {
    const made = await ensureBuiltins(o.mgr.client, o.fieldManager, o.config.provisionerUrl);
    if (made.length > 0) o.log.info({ made }, 'created the provisioner built-ins');
  };
  return {
    name: 'provisioner-builtins',
    workers: 1,
    watches: { Role: (r) => (r.metadata.name === OS_INSTALL_ROLE ? [OS_INSTALL_ROLE] : []) },
    onStartedLeading: ensure,
    reconcile: async () => {
      await ensure();
      return undefined;
    },
  };
}
