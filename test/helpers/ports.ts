import { createServer } from 'node:net';

/**
 * A loopback TCP port that was free a moment ago. Prefer listening on port 0 when the code under
 * test allows it; this is for processes (redis-server) that need the number up front.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('could not determine a free port'))));
    });
  });
}
