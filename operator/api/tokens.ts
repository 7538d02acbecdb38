/**
 * Per-node, per-purpose bearer tokens for the node API, with an expiry and rotation. The operator
 * makes one random secret per Node when the Node appears and keeps it in a Secret in its own
 * namespace (`crowbar-node-<hash of the FQDN>`, owned by the Node so it goes with it). The secret
 * itself never leaves the operator: every token handed out is HMAC-SHA256(secret, purpose)
 * ({@link purposeToken}): `alive` for this API (and the provisioner's `network`), `register`,
 * `install` and `files` for the provisioner, so one purpose's token is useless for another.
 *
 * Each secret expires ({@link TOKEN_TTL_MS}, annotation `crowbar.dev/token-expires`). Halfway
 * through its life the node-tokens controller rotates it: a new secret becomes current and the old
 * one is kept as `previous` until its own expiry, so a node renews its token
 * (`POST /api/v1/nodes/<fqdn>/token`) with no gap. A deleted Secret is made again by the
 * controller (a new secret: every old token stops working). Every replica verifies from the
 * Secret itself (read at most every {@link TOKEN_CACHE_MS}), so standbys and the leader agree.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { CoreV1Api, V1Secret } from '@kubernetes/client-node';
import { GROUP, VERSION } from '../../generated/crowbar.ts';
import { apiMessage, isConflict, isNotFound } from '../kube/errors.ts';
import type { Logger } from '../log.ts';
import type { Controller, Manager } from '../manager.ts';

export const TOKEN_KEY = 'token';
/** The secret rotated out, valid until {@link PREVIOUS_EXPIRES_ANNOTATION}. */
export const PREVIOUS_KEY = 'previous';
export const EXPIRES_ANNOTATION = 'crowbar.dev/token-expires';
export const PREVIOUS_EXPIRES_ANNOTATION = 'crowbar.dev/previous-expires';

/**
 * How long a token read from its Secret is trusted without reading it again. Within this time
 * every replica sees a rotated or deleted Secret.
 */
export const TOKEN_CACHE_MS = 30_000;
/**
 * How often, on average, the leader checks each node's token Secret (made again, rotated). A
 * Secret found missing when a node presents a token is made again at once (see verify), so this
 * only bounds the time for nodes that are silent: every check is a read, and every 5 minutes was
 * 33 reads a second at 10,000 nodes.
 */
export const TOKEN_CHECK_MS = 3_600_000;
/** How long a node secret (and every token derived from it) is valid. */
export const TOKEN_TTL_MS = 30 * 24 * 3600 * 1000;
export const NODE_LABEL = 'crowbar.dev/node';
export const NODE_ANNOTATION = 'crowbar.dev/node';

/** What a token is for: each purpose has its own token, derived from the node's secret. */
export type Purpose = 'alive' | 'register' | 'install' | 'files';

/** The token of `purpose` derived from the node's secret. */
export function purposeToken(secret: string, purpose: Purpose): string {
  return createHmac('sha256', secret).update(`crowbar/${purpose}`).digest('base64url');
}

/** `crowbar-node-<first 20 hex of sha256(fqdn)>`: a valid Secret name for any FQDN. */
export function tokenSecretName(fqdn: string): string {
  return `crowbar-node-${createHash('sha256').update(fqdn).digest('hex').slice(0, 20)}`;
}

/** Constant-time comparison of a presented token with the stored one (any lengths). */
export function tokensEqual(presented: string, stored: string): boolean {
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(stored).digest();
  return timingSafeEqual(a, b) && stored !== '';
}

/** A node's secrets as its Secret holds them. Times in ms since the epoch. */
export interface NodeSecret {
  current: string;
  /** Undefined for a Secret made before tokens expired: it is rotated at the next pass. */
  expires: number | undefined;
  previous?: { secret: string; expires: number };
}

const b64 = (v: string | undefined): string =>
  v === undefined ? '' : Buffer.from(v, 'base64').toString('utf8');

/** Reads node `fqdn`'s secrets out of its Secret; undefined when it is not that node's. */
export function parseNodeSecret(s: V1Secret, fqdn: string): NodeSecret | undefined {
  const ann = s.metadata?.annotations ?? {};
  if (ann[NODE_ANNOTATION] !== fqdn) return undefined;
  const current = b64(s.data?.[TOKEN_KEY]);
  if (current === '') return undefined;
  const exp = Date.parse(ann[EXPIRES_ANNOTATION] ?? '');
  const prev = b64(s.data?.[PREVIOUS_KEY]);
  const prevExp = Date.parse(ann[PREVIOUS_EXPIRES_ANNOTATION] ?? '');
  return {
    current,
    expires: Number.isFinite(exp) ? exp : undefined,
    ...(prev !== '' && Number.isFinite(prevExp)
      ? { previous: { secret: prev, expires: prevExp } }
      : {}),
  };
}

/**
 * Whether `presented` is a valid `purpose` token of `ns` at `now`: derived from the current
 * secret before it expires, or from the previous one before its expiry (constant time each).
 */
export function tokenValid(
  ns: NodeSecret,
  purpose: Purpose,
  presented: string,
  now: number,
): boolean {
  const cur =
    tokensEqual(presented, purposeToken(ns.current, purpose)) &&
    (ns.expires === undefined || now < ns.expires);
  const prev =
    ns.previous !== undefined &&
    tokensEqual(presented, purposeToken(ns.previous.secret, purpose)) &&
    now < ns.previous.expires;
  return cur || prev;
}

/** What the controller does with a node's Secret at `now` (pure). */
export function tokenPlan(
  ns: NodeSecret | undefined,
  now: number,
  ttlMs: number = TOKEN_TTL_MS,
): 'create' | 'rotate' | 'keep' {
  if (ns === undefined) return 'create';
  // Rotated halfway through its life (or at once when it has no expiry): the old secret stays
  // valid for its remaining half, which is when nodes renew.
  if (ns.expires === undefined || now >= ns.expires - ttlMs / 2) return 'rotate';
  return 'keep';
}

type Core = Pick<
  CoreV1Api,
  'readNamespacedSecret' | 'createNamespacedSecret' | 'replaceNamespacedSecret'
>;

export interface NodeTokensOptions {
  /** The clock (tests advance it past {@link TOKEN_CACHE_MS} and expiries). */
  now?: () => number;
  /** Life of a node secret; default {@link TOKEN_TTL_MS}. */
  ttlMs?: number;
  /** Told a node whose Secret a token check found missing (the controller makes it again). */
  onMissing?: (fqdn: string) => void;
}

export class NodeTokens {
  private readonly core: Core;
  private readonly namespace: string;
  private readonly log: Logger;
  private readonly known = new Map<
    string,
    { secret: NodeSecret; readAt: number; resourceVersion: string | undefined }
  >();
  private readonly now: () => number;
  private readonly ttlMs: number;
  private onMissing: ((fqdn: string) => void) | undefined;

  constructor(core: Core, namespace: string, log: Logger, o: NodeTokensOptions = {}) {
    this.now = o.now ?? Date.now;
    this.onMissing = o.onMissing;
    this.ttlMs = o.ttlMs ?? TOKEN_TTL_MS;
    this.core = core;
    this.namespace = namespace;
    this.log = log.child({ component: 'node-tokens' });
  }

  /** The node's secrets from its Secret, or undefined when there is none (yet). */
  private async read(fqdn: string): Promise<NodeSecret | undefined> {
    let s: V1Secret;
    try {
      s = await this.core.readNamespacedSecret({
        name: tokenSecretName(fqdn),
        namespace: this.namespace,
      });
    } catch (e) {
      if (isNotFound(e)) {
        this.known.delete(fqdn);
        return undefined;
      }
      throw e;
    }
    const secret = parseNodeSecret(s, fqdn);
    if (secret === undefined) {
      this.known.delete(fqdn);
      return undefined;
    }
    this.known.set(fqdn, {
      secret,
      readAt: this.now(),
      resourceVersion: s.metadata?.resourceVersion,
    });
    return secret;
  }

  private body(
    node: { name: string; uid: string | undefined },
    current: string,
    previous: { secret: string; expires: number } | undefined,
    resourceVersion?: string,
  ): V1Secret {
    const iso = (ms: number): string => new Date(ms).toISOString();
    return {
      metadata: {
        name: tokenSecretName(node.name),
        ...(resourceVersion === undefined ? {} : { resourceVersion }),
        labels: {
          'app.kubernetes.io/managed-by': 'crowbar',
          [NODE_LABEL]: tokenSecretName(node.name).slice('crowbar-node-'.length),
        },
        annotations: {
          [NODE_ANNOTATION]: node.name,
          [EXPIRES_ANNOTATION]: iso(this.now() + this.ttlMs),
          ...(previous ? { [PREVIOUS_EXPIRES_ANNOTATION]: iso(previous.expires) } : {}),
        },
        ...(node.uid === undefined
          ? {}
          : {
              ownerReferences: [
                { apiVersion: `${GROUP}/${VERSION}`, kind: 'Node', name: node.name, uid: node.uid },
              ],
            }),
      },
      type: 'Opaque',
      data: {
        [TOKEN_KEY]: Buffer.from(current).toString('base64'),
        ...(previous ? { [PREVIOUS_KEY]: Buffer.from(previous.secret).toString('base64') } : {}),
      },
    };
  }

  /**
   * Makes the node's Secret when it is missing, and rotates its secret halfway through its life
   * ({@link tokenPlan}). Reads the Secret again once the cached copy is stale. Two replicas
   * racing each other: the create or the replace (by resourceVersion) of one fails with 409, and
   * the next pass reads what the other wrote.
   */
  async ensure(node: { name: string; uid: string | undefined }): Promise<void> {
    const k = this.known.get(node.name);
    const fresh = k && this.now() - k.readAt < TOKEN_CACHE_MS;
    const ns = fresh ? k.secret : await this.read(node.name);
    const plan = tokenPlan(ns, this.now(), this.ttlMs);
    if (plan === 'keep') return;
    const next = randomBytes(32).toString('base64url');
    try {
      let written: V1Secret;
      if (plan === 'create' || ns === undefined) {
        written = await this.core.createNamespacedSecret({
          namespace: this.namespace,
          body: this.body(node, next, undefined),
        });
        this.log.info({ node: node.name }, 'created the node API token');
      } else {
        // The old secret keeps its own expiry (a Secret from before expiries: half a life).
        const previous = {
          secret: ns.current,
          expires: ns.expires ?? this.now() + this.ttlMs / 2,
        };
        written = await this.core.replaceNamespacedSecret({
          name: tokenSecretName(node.name),
          namespace: this.namespace,
          body: this.body(node, next, previous, this.known.get(node.name)?.resourceVersion),
        });
        this.log.info({ node: node.name }, 'rotated the node API token');
      }
      // Kept as written: deleted, it was read back on the node's next event, and with the Node
      // hold (ADR 0033) that event is its last noderole going active, so a fleet's reads landed
      // together at the end of an anneal.
      const mine = parseNodeSecret(written, node.name);
      if (mine)
        this.known.set(node.name, {
          secret: mine,
          readAt: this.now(),
          resourceVersion: written.metadata?.resourceVersion,
        });
      else this.known.delete(node.name);
    } catch (e) {
      if (isConflict(e)) {
        this.known.delete(node.name);
        return; // another replica made or rotated it: the next pass reads that
      }
      throw new Error(
        `cannot ${plan} the API token Secret of node ${node.name}: ${apiMessage(e)}`,
        { cause: e },
      );
    }
  }

  /**
   * The node's current `purpose` token and when it expires, for a node that renews its token
   * (or the provisioner handing it out); undefined when the node has no Secret.
   */
  async current(
    fqdn: string,
    purpose: Purpose = 'alive',
  ): Promise<{ token: string; expires: number | undefined } | undefined> {
    const ns = await this.read(fqdn);
    return ns && { token: purposeToken(ns.current, purpose), expires: ns.expires };
  }

  /**
   * Whether `presented` is node `fqdn`'s valid `purpose` token now (current or previous secret,
   * neither expired). A token the cached copy does not take re-reads the Secret (at most every
   * 5 s per node), so a rotation by another replica is picked up at once; a cached copy is kept
   * at most {@link TOKEN_CACHE_MS}, so a deleted Secret ends its tokens within that time.
   */
  async verify(fqdn: string, presented: string, purpose: Purpose = 'alive'): Promise<boolean> {
    const k = this.known.get(fqdn);
    const age = k ? this.now() - k.readAt : Infinity;
    if (k && age < TOKEN_CACHE_MS && tokenValid(k.secret, purpose, presented, this.now()))
      return true;
    if (k && age < 5000) return false;
    const ns = await this.read(fqdn);
    // A node is using a token whose Secret is gone (deleted by a person): make it again now, not
    // at the next periodic check; the node gets its new token from the provisioner.
    if (ns === undefined) this.onMissing?.(fqdn);
    return ns !== undefined && tokenValid(ns, purpose, presented, this.now());
  }

  /** Makes sure every Node has a token Secret and rotates it in time (leader only). */
  controller(mgr: Manager): Controller {
    this.onMissing ??= (fqdn) => {
      mgr.enqueue('node-tokens', fqdn);
    };
    return {
      name: 'node-tokens',
      workers: 2,
      watches: {
        Node: (n) => (this.known.has(n.metadata.name ?? '') ? [] : [n.metadata.name ?? '']),
      },
      reconcile: async (name) => {
        const node = mgr.caches.Node.get(name);
        if (!node) {
          this.known.delete(name);
          return undefined;
        }
        await this.ensure({ name, uid: node.metadata.uid });
        // Checked again now and then: a deleted Secret is made again, an aging one rotated. Each
        // check reads the Secret, on the API server the annealer's writes wait for (ADR 0031:
        // every 30 s was 33 reads a second at 1,000 nodes), so spread over 48-72 minutes; a
        // Secret missing when a node presents a token is made again at once (onMissing).
        return { requeueAfterMs: Math.round(TOKEN_CHECK_MS * (0.8 + 0.4 * Math.random())) };
      },
    };
  }
}
