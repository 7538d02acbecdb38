/**
 * SOA serials that move whenever a zone's content changes and never go back, also across
 * restarts. The serial is a clock reading in tenths of a second since 2025-01-01 (modulo 2^32),
 * or the previous serial plus one when the clock has not moved past it; comparisons use serial
 * number arithmetic (RFC 1982 §3.2), so the wrap in 2038 is harmless. Rebuilds are rate limited to
 * one per 100 ms (see server.ts), so the serial never runs ahead of the clock for long, and a
 * restarted sidecar, whose first serial is the clock, lands past every serial it handed out
 * before. A state file (optional) records the last serial and content digest of every zone, so an
 * unchanged zone keeps its serial over a restart and a clock stepped backwards cannot move it back.
 */

/** 2025-01-01T00:00:00Z in milliseconds. */
export const SERIAL_EPOCH_MS = Date.UTC(2025, 0, 1);

/** The clock's serial: deciseconds since SERIAL_EPOCH_MS, modulo 2^32. */
export function clockSerial(nowMs: number): number {
  return Math.floor((nowMs - SERIAL_EPOCH_MS) / 100) >>> 0;
}

/** RFC 1982 §3.2: is s1 greater than s2 in 32-bit serial number arithmetic? */
export function serialGreater(s1: number, s2: number): boolean {
  const a = s1 >>> 0;
  const b = s2 >>> 0;
  return (a < b && b - a > 2 ** 31) || (a > b && a - b < 2 ** 31);
}

/** The serial after `prev` for a content change at `nowMs`: the clock, or prev + 1 if it is not past prev. */
export function nextSerial(prev: number | undefined, nowMs: number): number {
  const clock = clockSerial(nowMs);
  if (prev === undefined || serialGreater(clock, prev)) return clock;
  return (prev + 1) >>> 0;
}

/** What is remembered of a zone between builds (and, with a state file, between runs). */
export interface SerialState {
  serial: number;
  digest: string;
}

/**
 * The serial of a zone whose content digest is `digest`: unchanged content keeps the previous
 * serial; changed (or new) content gets the next one.
 */
export function serialFor(prev: SerialState | undefined, digest: string, nowMs: number): number {
  if (prev && prev.digest === digest) return prev.serial;
  return nextSerial(prev?.serial, nowMs);
}
