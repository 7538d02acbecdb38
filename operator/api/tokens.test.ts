import { describe, expect, it } from 'vitest';
import {
  EXPIRES_ANNOTATION,
  NODE_ANNOTATION,
  PREVIOUS_EXPIRES_ANNOTATION,
  parseNodeSecret,
  purposeToken,
  tokenPlan,
  tokenValid,
  type NodeSecret,
} from './tokens.ts';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const T = 1_000_000;

describe('tokenValid', () => {
  const ns: NodeSecret = {
    current: 'cur',
    expires: T + 100,
    previous: { secret: 'old', expires: T + 50 },
  };
  it.each([
    ['current alive token before expiry', purposeToken('cur', 'alive'), 'alive', T, true],
    ['current alive token at expiry', purposeToken('cur', 'alive'), 'alive', T + 100, false],
    ['previous token before its expiry', purposeToken('old', 'alive'), 'alive', T + 49, true],
    ['previous token at its expiry', purposeToken('old', 'alive'), 'alive', T + 50, false],
    ['the raw secret', 'cur', 'alive', T, false],
    ['another purpose\u2019s token', purposeToken('cur', 'install'), 'alive', T, false],
    ['the install token for install', purposeToken('cur', 'install'), 'install', T, true],
    ['an empty token', '', 'alive', T, false],
  ] as const)('%s', (_n, presented, purpose, now, ok) => {
    expect(tokenValid(ns, purpose, presented, now)).toBe(ok);
  });
});

describe('tokenPlan', () => {
  const ttl = 1000;
  it.each([
    ['no Secret', undefined, T, 'create'],
    ['young', { current: 'c', expires: T + 900 }, T, 'keep'],
    ['half its life', { current: 'c', expires: T + 500 }, T, 'rotate'],
    ['expired', { current: 'c', expires: T - 1 }, T, 'rotate'],
    ['made before expiries', { current: 'c', expires: undefined }, T, 'rotate'],
  ] as const)('%s → %s', (_n, ns, now, plan) => {
    expect(tokenPlan(ns, now, ttl)).toBe(plan);
  });
});

describe('parseNodeSecret', () => {
  it('reads current, expiry and previous', () => {
    const got = parseNodeSecret(
      {
        metadata: {
          annotations: {
            [NODE_ANNOTATION]: 'n1',
            [EXPIRES_ANNOTATION]: new Date(T).toISOString(),
            [PREVIOUS_EXPIRES_ANNOTATION]: new Date(T - 5).toISOString(),
          },
        },
        data: { token: b64('cur'), previous: b64('old') },
      },
      'n1',
    );
    expect(got).toEqual({
      current: 'cur',
      expires: T,
      previous: { secret: 'old', expires: T - 5 },
    });
  });
  it('refuses another node\u2019s Secret and an empty one', () => {
    const s = { metadata: { annotations: { [NODE_ANNOTATION]: 'n2' } }, data: { token: b64('x') } };
    expect(parseNodeSecret(s, 'n1')).toBeUndefined();
    expect(
      parseNodeSecret({ metadata: { annotations: { [NODE_ANNOTATION]: 'n1' } } }, 'n1'),
    ).toBeUndefined();
  });
});
