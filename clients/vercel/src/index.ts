// An OTLP span exporter for Vercel Edge and Serverless Functions that sends
// through spangate with the function's own Vercel OIDC token.
//
// - The token is looked up per export: the `x-vercel-oidc-token` header of
//   the current request (through `requestHeaders`, or Vercel's request
//   context), then `@vercel/oidc`'s `getVercelOidcToken` (or `oidcToken`),
//   then `VERCEL_OIDC_TOKEN`. A token whose `exp` has passed is skipped (the
//   payload is decoded, never verified: spangate verifies it).
// - `export()` never waits for the network: the request runs in a promise
//   handed to `waitUntil`, so the function's response is not delayed and the
//   platform keeps the function alive until the export is done.
// - 429, 502, 503 and 504 (and network errors) are retried, honouring
//   `Retry-After`, within `deadlineMillis`. Anything else is a real failure:
//   the export result is FAILED with an `ExportError` and `onError` is called.

import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { JsonTraceSerializer, ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';

/** Statuses worth another attempt (OTLP/HTTP "retryable" plus 502). */
export const RETRYABLE_STATUSES: readonly number[] = [429, 502, 503, 504];

/** Where a token came from (reported on errors, never the token itself). */
export type TokenSource = 'request-header' | 'vercel-oidc' | 'env';

/** Headers of the current request, as a `Headers` or a plain record. */
export type HeaderLike = Headers | Record<string, string | string[] | undefined>;

export interface VercelExporterOptions {
  /** spangate's traces URL, e.g. `https://spangate.example.com/v1/traces`. */
  url: string;
  /** `protobuf` (default) or `json`. */
  protocol?: 'protobuf' | 'json';
  /** Extra static headers (never `authorization`: the exporter sets it). */
  headers?: Record<string, string>;
  /**
   * The current request's headers, read synchronously when `export()` is
   * called. Default: Vercel's request context (`@vercel/request-context`).
   */
  requestHeaders?: () => HeaderLike | undefined;
  /**
   * Token provider tried after the request header. Default:
   * `getVercelOidcToken` from `@vercel/oidc` when that package is installed.
   * Pass `false` to skip this step.
   */
  oidcToken?: (() => Promise<string> | string) | false;
  /** Environment for `VERCEL_OIDC_TOKEN` (default `process.env` when present). */
  env?: Record<string, string | undefined>;
  /**
   * Keeps the function alive for the export. Default: Vercel's request
   * context `waitUntil` when present; otherwise the export simply runs.
   */
  waitUntil?: (promise: Promise<unknown>) => void;
  /** Total time for one export including retries (default 10 000 ms). */
  deadlineMillis?: number;
  /** First backoff without `Retry-After` (default 200 ms, doubled per attempt). */
  initialBackoffMillis?: number;
  /** Longest single wait, also caps `Retry-After` (default 5 000 ms). */
  maxBackoffMillis?: number;
  /** Called once per failed export with the error (after the last attempt). */
  onError?: (error: ExportError) => void;
  /** `fetch` to use (default the global one). */
  fetch?: typeof fetch;
  /** Clock, for tests. */
  now?: () => number;
}

/** Why an export failed. */
export class ExportError extends Error {
  /** HTTP status of the last answer (absent for network and token errors). */
  readonly status?: number;
  /** spangate's `x-request-id` of the last answer, to find its audit line. */
  readonly requestId?: string;
  /** Attempts made. */
  readonly attempts: number;
  /** Where the token came from. */
  readonly tokenSource?: TokenSource;
  /** True when the export gave up on a retryable answer at its deadline. */
  readonly retryable: boolean;

  constructor(
    message: string,
    fields: { status?: number; requestId?: string; attempts: number; tokenSource?: TokenSource; retryable?: boolean; cause?: unknown },
  ) {
    super(message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.name = 'ExportError';
    this.status = fields.status;
    this.requestId = fields.requestId;
    this.attempts = fields.attempts;
    this.tokenSource = fields.tokenSource;
    this.retryable = fields.retryable ?? false;
  }
}

const REQUEST_CONTEXT = Symbol.for('@vercel/request-context');
const TOKEN_HEADER = 'x-vercel-oidc-token';
/** A token this close to `exp` counts as expired (clock skew, transit). */
const EXPIRY_SKEW_SECONDS = 30;
/** Longest error body kept in a message. */
const MAX_MESSAGE = 300;

interface RequestContext {
  waitUntil?: (p: Promise<unknown>) => void;
  headers?: Record<string, string | string[] | undefined>;
}

function requestContext(): RequestContext | undefined {
  const holder = (globalThis as Record<symbol, unknown>)[REQUEST_CONTEXT] as { get?: () => RequestContext | undefined } | undefined;
  try {
    return holder?.get?.();
  } catch {
    return undefined;
  }
}

function headerValue(h: HeaderLike | undefined, name: string): string | undefined {
  if (!h) return undefined;
  if (typeof (h as Headers).get === 'function') return (h as Headers).get(name) ?? undefined;
  const rec = h as Record<string, string | string[] | undefined>;
  const v = rec[name] ?? Object.entries(rec).find(([k]) => k.toLowerCase() === name)?.[1];
  return Array.isArray(v) ? v[0] : v;
}

function base64UrlDecode(s: string): string {
  const b64 = s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4);
  const bin = atob(b64);
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

/**
 * `exp` of a JWT (seconds since the epoch), decoded without verification.
 * `undefined` when the token has no readable `exp`.
 */
export function tokenExpiry(token: string): number | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const payload = JSON.parse(base64UrlDecode(parts[1])) as { exp?: unknown };
    return typeof payload.exp === 'number' ? payload.exp : undefined;
  } catch {
    return undefined;
  }
}

function usable(token: string | undefined, nowMillis: number): token is string {
  if (!token) return false;
  const exp = tokenExpiry(token);
  return exp === undefined || exp - EXPIRY_SKEW_SECONDS > nowMillis / 1000;
}

/** `Retry-After` in milliseconds (delta seconds or an HTTP date). */
export function retryAfterMillis(value: string | null, nowMillis: number): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMillis);
}

/** The `message` of an OTLP error body (google.rpc.Status), JSON or protobuf. */
export function statusMessage(body: Uint8Array, contentType: string | null): string | undefined {
  if (body.length === 0) return undefined;
  if (contentType?.includes('json')) {
    try {
      const m = (JSON.parse(new TextDecoder().decode(body)) as { message?: unknown }).message;
      return typeof m === 'string' ? m : undefined;
    } catch {
      return undefined;
    }
  }
  if (contentType?.includes('protobuf')) {
    // google.rpc.Status: field 2 (message) is a length-delimited string.
    let i = 0;
    const varint = (): number => {
      let n = 0;
      let shift = 0;
      while (i < body.length) {
        const b = body[i++];
        n += (b & 0x7f) * 2 ** shift;
        if ((b & 0x80) === 0) return n;
        shift += 7;
        if (shift > 49) break;
      }
      throw new Error('bad varint');
    };
    try {
      while (i < body.length) {
        const tag = varint();
        const field = Math.floor(tag / 8);
        const wire = tag & 7;
        if (wire === 0) varint();
        else if (wire === 2) {
          const len = varint();
          if (i + len > body.length) return undefined;
          if (field === 2) return new TextDecoder().decode(body.subarray(i, i + len));
          i += len;
        } else if (wire === 1) i += 8;
        else if (wire === 5) i += 4;
        else return undefined;
      }
    } catch {
      return undefined;
    }
  }
  return undefined;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

let vercelOidcModule: Promise<(() => Promise<string>) | undefined> | undefined;
function vercelOidcProvider(): Promise<(() => Promise<string>) | undefined> {
  // Looked up once; a missing package (or a bundle without it) is not an error.
  vercelOidcModule ??= (async () => {
    try {
      const name = '@vercel/oidc';
      const mod = (await import(/* webpackIgnore: true */ name)) as { getVercelOidcToken?: () => Promise<string> };
      return typeof mod.getVercelOidcToken === 'function' ? mod.getVercelOidcToken : undefined;
    } catch {
      return undefined;
    }
  })();
  return vercelOidcModule;
}

/** An OTLP/HTTP span exporter for spangate, built for Vercel functions. */
export class VercelOtlpTraceExporter implements SpanExporter {
  private readonly opts: VercelExporterOptions;
  private readonly pending = new Set<Promise<void>>();
  private cachedToken: string | undefined;
  private stopped = false;

  constructor(options: VercelExporterOptions) {
    if (!options?.url) throw new TypeError('VercelOtlpTraceExporter: url is required');
    for (const k of Object.keys(options.headers ?? {})) {
      if (k.toLowerCase() === 'authorization') {
        throw new TypeError('VercelOtlpTraceExporter: headers must not set authorization (the OIDC token does)');
      }
    }
    this.opts = options;
  }

  private now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  /**
   * Never waits for the network: serializes, starts the send in a promise
   * given to `waitUntil`, and calls `resultCallback` when that send is done.
   */
  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    if (this.stopped) {
      resultCallback({ code: ExportResultCode.FAILED, error: new ExportError('exporter is shut down', { attempts: 0 }) });
      return;
    }
    // Read the request's token now: the request context is gone later.
    const ctx = requestContext();
    const headers = this.opts.requestHeaders ? this.opts.requestHeaders() : ctx?.headers;
    const requestToken = headerValue(headers, TOKEN_HEADER);
    const waitUntil = this.opts.waitUntil ?? ctx?.waitUntil;

    const run = (async () => {
      let body: Uint8Array | undefined;
      try {
        body = this.opts.protocol === 'json'
          ? JsonTraceSerializer.serializeRequest(spans)
          : ProtobufTraceSerializer.serializeRequest(spans);
      } catch (e) {
        throw new ExportError(`could not serialize ${spans.length} spans: ${String((e as Error)?.message ?? e)}`, { attempts: 0, cause: e });
      }
      if (!body) throw new ExportError(`could not serialize ${spans.length} spans`, { attempts: 0 });
      await this.send(body, requestToken);
    })().then(
      () => resultCallback({ code: ExportResultCode.SUCCESS }),
      (e: unknown) => {
        const error = e instanceof ExportError ? e : new ExportError(String((e as Error)?.message ?? e), { attempts: 0, cause: e });
        try {
          this.opts.onError?.(error);
        } catch {
          // A throwing hook must not turn into an unhandled rejection.
        }
        resultCallback({ code: ExportResultCode.FAILED, error });
      },
    );
    this.pending.add(run);
    void run.finally(() => this.pending.delete(run));
    if (waitUntil) {
      try {
        waitUntil(run);
      } catch {
        // Outside a request (e.g. at shutdown) there is nothing to extend.
      }
    }
  }

  /** The token for this attempt, in the documented order; `undefined` if none is usable. */
  private async token(requestToken: string | undefined, refresh: boolean): Promise<{ token: string; source: TokenSource } | undefined> {
    const now = this.now();
    if (usable(requestToken, now) && !refresh) return { token: requestToken, source: 'request-header' };
    if (this.opts.oidcToken !== false) {
      if (!refresh && usable(this.cachedToken, now)) return { token: this.cachedToken, source: 'vercel-oidc' };
      const provider = this.opts.oidcToken ?? (await vercelOidcProvider());
      if (provider) {
        try {
          const t = await provider();
          if (usable(t, this.now())) {
            this.cachedToken = t;
            return { token: t, source: 'vercel-oidc' };
          }
        } catch {
          // Fall through to the environment.
        }
      }
    }
    const env = this.opts.env ?? (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
    const fromEnv = env?.VERCEL_OIDC_TOKEN;
    if (usable(fromEnv, this.now())) return { token: fromEnv, source: 'env' };
    return undefined;
  }

  private async send(body: Uint8Array, requestToken: string | undefined): Promise<void> {
    const doFetch = this.opts.fetch ?? fetch;
    const deadline = this.now() + (this.opts.deadlineMillis ?? 10_000);
    const initial = this.opts.initialBackoffMillis ?? 200;
    const maxBackoff = this.opts.maxBackoffMillis ?? 5_000;
    const contentType = this.opts.protocol === 'json' ? 'application/json' : 'application/x-protobuf';
    let attempts = 0;
    let refreshed = false;
    for (;;) {
      const tok = await this.token(requestToken, refreshed);
      if (!tok) {
        throw new ExportError(
          'no usable Vercel OIDC token (x-vercel-oidc-token request header, @vercel/oidc, VERCEL_OIDC_TOKEN): missing or expired',
          { attempts },
        );
      }
      attempts += 1;
      const remaining = deadline - this.now();
      // AbortController + setTimeout: edge runtimes may lack AbortSignal.timeout.
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), Math.max(1, remaining));
      let res: Response;
      let answer: Uint8Array;
      try {
        res = await doFetch(this.opts.url, {
          method: 'POST',
          headers: { ...this.opts.headers, 'content-type': contentType, authorization: `Bearer ${tok.token}` },
          body: body as unknown as BodyInit,
          signal: abort.signal,
        });
        answer = new Uint8Array(await res.arrayBuffer());
      } catch (e) {
        clearTimeout(timer);
        const wait = Math.min(maxBackoff, initial * 2 ** (attempts - 1));
        if (this.now() + wait >= deadline) {
          throw new ExportError(`could not reach ${this.opts.url} after ${attempts} attempt(s): ${String((e as Error)?.message ?? e)}`, {
            attempts, tokenSource: tok.source, retryable: true, cause: e,
          });
        }
        await sleep(wait);
        continue;
      }
      clearTimeout(timer);
      const requestId = res.headers.get('x-request-id') ?? undefined;
      if (res.ok) return;
      const said = statusMessage(answer, res.headers.get('content-type'))?.slice(0, MAX_MESSAGE);
      const describe = `spangate answered ${res.status}${said ? `: ${said}` : ''}`;
      // An expired cached token: look the token up again, once.
      if (res.status === 401 && !refreshed && tok.source !== 'env') {
        refreshed = true;
        this.cachedToken = undefined;
        continue;
      }
      if (!RETRYABLE_STATUSES.includes(res.status)) {
        throw new ExportError(describe, { status: res.status, requestId, attempts, tokenSource: tok.source });
      }
      const hinted = retryAfterMillis(res.headers.get('retry-after'), this.now());
      const wait = Math.min(maxBackoff, hinted ?? initial * 2 ** (attempts - 1));
      if (this.now() + wait >= deadline) {
        throw new ExportError(`${describe} (gave up after ${attempts} attempt(s): the next retry would pass the export deadline)`, {
          status: res.status, requestId, attempts, tokenSource: tok.source, retryable: true,
        });
      }
      await sleep(wait);
    }
  }

  /** Wait for every export in flight. */
  async forceFlush(): Promise<void> {
    await Promise.allSettled([...this.pending]);
  }

  /** Refuse new exports and wait for those in flight. */
  async shutdown(): Promise<void> {
    this.stopped = true;
    await this.forceFlush();
  }
}
