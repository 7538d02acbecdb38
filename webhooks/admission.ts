/**
 * The AdmissionReview v1 wire format (admission.k8s.io/v1): parsing what the API server sends and
 * building what it expects back. Only the fields this webhook reads are typed; the rest is kept
 * as it came. Reference: https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/
 */

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';

export type Operation = 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT';
const OPERATIONS: readonly string[] = ['CREATE', 'UPDATE', 'DELETE', 'CONNECT'];

/** The part of `AdmissionReview.request` that the decisions read. */
export interface AdmissionRequest {
  /** Echoed in the response so the API server can match it. */
  readonly uid: string;
  readonly kind: { readonly group: string; readonly version: string; readonly kind: string };
  readonly resource: {
    readonly group: string;
    readonly version: string;
    readonly resource: string;
  };
  /** Set for writes to a subresource such as /status; those are not ours to judge. */
  readonly subResource?: string;
  /** The object's name; for DELETE the only place it is sure to be. */
  readonly name?: string;
  readonly operation: Operation;
  /** The new object (CREATE, UPDATE); null for DELETE. */
  readonly object?: unknown;
  /** The object as stored (UPDATE, DELETE); null for CREATE. */
  readonly oldObject?: unknown;
  readonly dryRun?: boolean;
  readonly userInfo?: { readonly username?: string };
}

/** The webhook's verdict on one request. */
export type Decision =
  | { readonly allowed: true }
  | {
      readonly allowed: false;
      /** What is wrong and what to do instead; shown to the user by kubectl. */
      readonly message: string;
      /** HTTP-like code the API server returns to its client (403 unless the webhook failed). */
      readonly code?: number;
    };

export const allow: Decision = { allowed: true };

export function deny(message: string, code = 403): Decision {
  return { allowed: false, message, code };
}

/** Why an HTTP body is not an AdmissionReview we can answer. */
export class MalformedReview extends Error {
  override readonly name = 'MalformedReview';
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function groupVersionField<K extends string>(
  v: unknown,
  field: string,
  last: K,
): { group: string; version: string } & Record<K, string> {
  if (
    !isRecord(v) ||
    typeof v['group'] !== 'string' ||
    typeof v['version'] !== 'string' ||
    typeof v[last] !== 'string'
  ) {
    throw new MalformedReview(`request.${field} must be an object with group, version and ${last}`);
  }
  return { group: v['group'], version: v['version'], [last]: v[last] } as {
    group: string;
    version: string;
  } & Record<K, string>;
}

/**
 * Checks the shape of a parsed AdmissionReview v1 and returns its request. Throws
 * {@link MalformedReview} with a message naming the first bad field.
 */
export function parseReview(body: unknown): AdmissionRequest {
  if (!isRecord(body)) throw new MalformedReview('the body must be a JSON object');
  if (body['apiVersion'] !== ADMISSION_API_VERSION || body['kind'] !== 'AdmissionReview') {
    throw new MalformedReview(
      `expected apiVersion ${ADMISSION_API_VERSION} and kind AdmissionReview (register the webhook with admissionReviewVersions [v1])`,
    );
  }
  const r = body['request'];
  if (!isRecord(r)) throw new MalformedReview('request must be an object');
  const uid = r['uid'];
  if (typeof uid !== 'string' || uid === '') {
    throw new MalformedReview('request.uid must be a non-empty string');
  }
  const operation = r['operation'];
  if (typeof operation !== 'string' || !OPERATIONS.includes(operation)) {
    throw new MalformedReview(`request.operation must be one of ${OPERATIONS.join(', ')}`);
  }
  const optionalString = (field: string): string | undefined => {
    const v = r[field];
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string') throw new MalformedReview(`request.${field} must be a string`);
    return v;
  };
  const subResource = optionalString('subResource');
  const name = optionalString('name');
  const userInfo = r['userInfo'];
  const username = isRecord(userInfo) ? userInfo['username'] : undefined;
  return {
    uid,
    kind: groupVersionField(r['kind'], 'kind', 'kind'),
    resource: groupVersionField(r['resource'], 'resource', 'resource'),
    operation: operation as Operation,
    ...(subResource !== undefined ? { subResource } : {}),
    ...(name !== undefined ? { name } : {}),
    ...(r['object'] !== undefined && r['object'] !== null ? { object: r['object'] } : {}),
    ...(r['oldObject'] !== undefined && r['oldObject'] !== null
      ? { oldObject: r['oldObject'] }
      : {}),
    ...(r['dryRun'] === true ? { dryRun: true } : {}),
    ...(typeof username === 'string' ? { userInfo: { username } } : {}),
  };
}

/** metav1.Status reasons for the codes a decision carries. */
const STATUS_REASONS: Readonly<Record<number, string>> = { 400: 'BadRequest', 403: 'Forbidden' };

/** The AdmissionReview the API server expects back for `uid`. */
export function reviewResponse(uid: string, decision: Decision): object {
  return {
    apiVersion: ADMISSION_API_VERSION,
    kind: 'AdmissionReview',
    response: decision.allowed
      ? { uid, allowed: true }
      : {
          uid,
          allowed: false,
          status: {
            code: decision.code ?? 403,
            reason: STATUS_REASONS[decision.code ?? 403] ?? 'InternalError',
            message: decision.message,
          },
        },
  };
}
