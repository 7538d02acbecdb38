/**
 * Tokens per node and per purpose for the provisioner. Each Node has one random secret (kept by
 * operator/api/tokens.ts in a Secret, with an expiry, rotated halfway through its life); the token
 * for a purpose is HMAC-SHA256(secret, purpose), so a token for one purpose (the installer's
 * completion callback, say) is useless for another (registration) or another node. The secret
 * itself is never handed out: a node gets its `alive` token, never the key of the others.
 */
import type { CoreV1Api } from '@kubernetes/client-node';
import {
  parseNodeSecret,
  purposeToken,
  tokenSecretName,
  tokenValid,
  type NodeSecret,
  type Purpose,
} from '../api/tokens.ts';
import { isNotFound } from '../kube/errors.ts';

export { purposeToken, type Purpose };

/** Reads node secrets from their Secrets (the node-tokens controller creates and rotates them). */
export class PurposeTokens {
  private readonly core: Pick<CoreV1Api, 'readNamespacedSecret'>;
  private readonly namespace: string;
  private readonly now: () => number;

  constructor(
    core: Pick<CoreV1Api, 'readNamespacedSecret'>,
    namespace: string,
    now: () => number = Date.now,
  ) {
    this.core = core;
    this.namespace = namespace;
    this.now = now;
  }

  private async read(fqdn: string): Promise<NodeSecret | undefined> {
    try {
      const s = await this.core.readNamespacedSecret({
        name: tokenSecretName(fqdn),
        namespace: this.namespace,
      });
      return parseNodeSecret(s, fqdn);
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  /** The node's current secret, or undefined when its Secret does not exist (yet). */
  async secret(fqdn: string): Promise<string | undefined> {
    return (await this.read(fqdn))?.current;
  }

  async token(fqdn: string, purpose: Purpose): Promise<string | undefined> {
    const s = await this.secret(fqdn);
    return s === undefined ? undefined : purposeToken(s, purpose);
  }

  /**
   * Whether `presented` is node `fqdn`'s token for `purpose` (constant time): from its current
   * secret before it expires, or from the one rotated out before that one's expiry.
   */
  async verify(fqdn: string, purpose: Purpose, presented: string): Promise<boolean> {
    const ns = await this.read(fqdn);
    return ns !== undefined && tokenValid(ns, purpose, presented, this.now());
  }
}
