/**
 * The policy document contract (policies/*.yaml). Like gateway.yaml, this TypeBox schema is the
 * source of the types, of validation and of the published policies/schema/policy.schema.json.
 * The vocabulary is closed on purpose: matchers, not expressions, so every rule can be compiled,
 * checked for references and explained.
 */
import { Type, type Static } from '@sinclair/typebox'

const Strict = { additionalProperties: false } as const

const NameList = (what: string) =>
  Type.Array(Type.String({ minLength: 1 }), {
    minItems: 1,
    description: `${what}. Compared by exact code points (no case folding, no trimming, no Unicode normalisation); \`*\` in an entry matches any run of characters.`,
  })

const ExactList = (what: string) => Type.Array(Type.String({ minLength: 1 }), { minItems: 1, description: `${what}. Exact, case-sensitive values.` })

const SetMatch = (what: string) =>
  Type.Object(
    {
      allOf: Type.Optional(ExactList(`Every one of these ${what} must be present`)),
      anyOf: Type.Optional(ExactList(`At least one of these ${what} must be present`)),
      noneOf: Type.Optional(ExactList(`None of these ${what} may be present`)),
    },
    { ...Strict, minProperties: 1, description: `Conditions on the caller's ${what}.` },
  )

const Scalar = Type.Union([Type.String(), Type.Number(), Type.Boolean(), Type.Null()])

export const ArgumentMatcherSchema = Type.Object(
  {
    equals: Type.Optional(Type.Union([Scalar], { description: 'The value equals this JSON scalar (same type, same value).' })),
    in: Type.Optional(Type.Array(Scalar, { minItems: 1, description: 'The value equals one of these JSON scalars.' })),
    regex: Type.Optional(Type.String({ minLength: 1, description: 'The value is a string matching this regular expression as a whole (it is anchored for you; Unicode mode).' })),
    gte: Type.Optional(Type.Number({ description: 'The value is a number ≥ this.' })),
    gt: Type.Optional(Type.Number({ description: 'The value is a number > this.' })),
    lte: Type.Optional(Type.Number({ description: 'The value is a number ≤ this.' })),
    lt: Type.Optional(Type.Number({ description: 'The value is a number < this.' })),
    present: Type.Optional(Type.Literal(true, { description: 'The path exists (any value, null included).' })),
    absent: Type.Optional(Type.Literal(true, { description: 'The path does not exist.' })),
  },
  {
    ...Strict,
    minProperties: 1,
    description:
      'Typed conditions on one argument; all listed conditions must hold. A value of the wrong type does not satisfy an allow rule and does satisfy a deny rule (fail closed).',
  },
)

export const TimeWindowSchema = Type.Object(
  {
    days: Type.Optional(Type.Array(Type.Union(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'].map((d) => Type.Literal(d))), { minItems: 1, uniqueItems: true, description: 'Days of the week.' })),
    from: Type.Optional(Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$', description: 'Start time of day HH:MM (inclusive).' })),
    to: Type.Optional(Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$', description: 'End time of day HH:MM (exclusive). A window with to < from spans midnight.' })),
    timezone: Type.String({ default: 'UTC', description: 'IANA time zone of days/from/to. Default UTC.' }),
  },
  { ...Strict, description: 'When the rule applies.' },
)

const PolicyDuration = (description: string, dflt?: string) =>
  Type.String({ pattern: '^[0-9]+(ms|s|m|h)$', ...(dflt ? { default: dflt } : {}), description })

const ArgPathRef = Type.String({ minLength: 1, description: 'A path into the tool arguments (`amount`, `order.total`).' })

/** RFC 9396 transactional authorization: one field of an authorization_details object. */
export const DetailFieldMatcherSchema = Type.Object(
  {
    equals: Type.Optional(Type.Union([Scalar], { description: 'The field equals this JSON scalar.' })),
    in: Type.Optional(Type.Array(Scalar, { minItems: 1, description: 'The field equals one of these JSON scalars.' })),
    gte: Type.Optional(Type.Number({ description: 'The field is a number (or decimal string) ≥ this.' })),
    lte: Type.Optional(Type.Number({ description: 'The field is a number (or decimal string) ≤ this.' })),
    equalsArgument: Type.Optional(Type.Union([ArgPathRef], { description: 'The field equals the tool argument at this path (same JSON value).' })),
    gteArgument: Type.Optional(Type.Union([ArgPathRef], { description: 'The field is a number ≥ the tool argument at this path: an approved amount covers this call\'s amount.' })),
    lteArgument: Type.Optional(Type.Union([ArgPathRef], { description: 'The field is a number ≤ the tool argument at this path.' })),
    equalsTool: Type.Optional(Type.Literal(true, { description: 'The field equals the name of the called tool.' })),
    present: Type.Optional(Type.Literal(true, { description: 'The field exists.' })),
  },
  { ...Strict, minProperties: 1, description: 'Conditions on one field of an authorization_details object; all must hold.' },
)

export const AuthorizationDetailsMatchSchema = Type.Object(
  {
    type: Type.String({ minLength: 1, description: 'The authorization details `type` (RFC 9396 §2), e.g. payment.' }),
    fields: Type.Optional(
      Type.Record(Type.String({ minLength: 1 }), DetailFieldMatcherSchema, {
        minProperties: 1,
        description: 'Field conditions by path into the authorization_details object (`amount`, `instructedAmount.amount`, `tool`).',
      }),
    ),
  },
  {
    ...Strict,
    description:
      "Transactional authorization (RFC 9396): the caller's token must carry an `authorization_details` object of this type whose fields satisfy every condition, so an AS-approved transaction authorizes that transaction and no other.",
  },
)

/** How a require-approval rule asks (docs/approvals.md). */
export const ApprovalSchema = Type.Object(
  {
    message: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 200,
        description:
          'The binding_message the user reads on their device. Placeholders: {agent}, {tool}, {route}, {subject}, {args.<path>} (a short rendering of that argument), {code} (6 characters, per request, also in the GW_APPROVAL_PENDING error so the user can match phone and screen); a width cuts one: {tool:12} (default 20, at most 40). For CIBA placeholders render in [A-Za-z0-9._-] and the template must fit each CIBA issuer\'s bindingMessagePattern (checked at load). Default: "{tool:13}-{code}", which fits oidc-provider\'s default rule.',
      }),
    ),
    wait: PolicyDuration('How long the call is held waiting for the decision before the client gets GW_APPROVAL_PENDING (the request stays open; retrying the same call picks it up). Default 30s.', '30s'),
    expiry: PolicyDuration('Lifetime of the approval request (CIBA requested_expiry) and of an approval not yet used. Default 5m.', '5m'),
    window: Type.Optional(PolicyDuration('After an approval, further calls of the same tool by the same agent for the same user run without asking again for this long (any arguments). Default: none, every call needs its own approval.')),
    details: Type.Union([Type.Literal('arguments'), Type.Literal('digest')], {
      default: 'arguments',
      description: 'What the RAR authorization_details sent to the AS carry besides the argument digest: the arguments themselves (default) or only the digest.',
    }),
    type: Type.String({ minLength: 1, default: 'mcp_tool_call', description: 'The authorization_details type of the request. Default mcp_tool_call.' }),
  },
  { ...Strict, description: 'require-approval only: how the approval is asked for.' },
)

export const WhenSchema = Type.Object(
  {
    subjects: Type.Optional(ExactList('Token subjects (`sub`)')),
    agents: Type.Optional(ExactList('Agents: the OAuth client (`client_id`, or `azp`)')),
    issuers: Type.Optional(ExactList('Issuers: a name under `issuers:` in gateway.yaml or the issuer URL')),
    actors: Type.Optional(ExactList('The current actor (`act.sub`, RFC 8693 §4.1). Only the outermost `act` is used; prior actors in the chain are audit information only')),
    delegated: Type.Optional(Type.Boolean({ description: 'true: the token carries an `act` claim (someone acts on behalf of the subject); false: it does not.' })),
    userPresent: Type.Optional(Type.Boolean({ description: 'true: a user is behind the token; false: app-only (client credentials).' })),
    scopes: Type.Optional(SetMatch('scopes')),
    groups: Type.Optional(SetMatch('groups (claim named by policies.claims.groups in gateway.yaml)')),
    roles: Type.Optional(SetMatch('roles (claim named by policies.claims.roles in gateway.yaml)')),
    time: Type.Optional(TimeWindowSchema),
    authorizationDetails: Type.Optional(AuthorizationDetailsMatchSchema),
  },
  { ...Strict, minProperties: 1, description: 'Conditions on the caller and the clock; all must hold.' },
)

export const Effect = Type.Union([Type.Literal('allow'), Type.Literal('deny'), Type.Literal('require-scopes'), Type.Literal('require-approval')], {
  description:
    'allow; deny (always wins); require-scopes: allowed when the token has every scope in `scopes`, otherwise 403 insufficient_scope naming them so the client steps up; require-approval: held until the user approves this very call on their device (CIBA or a webhook channel, docs/approvals.md); refused when no approval channel is configured.',
})

export const Mode = Type.Union([Type.Literal('enforce'), Type.Literal('shadow')], {
  description: 'enforce (default) or shadow: evaluated and logged as a would-be decision, never enforced.',
})

export const RuleSchema = Type.Object(
  {
    id: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$', description: 'Identifier, unique in the policy; appears in decisions, audit lines and test suites.' }),
    description: Type.Optional(Type.String()),
    effect: Effect,
    mode: Type.Optional(Mode),
    methods: Type.Optional(NameList('MCP methods, e.g. tools/call, initialize, notifications/*')),
    tools: Type.Optional(NameList('Tool names (tools/call `params.name`; also filters tools/list)')),
    prompts: Type.Optional(NameList('Prompt names (prompts/get `params.name`; also filters prompts/list)')),
    resources: Type.Optional(NameList('Resource URIs (resources/read, subscribe, unsubscribe `params.uri`; also filters resources/list)')),
    arguments: Type.Optional(
      Type.Record(Type.String({ minLength: 1 }), ArgumentMatcherSchema, {
        additionalProperties: false,
        minProperties: 1,
        description: 'Tool arguments by path into `params.arguments`: `amount`, `options.force`, `items[0].id` (a leading `$.` is allowed). All must hold.',
      }),
    ),
    when: Type.Optional(WhenSchema),
    scopes: Type.Optional(Type.Array(Type.String({ pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E]+$' }), { minItems: 1, description: 'require-scopes only: the scopes the matched operation needs.' })),
    approval: Type.Optional(ApprovalSchema),
  },
  { ...Strict, description: 'A rule matches when every condition it lists holds. Absent conditions match anything.' },
)

export const LimitKeyPart = Type.Union(['subject', 'agent', 'issuer', 'route', 'upstream', 'tool', 'method'].map((k) => Type.Literal(k)), {
  description: 'subject (`sub`), agent (`client_id`/`azp`), issuer, route (name), upstream (URL of the route upstream), tool (tool or prompt name, or resource URI), method.',
})

export const LimitSchema = Type.Object(
  {
    name: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', description: 'Limit name, unique across the policy set; appears in metrics, audit lines and errors.' }),
    description: Type.Optional(Type.String()),
    methods: Type.Optional(NameList('MCP methods this limit counts. Default: every request and notification')),
    tools: Type.Optional(NameList('Tool (tools/call), prompt (prompts/get) or resource (resources/*) names this limit counts. Default: any, including none')),
    key: Type.Array(LimitKeyPart, { minItems: 0, uniqueItems: true, description: 'What is counted separately: one budget per distinct combination of these values. [] = one budget shared by every caller of the routes.' }),
    limit: Type.Integer({ minimum: 1, maximum: 1_000_000_000, description: 'Messages allowed per window and key.' }),
    per: Type.String({ pattern: '^[0-9]+(ms|s|m|h)$', description: 'Window length, e.g. 1s, 1m, 1h, 24h. Sliding window of 60 slices (docs/limits.md).' }),
  },
  { ...Strict, description: 'A rate limit or quota: each matching JSON-RPC message costs 1; over the limit → 429 with Retry-After.' },
)

export const PolicyDocumentSchema = Type.Object(
  {
    $schema: Type.Optional(Type.String()),
    apiVersion: Type.Literal('mcp-warden/v1'),
    kind: Type.Literal('Policy'),
    name: Type.String({ pattern: '^[a-z0-9][a-z0-9_.-]{0,62}$', description: 'Policy name, unique across the directory.' }),
    description: Type.Optional(Type.String()),
    routes: Type.Array(Type.String({ minLength: 1 }), { minItems: 1, description: 'Route names from gateway.yaml this policy applies to, or "*" for every route.' }),
    mode: Type.Optional(Mode),
    rules: Type.Array(RuleSchema, { minItems: 1 }),
    limits: Type.Optional(Type.Array(LimitSchema, { description: 'Rate limits and quotas for the routes of this policy (docs/limits.md). Checked after the rules allow a request.' })),
  },
  { ...Strict, title: 'mcp-warden policy document' },
)

export type PolicyDocument = Static<typeof PolicyDocumentSchema>
export type RuleInput = Static<typeof RuleSchema>
export type WhenInput = Static<typeof WhenSchema>
export type ArgumentMatcherInput = Static<typeof ArgumentMatcherSchema>
export type EffectName = Static<typeof Effect>
export type ApprovalInput = Static<typeof ApprovalSchema>
export type AuthorizationDetailsMatchInput = Static<typeof AuthorizationDetailsMatchSchema>
export type LimitInput = Static<typeof LimitSchema>
export type LimitKeyName = Static<typeof LimitKeyPart>

/** A policy test suite (`*_test.yaml` next to the policies). */
const SuitePrincipal = Type.Object(
  {
    subject: Type.String({ default: 'user' }),
    agent: Type.String({ default: 'agent' }),
    issuer: Type.String({ default: 'default', description: 'Issuer name (as in gateway.yaml) or URL.' }),
    scopes: Type.Array(Type.String(), { default: [] }),
    actor: Type.Optional(Type.String({ description: 'Current actor (act.sub).' })),
    userPresent: Type.Boolean({ default: true }),
    claims: Type.Record(Type.String(), Type.Unknown(), { default: {}, description: 'Other claims (groups, roles).' }),
  },
  Strict,
)

const SuiteRequest = Type.Object(
  {
    route: Type.String({ minLength: 1 }),
    method: Type.String({ minLength: 1 }),
    name: Type.Optional(Type.String({ description: 'Tool or prompt name, or resource URI.' })),
    arguments: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    at: Type.Optional(Type.String({ format: 'date-time', description: 'Evaluation time (RFC 3339). Default: 2026-01-05T12:00:00Z, a Monday.' })),
  },
  Strict,
)

export const PolicySuiteSchema = Type.Object(
  {
    $schema: Type.Optional(Type.String()),
    name: Type.String({ minLength: 1 }),
    principals: Type.Record(Type.String(), SuitePrincipal, { minProperties: 1 }),
    requests: Type.Record(Type.String(), SuiteRequest, { minProperties: 1 }),
    expect: Type.Array(
      Type.Object(
        {
          principal: Type.String(),
          request: Type.String(),
          effect: Effect,
          rule: Type.Optional(Type.String({ description: 'Expected deciding rule as policy/rule-id, or "default" for the default deny.' })),
          shadow: Type.Optional(Effect),
        },
        Strict,
      ),
      { minItems: 1 },
    ),
  },
  { ...Strict, title: 'mcp-warden policy test suite' },
)

export type PolicySuite = Static<typeof PolicySuiteSchema>
