/** The QMP client on hostile or broken peers: every case ends in a QmpError, within the deadline. */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { QmpError, qmp } from './qmp.ts';

const dir = mkdtempSync(join(tmpdir(), 'pow-qmp-'));
const servers: Server[] = [];
afterAll(() => {
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A Unix socket peer that answers each connection with `onConnect`. */
async function peer(name: string, onConnect: (s: Socket) => void): Promise<string> {
  const path = join(dir, name);
  const srv = createServer((s) => {
    // The client hangs up on bad peers: a reset on this side is expected.
    s.on('error', () => undefined);
    onConnect(s);
  });
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(path, r));
  return path;
}

describe('qmp client on bad peers', () => {
  it('refuses a socket that sends no QMP greeting', async () => {
    const p = await peer('nogreet', (s) => s.write('{"hello": 1}\n'));
    await expect(qmp(p, [{ execute: 'query-status' }], 2000)).rejects.toThrow(/not a QMP socket/);
  });

  it('refuses invalid JSON', async () => {
    const p = await peer('garbage', (s) => s.write('\u0000\u00ff not json\n'));
    await expect(qmp(p, [], 2000)).rejects.toThrow(/invalid JSON/);
  });

  it('refuses an endless line', async () => {
    const p = await peer('flood', (s) => {
      s.write('x'.repeat(2 * 1024 * 1024));
    });
    await expect(qmp(p, [], 5000)).rejects.toThrow(/longer than/);
  });

  it('gives up on a silent peer at the deadline', async () => {
    const p = await peer('silent', () => undefined);
    await expect(qmp(p, [], 300)).rejects.toThrow(/no answer within 300 ms/);
  });

  it('reports a QMP error reply with its class', async () => {
    const p = await peer('errors', (s) => {
      s.write('{"QMP": {"version": {}, "capabilities": []}}\n');
      s.on('data', (d: Buffer) => {
        const m = JSON.parse(d.toString().trim()) as { execute: string; id: string };
        if (m.execute === 'qmp_capabilities') s.write(`{"return": {}, "id": "${m.id}"}\n`);
        else
          s.write(
            `{"event": "X"}\n{"error": {"class": "CommandNotFound", "desc": "no such"}, "id": "${m.id}"}\n`,
          );
      });
    });
    const err = await qmp(p, [{ execute: 'nope' }], 2000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpError);
    expect((err as QmpError).qmpClass).toBe('CommandNotFound');
    expect((err as QmpError).message).toBe('QMP nope: no such');
  });

  it('reports a missing socket', async () => {
    await expect(qmp(join(dir, 'absent'), [], 2000)).rejects.toThrow(/cannot talk to QMP/);
  });
});
