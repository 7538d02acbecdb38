/** Shared pieces of the power driver tests: a PowerService on the real API server, a log sink. */
import { CoreV1Api } from '@kubernetes/client-node';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import type { Node } from '../../generated/crowbar.ts';
import { EventRecorder } from '../../operator/events.ts';
import type { CrowbarClient } from '../../operator/kube/client.ts';
import { PowerService } from '../../operator/power/controller.ts';

export const POWER_NS = 'default';

export interface PowerRig {
  service: PowerService;
  core: CoreV1Api;
  /** Every log line the service wrote (debug level and up). */
  logs: string[];
  registry: Registry;
  createSecret(name: string, data: Record<string, string>): Promise<void>;
  deleteSecret(name: string): Promise<void>;
  createNode(name: string, power: NonNullable<Node['spec']['power']>): Promise<Node>;
  /** Events on the Node: reason and message, oldest first. */
  events(node: string): Promise<{ reason: string; type: string; message: string }[]>;
}

export function powerRig(
  client: CrowbarClient,
  extra: Partial<ConstructorParameters<typeof PowerService>[0]> = {},
): PowerRig {
  const core = client.kc.makeApiClient(CoreV1Api);
  const logs: string[] = [];
  const log = pino(
    { level: 'debug' },
    {
      write: (s: string) => {
        logs.push(s);
      },
    },
  );
  const registry = new Registry();
  const recorder = new EventRecorder(client.kc, registry, log, {
    namespace: POWER_NS,
    component: 'crowbar-operator',
  });
  const service = new PowerService({
    core,
    recorder,
    log,
    registry,
    namespace: POWER_NS,
    ...extra,
  });
  return {
    service,
    core,
    logs,
    registry,
    createSecret: async (name, data) => {
      await core.createNamespacedSecret({
        namespace: POWER_NS,
        body: { metadata: { name }, stringData: data },
      });
    },
    deleteSecret: async (name) => {
      await core.deleteNamespacedSecret({ name, namespace: POWER_NS }).catch(() => undefined);
    },
    createNode: async (name, power) =>
      client.create('Node', { metadata: { name }, spec: { power } }, 'power-test'),
    events: async (node) => {
      const l = await core.listNamespacedEvent({
        namespace: POWER_NS,
        fieldSelector: `involvedObject.name=${node}`,
      });
      return l.items
        .sort((a, b) =>
          String(a.metadata.creationTimestamp).localeCompare(String(b.metadata.creationTimestamp)),
        )
        .map((e) => ({ reason: e.reason ?? '', type: e.type ?? '', message: e.message ?? '' }));
    },
  };
}
