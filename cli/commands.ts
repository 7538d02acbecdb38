/** The I/O half of `kubectl crowbar`: each command reads or writes the API, then prints. */
import { spawnSync } from 'node:child_process';
import {
  CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  Watch,
  type KubeConfig,
} from '@kubernetes/client-node';
import {
  GROUP,
  PLURALS,
  VERSION,
  type CrowbarKind,
  type Deployment,
  type NodeRole,
} from '../generated/crowbar.ts';
import { CrowbarClient } from '../operator/kube/client.ts';
import { apiMessage, isNotFound } from '../operator/kube/errors.ts';
import { ensureSystemDeployment } from '../operator/controllers/deployment/system.ts';
import { jobName } from '../operator/executors/job-spec.ts';
import { CliError } from './kube.ts';
import { renderDot, renderLogs, renderStatus, renderWhy } from './render.ts';

/** The field manager of every write the CLI makes. */
export const FIELD_MANAGER = 'kubectl-crowbar';

export interface Io {
  out: (s: string) => void;
}

const RESOURCE: Record<CrowbarKind, string> = {
  Node: 'node.crowbar.dev',
  Role: 'role.crowbar.dev',
  NodeRole: 'noderole.crowbar.dev',
  Network: 'network.crowbar.dev',
  NetworkAllocation: 'networkallocation.crowbar.dev',
  Deployment: 'deployment.crowbar.dev',
  BootEnv: 'bootenv.crowbar.dev',
};

async function mustGet<K extends CrowbarKind>(c: CrowbarClient, kind: K, name: string) {
  const o = await c.get(kind, name);
  if (o === undefined) throw new CliError(`${RESOURCE[kind]} "${name}" not found`);
  return o;
}

async function patch(io: Io, c: CrowbarClient, kind: CrowbarKind, name: string, spec: object) {
  try {
    await c.mergePatch(kind, name, { spec }, FIELD_MANAGER);
  } catch (e) {
    if (isNotFound(e)) throw new CliError(`${RESOURCE[kind]} "${name}" not found`, { cause: e });
    throw e;
  }
  io.out(`${RESOURCE[kind]}/${name} patched\n`);
}

export async function bind(
  io: Io,
  c: CrowbarClient,
  role: string,
  node: string,
  deployment: string,
) {
  const name = `${role}.${node}`;
  await c.create(
    'NodeRole',
    { metadata: { name }, spec: { role, node, deployment } },
    FIELD_MANAGER,
  );
  io.out(`${RESOURCE.NodeRole}/${name} created\n`);
}

const KINDS: Record<string, CrowbarKind> = {
  deployment: 'Deployment',
  dep: 'Deployment',
  cbdep: 'Deployment',
  node: 'Node',
  cbnode: 'Node',
  noderole: 'NodeRole',
  nr: 'NodeRole',
};

/** `propose` / `commit` of a deployment (spec.state), a node or a noderole (spec.proposed). */
export async function proposeOrCommit(
  io: Io,
  c: CrowbarClient,
  verb: 'propose' | 'commit',
  kindWord: string,
  name: string,
) {
  const kind = KINDS[kindWord];
  if (kind === undefined)
    throw new CliError(`cannot ${verb} "${kindWord}": use deployment, node or noderole`);
  const spec =
    kind === 'Deployment'
      ? { state: verb === 'propose' ? 'proposed' : 'committed' }
      : { proposed: verb === 'propose' };
  await patch(io, c, kind, name, spec);
}

export async function retry(io: Io, c: CrowbarClient, name: string) {
  const nr = await mustGet(c, 'NodeRole', name);
  const next = (nr.spec.retry ?? 0) + 1;
  await c.api.patchClusterCustomObject(
    {
      group: GROUP,
      version: VERSION,
      plural: PLURALS.NodeRole,
      name,
      fieldManager: FIELD_MANAGER,
      body: { metadata: { resourceVersion: nr.metadata.resourceVersion }, spec: { retry: next } },
    },
    // Merge patch carrying the resourceVersion: a concurrent change gets 409 instead of a lost raise.
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
  io.out(`${RESOURCE.NodeRole}/${name} patched (retry ${String(next)})\n`);
}

export async function available(io: Io, c: CrowbarClient, node: string, onOff: string) {
  if (onOff !== 'on' && onOff !== 'off')
    throw new CliError(`available takes on or off, not "${onOff}"`);
  await patch(io, c, 'Node', node, { available: onOff === 'on' });
}

export async function status(io: Io, c: CrowbarClient, only: string | undefined) {
  const [deps, nrs] = await Promise.all([c.list('Deployment'), c.list('NodeRole')]);
  if (only !== undefined && !deps.some((d) => d.metadata.name === only))
    throw new CliError(`${RESOURCE.Deployment} "${only}" not found`);
  io.out(renderStatus(deps, nrs, only));
}

/**
 * `status -w`: lists once, then follows watches of deployments and noderoles, redrawing (at most
 * every 200 ms) after changes. Ends on SIGINT/SIGTERM with exit code 0.
 */
export async function statusWatch(
  io: Io,
  kc: KubeConfig,
  c: CrowbarClient,
  only: string | undefined,
  tty: boolean,
): Promise<void> {
  const deps = new Map<string, Deployment>();
  const nrs = new Map<string, NodeRole>();
  const controllers: AbortController[] = [];
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const draw = () => {
    timer = undefined;
    const text = renderStatus([...deps.values()], [...nrs.values()], only);
    io.out(tty ? `\x1b[H\x1b[2J${text}` : `${text}\n`);
  };
  const schedule = () => {
    timer ??= setTimeout(draw, 200);
  };
  const follow = async <K extends 'Deployment' | 'NodeRole'>(
    kind: K,
    into: Map<string, K extends 'Deployment' ? Deployment : NodeRole>,
  ): Promise<void> => {
    if (stopped) return;
    const res = (await c.api.listClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURALS[kind],
    })) as {
      items: (K extends 'Deployment' ? Deployment : NodeRole)[];
      metadata: { resourceVersion: string };
    };
    into.clear();
    for (const o of res.items) into.set(o.metadata.name ?? '', o);
    schedule();
    const ctl = await new Watch(kc).watch(
      `/apis/${GROUP}/${VERSION}/${PLURALS[kind]}`,
      { resourceVersion: res.metadata.resourceVersion, allowWatchBookmarks: true },
      (type: string, obj: K extends 'Deployment' ? Deployment : NodeRole) => {
        if (type === 'BOOKMARK') return;
        if (type === 'DELETED') into.delete(obj.metadata.name ?? '');
        else into.set(obj.metadata.name ?? '', obj);
        schedule();
      },
      () => {
        // The watch ended (timeout, error, 410 Gone): list and watch again after a breath.
        if (!stopped) setTimeout(() => void follow(kind, into).catch(() => undefined), 1000);
      },
    );
    controllers.push(ctl);
  };
  await follow('Deployment', deps);
  await follow('NodeRole', nrs);
  await new Promise<void>((resolve) => {
    const stop = () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      for (const ctl of controllers) ctl.abort();
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

export async function why(io: Io, c: CrowbarClient, name: string, maxConcurrentRuns: number) {
  const nr = await mustGet(c, 'NodeRole', name);
  const [node, deployment, all] = await Promise.all([
    c.get('Node', nr.spec.node),
    c.get('Deployment', nr.spec.deployment),
    c.list('NodeRole'),
  ]);
  io.out(renderWhy({ nr, node, deployment, all, maxConcurrentRuns }));
}

export async function logs(io: Io, kc: KubeConfig, c: CrowbarClient, name: string) {
  const nr = await mustGet(c, 'NodeRole', name);
  io.out(renderLogs(nr));
  const run = nr.status?.run;
  if (run?.executor !== 'job' || run.id === undefined) return;
  const job = jobName(run.id);
  const core = kc.makeApiClient(CoreV1Api);
  try {
    const pods = await core.listPodForAllNamespaces({ labelSelector: `job-name=${job}` });
    if (pods.items.length === 0) {
      io.out(`--- job ${job}: no pods found ---\n`);
      return;
    }
    for (const p of pods.items) {
      const pod = p.metadata?.name ?? '';
      const ns = p.metadata?.namespace ?? 'default';
      io.out(`--- job ${job}, pod ${ns}/${pod} ---\n`);
      try {
        const text = await core.readNamespacedPodLog({ name: pod, namespace: ns });
        io.out(text.endsWith('\n') || text === '' ? text : `${text}\n`);
      } catch (e) {
        io.out(`(pod logs not reachable: ${apiMessage(e)})\n`);
      }
    }
  } catch (e) {
    io.out(`--- job ${job}: pods not reachable: ${apiMessage(e)} ---\n`);
  }
}

export async function graph(
  io: Io,
  c: CrowbarClient,
  deployment: string | undefined,
  format: string,
  outFile: string | undefined,
) {
  if (!['dot', 'svg', 'png'].includes(format))
    throw new CliError(`unknown output format "${format}": use dot, svg or png`);
  const nrs = (await c.list('NodeRole')).filter(
    (nr) => deployment === undefined || nr.spec.deployment === deployment,
  );
  const dot = renderDot(nrs);
  if (format === 'dot') {
    io.out(dot);
    return;
  }
  const args = [`-T${format}`, ...(outFile !== undefined ? ['-o', outFile] : [])];
  const r = spawnSync('dot', args, { input: dot, maxBuffer: 256 * 1024 * 1024 });
  if (r.error)
    throw new CliError(
      `cannot run Graphviz dot (${r.error.message}): install Debian's graphviz package, or use -o dot`,
      { cause: r.error },
    );
  if (r.status !== 0)
    throw new CliError(`graphviz dot failed: ${r.stderr.toString().trim().split('\n')[0] ?? ''}`);
  if (outFile === undefined) process.stdout.write(r.stdout);
  else io.out(`wrote ${outFile}\n`);
}

export interface InitAnswers {
  network: string;
  subnet: string;
  ranges: { name: string; first: string; last: string }[];
  router: string | undefined;
  v6prefix: string;
  node: string;
  macs: string[];
}

/** What init will create, for the wizard's confirmation and the command's output. */
export function initPlan(a: InitAnswers): string {
  return [
    `Network ${a.network}: category admin, subnet ${a.subnet}, v6prefix ${a.v6prefix}` +
      (a.router !== undefined ? `, router ${a.router}` : ''),
    ...a.ranges.map((r) => `  range ${r.name}: ${r.first} - ${r.last}`),
    `Node ${a.node}: admin, available, MACs ${a.macs.length > 0 ? a.macs.join(', ') : '(none)'}`,
    'Deployment system (committed), if missing',
  ].join('\n');
}

/** Creates or updates (server-side apply, idempotent) the admin network and node; ensures system. */
export async function init(io: Io, c: CrowbarClient, a: InitAnswers) {
  try {
    await c.apply(
      'Network',
      a.network,
      {
        spec: {
          category: 'admin',
          subnet: a.subnet,
          v6prefix: a.v6prefix,
          ranges: a.ranges,
          ...(a.router !== undefined ? { router: { address: a.router } } : {}),
        },
      },
      FIELD_MANAGER,
    );
    io.out(`${RESOURCE.Network}/${a.network} applied\n`);
    await c.apply(
      'Node',
      a.node,
      { spec: { admin: true, available: true, macs: a.macs } },
      FIELD_MANAGER,
    );
    io.out(`${RESOURCE.Node}/${a.node} applied\n`);
    const created = await ensureSystemDeployment(c, FIELD_MANAGER);
    io.out(`${RESOURCE.Deployment}/system ${created ? 'created' : 'unchanged'}\n`);
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError(apiMessage(e), { cause: e });
  }
}
