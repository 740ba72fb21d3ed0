/**
 * `npm run soak`: the reliability tests of CI (faults under load, live fuzz, scale-out, config
 * fuzz, conformance) with long phases, more clients and many more fuzz cases, then the figures
 * they printed (`[reliability] …` lines), for docs/reliability.md.
 *
 *   npm run soak -- [--minutes 10] [--workers 8] [--fuzz 5000] [--out bench/results/soak-DATE.md]
 *
 * --minutes is a target for the whole run; phases are sized from it.
 */
import { spawn } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    workers: { type: 'string', default: '8' },
    fuzz: { type: 'string', default: '5000' },
    out: { type: 'string' },
  },
})
const minutes = Number(values.minutes)
// Faults has ~9 phases, scale-out ~3: the rest of the time goes to fuzz and start-up.
const phaseMs = Math.max(1_500, Math.round((minutes * 60_000 * 0.6) / 12))
const env = {
  ...process.env,
  RELIABILITY_WORKERS: values.workers,
  RELIABILITY_PHASE_MS: String(phaseMs),
  RELIABILITY_FAULT_ROUNDS: String(Math.max(5, Math.round(phaseMs / 300))),
  FUZZ_LIVE_RUNS: values.fuzz,
  FUZZ_RUNS: values.fuzz,
}
const files = ['test/integration/faults.test.ts', 'test/integration/fuzz.test.ts', 'test/integration/scale-out.test.ts', 'test/unit/config/fuzz.test.ts', 'test/integration/conformance.test.ts', 'test/integration/attacks-misc.test.ts', 'test/integration/upstream-tls.test.ts']
const root = join(import.meta.dirname, '..')
const started = Date.now()
console.log(`soak: ${minutes} min target, phases ${phaseMs} ms, ${values.workers} SDK clients per load, ${values.fuzz} fuzz cases per property`)

const child = spawn(process.execPath, [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', ...files, '--testTimeout', String(30 * 60_000)], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] })
let output = ''
for (const s of [child.stdout, child.stderr]) {
  s.on('data', (d: Buffer) => {
    output += d.toString()
    process.stdout.write(d)
  })
}
const code = await new Promise<number | null>((r) => child.on('exit', r))
// Each figure is printed once per test and again in the file's summary; keep the first.
const figures = [...new Set(output.split('\n').filter((l) => l.startsWith('[reliability] ') && !l.includes('summary')).map((l) => l.slice(14)))]
const tests = /Tests\s+(.*)/.exec(output.replace(/\x1b\[[0-9;]*m/g, ''))?.[1] ?? 'unknown'
const report = `# Soak run ${new Date().toISOString()}

- target ${minutes} min, took ${((Date.now() - started) / 60_000).toFixed(1)} min; phases ${phaseMs} ms; ${values.workers} SDK clients per load; ${values.fuzz} fuzz cases per property
- vitest: ${tests} (exit ${code})

${figures.map((f) => `- ${f}`).join('\n')}
`
console.log(`\n${report}`)
if (values.out) {
  mkdirSync(dirname(values.out), { recursive: true })
  writeFileSync(values.out, report)
}
process.exit(code ?? 1)
