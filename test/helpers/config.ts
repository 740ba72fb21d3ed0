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
