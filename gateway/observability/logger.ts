import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino'

/**
 * Paths that may hold credentials. Redaction is the second line of defence: the first is that
 * request serializers never include headers or query strings at all.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'headers.cookie',
  '*.token',
  '*.access_token',
  '*.refresh_token',
  '*.id_token',
  '*.subject_token',
  '*.actor_token',
  '*.client_secret',
  '*.client_assertion',
  '*.password',
  '*.secret',
]

export interface LogRequestLike {
  id: string
  method: string
  url: string
  ip?: string
}

/** Only the path is logged: a query string may carry a token (MCP forbids it, clients still try). */
export function serializeRequest(req: LogRequestLike): Record<string, unknown> {
  const q = req.url.indexOf('?')
  return { id: req.id, method: req.method, path: q === -1 ? req.url : req.url.slice(0, q), hasQuery: q !== -1 || undefined, ip: req.ip }
}

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options: LoggerOptions = {
    level,
    base: { service: 'mcp-warden' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
      req: serializeRequest,
      res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
      err: pino.stdSerializers.err,
    },
    timestamp: pino.stdTimeFunctions.isoTime,
  }
  // Asynchronous destination keeps log I/O off the request path (flushed on shutdown).
  return destination ? pino(options, destination) : pino(options, pino.destination({ dest: 1, sync: false }))
}
