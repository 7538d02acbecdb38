import { describe, expect, it } from 'vitest';
import { DEFAULT_MAX_BODY_BYTES, loadConfig, parseListen } from './config.ts';

const tls = ['--tls-cert=/c.crt', '--tls-key=/c.key'];

describe('loadConfig', () => {
  it('reads the flags', () => {
    expect(loadConfig(['--kubeconfig=/k', '--listen=127.0.0.1:8443', ...tls], {})).toEqual({
      kubeconfig: '/k',
      host: '127.0.0.1',
      port: 8443,
      tlsCert: '/c.crt',
      tlsKey: '/c.key',
      maxBodyBytes: DEFAULT_MAX_BODY_BYTES,
    });
  });

  it('falls back to the environment and to defaults', () => {
    expect(
      loadConfig([], { CROWBAR_WEBHOOK_TLS_CERT: '/e.crt', CROWBAR_WEBHOOK_TLS_KEY: '/e.key' }),
    ).toMatchObject({ kubeconfig: undefined, host: '0.0.0.0', port: 9443, tlsCert: '/e.crt' });
  });

  it.each([
    [['--listen=127.0.0.1:1'], /--tls-cert and --tls-key are required/],
    [['--nope=1', ...tls], /unknown flag --nope/],
    [['positional', ...tls], /flags look like --name=value/],
    [['--listen=127.0.0.1', ...tls], /--listen must be host:port/],
    [['--listen=127.0.0.1:70000', ...tls], /--listen must be host:port/],
    [['--max-body-bytes=10', ...tls], /--max-body-bytes must be an integer/],
  ])('refuses %j', (argv, re) => {
    expect(() => loadConfig(argv, {})).toThrow(re);
  });
});

describe('parseListen', () => {
  it.each([
    ['127.0.0.1:9443', { host: '127.0.0.1', port: 9443 }],
    [':9443', { host: '0.0.0.0', port: 9443 }],
    ['[::1]:0', { host: '::1', port: 0 }],
    ['localhost:1', { host: 'localhost', port: 1 }],
  ])('%s', (v, want) => {
    expect(parseListen(v)).toEqual(want);
  });
});
