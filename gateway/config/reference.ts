/**
 * Renders a Markdown reference of a JSON Schema (field, type, default, description), so the
 * docs are generated from the same schema that validates and that editors use.
 */
interface Node {
  type?: string | string[]
  description?: string
  default?: unknown
  properties?: Record<string, Node>
  additionalProperties?: boolean | Node
  patternProperties?: Record<string, Node>
  items?: Node
  anyOf?: Node[]
  const?: unknown
  required?: string[]
  pattern?: string
}

function typeOf(n: Node): string {
  if (n.anyOf) {
    const consts = n.anyOf.filter((a) => a.const !== undefined).map((a) => JSON.stringify(a.const))
    if (consts.length === n.anyOf.length) return consts.join(' \\| ')
    return n.anyOf.map(typeOf).join(' \\| ')
  }
  if (n.const !== undefined) return JSON.stringify(n.const)
  if (n.type === 'array') {
    const inner = n.items ? typeOf(n.items) : 'any'
    return inner.includes('|') ? `(${inner})[]` : `${inner}[]`
  }
  if (n.type === 'object' && n.patternProperties) return 'map'
  if (n.type === 'object' && n.properties) {
    const keys = Object.keys(n.properties)
    if (keys.length <= 1 && n.description === undefined) return `{ ${keys.join(', ')} }`
    return 'object'
  }
  return Array.isArray(n.type) ? n.type.join(' \\| ') : (n.type ?? 'any')
}

export function schemaReference(schema: Node): string {
  const rows: string[] = []
  const walk = (n: Node, path: string, required: boolean) => {
    if (path) {
      const def = n.default !== undefined && !(typeof n.default === 'object' && n.default !== null && Object.keys(n.default).length === 0) ? `\`${JSON.stringify(n.default)}\`` : ''
      const desc = (n.description ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ')
      rows.push(`| \`${path}\` | ${typeOf(n)} | ${required ? 'yes' : ''} | ${def} | ${desc} |`)
    }
    if (n.properties) {
      for (const [k, v] of Object.entries(n.properties)) if (k !== '$schema') walk(v, path ? `${path}.${k}` : k, (n.required ?? []).includes(k) && v.default === undefined)
    }
    if (n.patternProperties) for (const v of Object.values(n.patternProperties)) walk(v, `${path}.<name>`, false)
    if (n.items?.properties) walk(n.items, `${path}[]`, false)
  }
  walk(schema, '', true)
  return ['| Field | Type | Required | Default | Description |', '|---|---|---|---|---|', ...rows].join('\n')
}
