/**
 * Deadlines for API requests. client-node sends requests through undici with no deadline of its
 * own (undici's headers and body timeouts are 300 s), so a request whose answer is lost (a cut
 * connection the kernel has not noticed, a proxy that drops it) would hold its caller for five
 * minutes. Every request made through a KubeConfig from `loadKubeConfig` gets a deadline:
 * `DEFAULT_REQUEST_MS` unless the call passes its own through {@link deadline} (lists, whose
 * answers grow with the cluster; the lease calls, which count against the renew deadline).
 *
 * Watches are not requests of this kind: client-node's Watch aborts one after 30 s without a byte
 * (its inactivity timer, which also catches a dead connection), and the informers ask the API
 * server to end each watch after a few minutes and to send bookmarks (operator/runtime/informer.ts).
 */
import type { ConfigurationOptions, KubeConfig, RequestContext } from '@kubernetes/client-node';
// The observable stub client-node's own setHeaderOptions builds its middleware with (the
// object-parameter API takes observable middleware); the version is pinned (ADR 0004).
import { of } from '@kubernetes/client-node/dist/gen/rxjsStub.js';

/** A get, create, patch or delete of one object. */
export const DEFAULT_REQUEST_MS = 30_000;
/** A list (an informer's relist of 100,000 noderoles takes seconds on a loaded API server). */
export const LIST_REQUEST_MS = 120_000;

/** Per-call options that give the request `ms` (computed when it is sent) to be answered. */
export function deadline(ms: number | (() => number)): ConfigurationOptions {
  return {
    middleware: [
      {
        // Runs after authentication, so it replaces the default deadline set there.
        pre: (ctx: RequestContext) => {
          ctx.setSignal(AbortSignal.timeout(typeof ms === 'number' ? ms : ms()));
          return of(ctx);
        },
        post: (res) => of(res),
      },
    ],
    middlewareMergeStrategy: 'append',
  };
}

/** Whether an error is a request's deadline passing (the request may or may not have happened). */
export function isTimeout(e: unknown): boolean {
  return e instanceof Error && (e.name === 'TimeoutError' || isTimeout(e.cause));
}

/**
 * Gives every request made with `kc` a deadline of `ms` unless the call sets its own. Every API
 * client made by `kc.makeApiClient` authenticates each request through `kc` itself, which is
 * where the signal is set; the method is public, the hook is ours (as poolConnections in client.ts).
 */
export function defaultDeadline(kc: KubeConfig, ms = DEFAULT_REQUEST_MS): void {
  const auth = kc.applySecurityAuthentication.bind(kc);
  kc.applySecurityAuthentication = async (ctx: RequestContext): Promise<void> => {
    await auth(ctx);
    if (!ctx.getSignal()) ctx.setSignal(AbortSignal.timeout(ms));
  };
}
