/** Jigs by name. The script jig registers itself here when its executor is configured. */
import { noopJig } from './noop.ts';
import { testJig } from './test-jig.ts';
import type { Jig } from './types.ts';

export class JigRegistry {
  private readonly jigs = new Map<string, Jig>();

  constructor(jigs: Jig[] = [noopJig, testJig]) {
    for (const j of jigs) this.jigs.set(j.name, j);
  }

  register(j: Jig): void {
    this.jigs.set(j.name, j);
  }

  get(name: string): Jig | undefined {
    return this.jigs.get(name);
  }
}
