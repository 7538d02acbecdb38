/**
 * Host keys are recorded compare-and-set (operator/jigs/script/wiring.ts recordHostKey): against
 * the real API server, the first key wins, the same key again is fine, a different one is refused
 * with a message, and of two concurrent "first uses" with different keys exactly one is recorded.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { recordHostKey } from '../../operator/jigs/script/wiring.ts';
import { testClient, uid } from '../harness/context.ts';

const client = testClient();
const FM = 'host-key-test';
const made: string[] = [];

async function node(): Promise<string> {
  const name = `hk-${uid()}.hostkey.example.com`;
  await client.create('Node', { metadata: { name }, spec: {} }, FM);
  made.push(name);
  return name;
}

afterAll(async () => {
  for (const n of made) await client.delete('Node', n).catch(() => undefined);
});

describe('recordHostKey', () => {
  it('records the first key (no status yet), accepts it again and refuses another', async () => {
    const n = await node();
    await recordHostKey(client, n, 'SHA256:first', FM);
    expect((await client.get('Node', n))?.status?.sshHostKey).toBe('SHA256:first');
    await recordHostKey(client, n, 'SHA256:first', FM);
    await expect(recordHostKey(client, n, 'SHA256:second', FM)).rejects.toThrow(
      /already has SSH host key SHA256:first on record, and this connection offered SHA256:second/,
    );
    expect((await client.get('Node', n))?.status?.sshHostKey).toBe('SHA256:first');
  });

  it('lets exactly one of concurrent first uses win, also when status already has fields', async () => {
    for (let round = 0; round < 5; round++) {
      const n = await node();
      if (round % 2 === 1)
        await client.mergePatchStatus('Node', n, { status: { alive: true } }, FM);
      const keys = ['SHA256:a', 'SHA256:b', 'SHA256:c', 'SHA256:d'];
      const results = await Promise.allSettled(keys.map((k) => recordHostKey(client, n, k, FM)));
      const won = keys.filter((_, i) => results[i]?.status === 'fulfilled');
      expect(won).toHaveLength(1);
      expect((await client.get('Node', n))?.status?.sshHostKey).toBe(won[0]);
      for (const r of results) {
        if (r.status === 'rejected') expect(String(r.reason)).toMatch(/already has SSH host key/);
      }
    }
  });
});
