/**
 * The lab's admission webhook, run as the Helm chart runs it (charts/crowbar/templates/webhook.yaml):
 * webhooks/main.ts as its own process, with a serving certificate from a CA of its own (the chart
 * generates one per release), registered with the lab's API server by the same
 * ValidatingWebhookConfiguration (webhooks/manifests.ts) at https://127.0.0.1:PORT/validate, with
 * failurePolicy Fail. So what a person tries in the lab is what a cluster would answer.
 */
import { readFileSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import {
  AdmissionregistrationV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
} from '@kubernetes/client-node';
import { GROUP, PLURALS, VERSION } from '../generated/crowbar.ts';
import { apiCode, apiMessage, isConflict } from '../operator/kube/errors.ts';
import { makeCa, issueLeaf } from '../test/harness/pki.ts';
import { freePort, startProcess, waitFor, type Started } from '../test/harness/process.ts';
import {
  validatingWebhookConfiguration,
  WEBHOOK_CONFIGURATION_NAME,
} from '../webhooks/manifests.ts';

const ROOT = join(import.meta.dirname, '..');
const FM = 'crowbar-lab';

export interface LabWebhook {
  /** Where the API server calls it: https://127.0.0.1:PORT/validate. */
  url: string;
  proc: Started;
  stop(): Promise<void>;
}

/** GET over TLS, trusting only `ca`; the status code, 0 when unreachable. */
function httpsStatus(port: number, path: string, ca: string): Promise<number> {
  return new Promise((resolve) => {
    const req = httpsGet({ host: '127.0.0.1', port, path, ca, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => {
      resolve(0);
    });
    // A stalled connection counts as unreachable (destroy emits 'error').
    req.on('timeout', () => {
      req.destroy();
    });
  });
}

/**
 * Starts the webhook with a fresh CA and serving certificate in `dir`, waits until it is ready,
 * registers it, and waits until the API server calls it (a refused dry run for the roles and for
 * the noderoles webhooks), so that no write of the lab gets past it.
 */
export async function startLabWebhook(opts: {
  kc: KubeConfig;
  kubeconfig: string;
  dir: string;
  log: string;
  pidFile: string;
}): Promise<LabWebhook> {
  const ca = makeCa(opts.dir, '/CN=crowbar-lab-webhook-ca');
  const leaf = issueLeaf(opts.dir, 'webhook', '/CN=localhost', true);
  const caPem = readFileSync(ca.crt, 'utf8');
  let started: { proc: Started; port: number } | undefined;
  for (let attempt = 1; started === undefined; attempt++) {
    // freePort is racy: a port taken meanwhile makes the webhook exit, and we try another.
    const port = await freePort();
    const proc = startProcess(
      process.execPath,
      [
        join(ROOT, 'webhooks', 'main.ts'),
        `--kubeconfig=${opts.kubeconfig}`,
        `--listen=127.0.0.1:${String(port)}`,
        `--tls-cert=${leaf.crt}`,
        `--tls-key=${leaf.key}`,
      ],
      opts.log,
      { pidFile: opts.pidFile },
    );
    try {
      await waitFor(
        `the webhook to be ready (see ${opts.log})`,
        async () => {
          if (proc.proc.exitCode !== null) throw new Error('the webhook exited');
          return (await httpsStatus(port, '/readyz', caPem)) === 200;
        },
        60_000,
        100,
      );
      started = { proc, port };
    } catch (e) {
      await proc.stop();
      if (attempt >= 3) throw e;
    }
  }
  const { proc, port } = started;
  const url = `https://127.0.0.1:${String(port)}/validate`;
  try {
    await register(opts.kc, url, caPem);
    await waitFor(
      'the API server to call the webhook (see .lab/webhook.log)',
      async () => (await refusesCycle(opts.kc)) && (await refusesUnknownRole(opts.kc)),
      30_000,
      200,
    );
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return { url, proc, stop: () => proc.stop() };
}

/** Creates (or replaces) the ValidatingWebhookConfiguration `crowbar.dev`. */
async function register(kc: KubeConfig, url: string, caPem: string): Promise<void> {
  const api = kc.makeApiClient(AdmissionregistrationV1Api);
  const body = validatingWebhookConfiguration({
    clientConfig: { url, caPem },
    labels: { 'app.kubernetes.io/name': 'crowbar', 'app.kubernetes.io/instance': 'lab' },
  });
  try {
    await api.createValidatingWebhookConfiguration({ body });
  } catch (e) {
    if (!isConflict(e)) throw e;
    // One left by an earlier lab on the same API server: ours replaces it.
    await api.deleteValidatingWebhookConfiguration({ name: WEBHOOK_CONFIGURATION_NAME });
    await api.createValidatingWebhookConfiguration({ body });
  }
}

/** How a write (typically a dry run) was answered: allowed, or refused with code and message. */
export async function dryRunAnswer(
  write: () => Promise<unknown>,
): Promise<{ allowed: true } | { allowed: false; code: number; message: string }> {
  try {
    await write();
    return { allowed: true };
  } catch (e) {
    const code = apiCode(e);
    if (code === undefined) throw e;
    return { allowed: false, code, message: apiMessage(e) };
  }
}

/** A dry-run create of a role that requires itself: refused only when the webhook is called. */
async function refusesCycle(kc: KubeConfig): Promise<boolean> {
  const name = 'lab-webhook-probe';
  const a = await dryRunAnswer(() =>
    dryRun.create(kc, 'Role', { metadata: { name }, spec: { jig: 'noop', requires: [name] } }),
  );
  return !a.allowed && a.code === 403 && /dependency cycle/.test(a.message);
}

/** A dry-run binding of a role that does not exist: refused only when the webhook is called. */
async function refusesUnknownRole(kc: KubeConfig): Promise<boolean> {
  const spec = { role: 'lab-webhook-probe', node: 'probe.lab.crowbar.dev', deployment: 'system' };
  const a = await dryRunAnswer(() =>
    dryRun.create(kc, 'NodeRole', { metadata: { name: `${spec.role}.${spec.node}` }, spec }),
  );
  return !a.allowed && a.code === 403 && /admission webhook/.test(a.message);
}

type Kind = keyof typeof PLURALS;

/** Dry runs (dryRun=All): judged by every admission step, the webhook included; stored nowhere. */
export const dryRun = {
  create(kc: KubeConfig, kind: Kind, body: object): Promise<unknown> {
    return kc.makeApiClient(CustomObjectsApi).createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURALS[kind],
      body: { apiVersion: `${GROUP}/${VERSION}`, kind, ...body },
      fieldManager: FM,
      dryRun: 'All',
    });
  },
  mergePatch(kc: KubeConfig, kind: Kind, name: string, patch: object): Promise<unknown> {
    return kc.makeApiClient(CustomObjectsApi).patchClusterCustomObject(
      {
        group: GROUP,
        version: VERSION,
        plural: PLURALS[kind],
        name,
        body: patch,
        fieldManager: FM,
        dryRun: 'All',
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  },
  delete(kc: KubeConfig, kind: Kind, name: string): Promise<unknown> {
    return kc.makeApiClient(CustomObjectsApi).deleteClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURALS[kind],
      name,
      dryRun: 'All',
    });
  },
};
