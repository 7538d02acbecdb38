/** Kubeconfig handling as kubectl's: `--kubeconfig`, else `KUBECONFIG` (a path list), else ~/.kube/config. */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
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
    else {
      // kubectl merges the files of a KUBECONFIG list and skips the ones that do not exist.
      const list = process.env['KUBECONFIG'];
      if (list !== undefined && list !== '') {
        const found = list.split(delimiter).filter((f) => f !== '' && existsSync(f));
        if (found.length === 0)
          throw new CliError(`none of the files in KUBECONFIG exists: ${list}`);
        process.env['KUBECONFIG'] = found.join(delimiter);
      } else if (
        !existsSync(join(homedir(), '.kube', 'config')) &&
        process.env['KUBERNETES_SERVICE_HOST'] === undefined
      )
        throw new CliError(
          'no kubeconfig: pass --kubeconfig, set KUBECONFIG, or write ~/.kube/config',
        );
      kc.loadFromDefault();
    }
  } catch (e) {
    if (e instanceof CliError) throw e;
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
