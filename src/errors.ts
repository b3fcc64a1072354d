/**
 * Typed errors, each carrying the HTTP status it means for Prometheus's
 * retry logic: 4xx = never retry (the request can never succeed), 5xx/503 =
 * retry (a transient failure). `toResponse()` is the only place that turns
 * an error into a response.
 */

/**
 * An error that maps to an HTTP status and a one-line reason; `cause` keeps
 * the error behind it (a database error behind a 503) for logs.
 */
export class HttpError extends Error {
  constructor(readonly status: number, message: string, options?: ErrorOptions) {
    super(oneLine(message), options);
    this.name = "HttpError";
  }
}

/** 400: the payload can never be stored (bad snappy, protobuf or labels). */
export class BadRequestError extends HttpError {
  constructor(message: string, options?: ErrorOptions) {
    super(400, message, options);
    this.name = "BadRequestError";
  }
}

/** 503: a transient failure; Prometheus retries and nothing is lost. */
export class UnavailableError extends HttpError {
  constructor(message: string, options?: ErrorOptions) {
    super(503, message, options);
    this.name = "UnavailableError";
  }
}

/** Collapses a message to one line so that a response body is one line. */
export function oneLine(message: string): string {
  return message.replace(/\s*[\r\n]+\s*/g, " ").trim();
}

/** Builds the response for an error: HttpError keeps its status, anything else is a 500. */
export function toResponse(err: unknown, headers?: HeadersInit): Response {
  const status = err instanceof HttpError ? err.status : 500;
  const message = err instanceof HttpError
    ? err.message
    : `Internal error: ${oneLine(errorMessage(err))}`;
  const h = new Headers(headers);
  h.set("content-type", "text/plain; charset=utf-8");
  if (status === 503) h.set("retry-after", "1");
  return new Response(message + "\n", { status, headers: h });
}

/** The message of an error (or of anything thrown). */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
