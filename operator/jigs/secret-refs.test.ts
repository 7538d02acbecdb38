import { describe, expect, it } from 'vitest';
import { REDACTED, findSecretRefs, redact, redactDeep, substitute } from './secret-refs.ts';
import { redactResult, resolveSecretRefs } from './script/wiring.ts';

const ref = (name: string, key: string) => ({ secretRef: { name, key } });

describe('secretRef', () => {
  it('finds each reference once, wherever it is, and flags malformed ones', () => {
    const data = { a: ref('db', 'pw'), b: [ref('db', 'pw'), { c: ref('api', 'token') }], d: 1 };
    expect(findSecretRefs(data)).toEqual(
      expect.arrayContaining([
        { name: 'db', key: 'pw' },
        { name: 'api', key: 'token' },
      ]),
    );
    expect(findSecretRefs(data)).toHaveLength(2);
    expect(findSecretRefs({ x: { secretRef: { name: 'Bad Name', key: 'k' } } })[0]).toHaveProperty(
      'invalid',
    );
    // An object with more keys than secretRef is plain data.
    expect(findSecretRefs({ x: { secretRef: { name: 'db', key: 'pw' }, other: 1 } })).toEqual([]);
  });

  it('substitutes values without changing the input', () => {
    const data = { a: ref('db', 'pw'), b: [ref('db', 'pw')] };
    expect(substitute(data, (r) => `${r.name}:${r.key}`)).toEqual({ a: 'db:pw', b: ['db:pw'] });
    expect(data.a).toEqual(ref('db', 'pw'));
  });

  it('redacts values in text, keys and deep walls', () => {
    expect(redact('pw=hunter2 and hunter22', ['hunter2', 'hunter22'])).toBe(
      `pw=${REDACTED} and ${REDACTED}`,
    );
    let deep: unknown = 'hunter2';
    for (let i = 0; i < 1000; i++) deep = [deep];
    const out = redactDeep({ hunter2: deep, x: 'a hunter2 b' }, ['hunter2']);
    expect(JSON.stringify(out)).not.toContain('hunter2');
  });

  it('resolves from Secrets by name, and says which reference failed', async () => {
    const core = {
      readNamespacedSecret: ({ name }: { name: string; namespace: string }) =>
        name === 'db'
          ? Promise.resolve({ data: { pw: Buffer.from('hunter2').toString('base64') } })
          : Promise.reject(Object.assign(new Error('not found'), { code: 404 })),
    };
    const ok = await resolveSecretRefs(core, 'crowbar', { a: ref('db', 'pw') });
    expect(ok).toEqual({ input: { a: 'hunter2' }, values: ['hunter2'] });
    const noKey = await resolveSecretRefs(core, 'crowbar', { a: ref('db', 'nope') });
    expect(noKey).toEqual({ error: 'secretRef db/nope: Secret crowbar/db has no key nope' });
    const r = redactResult({ ok: false, message: 'failed: hunter2', logTail: 'hunter2\n' }, [
      'hunter2',
    ]);
    expect(r).toEqual({ ok: false, message: `failed: ${REDACTED}`, logTail: `${REDACTED}\n` });
  });
});
