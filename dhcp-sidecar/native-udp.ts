/**
 * The DHCP sidecar's native port-67 loop (native/udp4.c, ADR 0023): a thread that reads datagrams
 * in batches (recvmmsg, with IP_PKTINFO) and hands each batch to JS in one call; JS sends the
 * batch's replies with one sendmmsg. Built by `make native` with the machine's C compiler; when
 * it is missing or does not load, the server says so in its log and serves with dgram.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

declare const handleBrand: unique symbol;
/** An open native socket loop (a napi external). */
export interface NativeDhcpHandle {
  readonly [handleBrand]: true;
}

/**
 * Words per received datagram in `meta`: offset and length in `data`, source address and port,
 * the interface it arrived on, its destination address (addresses as host-order integers), flags.
 */
export const META_WORDS = 8;
export const META = {
  OFFSET: 0,
  LENGTH: 1,
  SOURCE: 2,
  SOURCE_PORT: 3,
  IFINDEX: 4,
  DESTINATION: 5,
  FLAGS: 6,
} as const;
/** Set in FLAGS when the datagram was longer than the loop's 4,096-byte slot (cut). */
export const FLAG_TRUNCATED = 1;
/** Words per reply in `send`'s meta: destination address, destination port, source address. */
export const SEND_META_WORDS = 4;

export type BatchHandler = (data: Buffer, meta: Uint32Array, n: number) => void;

export interface NativeDhcpStats {
  batches: number;
  datagrams: number;
  truncated: number;
  sent: number;
  sendErrors: number;
}

export interface NativeDhcpUdp {
  /** Binds host:port (port 0 picks one) and starts reading; SO_RCVBUF when recvBufferBytes > 0. */
  open(
    host: string,
    port: number,
    recvBufferBytes: number,
    onBatch: BatchHandler,
  ): NativeDhcpHandle;
  port(h: NativeDhcpHandle): number;
  /** Sends replies[0..n) as meta says (SEND_META_WORDS each); returns how many the kernel took. */
  send(h: NativeDhcpHandle, replies: readonly Buffer[], meta: Uint32Array, n: number): number;
  stats(h: NativeDhcpHandle): NativeDhcpStats;
  close(h: NativeDhcpHandle): void;
  readonly metaWords: number;
  readonly sendMetaWords: number;
}

/** Where `make native` puts the addon. */
export const NATIVE_DHCP_UDP_PATH = fileURLToPath(
  new URL('./native/build/crowbar_dhcp_udp.node', import.meta.url),
);

/** The addon at `path` (default: where `make native` puts it); the error says why it did not load. */
export function loadNativeDhcpUdp(
  path = NATIVE_DHCP_UDP_PATH,
): { binding: NativeDhcpUdp } | { error: Error } {
  try {
    const binding = createRequire(import.meta.url)(path) as NativeDhcpUdp;
    if (binding.metaWords !== META_WORDS || binding.sendMetaWords !== SEND_META_WORDS)
      throw new Error('the addon was built from another udp4.c (make native)');
    return { binding };
  } catch (err) {
    return {
      error: new Error(`the native DHCP UDP addon ${path} did not load (make native builds it)`, {
        cause: err,
      }),
    };
  }
}
