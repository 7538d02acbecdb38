/**
 * Tokens per node and per purpose. Each Node has one random secret (its node API token, kept by
 * operator/api/tokens.ts in a Secret); the token for a purpose is HMAC-SHA256(secret, purpose),
 * so a token for one purpose (the installer's completion callback, say) is useless for another
 * (registration) or another node, and replacing the node's Secret rotates them all.
 */
import { createHmac } from 'node:crypto';
import type { CoreV1Api } from '@kubernetes/client-node';
import { NODE_ANNOTATION, TOKEN_KEY, tokenSecretName, tokensEqual } from '../api/tokens.ts';
import { isNotFound } from '../kube/errors.ts';

export type Purpose = 'register' | 'install' | 'files';

/** The token of `purpose` derived from the node's secret. */
export function purposeToken(secret: string, purpose: Purpose): string {
  return createHmac('sha256', secret).update(`crowbar/${purpose}`).digest('base64url');
}

/** Reads node secrets from their Secrets (the node-tokens controller creates them). */
export class PurposeTokens {
  private readonly core: Pick<CoreV1Api, 'readNamespacedSecret'>;
  private readonly namespace: string;

  constructor(core: Pick<CoreV1Api, 'readNamespacedSecret'>, namespace: string) {
    this.core = core;
    this.namespace = namespace;
  }

  /** The node's secret, or undefined when its Secret does not exist (yet). */
  async secret(fqdn: string): Promise<string | undefined> {
    try {
      const s = await this.core.readNamespacedSecret({
        name: tokenSecretName(fqdn),
        namespace: this.namespace,
      });
      if (s.metadata?.annotations?.[NODE_ANNOTATION] !== fqdn) return undefined;
      const b64 = s.data?.[TOKEN_KEY];
      const t = b64 === undefined ? '' : Buffer.from(b64, 'base64').toString('utf8');
      return t === '' ? undefined : t;
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async token(fqdn: string, purpose: Purpose): Promise<string | undefined> {
    const s = await this.secret(fqdn);
    return s === undefined ? undefined : purposeToken(s, purpose);
  }

  /** Whether `presented` is node `fqdn`'s token for `purpose` (constant time). */
  async verify(fqdn: string, purpose: Purpose, presented: string): Promise<boolean> {
    const t = await this.token(fqdn, purpose);
    return t !== undefined && tokensEqual(presented, t);
  }
}
