/**
 * Typed access to Crowbar's custom resources. Spec writes use server-side apply with the caller's
 * own field manager; status writes go only through the status subresource, and carry the
 * resourceVersion they were computed from so a stale write fails with 409 instead of clobbering.
 */
import {
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import {
  GROUP,
  PLURALS,
  VERSION,
  type BootEnv,
  type CrowbarKind,
  type Deployment,
  type Network,
  type NetworkAllocation,
  type Node,
  type NodeRole,
  type Role,
} from '../../generated/crowbar.ts';
import { isNotFound } from './errors.ts';
import { kubeRequest } from './request.ts';
import { deadline, defaultDeadline, LIST_REQUEST_MS } from './timeout.ts';

export interface KindMap {
  Node: Node;
  Role: Role;
  NodeRole: NodeRole;
  Network: Network;
  NetworkAllocation: NetworkAllocation;
  Deployment: Deployment;
  BootEnv: BootEnv;
}
export type Obj<K extends CrowbarKind> = KindMap[K];
export type Status<K extends CrowbarKind> = NonNullable<Obj<K>['status']>;

/** A partial object for server-side apply: only the fields this manager owns. */
export type ApplyBody<K extends CrowbarKind> = {
  metadata?: {
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    finalizers?: string[];
  };
  spec?: Partial<Obj<K>['spec']>;
  status?: Partial<Status<K>>;
};

export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  poolConnections(kc);
  defaultDeadline(kc);
  return kc;
}

type DispatcherFactory = (cluster: unknown, opts: Record<string, unknown>) => unknown;

/**
 * client-node 2.0.1 builds a new undici Agent for every request (KubeConfig.createDispatcher,
 * called from applySecurityAuthentication), so no TLS connection is ever reused: each API call
 * pays a full handshake on both ends, which dominated the operator's CPU profile and halved the
 * API server's write throughput. Reuse one dispatcher per distinct TLS identity instead (the key
 * includes the certificate material, so rotated client certificates get a fresh one). The method
 * is private in client-node's types; the version is pinned (ADR 0004).
 */
function poolConnections(kc: KubeConfig): void {
  const target = kc as unknown as { createDispatcher?: DispatcherFactory };
  const original = target.createDispatcher?.bind(kc);
  if (!original) return;
  // Compared field by field (buffers byte by byte), not hashed: this runs on every request, and
  // a SHA-256 over the certificates was 3% of the operator's CPU while it annealed (ADR 0031).
  const cache: { key: unknown[]; dispatcher: unknown }[] = [];
  const same = (a: unknown, b: unknown): boolean =>
    Buffer.isBuffer(a) && Buffer.isBuffer(b)
      ? a.equals(b)
      : typeof a === 'object' && a !== null
        ? JSON.stringify(a) === JSON.stringify(b)
        : a === b;
  target.createDispatcher = (cluster, opts) => {
    const c = cluster as { name?: string; server?: string } | null;
    const key = [
      c?.name,
      c?.server,
      opts['ca'],
      opts['cert'],
      opts['key'],
      opts['pfx'],
      opts['rejectUnauthorized'],
      opts['servername'],
    ];
    const hit = cache.find((e) => e.key.every((v, i) => same(v, key[i])));
    if (hit) return hit.dispatcher;
    const dispatcher = original(cluster, opts);
    // Rotated certificates each get a dispatcher; the old ones' connections close when idle.
    cache.unshift({ key, dispatcher });
    cache.length = Math.min(cache.length, 8);
    return dispatcher;
  };
}

export class CrowbarClient {
  readonly api: CustomObjectsApi;
  readonly kc: KubeConfig;

  constructor(kc: KubeConfig) {
    this.kc = kc;
    this.api = kc.makeApiClient(CustomObjectsApi);
  }

  private ref<K extends CrowbarKind>(kind: K) {
    return { group: GROUP, version: VERSION, plural: PLURALS[kind] };
  }

  /** The path of one object (and a subresource), as client-node's generated methods build it. */
  private path(kind: CrowbarKind, name: string, sub = '', fieldManager?: string): string {
    const query = fieldManager ? `?fieldManager=${encodeURIComponent(fieldManager)}` : '';
    return `/apis/${GROUP}/${VERSION}/${PLURALS[kind]}/${encodeURIComponent(name)}${sub}${query}`;
  }

  /**
   * A patch through the lean request path (operator/kube/request.ts, ADR 0031): the annealer's
   * run starts and ends, and every other single-object write, are the operator's hottest calls.
   */
  private async patch<K extends CrowbarKind>(
    kind: K,
    name: string,
    sub: '' | '/status',
    contentType: PatchStrategy,
    body: unknown,
    fieldManager: string,
  ): Promise<Obj<K>> {
    return (await kubeRequest(this.kc, 'PATCH', this.path(kind, name, sub, fieldManager), {
      contentType,
      json: JSON.stringify(body),
    })) as Obj<K>;
  }

  /** The object, or undefined when it does not exist. */
  async get<K extends CrowbarKind>(kind: K, name: string): Promise<Obj<K> | undefined> {
    try {
      return (await kubeRequest(this.kc, 'GET', this.path(kind, name))) as Obj<K>;
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async list<K extends CrowbarKind>(kind: K, labelSelector?: string): Promise<Obj<K>[]> {
    return (await this.listAt(kind, labelSelector)).items;
  }

  /** A consistent list and the resourceVersion it was read at (etcd's revision). */
  async listAt<K extends CrowbarKind>(
    kind: K,
    labelSelector?: string,
  ): Promise<{ items: Obj<K>[]; resourceVersion: string }> {
    const res = (await this.api.listClusterCustomObject(
      { ...this.ref(kind), ...(labelSelector ? { labelSelector } : {}) },
      deadline(LIST_REQUEST_MS),
    )) as { items: Obj<K>[]; metadata?: { resourceVersion?: string } };
    return { items: res.items, resourceVersion: res.metadata?.resourceVersion ?? '0' };
  }

  /** Creates the object; the API server refuses a second create of the same name with 409. */
  async create<K extends CrowbarKind>(
    kind: K,
    body: Omit<Obj<K>, 'apiVersion' | 'kind'>,
    fieldManager: string,
  ): Promise<Obj<K>> {
    return (await this.api.createClusterCustomObject({
      ...this.ref(kind),
      body: { apiVersion: `${GROUP}/${VERSION}`, kind, ...body },
      fieldManager,
    })) as Obj<K>;
  }

  /** Server-side apply of the fields this manager owns. */
  async apply<K extends CrowbarKind>(
    kind: K,
    name: string,
    body: ApplyBody<K>,
    fieldManager: string,
  ): Promise<Obj<K>> {
    return (await this.api.patchClusterCustomObject(
      {
        ...this.ref(kind),
        name,
        body: {
          apiVersion: `${GROUP}/${VERSION}`,
          kind,
          ...body,
          metadata: { ...body.metadata, name },
        },
        fieldManager,
        force: true,
      },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    )) as Obj<K>;
  }

  /**
   * Server-side apply on the status subresource. Pass resourceVersion to make it conditional:
   * the write then fails with 409 if the object changed since it was read.
   */
  async applyStatus<K extends CrowbarKind>(
    kind: K,
    name: string,
    status: Partial<Status<K>>,
    fieldManager: string,
    resourceVersion?: string,
  ): Promise<Obj<K>> {
    return (await this.api.patchClusterCustomObjectStatus(
      {
        ...this.ref(kind),
        name,
        body: {
          apiVersion: `${GROUP}/${VERSION}`,
          kind,
          metadata: { name, ...(resourceVersion ? { resourceVersion } : {}) },
          status,
        },
        fieldManager,
        force: true,
      },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    )) as Obj<K>;
  }

  /** JSON merge patch of the main resource (spec, labels, annotations). */
  async mergePatch<K extends CrowbarKind>(
    kind: K,
    name: string,
    patch: object,
    fieldManager: string,
  ): Promise<Obj<K>> {
    return this.patch(kind, name, '', PatchStrategy.MergePatch, patch, fieldManager);
  }

  /** JSON merge patch of the status subresource. */
  async mergePatchStatus<K extends CrowbarKind>(
    kind: K,
    name: string,
    patch: object,
    fieldManager: string,
  ): Promise<Obj<K>> {
    return this.patch(kind, name, '/status', PatchStrategy.MergePatch, patch, fieldManager);
  }

  /**
   * A JSON patch (RFC 6902) of the status subresource: with a `test` op first it is a
   * compare-and-set that the API server applies whole or not at all.
   */
  async jsonPatchStatus<K extends CrowbarKind>(
    kind: K,
    name: string,
    ops: readonly { op: string; path: string; value?: unknown }[],
    fieldManager: string,
  ): Promise<Obj<K>> {
    return this.patch(kind, name, '/status', PatchStrategy.JsonPatch, ops, fieldManager);
  }

  /** Deletes the object; true if it existed. */
  async delete(kind: CrowbarKind, name: string): Promise<boolean> {
    try {
      await this.api.deleteClusterCustomObject({ ...this.ref(kind), name });
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
  }
}
