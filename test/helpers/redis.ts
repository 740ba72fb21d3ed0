import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { freePort } from './ports.js';

export interface RedisInstance {
  url: string;
  port: number;
  /** Graceful shutdown (SIGTERM), resolves once the process has exited. */
  stop(): Promise<void>;
  /** Simulates a crash (SIGKILL), resolves once the process has exited. */
  kill(): Promise<void>;
  /** Starts a fresh, empty redis-server on the same port (stopping the current one if alive). */
  restart(): Promise<void>;
}

function findRedisServer(): string {
  const candidates = [
    process.env.REDIS_SERVER_BIN,
    ...(process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'redis-server')),
    '/usr/bin/redis-server',
    '/usr/local/bin/redis-server',
  ];
  for (const candidate of candidates) {
    if (!candidate) continue;
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // try the next location
    }
  }
  throw new Error(
    'redis-server binary not found (looked in $REDIS_SERVER_BIN, $PATH, /usr/bin, /usr/local/bin). ' +
      'Install it with: apt-get install -y redis-server',
  );
}

/** Sends a raw RESP PING; resolves true on +PONG. Never throws. */
export function pingRedis(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString('utf8');
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

function waitForExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/**
 * Launches a private, non-persistent redis-server on a free loopback port (never the system
 * instance on 6379) and waits until it answers PING.
 */
export async function startRedis(opts: { startTimeoutMs?: number } = {}): Promise<RedisInstance> {
  const bin = findRedisServer();
  const port = await freePort();
  let child: ChildProcess | undefined;

  async function launch(): Promise<void> {
    const output: string[] = [];
    const proc = spawn(
      bin,
      ['--save', '', '--appendonly', 'no', '--port', String(port), '--bind', '127.0.0.1', '--dir', tmpdir()],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = proc;
    // Kept for the error message only; redis' startup banner must not reach test output.
    proc.stdout?.on('data', (c: Buffer) => output.push(c.toString()));
    proc.stderr?.on('data', (c: Buffer) => output.push(c.toString()));
    let spawnError: Error | undefined;
    proc.once('error', (err) => (spawnError = err));

    const deadline = Date.now() + (opts.startTimeoutMs ?? 10_000);
    while (Date.now() < deadline) {
      if (spawnError) throw new Error(`failed to spawn ${bin}: ${spawnError.message}`);
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`redis-server exited during startup on port ${port}:\n${output.join('').slice(-2000)}`);
      }
      if (await pingRedis(port)) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    proc.kill('SIGKILL');
    throw new Error(`redis-server did not answer PING on port ${port} in time:\n${output.join('').slice(-2000)}`);
  }

  async function signal(sig: NodeJS.Signals): Promise<void> {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = waitForExit(proc);
    proc.kill(sig);
    await exited;
  }

  await launch();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop: () => signal('SIGTERM'),
    kill: () => signal('SIGKILL'),
    async restart() {
      await signal('SIGTERM');
      await launch();
    },
  };
}
