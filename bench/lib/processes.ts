/**
 * Child processes of the benchmark, pinned to a core, and what the kernel says they cost:
 * CPU time from /proc/<pid>/stat (utime + stime, every thread of the process) and resident
 * memory from /proc/<pid>/status.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'

export interface Service {
  name: string
  child: ChildProcess
  pid: number
  stderr: () => string
  stop(): Promise<void>
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100

export const hasCommand = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0

/** `taskset -c <core>` when pinning is possible; the pid stays the program's (taskset execs it). */
export function pinned(core: number | undefined, argv: string[]): string[] {
  return core === undefined ? argv : ['taskset', '-c', String(core), ...argv]
}

export function startService(name: string, argv: string[], opts: { env?: NodeJS.ProcessEnv; stdout?: 'ignore' | 'pipe' | number } = {}): Service {
  const [cmd, ...args] = argv as [string, ...string[]]
  const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', opts.stdout ?? 'ignore', 'pipe'] })
  let err = ''
  child.stderr!.on('data', (d: Buffer) => {
    if (err.length < 64_000) err += d.toString()
  })
  if (child.pid === undefined) throw new Error(`${name}: could not start ${cmd}`)
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return {
    name,
    child,
    pid: child.pid,
    stderr: () => err,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    },
  }
}

/** Resolves once something accepts TCP connections on the port; fails if the service died. */
export async function waitForPort(service: Service, port: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (service.child.exitCode !== null) throw new Error(`${service.name} exited (${service.child.exitCode}): ${service.stderr().slice(-2000)}`)
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1')
      s.once('connect', () => (s.destroy(), resolve(true)))
      s.once('error', () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`${service.name} did not listen on ${port} within ${timeoutMs} ms: ${service.stderr().slice(-2000)}`)
}

/** CPU seconds the process has used so far (user + system, all threads). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name, which may itself contain spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
}

/** Resident set size now and its peak, in MiB. */
export function memoryMiB(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { rss: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024 }
}

/** Moves the current process (every thread) to one core, so the orchestrator stays off the SUT's core. */
export function pinSelf(core: number): boolean {
  return spawnSync('taskset', ['-a', '-p', '-c', String(core), String(process.pid)], { stdio: 'ignore' }).status === 0
}
