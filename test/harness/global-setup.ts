/**
 * Vitest global setup for integration tests: one real control plane per run, torn down at the end
 * (and by exit/signal handlers when the run is interrupted). Fails loudly if it cannot start.
 */
import type { TestProject } from 'vitest/node';
import { startControlPlane, type ControlPlane } from './control-plane.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfig: string;
    apiServer: string;
    cpDir: string;
  }
}

let cp: ControlPlane | undefined;

export async function setup(project: TestProject): Promise<void> {
  cp = await startControlPlane({ controllerManager: true });
  console.log(`control plane ready in ${Math.round(cp.startMs)} ms at ${cp.server} (${cp.dir})`);
  project.provide('kubeconfig', cp.kubeconfig);
  project.provide('apiServer', cp.server);
  project.provide('cpDir', cp.dir);
}

export async function teardown(): Promise<void> {
  await cp?.stop();
}
