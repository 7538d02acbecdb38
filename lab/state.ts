/** Where the lab keeps its state: .lab/ in the repo (git-ignored), or $CROWBAR_LAB_DIR. */
import { join } from 'node:path';

export const LAB_DIR = process.env['CROWBAR_LAB_DIR'] ?? join(import.meta.dirname, '..', '.lab');
export const CP_DIR = join(LAB_DIR, 'cp');
export const KUBECONFIG = join(CP_DIR, 'kubeconfig');
export const PIDS = join(CP_DIR, 'pids');
export const LAB_PID = join(LAB_DIR, 'lab.pid');
/** The admission webhook's CA and serving certificate, and its log. */
export const WEBHOOK_DIR = join(LAB_DIR, 'webhook');
export const WEBHOOK_LOG = join(LAB_DIR, 'webhook.log');
