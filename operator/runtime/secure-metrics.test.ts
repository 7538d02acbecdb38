import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config.ts';
import {
  bearerToken,
  decide,
  DecisionCache,
  type Caller,
  type MetricsAuth,
} from './secure-metrics.ts';

/** A table of tokens and who may read /metrics, counting the questions asked. */
function tableAuth(users: Record<string, string>, allowed: string[]) {
  const asked = { authn: 0, authz: 0 };
  const auth: MetricsAuth = {
    authenticate(token) {
      asked.authn++;
      const user = users[token];
      return Promise.resolve(user === undefined ? undefined : { user, groups: [] });
    },
    authorize(caller: Caller, verb, path) {
      asked.authz++;
      return Promise.resolve(
        verb === 'get' && path === '/metrics' && allowed.includes(caller.user),
      );
    },
  };
  return { auth, asked };
}

describe('bearerToken', () => {
  it.each([
    [undefined, undefined],
    ['', undefined],
    ['Basic abc', undefined],
    ['Bearer', undefined],
    ['Bearer abc.def-ghi', 'abc.def-ghi'],
    ['bearer abc==', 'abc=='],
    ['Bearer a b', undefined],
  ])('%j -> %j', (header, token) => {
    expect(bearerToken(header)).toBe(token);
  });
});

describe('decide', () => {
  const { auth, asked } = tableAuth({ t1: 'prometheus', t2: 'someone' }, ['prometheus']);
  it('401 without a token or with one the API server does not accept; 403 when not allowed', async () => {
    expect(await decide(auth, undefined, '/metrics')).toMatchObject({ status: 401 });
    expect(await decide(auth, 'Bearer nope', '/metrics')).toMatchObject({ status: 401 });
    expect(await decide(auth, 'Bearer t2', '/metrics')).toEqual({ status: 403, user: 'someone' });
    expect(await decide(auth, 'Bearer t1', '/metrics')).toEqual({
      status: 200,
      user: 'prometheus',
    });
  });
  it('reuses a decision for the same token within the TTL, and asks again after it', async () => {
    const cache = new DecisionCache(1000);
    const before = { ...asked };
    await decide(auth, 'Bearer t1', '/metrics', cache, 0);
    await decide(auth, 'Bearer t1', '/metrics', cache, 999);
    expect(asked).toEqual({ authn: before.authn + 1, authz: before.authz + 1 });
    await decide(auth, 'Bearer t1', '/metrics', cache, 1000);
    expect(asked).toEqual({ authn: before.authn + 2, authz: before.authz + 2 });
  });
  it('keeps at most max entries', () => {
    const cache = new DecisionCache(1000, 2);
    for (const k of ['a', 'b', 'c']) cache.set(k, { status: 401, reason: k }, 0);
    expect(cache.get('a', 1)).toBeUndefined();
    expect(cache.get('c', 1)).toEqual({ status: 401, reason: 'c' });
  });
});

describe('--metrics-addr', () => {
  it('needs a certificate and key; they need it', () => {
    const api = '--api-addr=127.0.0.1:8081';
    expect(() => loadConfig(['--metrics-addr=0.0.0.0:8443', api], {})).toThrow(/--metrics-cert/);
    expect(() => loadConfig(['--metrics-cert=/c', api], {})).toThrow(/need --metrics-addr/);
    expect(
      loadConfig(['--metrics-addr=0.0.0.0:8443', '--metrics-cert=/c', '--metrics-key=/k', api], {})
        .metrics,
    ).toEqual({ host: '0.0.0.0', port: 8443, certFile: '/c', keyFile: '/k' });
    expect(loadConfig(['--api-addr=127.0.0.1:8081'], {}).metrics).toBeUndefined();
  });
});
