import { loadConfigText } from '../../gateway/config/load.js'
import { ConfigError, type ConfigProblem } from '../../gateway/errors.js'

/** The errors (not warnings) loading this YAML reports; [] when it loads. */
export const configProblems = (text: string, env: NodeJS.ProcessEnv = {}): ConfigProblem[] => {
  try {
    loadConfigText('gw.yaml', text, { env })
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.filter((p) => p.severity === 'error')
    throw e
  }
  return []
}

/** The start of most unit-test configs: listeners and one issuer, `corp` (its entry may go on). */
export const CONFIG_HEAD = `server:
  publicUrl: https://gw.example.com
  listen: { port: 8080 }
admin:
  listen: { port: 9090 }
issuers:
  corp:
    issuer: https://as.example.com
`
