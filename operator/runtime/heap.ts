/**
 * How much garbage V8 may pile up between major collections. Left to itself V8 grows the old
 * generation's limit to up to 4x what the last major collection found live (its growing factor
 * rises when the collector is fast relative to the program, which it is for an operator that
 * mostly waits on the API server), so an operator with ~160 MB live at 1,000 x 10 peaked at
 * 630 MB of heap and 853 MB of RSS. A fixed `--max-old-space-size` would bound that too, but
 * at one fleet size: the live heap grows with the fleet, and at ten times the fleet a fixed
 * limit crashes the operator instead of costing it more collections. A growth factor bounds the
 * garbage in proportion to what is live, at any fleet size (ADR 0021).
 */
import { setFlagsFromString } from 'node:v8';

/**
 * Flags the operator's node process must be started with (the image's entrypoint, the lab, the
 * tests and benchmarks; heap.test.ts keeps the Dockerfile in step): V8 fixes the young
 * generation's maximum as the heap is set up, so it cannot be set from main.ts. Measured at
 * 1,000 x 10 with V8's default: the young generation had grown to 134 MB (two 64 MB
 * semi-spaces) holding 1.2 MB live, a third of the RSS. The operator's young objects are
 * requests and responses that live for one API call; 8 MB semi-spaces hold many of those (ADR
 * 0021).
 */
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=8'];

/**
 * Sets V8's heap growing factor to 1 + percent/100 (0 leaves V8's own). V8 reads the flag each
 * time it computes the next collection's limit, so setting it after start-up takes effect from
 * the next major collection on (measured: the same peak as passing it on the command line).
 */
export function limitHeapGrowth(percent: number): void {
  if (percent <= 0) return;
  setFlagsFromString(`--heap-growing-percent=${String(Math.floor(percent))}`);
}
