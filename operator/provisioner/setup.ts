/** Wires the provisioner API into the node API server (operator/main.ts calls this). */
import type { CoreV1Api } from '@kubernetes/client-node';
import type { ExtraRoute } from '../api/server.ts';
import type { NodeTokens } from '../api/tokens.ts';
import type { OperatorConfig } from '../config.ts';
import type { Recorder } from '../events.ts';
import type { SshKeySource } from '../jigs/script/wiring.ts';
import type { Logger } from '../log.ts';
import type { Manager } from '../manager.ts';
import { provisionerRoutes, publicKeyLine } from './api.ts';
import { PurposeTokens } from './tokens.ts';

export function provisionerApi(o: {
  mgr: Manager;
  config: OperatorConfig;
  recorder: Recorder;
  fieldManager: string;
  log: Logger;
}): (ctx: { core: CoreV1Api; tokens: NodeTokens; key: SshKeySource }) => ExtraRoute[] {
  return ({ core, tokens, key }) => [
    provisionerRoutes({
      client: o.mgr.client,
      tokens: new PurposeTokens(core, o.config.leaseNamespace),
      ensureToken: (n) => tokens.ensure(n),
      verifyNodeToken: (fqdn, t) => tokens.verify(fqdn, t),
      getNode: async (name) =>
        o.mgr.caches.Node.hasSynced ? o.mgr.caches.Node.get(name) : o.mgr.client.get('Node', name),
      nodes: () => o.mgr.caches.Node.list(),
      network: (n) => o.mgr.caches.Network.get(n),
      provisionNetwork: o.config.provisionNetwork,
      domain: o.config.domain,
      discoveryBootEnv: o.config.discoveryBootEnv,
      sshPublicKey: async () => publicKeyLine(await key.get()),
      recorder: o.recorder,
      fieldManager: o.fieldManager,
      log: o.log,
    }),
  ];
}
