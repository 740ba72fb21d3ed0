/**
 * The MCP forwarding path on undici's raw `dispatch()`: no request or response streams are built
 * for a JSON answer, the upstream's bytes go straight to the client socket. Profiles put
 * @fastify/reply-from's stream plumbing at about as much CPU as all the security stages together
 * (docs/performance.md), so MCP routes use this; API routes and egress keep reply-from.
 *
 * The handler decides at the upstream's status line what the answer becomes: a direct relay
 * (the common case), a stream handed to the caller (SSE, or a response a stage must rewrite), or
 * an error when nothing has reached the client yet.
 */
import type { IncomingHttpHeaders } from 'node:http'
import { PassThrough } from 'node:stream'
import { rootCertificates } from 'node:tls'
import { Pool, type Dispatcher } from 'undici'

export interface UpstreamPoolOptions {
  connections: number
  timeoutMs: number
  idleTimeoutMs: number
  /** PEM of a CA trusted for this upstream in addition to the system store. */
  ca?: string | undefined
}

/**
 * One keep-alive pool per route, certificates always verified: used by dispatch() here and handed
 * to reply-from for API routes and egress (whose own option handling would turn checks off).
 * `connect` adds connector options (egress: a lookup that checks every resolved address).
 */
export function upstreamPool(origin: string, o: UpstreamPoolOptions, connect: object = {}): Pool {
  return new Pool(origin, {
    connections: o.connections,
    pipelining: 1,
    headersTimeout: o.timeoutMs,
    bodyTimeout: o.idleTimeoutMs,
    keepAliveTimeout: 30_000,
    connect: { ...connect, rejectUnauthorized: true, ...(o.ca ? { ca: [...rootCertificates, o.ca] } : {}) },
  })
}

/** What the caller does with a response, chosen when its head arrives. */
export type HeadDecision =
  /** Relay the body chunk by chunk through `write`; `end` when it is complete. */
  | { kind: 'direct'; write: (chunk: Buffer) => boolean; onDrain: (resume: () => void) => void; end: () => void; fail: (err: Error) => void }
  /** Feed the body into a stream the caller consumes (SSE, rewriting). */
  | { kind: 'stream'; stream: PassThrough }
  /** Discard the body (the caller answered already). */
  | { kind: 'discard' }

export interface UpstreamCall {
  path: string
  method: string
  headers: Record<string, string>
  body: Buffer | undefined
  /**
   * The response head: status and headers (lower-case names). May be async (observers). Must not
   * throw for a refusal: answer the client and return `discard`. A throw is an internal failure.
   */
  onHead: (status: number, headers: IncomingHttpHeaders, makeStream: () => PassThrough) => HeadDecision | Promise<HeadDecision>
  /** No response head was received (connection refused, timeout, reset), or onHead failed. */
  onError: (err: Error) => void
}

/** Starts the call; the returned function aborts it (the client went away). */
export function dispatchUpstream(pool: Dispatcher, call: UpstreamCall): (reason: Error) => void {
  let controller: Dispatcher.DispatchController | undefined
  let abortedEarly: Error | undefined
  let decision: HeadDecision | undefined
  /** Chunks that arrive while an async onHead is still deciding. */
  let pending: Buffer[] | undefined
  let ended = false
  let headSeen = false

  const deliver = (d: HeadDecision, chunk: Buffer, ctrl: Dispatcher.DispatchController) => {
    if (d.kind === 'direct') {
      if (!d.write(chunk)) {
        ctrl.pause()
        d.onDrain(() => ctrl.resume())
      }
    } else if (d.kind === 'stream') {
      if (!d.stream.write(chunk)) {
        ctrl.pause()
        d.stream.once('drain', () => ctrl.resume())
      }
    }
  }
  const finish = (d: HeadDecision) => {
    if (d.kind === 'direct') d.end()
    else if (d.kind === 'stream') d.stream.end()
  }
  const apply = (d: HeadDecision, ctrl: Dispatcher.DispatchController) => {
    decision = d
    if (d.kind === 'discard') {
      pending = undefined
      if (!ended && !ctrl.aborted) ctrl.abort(new Error('response discarded'))
      return
    }
    if (d.kind === 'stream') {
      // The consumer destroying its stream (client gone, deadline, refusal) cancels the call.
      d.stream.once('close', () => {
        if (!ended && !ctrl.aborted) ctrl.abort(new Error('response stream closed'))
      })
    }
    const queued = pending ?? []
    pending = undefined
    for (const c of queued) deliver(d, c, ctrl)
    if (ended) finish(d)
  }

  pool.dispatch(
    { path: call.path, method: call.method, headers: call.headers, body: call.body ?? null, idempotent: false },
    {
      onRequestStart(ctrl) {
        controller = ctrl
        if (abortedEarly) ctrl.abort(abortedEarly)
      },
      onResponseStart(ctrl, status, headers) {
        if (status < 200) return
        headSeen = true
        let made: PassThrough | undefined
        const makeStream = () => (made ??= new PassThrough())
        let d: HeadDecision | Promise<HeadDecision>
        // onHead answers the client itself when it refuses; if it fails, nobody has: onError does.
        const failed = (e: unknown) => {
          decision = { kind: 'discard' }
          if (!ctrl.aborted) ctrl.abort(e as Error)
          call.onError(e as Error)
        }
        try {
          d = call.onHead(status, headers, makeStream)
        } catch (e) {
          return failed(e)
        }
        if (d instanceof Promise) {
          pending = []
          d.then((x) => apply(x, ctrl), failed)
        } else apply(d, ctrl)
      },
      onResponseData(ctrl, chunk) {
        if (pending) pending.push(chunk)
        else if (decision) deliver(decision, chunk, ctrl)
      },
      onResponseEnd() {
        ended = true
        if (decision && !pending) finish(decision)
      },
      onResponseError(_ctrl, err) {
        if (!headSeen) return call.onError(err)
        // After the head: the body broke off. What was promised to the client cannot be kept.
        if (decision?.kind === 'direct') decision.fail(err)
        else if (decision?.kind === 'stream') decision.stream.destroy(err)
      },
    },
  )
  return (reason) => {
    if (controller) {
      if (!controller.aborted) controller.abort(reason)
    } else abortedEarly = reason
  }
}
