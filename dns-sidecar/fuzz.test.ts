import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeMessage } from './codec.ts';
import { zoneSet } from './fixtures.test-helper.ts';
import { malformed, prng } from './fuzz.test-helper.ts';
import { handleMessage } from './handler.ts';

const zones = zoneSet();
const ctx = (transport: 'udp' | 'tcp') => ({
  zones,
  transport,
  remote: '127.0.0.1',
  transferAllowed: () => true,
});

/** What every answer to anything must satisfy: decodable, a response, our id, within the size. */
function checkAnswers(input: Buffer, transport: 'udp' | 'tcp'): void {
  const h = handleMessage(input, ctx(transport));
  for (const r of h.responses) {
    expect(r.length).toBeLessThanOrEqual(transport === 'udp' ? 1232 : 65535);
    const m = decodeMessage(r);
    expect(m.flag_qr).toBe(true);
    expect(m.id).toBe(input.readUInt16BE(0));
  }
}

describe('fuzz: the codec path never throws', () => {
  it('answers or drops arbitrary bytes (fast-check)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 700 }), fc.boolean(), (bytes, tcp) => {
        checkAnswers(Buffer.from(bytes), tcp ? 'tcp' : 'udp');
      }),
      { numRuns: 5_000 },
    );
  });

  it('answers or drops 20,000 targeted malformed messages', () => {
    const r = prng(7);
    const seen = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const { kind, msg } = malformed(r);
      seen.add(kind);
      checkAnswers(msg, i % 2 ? 'tcp' : 'udp');
    }
    expect(seen.size).toBe(11);
  });

  it('drops compression loops and counts past the end without answering', () => {
    for (const hex of [
      '000100000001000000000000c00c00010001',
      '0001000000010000000000000161c00ec00c00010001',
      '0001000000ff00ff00ff00ff',
    ]) {
      expect(handleMessage(Buffer.from(hex, 'hex'), ctx('udp'))).toMatchObject({
        outcome: 'drop',
        reason: 'malformed',
      });
    }
  });
});
