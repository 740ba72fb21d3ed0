import Fastify, { type FastifyReply, type FastifyRequest, type preHandlerHookHandler } from 'fastify'
import { describe, expect, it } from 'vitest'
import { chain } from '../../../gateway/pipeline/chain.js'

// Real Fastify: the chain's contract is with its hook runner (done for a synchronous run, a promise otherwise).
async function serve(stages: Array<(request: FastifyRequest, reply: FastifyReply) => unknown>) {
  const app = Fastify()
  const seen: string[] = []
  app.decorateRequest('seen', null as never)
  app.addHook('onRequest', async (request) => {
    ;(request as unknown as { seen: string[] }).seen = seen
  })
  app.get('/', { preHandler: chain(stages as unknown as preHandlerHookHandler[]) }, async () => ({ seen }))
  const res = await app.inject({ method: 'GET', url: '/' })
  await app.close()
  return { res, seen }
}

const log = (name: string) => (request: FastifyRequest) => {
  ;(request as unknown as { seen: string[] }).seen.push(name)
}

describe('stage chain', () => {
  it('runs synchronous stages without a promise and reaches the handler', async () => {
    const { res, seen } = await serve([log('a'), log('b')])
    expect(res.statusCode).toBe(200)
    expect(seen).toEqual(['a', 'b'])
  })

  it('a lone synchronous stage is wrapped, not handed to Fastify bare (it would never call done)', async () => {
    const { res, seen } = await serve([log('only')])
    expect(res.statusCode).toBe(200)
    expect(seen).toEqual(['only'])
  })

  it('switches to awaiting at the first promise and keeps the order of the rest', async () => {
    const slow = async (request: FastifyRequest) => {
      await new Promise((r) => setImmediate(r))
      log('slow')(request)
    }
    const { res, seen } = await serve([log('a'), slow, log('b'), slow, log('c')])
    expect(res.statusCode).toBe(200)
    expect(seen).toEqual(['a', 'slow', 'b', 'slow', 'c'])
  })

  it('a synchronous throw ends the chain with that error, before and after an asynchronous stage', async () => {
    const boom = () => {
      throw Object.assign(new Error('refused'), { statusCode: 403 })
    }
    const first = await serve([log('a'), boom, log('never')])
    expect(first.res.statusCode).toBe(403)
    expect(first.seen).toEqual(['a'])
    const later = await serve([async (r: FastifyRequest) => log('async')(r), boom, log('never')])
    expect(later.res.statusCode).toBe(403)
    expect(later.seen).toEqual(['async'])
  })

  it('a rejected stage ends the chain with its error', async () => {
    const { res, seen } = await serve([log('a'), async () => Promise.reject(Object.assign(new Error('nope'), { statusCode: 401 })), log('never')])
    expect(res.statusCode).toBe(401)
    expect(seen).toEqual(['a'])
  })

  it('a stage that sends the reply stops the chain, synchronous or not', async () => {
    const send = (_q: FastifyRequest, reply: FastifyReply) => {
      void reply.code(204).send()
    }
    const sync = await serve([send, log('never')])
    expect(sync.res.statusCode).toBe(204)
    expect(sync.seen).toEqual([])
    const asyncSend = await serve([async (q: FastifyRequest, r: FastifyReply) => send(q, r), log('never')])
    expect(asyncSend.res.statusCode).toBe(204)
    expect(asyncSend.seen).toEqual([])
  })

  it('refuses callback-style stages, which it could not wait for', () => {
    expect(() => chain([((_q: unknown, _r: unknown, _done: unknown) => undefined) as unknown as preHandlerHookHandler, log('b') as unknown as preHandlerHookHandler])).toThrow(/must be a function of \(request, reply\)/)
  })
})
