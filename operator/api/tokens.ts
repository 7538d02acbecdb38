/**
 * Per-node bearer tokens for the node API. The operator makes one random token per Node when the
 * Node appears and keeps it in a Secret in its own namespace (`crowbar-node-<hash of the FQDN>`,
 * owned by the Node so it goes with it). Discovery and installers get it from there later.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { CoreV1Api, V1Secret } from '@kubernetes/client-node';
import { GROUP, VERSION } from '../../generated/crowbar.ts';
import { apiMessage, isConflict, isNotFound } from '../kube/errors.ts';
import type { Logger } from '../log.ts';
import type { Controller, Manager } from '../manager.ts';

export const TOKEN_KEY = 'token';

/**
 * How long a token read from its Secret is trusted without reading it again. Rotation is
 * deleting the Secret (the operator makes a new one): within this time every replica stops
 * taking the old token, and the Secret is back.
 */
export const TOKEN_CACHE_MS = 30_000;
export const NODE_LABEL = 'crowbar.dev/node';
export const NODE_ANNOTATION = 'crowbar.dev/node';

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

type Core = Pick<CoreV1Api, 'readNamespacedSecret' | 'createNamespacedSecret'>;

export class NodeTokens {
  private readonly core: Core;
  private readonly namespace: string;
  private readonly log: Logger;
  private readonly known = new Map<string, { token: string; readAt: number }>();

  private readonly now: () => number;

  /** `now` is the clock (tests advance it past {@link TOKEN_CACHE_MS}). */
  constructor(core: Core, namespace: string, log: Logger, now: () => number = Date.now) {
    this.now = now;
    this.core = core;
    this.namespace = namespace;
    this.log = log.child({ component: 'node-tokens' });
  }

  /** The node's token from its Secret, or undefined when there is none (yet). */
  private async read(fqdn: string): Promise<string | undefined> {
    let s: V1Secret;
    try {
      s = await this.core.readNamespacedSecret({
        name: tokenSecretName(fqdn),
        namespace: this.namespace,
      });
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
    if (s.metadata?.annotations?.[NODE_ANNOTATION] !== fqdn) return undefined;
    const b64 = s.data?.[TOKEN_KEY];
    const token = b64 === undefined ? '' : Buffer.from(b64, 'base64').toString('utf8');
    if (token === '') return undefined;
    this.known.set(fqdn, { token, readAt: this.now() });
    return token;
  }

  /** Creates the node's token Secret unless it exists (read again once the cache is stale). */
  async ensure(node: { name: string; uid: string | undefined }): Promise<void> {
    const k = this.known.get(node.name);
    if (k && this.now() - k.readAt < TOKEN_CACHE_MS) return;
    if ((await this.read(node.name)) !== undefined) return;
    const token = randomBytes(32).toString('base64url');
    try {
      await this.core.createNamespacedSecret({
        namespace: this.namespace,
        body: {
          metadata: {
            name: tokenSecretName(node.name),
            labels: {
              'app.kubernetes.io/managed-by': 'crowbar',
              [NODE_LABEL]: tokenSecretName(node.name).slice('crowbar-node-'.length),
            },
            annotations: { [NODE_ANNOTATION]: node.name },
            ...(node.uid === undefined
              ? {}
              : {
                  ownerReferences: [
                    {
                      apiVersion: `${GROUP}/${VERSION}`,
                      kind: 'Node',
                      name: node.name,
                      uid: node.uid,
                    },
                  ],
                }),
          },
          type: 'Opaque',
          data: { [TOKEN_KEY]: Buffer.from(token).toString('base64') },
        },
      });
      this.known.set(node.name, { token, readAt: this.now() });
      this.log.info({ node: node.name }, 'created the node API token');
    } catch (e) {
      if (isConflict(e)) return; // another replica made it
      throw new Error(`cannot create the API token Secret of node ${node.name}: ${apiMessage(e)}`, {
        cause: e,
      });
    }
  }

  /**
   * Whether `presented` is the node's token. A mismatch re-reads the Secret (at most every 5 s
   * per node), so a token rotated by deleting its Secret is picked up.
   */
  async verify(fqdn: string, presented: string): Promise<boolean> {
    const k = this.known.get(fqdn);
    const age = k ? this.now() - k.readAt : Infinity;
    // A cached token is trusted for TOKEN_CACHE_MS: a deleted (rotated) Secret ends it.
    if (k && age < TOKEN_CACHE_MS && tokensEqual(presented, k.token)) return true;
    if (k && age < 5000) return false;
    const token = await this.read(fqdn);
    if (token === undefined) {
      this.known.delete(fqdn);
      return false;
    }
    return tokensEqual(presented, token);
  }

  /** Makes sure every Node has a token Secret (leader only, like every controller). */
  controller(mgr: Manager): Controller {
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
        // Checked again now and then: a deleted (rotated) Secret is made again.
        return { requeueAfterMs: TOKEN_CACHE_MS };
      },
    };
  }
}
