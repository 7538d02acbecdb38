/** Classifies Kubernetes API errors (client-node's ApiException) without leaking its shape. */
import { ApiException } from '@kubernetes/client-node';

export function apiCode(e: unknown): number | undefined {
  return e instanceof ApiException ? e.code : undefined;
}

export const isNotFound = (e: unknown): boolean => apiCode(e) === 404;
export const isConflict = (e: unknown): boolean => apiCode(e) === 409;

/** The API server's own message (e.g. a validation failure naming the field), else the error text. */
export function apiMessage(e: unknown): string {
  if (e instanceof ApiException) {
    const body: unknown = e.body;
    const parsed: unknown = typeof body === 'string' ? safeJson(body) : body;
    if (
      parsed &&
      typeof parsed === 'object' &&
      'message' in parsed &&
      typeof parsed.message === 'string'
    ) {
      return parsed.message;
    }
    return `HTTP ${e.code}: ${typeof body === 'string' ? body : e.message}`;
  }
  return e instanceof Error ? e.message : String(e);
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}
