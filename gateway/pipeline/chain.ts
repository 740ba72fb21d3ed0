/**
 * The stage runner: the stages of one phase (onRequest or preHandler) of a route, in the order
 * pipeline/stages.ts lists them, run as one Fastify hook.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler, preHandlerHookHandler } from 'fastify'

/**
 * Stages run as one Fastify hook: the hook runner's per-hook bookkeeping (a promise, a tick and a
 * callback each) cost more than most stages themselves on the hot path. Stages refuse by throwing,
 * so the first throw ends the chain exactly as separate hooks would. A stage may also be a plain
 * function that returns nothing (the decide stage, a credential already cached): it costs no
 * promise and no tick. The chain stays synchronous until a stage returns a promise, then hands
 * Fastify a promise for the rest; otherwise it calls `done` itself.
 */
type Stage = (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) => unknown
const isThenable = (v: unknown): v is PromiseLike<unknown> => v !== null && typeof v === 'object' && typeof (v as PromiseLike<unknown>).then === 'function'

export function chain<H extends onRequestHookHandler | preHandlerHookHandler>(hooks: H[]): H {
  if (hooks.length === 1 && hooks[0]!.constructor.name === 'AsyncFunction') return hooks[0]!
  // A callback-style hook (request, reply, done) would be skipped over, not awaited.
  for (const h of hooks) if (h.length > 2) throw new Error(`stage ${h.name || '(anonymous)'} must be a function of (request, reply)`)
  const stages = hooks as unknown as Stage[]
  async function rest(self: FastifyInstance, request: FastifyRequest, reply: FastifyReply, pending: PromiseLike<unknown>, from: number): Promise<void> {
    await pending
    if (reply.sent) return
    for (let i = from; i < stages.length; i++) {
      const r = stages[i]!.call(self, request, reply)
      if (isThenable(r)) await r
      if (reply.sent) return
    }
  }
  const run = function (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): Promise<void> | undefined {
    for (let i = 0; i < stages.length; i++) {
      // A synchronous throw reaches Fastify's hook runner, which treats it as a rejected hook.
      const r = stages[i]!.call(this, request, reply)
      if (isThenable(r)) return rest(this, request, reply, r, i + 1)
      if (reply.sent) break
    }
    done()
    return undefined
  }
  return run as unknown as H
}

