/** Runs every policy suite in policies/ (each subdirectory is one policy set), as CI does. */
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { formatSuiteRun, runSuites } from '../../../gateway/policy/suite.js'

const root = join(import.meta.dirname, '..', '..', '..', 'policies')
const dirs = readdirSync(root)
  .map((d) => join(root, d))
  .filter((d) => statSync(d).isDirectory() && !d.endsWith('schema'))

describe('policies/ suites', () => {
  it('there are suites to run', () => expect(dirs.length).toBeGreaterThan(0))
  for (const dir of dirs) {
    it(`${dir.slice(root.length + 1)} / every expectation holds`, () => {
      const run = runSuites(dir)
      expect(run.results.length).toBeGreaterThan(0)
      const failed = run.results.filter((r) => !r.pass)
      expect(failed, formatSuiteRun(run)).toEqual([])
    })
  }
})
