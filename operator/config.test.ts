import { describe, expect, it } from 'vitest';
import { loadConfig } from './config.ts';

describe('the node API listen address', () => {
  it('serves plain HTTP only on loopback; anywhere else it needs a certificate', () => {
    for (const addr of ['0.0.0.0:8081', '10.0.0.5:8081', '[::]:8081', '[fd00::1]:8081'])
      expect(() => loadConfig([`--api-addr=${addr}`], {})).toThrow(
        /carries node tokens: pass --api-tls-cert and --api-tls-key/,
      );
    expect(() => loadConfig([], {})).toThrow(/0\.0\.0\.0:8081 carries node tokens/);
    for (const addr of ['127.0.0.1:8081', '127.0.0.2:0', '[::1]:8081', 'localhost:8081'])
      expect(loadConfig([`--api-addr=${addr}`], {}).apiTlsCert).toBeUndefined();
    expect(
      loadConfig(['--api-addr=10.0.0.5:8081', '--api-allow-plain-http=true'], {}).apiHost,
    ).toBe('10.0.0.5');
    const tls = loadConfig(
      ['--api-addr=0.0.0.0:8081', '--api-tls-cert=/c', '--api-tls-key=/k'],
      {},
    );
    expect([tls.apiHost, tls.apiTlsCert, tls.apiTlsKey]).toEqual(['0.0.0.0', '/c', '/k']);
  });
});
