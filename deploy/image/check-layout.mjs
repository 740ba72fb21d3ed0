// Layout checks of a built mcp-warden image, run by build-with-podman.sh on the image's mounted
// root filesystem (MNT) and its `podman image inspect` config (CONFIG). Exits 1 listing every problem.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

const root = join(import.meta.dirname, '..', '..')
const mnt = process.env.MNT
const config = JSON.parse(process.env.CONFIG)
const size = Number(process.env.SIZE)
const limit = Number(process.env.SIZE_LIMIT_MB) * 1e6
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const problems = []
const expect = (ok, what) => { if (!ok) problems.push(what) }
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b)

// Config: what Kubernetes and `docker run` see.
expect(config.User === '1000:1000', `User is ${config.User}, not 1000:1000 (runAsNonRoot needs a numeric uid)`)
expect(same(config.Entrypoint, ['node', '/app/dist/gateway/cli.js']), `Entrypoint is ${JSON.stringify(config.Entrypoint)}`)
expect(same(config.Cmd, ['serve', '--config', '/etc/mcp-warden/gateway.yaml']), `Cmd is ${JSON.stringify(config.Cmd)}`)
expect(config.StopSignal === 'SIGTERM', `StopSignal is ${config.StopSignal}`)
expect(config.WorkingDir === '/app', `WorkingDir is ${config.WorkingDir}`)
expect((config.Env ?? []).includes('NODE_ENV=production'), 'NODE_ENV=production is not set')
expect(same(Object.keys(config.ExposedPorts ?? {}).sort(), ['8080/tcp', '9090/tcp']), `ExposedPorts are ${Object.keys(config.ExposedPorts ?? {})}`)
expect(!(config.Env ?? []).some((e) => /SECRET|TOKEN|PASSWORD|KEY/i.test(e.split('=')[0])), 'an env var looks like a credential')
expect(size > 0 && size < limit, `size ${(size / 1e6).toFixed(0)} MB is not under ${limit / 1e6} MB`)

// The user the pod runs as.
const passwd = readFileSync(join(mnt, 'etc', 'passwd'), 'utf8')
expect(/^node:x:1000:1000:/m.test(passwd), 'no node user with uid/gid 1000 in /etc/passwd')
expect(existsSync(join(mnt, 'usr', 'local', 'bin', 'node')), 'no /usr/local/bin/node')

// Production dependencies only, as package-lock.json has them: a devDependency that a production
// dependency also needs (zod, through the MCP SDK) is not "dev" there and belongs in the image.
const modules = join(mnt, 'app', 'node_modules')
const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'))
let prodCount = 0
for (const [key, p] of Object.entries(lock.packages)) {
  if (!key.startsWith('node_modules/')) continue
  const there = existsSync(join(mnt, 'app', key, 'package.json'))
  if (p.dev) expect(!there, `dev-only package ${key.slice(13)} present`)
  else if (!p.devOptional && !p.optional) {
    expect(there, `production package ${key.slice(13)} missing`)
    prodCount++
  }
}
for (const dep of Object.keys(pkg.dependencies)) expect(existsSync(join(modules, dep, 'package.json')), `dependency ${dep} missing`)
for (const dev of ['typescript', 'vitest', 'tsx', 'oidc-provider']) expect(!existsSync(join(modules, dev)), `${dev} present`)
expect(existsSync(join(mnt, 'app', 'dist', 'gateway', 'cli.js')), 'no /app/dist/gateway/cli.js')
expect(!existsSync(join(mnt, 'app', 'gateway')) && !existsSync(join(mnt, 'app', 'test')), 'TypeScript sources or tests in /app')
expect(existsSync(join(mnt, 'app', 'policies', 'schema', 'gateway.schema.json')), 'no /app/policies/schema/gateway.schema.json')
expect(!existsSync(join(mnt, 'etc', 'mcp-warden', 'gateway.yaml')), 'a gateway.yaml is baked in (it is mounted)')

// Read-only for the runtime user: nothing under /app belongs to uid 1000 or is writable by others,
// so a compromised process cannot rewrite the gateway even where the root filesystem is writable.
function walk(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    const st = statSync(p, { throwIfNoEntry: false })
    if (!st) continue
    if (st.uid === 1000 || st.gid === 1000 && st.mode & 0o020 || st.mode & 0o002) problems.push(`${p.slice(mnt.length)} is writable by uid 1000 (owner ${st.uid}, mode ${(st.mode & 0o777).toString(8)})`)
    if (st.isDirectory()) walk(p)
    if (problems.length > 20) return
  }
}
walk(join(mnt, 'app'))

if (problems.length) {
  console.error(`image layout: ${problems.length} problem(s)\n  ${problems.join('\n  ')}`)
  process.exit(1)
}
console.log(`image layout: ok (user 1000:1000, entrypoint, ${prodCount} production packages and no dev-only one, /app read-only for uid 1000, ${(size / 1e6).toFixed(0)} MB)`)
