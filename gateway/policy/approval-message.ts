/**
 * The language of a require-approval rule's `message` (the CIBA binding_message, the webhook's
 * `message`): literal text with placeholders {agent}, {tool}, {route}, {subject}, {code},
 * {args.<path>}, each optionally with a width ({tool:12}). It lives with the policy because the
 * policy writes it; approval/ renders it.
 *
 * An AS validates binding_message against a rule of its own (oidc-provider by default:
 * `^[a-zA-Z0-9-._+/!?#]{1,20}$`), and a refusal fails the call. So for CIBA every placeholder
 * renders in a small plain alphabet with a bounded length, which makes the set of possible
 * renderings known when the policy is compiled: `templateProblem` renders its extremes and refuses
 * a template that could be refused by the issuer's configured rule, instead of failing at run time.
 */
import { parseArgPath, resolvePath } from './matchers.js'

/** oidc-provider's default validateBindingMessage rule (lib/helpers/defaults.js, 9.x). */
export const DEFAULT_BINDING_MESSAGE_PATTERN = '^[a-zA-Z0-9-._+/!?#]{1,20}$'

/** The tool name and the per-call code: fits the default rule (13 + 1 + 6 = 20) whatever the tool. */
export const DEFAULT_APPROVAL_MESSAGE = '{tool:13}-{code}'

/** No 0/O, 1/I: the user compares it by eye between the phone and the agent's screen. */
export const CODE_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789'
export const CODE_LENGTH = 6

/** What a plain placeholder can render: the characters every usual binding_message rule allows. */
const PLAIN_ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-?'
const DEFAULT_WIDTH = 20
const MAX_WIDTH = 40
const MAX_TEXT = 160

const PLACEHOLDER = /\{([A-Za-z]+)(?:\.([^}:]+))?(?::(\d{1,2}))?\}/g
const NAMES = new Set(['agent', 'tool', 'route', 'subject', 'code'])

export interface MessageFacts {
  agent: string
  tool: string
  route: string
  subject: string
  /** approvalCode(): the same code the audit line and the pending error carry. */
  code: string
  arguments: unknown
}

/**
 * The short code of one approval request, taken from its random id: 6 of 32 symbols (30 bits),
 * unbiased because 256 is a multiple of 32. It helps a person match, it is not a secret.
 */
export function approvalCode(id: string): string {
  const bytes = Buffer.from(id, 'base64url')
  let out = ''
  for (let i = 0; i < CODE_LENGTH; i++) out += CODE_ALPHABET[(bytes[i] ?? 0) % CODE_ALPHABET.length]
  return out
}

/** `plain`: the CIBA binding_message (bounded plain alphabet). `text`: the webhook's readable message. */
export type MessageStyle = 'plain' | 'text'

function plain(v: string, width: number): string {
  const t = v.replace(/[^A-Za-z0-9._-]+/g, '-').slice(0, width)
  return t.length === 0 ? '?' : t
}

function text(v: string, width: number): string {
  const t = v.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]+/gu, ' ').trim()
  return t.length > width ? `${t.slice(0, width - 1)}…` : t
}

const asText = (v: unknown) => (typeof v === 'string' ? v : v === undefined ? '?' : (JSON.stringify(v) ?? '?'))

/** Renders the template. Unknown placeholders stay visible (the plain rule check then refuses them). */
export function renderMessage(template: string, facts: MessageFacts, style: MessageStyle): string {
  const out = template.replace(PLACEHOLDER, (whole, name: string, path: string | undefined, w: string | undefined) => {
    const width = Math.min(MAX_WIDTH, w === undefined ? DEFAULT_WIDTH : Math.max(1, Number(w)))
    let value: string
    if (name === 'args' && path) {
      const p = parseArgPath(path)
      if (!p) return whole
      const r = resolvePath(facts.arguments, p)
      if (!r.found) return '?'
      value = asText(r.value)
    } else if (!path && NAMES.has(name)) {
      if (name === 'code') return facts.code
      value = facts[name as 'agent' | 'tool' | 'route' | 'subject']
    } else return whole
    return style === 'plain' ? plain(value, width) : text(value, width)
  })
  if (style === 'plain') return out
  const flat = out.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]+/gu, ' ')
  return flat.length > MAX_TEXT ? `${flat.slice(0, MAX_TEXT - 1)}…` : flat
}

/**
 * Why `template` can render (plain style) a binding_message that `rule` refuses, or undefined.
 * It renders the extremes: every placeholder at its shortest and at its longest, once for each
 * character it can produce. For the usual rule shape (a character class with a length bound, as
 * oidc-provider's) that is exact; for other rules it tests the renderings most likely to fail.
 */
export function templateProblem(template: string, rule: RegExp): string | undefined {
  const parts: ({ literal: string } | { code: true } | { width: number })[] = []
  let last = 0
  for (const m of template.matchAll(PLACEHOLDER)) {
    const [whole, name, path, w] = m
    const known = (name === 'args' && path && parseArgPath(path)) || (!path && NAMES.has(name!))
    if (!known) continue
    parts.push({ literal: template.slice(last, m.index) })
    parts.push(name === 'code' ? { code: true } : { width: Math.min(MAX_WIDTH, w === undefined ? DEFAULT_WIDTH : Math.max(1, Number(w))) })
    last = m.index + whole.length
  }
  parts.push({ literal: template.slice(last) })
  const samples: string[] = []
  for (let i = 0; i < PLAIN_ALPHABET.length; i++) {
    const c = PLAIN_ALPHABET[i]!
    const k = CODE_ALPHABET[i % CODE_ALPHABET.length]!
    for (const long of [false, true]) {
      samples.push(parts.map((p) => ('literal' in p ? p.literal : 'code' in p ? k.repeat(CODE_LENGTH) : c.repeat(long ? p.width : 1))).join(''))
    }
  }
  for (const s of samples) {
    // The rule is compiled without flags (frozen in the config), so test() keeps no lastIndex state.
    if (!rule.test(s)) return `message "${template}" can render as "${s}", which the issuer's bindingMessagePattern ${rule.source} refuses`
  }
  return undefined
}
