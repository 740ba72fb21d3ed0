import type { TSchema } from '@sinclair/typebox'
import { PolicyDocumentSchema, PolicySuiteSchema } from '../policy/schema.js'
import { GatewayConfigSchema } from './schema.js'

/** Every published schema, by file name. Later modules (policy) add theirs here. */
export const schemas: Record<string, TSchema> = {
  gateway: GatewayConfigSchema,
  policy: PolicyDocumentSchema,
  'policy-test': PolicySuiteSchema,
}

/** Docs that carry a generated reference table for a schema. */
export const referenceDocs: Record<string, string> = {
  gateway: 'docs/configuration.md',
}
