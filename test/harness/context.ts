/** Per-test access to the run's shared control plane (provided by global-setup.ts). */
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { CrowbarClient, loadKubeConfig } from '../../operator/kube/client.ts';

export function testClient(): CrowbarClient {
  return new CrowbarClient(loadKubeConfig(inject('kubeconfig')));
}

/** A short unique lower-case suffix so tests sharing one API server never collide. */
export function uid(): string {
  return randomBytes(4).toString('hex');
}

/** Polls `fn` until it returns a value that is not undefined/false, or throws after `timeoutMs`. */
export async function eventually<T>(
  what: string,
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 30_000,
  everyMs = 100,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end)
      throw new Error(`eventually: timed out after ${timeoutMs} ms: ${what}`, { cause: last });
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
