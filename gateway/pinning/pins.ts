/**
 * Tool-definition pinning ("rug pull" detection, docs/pinning.md). A tool is pinned by the
 * SHA-256 of the canonical JSON of everything a model reads or relies on: name, title,
 * description, input and output schema, annotations. Pins live in the SharedStore, one document
 * per route, so a change seen by one replica is enforced by all. Changes are kept as pending
 * until an operator approves them.
 */
import { createHash } from 'node:crypto'
import type { SharedStore } from '../store/shared-store.js'

export type PinMode = 'off' | 'observe' | 'enforce'

export interface PinnedTool {
  digest: string
  definition: Record<string, unknown>
}

export interface PinDocument {
  v: 1
  tools: Record<string, PinnedTool>
}

/** Pins have no natural expiry; a year keeps them well past any deployment's memory. */
const PIN_TTL_MS = 365 * 24 * 3600_000
/** What is pinned: tools, prompts and resource templates, each by the members a model reads. */
export type PinKind = 'tool' | 'prompt' | 'template'
const PINNED_MEMBERS: Record<PinKind, readonly string[]> = {
  tool: ['name', 'title', 'description', 'inputSchema', 'outputSchema', 'annotations'],
  prompt: ['name', 'title', 'description', 'arguments'],
  template: ['uriTemplate', 'name', 'title', 'description', 'mimeType', 'annotations'],
}

/** JSON with object keys sorted at every depth, so equal definitions hash equally whatever the key order. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>
    return `{${Object.keys(o).sort().filter((k) => o[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`
  }
  return JSON.stringify(v ?? null)
}

/** The pinned part of a tool definition (members outside it, e.g. _meta, do not count). */
export function pinnedDefinition(item: Record<string, unknown>, kind: PinKind = 'tool'): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const k of PINNED_MEMBERS[kind]) if (item[k] !== undefined) out[k] = item[k]
  return out
}

export const toolDigest = (item: Record<string, unknown>, kind: PinKind = 'tool'): string => createHash('sha256').update(canonicalJson(pinnedDefinition(item, kind))).digest('base64url')

/** The pin book key of a route's pins of one kind (tools keep the bare route name). */
export const pinScope = (route: string, kind: PinKind): string => (kind === 'tool' ? route : `${route}#${kind}`)

export type ToolStatus = 'pinned' | 'changed' | 'new'

/** How one listed tool compares with the pins. */
export function toolStatus(pins: PinDocument, name: string, digest: string): ToolStatus {
  const pin = pins.tools[name]
  return !pin ? 'new' : pin.digest === digest ? 'pinned' : 'changed'
}

function parseDoc(text: string | undefined): PinDocument | undefined {
  if (!text) return undefined
  try {
    const d = JSON.parse(text) as PinDocument
    return d && d.v === 1 && d.tools && typeof d.tools === 'object' ? d : undefined
  } catch {
    return undefined
  }
}

/** The pins of every route, in the SharedStore. */
export class PinBook {
  readonly #store: SharedStore
  constructor(store: SharedStore) {
    this.#store = store
  }

  /** Whether the store answered its last command: enforce mode refuses rather than pin from nothing. */
  healthy(): boolean {
    return this.#store.healthy()
  }

  #key(route: string, which: 'pins' | 'pending'): string {
    return `pins:${which}:${route}`
  }

  /** Approved pins; undefined before the first tools/list (trust on first use) or pins record. */
  async pins(route: string): Promise<PinDocument | undefined> {
    return parseDoc(await this.#store.get(this.#key(route, 'pins')))
  }

  /** Definitions seen but not approved (changed or new tools). */
  async pending(route: string): Promise<PinDocument> {
    return parseDoc(await this.#store.get(this.#key(route, 'pending'))) ?? { v: 1, tools: {} }
  }

  /** Trust on first use: the first listing becomes the pins, unless another replica was first. */
  async trustOnFirstUse(route: string, tools: Record<string, PinnedTool>): Promise<boolean> {
    return this.#store.setIfAbsent(this.#key(route, 'pins'), JSON.stringify({ v: 1, tools } satisfies PinDocument), PIN_TTL_MS)
  }

  /** Replaces the pins (pins record, or a file kept in git). */
  async replace(route: string, doc: PinDocument): Promise<void> {
    await this.#store.set(this.#key(route, 'pins'), JSON.stringify(doc), PIN_TTL_MS)
    await this.#store.delete(this.#key(route, 'pending'))
  }

  /**
   * Notes every drifted tool of one listing in one write. Two replicas writing at once can lose
   * one's entries; the next listing, which sees the whole tool set again, writes them back.
   */
  async notePending(route: string, tools: Readonly<Record<string, PinnedTool>>): Promise<void> {
    const doc = await this.pending(route)
    const fresh = Object.entries(tools).filter(([n, t]) => doc.tools[n]?.digest !== t.digest)
    if (fresh.length === 0) return
    for (const [n, t] of fresh) doc.tools[n] = t
    await this.#store.set(this.#key(route, 'pending'), JSON.stringify(doc), PIN_TTL_MS)
  }

  /** Moves the named pending definitions (all when none named) into the pins. Returns what was approved. */
  async approve(route: string, names?: readonly string[]): Promise<string[]> {
    const pins = (await this.pins(route)) ?? { v: 1, tools: {} }
    const pending = await this.pending(route)
    const approved = Object.keys(pending.tools).filter((n) => !names || names.length === 0 || names.includes(n))
    for (const n of approved) {
      pins.tools[n] = pending.tools[n]!
      delete pending.tools[n]
    }
    await this.#store.set(this.#key(route, 'pins'), JSON.stringify(pins), PIN_TTL_MS)
    await this.#store.set(this.#key(route, 'pending'), JSON.stringify(pending), PIN_TTL_MS)
    return approved
  }
}

/** Human-readable difference of two definitions, member by member (pins diff). */
export function describeChange(before: Record<string, unknown> | undefined, after: Record<string, unknown>, kind: PinKind = 'tool'): string[] {
  if (!before) return [`+ new ${kind}: ${canonicalJson(after)}`]
  const out: string[] = []
  for (const k of PINNED_MEMBERS[kind]) {
    const a = canonicalJson(before[k])
    const b = canonicalJson(after[k])
    if (a !== b) out.push(`~ ${k}:`, `  - ${a}`, `  + ${b}`)
  }
  return out
}
