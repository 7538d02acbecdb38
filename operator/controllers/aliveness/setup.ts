/**
 * Everything that reaches nodes, wired for operator/main.ts: root's SSH key (a Secret or, in the
 * lab, a file), the `script` jig registered in the JigRegistry, the aliveness controller, the
 * per-node API tokens and the node self-report API.
 */
import { readFileSync } from 'node:fs';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { startNodeApi, type ExtraRoute, type NodeApi } from '../../api/server.ts';
import { NodeTokens } from '../../api/tokens.ts';
import type { OperatorConfig } from '../../config.ts';
import type { JigRegistry } from '../../jigs/registry.ts';
import {
  fileKeySource,
  noKeySource,
  operatorScriptJig,
  parseSecretRef,
  secretKeySource,
  type SshKeySource,
} from '../../jigs/script/wiring.ts';
import type { Logger } from '../../log.ts';
import type { Manager } from '../../manager.ts';
import { FlapDamper } from './damping.ts';
import { alivenessController } from './reconciler.ts';

export interface NodeAccess {
  key: SshKeySource;
  /** Stops the node API. */
  stop(): Promise<void>;
}

export async function setupNodeAccess(o: {
  kc: KubeConfig;
  mgr: Manager;
  config: OperatorConfig;
  jigs: JigRegistry;
  fieldManager: string;
  log: Logger;
  /** More routes on the node API server (the provisioner API), made once tokens and key exist. */
  routes?: (ctx: { core: CoreV1Api; tokens: NodeTokens; key: SshKeySource }) => ExtraRoute[];
}): Promise<NodeAccess> {
  const { mgr, config, log } = o;
  const core = o.kc.makeApiClient(CoreV1Api);
  const key = config.sshKeySecret
    ? secretKeySource(core, parseSecretRef(config.sshKeySecret, config.leaseNamespace))
    : config.sshKeyFile
      ? fileKeySource(config.sshKeyFile)
      : noKeySource;
  // Read at start to say early what is wrong; runs and checks keep failing clearly until fixed.
  await key.get().then(
    () => {
      log.info({ source: key.description }, 'SSH key loaded');
    },
    (err: unknown) => {
      log.error({ source: key.description, why: (err as Error).message }, 'no usable SSH key');
    },
  );
  o.jigs.register(
    operatorScriptJig({
      core,
      secretNamespace: config.leaseNamespace,
      client: mgr.client,
      key,
      network: (n) => mgr.caches.Network.get(n),
      fieldManager: o.fieldManager,
      log,
    }),
  );
  // One damper for both ways a node's aliveness changes: the checks and the node's own reports.
  const damper = new FlapDamper();
  mgr.add(
    alivenessController({
      mgr,
      key,
      damper,
      fieldManager: o.fieldManager,
      log,
      intervalMs: config.aliveIntervalMs,
    }),
  );
  const tokens = new NodeTokens(core, config.leaseNamespace, log);
  mgr.add(tokens.controller(mgr));
  let api: NodeApi | undefined;
  try {
    api = await startNodeApi({
      host: config.apiHost,
      port: config.apiPort,
      client: mgr.client,
      getNode: async (name) =>
        mgr.caches.Node.hasSynced ? mgr.caches.Node.get(name) : mgr.client.get('Node', name),
      verify: (fqdn, token) => tokens.verify(fqdn, token),
      renew: (fqdn) => tokens.current(fqdn),
      damper,
      fieldManager: o.fieldManager,
      log,
      routes: o.routes?.({ core, tokens, key }) ?? [],
      tls:
        config.apiTlsCert !== undefined && config.apiTlsKey !== undefined
          ? { cert: readFileSync(config.apiTlsCert), key: readFileSync(config.apiTlsKey) }
          : undefined,
    });
    log.info({ host: config.apiHost, port: api.port }, 'node API listening');
  } catch (err) {
    // Not fatal: the annealer and aliveness work without it; nodes cannot self-report.
    log.error(
      { err, host: config.apiHost, port: config.apiPort },
      'node API cannot listen; nodes cannot report themselves (fix --api-addr)',
    );
  }
  return { key, stop: async () => api?.close() };
}
