/**
 * Checks a metric's HELP against its labels: each item of a "by a, b and c" list must name a
 * label (as a word; "HTTP status" names "status"), and every label must appear in the text.
 */
export function helpProblems(name: string, help: string, labels: readonly string[]): string[] {
  const problems: string[] = []
  const words = (s: string) => new Set(s.toLowerCase().split(/[^a-z0-9_]+/).filter(Boolean))
  // Parenthetical value lists hold commas and "and" that are not label separators.
  let plain = help
  while (/\([^()]*\)/.test(plain)) plain = plain.replace(/\([^()]*\)/g, '')
  const by = /\bby ([^.:;]+)/.exec(plain)?.[1]
  if (by) {
    for (const item of by.split(/,\s*|\s+and\s+/).map((i) => i.trim()).filter(Boolean)) {
      const w = words(item)
      if (!labels.some((l) => w.has(l))) problems.push(`${name}: HELP lists "${item}", which is no label (labels: ${labels.join(', ') || 'none'})`)
    }
  }
  const all = words(help)
  for (const l of labels) if (!all.has(l)) problems.push(`${name}: HELP does not name label "${l}"`)
  return problems
}
