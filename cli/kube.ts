/** Kubeconfig handling as kubectl's: `--kubeconfig`, else `KUBECONFIG` (a path list), else ~/.kube/config. */
import { KubeConfig } from '@kubernetes/client-node';

/** An error meant for the user: printed as one line, exit code 1. */
export class CliError extends Error {}

export function kubeConfig(opts: {
  kubeconfig?: string | undefined;
  context?: string | undefined;
}): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (opts.kubeconfig !== undefined && opts.kubeconfig !== '') kc.loadFromFile(opts.kubeconfig);
    else kc.loadFromDefault();
  } catch (e) {
    throw new CliError(`cannot load kubeconfig: ${e instanceof Error ? e.message : String(e)}`, {
      cause: e,
    });
  }
  if (opts.context !== undefined && opts.context !== '') {
    if (kc.getContextObject(opts.context) === null)
      throw new CliError(`context "${opts.context}" does not exist in the kubeconfig`);
    kc.setCurrentContext(opts.context);
  }
  if (kc.getCurrentCluster() === null)
    throw new CliError(
      'no cluster in the kubeconfig: pass --kubeconfig, set KUBECONFIG, or write ~/.kube/config',
    );
  return kc;
}
