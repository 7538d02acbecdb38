/**
 * One request to the API server without client-node's generated request path (ADR 0031).
 *
 * client-node sends every call through its serializer, an observable middleware chain and
 * undici's WHATWG `fetch` (web streams, a Request and a Headers object per call): 3.5-3.9 ms of
 * the caller's CPU per status write, against 1.5-1.8 ms for the same patch sent with undici's
 * `Dispatcher.request` (`make bench-write-cost`). The annealer pays that on every run start and
 * end, on a machine whose cores the API server needs. This path keeps what matters of client-node:
 * the KubeConfig's own authentication (`applySecurityAuthentication`: client certificates,
 * bearer tokens, the in-cluster token file it re-reads as it rotates, exec and OIDC plugins),
 * its connection (the pooled dispatcher, proxies included), the default deadline
 * (operator/kube/timeout.ts hooks the same method), and its errors (`ApiException` with the
 * status code and the API server's body, so `isConflict`, `isNotFound` and `apiMessage` read them
 * as before). Lists and watches stay with client-node.
 */
import { ApiException, HttpMethod, RequestContext, type KubeConfig } from '@kubernetes/client-node';
import { getGlobalDispatcher, type Dispatcher } from 'undici';

export type Verb = 'GET' | 'PATCH' | 'POST';

/**
 * Sends `method path` with `body` (already JSON) as `contentType` and returns the parsed answer.
 * Non-2xx answers throw client-node's ApiException, as its generated methods do.
 */
export async function kubeRequest(
  kc: KubeConfig,
  method: Verb,
  path: string,
  body?: { contentType: string; json: string },
): Promise<unknown> {
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error('the kubeconfig names no current cluster');
  const url = new URL(server.replace(/\/+$/, '') + path);
  const ctx = new RequestContext(url.href, HttpMethod[method]);
  await kc.applySecurityAuthentication(ctx);
  const dispatcher: Dispatcher = ctx.getDispatcher() ?? getGlobalDispatcher();
  const headers: Record<string, string> = { ...ctx.getHeaders(), accept: 'application/json' };
  if (body) headers['content-type'] = body.contentType;
  const signal = ctx.getSignal();
  const res = await dispatcher.request({
    origin: url.origin,
    path: url.pathname + url.search,
    method,
    headers,
    ...(body ? { body: body.json } : {}),
    ...(signal ? { signal } : {}),
  });
  const text = await res.body.text();
  if (res.statusCode >= 200 && res.statusCode < 300) return JSON.parse(text) as unknown;
  const answer: Record<string, string> = {};
  for (const [k, v] of Object.entries(res.headers)) {
    if (v !== undefined) answer[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  // The same exception, message and body client-node's generated methods throw.
  if (res.statusCode === 401) throw new ApiException(401, 'Unauthorized', undefined, answer);
  throw new ApiException(res.statusCode, 'Unknown API Status Code!', text, answer);
}
