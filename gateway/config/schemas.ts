import type { TSchema } from '@sinclair/typebox'
import { GatewayConfigSchema } from './schema.js'

/** Every published schema, by file name. Later modules (policy) add theirs here. */
export const schemas: Record<string, TSchema> = {
  gateway: GatewayConfigSchema,
}

/** Docs that carry a generated reference table for a schema. */
export const referenceDocs: Record<string, string> = {
  gateway: 'docs/configuration.md',
}
