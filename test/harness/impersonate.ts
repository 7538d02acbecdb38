/**
 * Requests to the real API server as another account: the admin impersonates it
 * (Impersonate-User, Impersonate-Group), so RBAC and admission judge each request as that
 * account would be judged.
 */
import { request } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';

export interface Answer {
  status: number;
  message: string;
  body: unknown;
}

/** The groups the API server gives a ServiceAccount's token. */
export function serviceAccountGroups(namespace: string): string[] {
  return ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'];
}

/** One request as `user` in `groups`; JSON bodies, merge patches unless `contentType` says else. */
export async function asUser(
  kc: KubeConfig,
  user: string,
  groups: readonly string[],
  method: string,
  path: string,
  body?: object,
  contentType = method === 'PATCH' ? 'application/merge-patch+json' : 'application/json',
): Promise<Answer> {
  const server = kc.getCurrentCluster()?.server ?? '';
  const opts: Parameters<typeof request>[1] = {
    method,
    headers: {
      'Impersonate-User': user,
      ...(groups.length > 0 ? { 'Impersonate-Group': [...groups] } : {}),
      ...(body ? { 'content-type': contentType } : {}),
    },
    timeout: 10_000,
  };
  await kc.applyToHTTPSOptions(opts);
  return new Promise((resolve, reject) => {
    const req = request(`${server}${path}`, opts, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          /* not JSON: keep the text */
        }
        const message =
          typeof parsed === 'object' && parsed !== null && 'message' in parsed
            ? String(parsed.message)
            : text;
        resolve({ status: res.statusCode ?? 0, message, body: parsed });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
}
