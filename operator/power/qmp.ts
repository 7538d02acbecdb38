/**
 * A small QMP client (QEMU Machine Protocol, docs/interop/qmp-spec): one connection per call
 * sequence over the VM's Unix socket, newline-delimited JSON, capabilities negotiation first,
 * asynchronous events skipped, every command matched to its reply by `id`, all under a deadline.
 */
import { createConnection, type Socket } from 'node:net';

export class QmpError extends Error {
  readonly qmpClass: string | undefined;
  constructor(message: string, qmpClass?: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'QmpError';
    this.qmpClass = qmpClass;
  }
}

export interface QmpCommand {
  execute: string;
  arguments?: Record<string, unknown>;
}

/** Bounds one reply line: QMP replies to our commands are small. */
const MAX_LINE = 1024 * 1024;

/** Parses complete lines out of `buf`; returns them and the rest. */
export function splitLines(buf: string): { lines: string[]; rest: string } {
  const parts = buf.split('\n');
  const rest = parts.pop() ?? '';
  return { lines: parts.filter((l) => l.trim() !== ''), rest };
}

/**
 * Connects to `socketPath`, negotiates capabilities, runs `commands` in order and resolves with
 * each one's `return` value. Rejects with a {@link QmpError} on a QMP error reply, a closed
 * connection or the deadline.
 */
export function qmp(
  socketPath: string,
  commands: readonly QmpCommand[],
  timeoutMs = 10_000,
): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const sock: Socket = createConnection({ path: socketPath });
    const results: unknown[] = [];
    let buf = '';
    let stage: 'greeting' | 'caps' | number = 'greeting';
    let done = false;
    const finish = (err?: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(results);
    };
    const timer = setTimeout(() => {
      finish(new QmpError(`QMP at ${socketPath}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const send = (id: string, c: QmpCommand): void => {
      sock.write(`${JSON.stringify({ ...c, id })}\n`);
    };
    const next = (): void => {
      const i = stage === 'caps' ? 0 : (stage as number) + 1;
      if (i >= commands.length) {
        finish();
        return;
      }
      stage = i;
      send(`c${i}`, commands[i] as QmpCommand);
    };
    sock.setEncoding('utf8');
    sock.on('error', (e) => {
      finish(
        new QmpError(`cannot talk to QMP at ${socketPath}: ${e.message}`, undefined, { cause: e }),
      );
    });
    sock.on('close', () => {
      finish(new QmpError(`QMP at ${socketPath} closed the connection`));
    });
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE) {
        finish(new QmpError(`QMP at ${socketPath} sent a line longer than ${MAX_LINE} bytes`));
        return;
      }
      const { lines, rest } = splitLines(buf);
      buf = rest;
      for (const line of lines) {
        let msg: Record<string, unknown>;
        try {
          msg = JSON.parse(line) as Record<string, unknown>;
        } catch (e) {
          finish(new QmpError(`QMP at ${socketPath} sent invalid JSON`, undefined, { cause: e }));
          return;
        }
        if ('event' in msg) continue;
        if (stage === 'greeting') {
          if (!('QMP' in msg)) {
            finish(new QmpError(`${socketPath} is not a QMP socket (no greeting)`));
            return;
          }
          stage = 'caps';
          send('caps', { execute: 'qmp_capabilities' });
          continue;
        }
        const err = msg['error'] as { class?: string; desc?: string } | undefined;
        if (err) {
          const what = stage === 'caps' ? 'qmp_capabilities' : commands[stage]?.execute;
          finish(new QmpError(`QMP ${String(what)}: ${err.desc ?? 'error'}`, err.class));
          return;
        }
        if (stage !== 'caps') results.push(msg['return']);
        next();
        if (done) return;
      }
    });
  });
}

/** Whether the QMP socket answers yet (qemu makes it a moment after it starts). */
export async function qmpAnswers(socketPath: string, timeoutMs = 2000): Promise<boolean> {
  try {
    await qmp(socketPath, [{ execute: 'query-status' }], timeoutMs);
    return true;
  } catch {
    return false;
  }
}
