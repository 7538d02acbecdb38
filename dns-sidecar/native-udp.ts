/**
 * The native UDP loop (native/udp.c, ADR 0020): threads that read and write datagrams in batches
 * (recvmmsg/sendmmsg) and answer repeated questions from a table of finished answers that the JS
 * side fills; everything else comes up to JS in one call per batch. Built by `make native` with
 * the machine's C compiler; when it is missing or does not load, the server says so in its log and
 * serves UDP with dgram.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

declare const handleBrand: unique symbol;
/** An open native socket loop (a napi external). */
export interface NativeHandle {
  readonly [handleBrand]: true;
}

/** Counts since the loop was opened, summed over its threads. */
export interface NativeUdpStats {
  hits: number;
  misses: number;
  /** Misses dropped because the JS thread had MISS_QUEUE batches still to take. */
  queueFull: number;
  sendErrors: number;
  truncated: number;
  /** recvmmsg calls that returned datagrams (datagrams / batches: the mean batch). */
  batches: number;
  /** Cache hits' handling time: seconds summed, count, and per duration bucket (+Inf last). */
  sum: number;
  count: number;
  buckets: number[];
  entries: number;
  /** Answers from the table by tally id (sparse). */
  tallies: (number | undefined)[];
}

export type MissHandler = (messages: Buffer[], addresses: string[], ports: number[]) => void;

export interface NativeUdp {
  /** Binds host:port (port 0 picks one) and starts `threads` socket loops on it. */
  open(
    host: string,
    port: number,
    threads: number,
    cacheBytes: number,
    bounds: readonly number[],
    onMiss: MissHandler,
  ): NativeHandle;
  port(h: NativeHandle): number;
  send(h: NativeHandle, message: Buffer, host: string, port: number): boolean;
  /** Caches `response` for every later query whose bytes after the ID equal `query`'s. */
  put(h: NativeHandle, query: Buffer, response: Buffer, tally: number): void;
  clear(h: NativeHandle): void;
  stats(h: NativeHandle): NativeUdpStats;
  close(h: NativeHandle): void;
  /** Tally ids must be below this to be cached natively. */
  readonly maxTallies: number;
}

/** Where `make native` puts the addon. */
export const NATIVE_UDP_PATH = fileURLToPath(
  new URL('./native/build/crowbar_udp.node', import.meta.url),
);

/**
 * The addon at `path` (default: where `make native` puts it); the error says why when it cannot
 * be loaded. Node loads a file once per process, so loading again is a lookup.
 */
export function loadNativeUdp(path = NATIVE_UDP_PATH): { binding: NativeUdp } | { error: Error } {
  try {
    return { binding: createRequire(import.meta.url)(path) as NativeUdp };
  } catch (err) {
    return {
      error: new Error(`the native UDP addon ${path} did not load (make native builds it)`, {
        cause: err,
      }),
    };
  }
}
