// What one GraphQL request may cost. Every request is bounded before any SQL runs:
// its body (bytes), its depth, and how many values its answer may hold (the page
// sizes of nested connections multiply); pages have a default size and a maximum;
// and the SQL it runs has a statement timeout. An over-limit request is refused at
// once with a named error (extensions.code), never run and cut short.
// docs/api-limits.md lists each limit, its default, its code and its setting.
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import { constant, lambda, SafeError, type Step } from 'postgraphile/grafast';
import { getNamedType, getNullableType, GraphQLError, isCompositeType, isEnumType, isInterfaceType, isListType, isObjectType, Kind, type FieldNode, type GraphQLCompositeType, type OperationDefinitionNode, type GraphQLField, type GraphQLNamedType, type SelectionSetNode, type ValidationContext, type ValidationRule } from 'postgraphile/graphql';
import { getComplexity, type ComplexityEstimator } from 'graphql-query-complexity';

export interface ApiLimits {
  /** bytes of one request body; more is answered 413 */
  maxBodyBytes: number;
  /** bytes of the query text (variables not counted); more is answered 413 before it is parsed */
  maxQueryBytes: number;
  /** nesting of fields in one operation (a leaf field at the top is depth 1) */
  maxDepth: number;
  /** field values one answer may hold: each connection multiplies what it selects by its page size */
  maxNodes: number;
  /** fields of one request as written, each alias and each spread of a fragment counted */
  maxFields: number;
  /** fields of one request that each plan a read of their own (plannedFieldWeight) */
  maxPlannedFields: number;
  /** rows of one connection page when neither first nor last is given */
  defaultPageSize: number;
  /** the most first / last may ask for */
  maxPageSize: number;
  /** statement_timeout of every request's SQL, in milliseconds */
  statementTimeoutMs: number;
  /** GraphQL requests of one company running at once (api/company-share.ts) */
  companyMaxInFlight: number;
  /** requests of one company waiting for a turn; more are refused at once */
  companyMaxQueued: number;
  /** how long a request waits for its company's turn, in milliseconds, before it is refused */
  companyMaxWaitMs: number;
  /** GraphQL requests a company may send in a second, over time (api/request-rate.ts) */
  companyRequestsPerSecond: number;
  /** GraphQL requests a company may send at once, after a quiet spell */
  companyRequestBurst: number;
  /** refused tokens (401) a client address may send in a second, over time (api/token-failures.ts) */
  addressTokenFailuresPerSecond: number;
  /** refused tokens a client address may send at once, after a quiet spell */
  addressTokenFailureBurst: number;
  /** milliseconds of the API's thread a company's new query texts may take in a second, over time (api/planning-budget.ts) */
  companyPlanningMsPerSecond: number;
  /** milliseconds of the API's thread a company's new query texts may take at once, after a quiet spell */
  companyPlanningBurstMs: number;
  /** how long a statement waits for one of the pool's connections, in milliseconds, before it is refused unrun */
  poolWaitMs: number;
  /** how long a request's headers and body may take to arrive, in milliseconds; later, HTTP 408 and the connection closed */
  receiveTimeoutMs: number;
  /** how long a client may take no byte of an answer, in milliseconds, before its connection is closed */
  answerIdleMs: number;
  /** connections the API holds at once; more are closed as they come */
  maxConnections: number;
  /** how long an idle keep-alive connection is kept, in milliseconds (advertised as Keep-Alive: timeout, in seconds) */
  keepAliveMs: number;
  /** bytes of payloads' JSON text one answer may hold, its first payload whatever its size (chargePayload) */
  answerPayloadBytes: number;
}

export const DEFAULT_LIMITS: Readonly<ApiLimits> = Object.freeze({
  maxBodyBytes: 100_000,
  // the text is parsed, validated and planned on the server's one thread, some 30 µs a
  // field: 95 kB took 100 to 500 ms whatever it asked. The page's texts are under 2 kB,
  // the whole schema's introspection under 3 kB; variables count toward the body only
  maxQueryBytes: 20_000,
  maxDepth: 8,
  maxNodes: 20_000,
  // 1,000 fields take some 30 ms to plan and answer; the page's largest request (a
  // webhook's history) has about 50, the whole schema's introspection 220
  maxFields: 1_000,
  // the Reports page's requests plan at most 9 (a webhook's history); the planning of n of them grows as n²
  // (a one-row page of history 25 times: about 65 ms of the server's thread, 500
  // times: 4 to 8 s)
  maxPlannedFields: 50,
  defaultPageSize: 100,
  maxPageSize: 1_000,
  statementTimeoutMs: 5_000,
  // the Reports page sends at most three at once (the third waits a moment for a turn);
  // with the pool's 10 connections, four companies at their most leave two to the rest
  companyMaxInFlight: 2,
  companyMaxQueued: 16,
  companyMaxWaitMs: 5_000,
  // the Reports page sends a request for each thing shown and at most three at once: its
  // whole set of texts, one after the other, is 22 requests; a person paging through a
  // history, a few a second. A cheap request costs the thread some 0.3 to 1 ms (its
  // headers, token, JSON and answer; docs/api-limits.md): 20 a second is at most 2% of
  // it a company
  companyRequestsPerSecond: 20,
  companyRequestBurst: 60,
  // a person who mistypes, or a page whose token expired (it sends at most three at
  // once, then asks for a new token), fails a few; a token of another secret cost the
  // thread 340 to 480 µs, a refusal past this rate some 200 (docs/api-limits.md)
  addressTokenFailuresPerSecond: 2,
  addressTokenFailureBurst: 30,
  // a text the API has not planned takes 40 to 250 ms of the one thread (within the
  // limits above), a small one a few ms; one already planned, nothing. 2% of the thread
  // a company, over time: about one large new text every 2 to 12 s, a few small ones a
  // second. The Reports page's texts are planned once, for every company: all of them,
  // each the first time, took 0.2 to 1.5 s of plans by the wall clock (docs/api-limits.md), within the burst
  companyPlanningMsPerSecond: 20,
  companyPlanningBurstMs: 2_000,
  // every connection held by other companies' requests, each for at most the
  // statement timeout: a request that waited twice that long is behind a queue that
  // will not clear soon, and its client is told so rather than left waiting
  poolWaitMs: 10_000,
  // a body is at most maxBodyBytes (100 kB): 30 s is 3 kB/s. Node's own bounds were
  // 60 s for the headers and 300 s for the whole request, checked every 30 s
  receiveTimeoutMs: 30_000,
  // a GraphQL answer may be megabytes (answerPayloadBytes of payloads, maxNodes
  // values): held in the API's memory until its client takes it, and without a bound
  // for as long as the client kept its connection open without reading
  answerIdleMs: 30_000,
  // each holds a file descriptor, which the pool's connections to Postgres need too
  // (a system's default limit is 1,024 a process); a browser on the page holds up to six
  maxConnections: 900,
  // node's default. A proxy that reuses its connections to the API for longer (AWS's
  // load balancer 60 s, nginx's upstream keepalive_timeout 60 s) ignores the
  // advertised timeout and sends requests on connections the API is closing: set it
  // above the proxy's (docs/api-limits.md, Connections)
  keepAliveMs: 5_000,
  // a payload's JSON is parsed, walked and written again on the API's one thread, some
  // 80 ms a MB for one of many keys: 4 MiB is about a third of a second
  answerPayloadBytes: 4 * 1024 * 1024,
});

/** The environment variable of each limit. */
export const LIMIT_SETTINGS: Readonly<Record<keyof ApiLimits, string>> = Object.freeze({
  maxBodyBytes: 'API_MAX_BODY_BYTES',
  maxQueryBytes: 'API_MAX_QUERY_BYTES',
  maxDepth: 'API_MAX_DEPTH',
  maxNodes: 'API_MAX_NODES',
  maxFields: 'API_MAX_FIELDS',
  maxPlannedFields: 'API_MAX_PLANNED_FIELDS',
  defaultPageSize: 'API_DEFAULT_PAGE_SIZE',
  maxPageSize: 'API_MAX_PAGE_SIZE',
  statementTimeoutMs: 'API_STATEMENT_TIMEOUT_MS',
  companyMaxInFlight: 'API_COMPANY_MAX_IN_FLIGHT',
  companyMaxQueued: 'API_COMPANY_MAX_QUEUED',
  companyMaxWaitMs: 'API_COMPANY_MAX_WAIT_MS',
  companyRequestsPerSecond: 'API_COMPANY_REQUESTS_PER_SECOND',
  companyRequestBurst: 'API_COMPANY_REQUEST_BURST',
  addressTokenFailuresPerSecond: 'API_ADDRESS_TOKEN_FAILURES_PER_SECOND',
  addressTokenFailureBurst: 'API_ADDRESS_TOKEN_FAILURE_BURST',
  companyPlanningMsPerSecond: 'API_COMPANY_PLANNING_MS_PER_SECOND',
  companyPlanningBurstMs: 'API_COMPANY_PLANNING_BURST_MS',
  poolWaitMs: 'API_POOL_WAIT_MS',
  receiveTimeoutMs: 'API_RECEIVE_TIMEOUT_MS',
  answerIdleMs: 'API_ANSWER_IDLE_MS',
  maxConnections: 'API_MAX_CONNECTIONS',
  keepAliveMs: 'API_KEEP_ALIVE_MS',
  answerPayloadBytes: 'API_ANSWER_PAYLOAD_BYTES',
});

/** The codes (extensions.code) of the refusals. */
export const LIMIT_CODES = Object.freeze({
  body: 'REQUEST_TOO_LARGE',
  queryText: 'QUERY_TOO_LARGE',
  depth: 'QUERY_TOO_DEEP',
  nodes: 'QUERY_TOO_COSTLY',
  pageSize: 'PAGE_TOO_LARGE',
  pageNegative: 'PAGE_ARGUMENT_NEGATIVE',
  pageArguments: 'PAGE_ARGUMENTS_CONFLICT',
  cursor: 'INVALID_CURSOR',
  pageDepth: 'PAGE_TOO_DEEP',
  order: 'ORDER_NOT_SERVED',
  timeout: 'QUERY_TIMEOUT',
  companyShare: 'TOO_MANY_REQUESTS',
  requestRate: 'REQUEST_RATE_EXCEEDED',
  tokenFailures: 'TOKEN_FAILURE_RATE_EXCEEDED',
  newQueries: 'TOO_MANY_NEW_QUERIES',
  jsonDepth: 'JSON_TOO_DEEP',
  jsonNumber: 'JSON_NUMBER_OUT_OF_RANGE',
  poolWait: 'DATABASE_BUSY',
  payloads: 'PAYLOADS_TOO_LARGE',
});

/** The limits of the environment (unset: the default); throws naming a bad setting. */
export function limitsFromEnv(env: NodeJS.ProcessEnv = process.env, overrides: Partial<ApiLimits> = {}): ApiLimits {
  const limits = { ...DEFAULT_LIMITS };
  for (const [key, name] of Object.entries(LIMIT_SETTINGS) as Array<[keyof ApiLimits, string]>) {
    const text = env[name];
    if (text === undefined || text === '') continue;
    const value = Number(text);
    // (decimal digits alone: Number() reads 0x10 as 16 and 1e3 as 1000)
    if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(value) || value < 1 || value > LIMIT_MOST) {
      throw new Error(`${name} must be a whole number from 1 to ${LIMIT_MOST}, not ${JSON.stringify(text)}`);
    }
    limits[key] = value;
  }
  Object.assign(limits, overrides);
  if (limits.defaultPageSize > limits.maxPageSize) {
    throw new Error(`${LIMIT_SETTINGS.defaultPageSize} (${limits.defaultPageSize}) must not exceed ${LIMIT_SETTINGS.maxPageSize} (${limits.maxPageSize})`);
  }
  return limits;
}

/**
 * How much longer than a request's statement_timeout the API waits for the database
 * to answer one of its statements: a request's other statements (its BEGIN, its
 * settings, its COMMIT) and the way back. PostGraphile's reading of the schema at
 * start runs under the same bound, and takes well under a second.
 */
export const DATABASE_ANSWER_MARGIN_MS = 10_000;

/**
 * The most any limit may be set to (about 24.7 days of milliseconds): node runs a
 * timer longer than 2^31 - 1 ms after 1 ms (API_POOL_WAIT_MS past it refused every
 * connection the API opened, and it never started), and Postgres takes no timeout
 * longer (API_STATEMENT_TIMEOUT_MS past it, plus DATABASE_ANSWER_MARGIN_MS, the
 * session's idle_in_transaction_session_timeout: every connection was refused).
 */
export const LIMIT_MOST = 2_147_483_647 - DATABASE_ANSWER_MARGIN_MS;

/**
 * How long a statement of the API's pool may go without an answer before it is given
 * up with its connection (pg's query_timeout; EngineClient drops the connection): a
 * request's whole SQL runs within statementTimeoutMs (api/preset.ts), so a connection
 * silent past that and DATABASE_ANSWER_MARGIN_MS has lost its network path (a
 * partition, a NAT that dropped it), and TCP would give up only after many minutes.
 */
export function apiDatabaseReadTimeoutMs(limits: Pick<ApiLimits, 'statementTimeoutMs'>): number {
  return limits.statementTimeoutMs + DATABASE_ANSWER_MARGIN_MS;
}

function refusal(message: string, code: string, extra: Record<string, unknown> = {}): GraphQLError {
  return new GraphQLError(message, { extensions: { code, ...extra } });
}

/**
 * How deep brackets ({, [, () may nest in a query's text. GraphQL's parser recurses
 * on each level and overflows the stack near 2,500 (a JSON literal, a selection set),
 * answering "Maximum call stack size exceeded" and nothing named. Every query these
 * limits let run nests far less: fields to maxDepth, a JSON value to
 * MAX_SERVED_JSON_DEPTH (api/deep-json.ts), a few levels of arguments around them.
 */
export const MAX_QUERY_TEXT_NESTING = 500;

/**
 * Whether a GraphQL text nests brackets deeper than limit, counting outside strings,
 * block strings and comments; in one pass without recursion, before the parser runs.
 */
export function textNestsDeeperThan(text: string, limit: number): boolean {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '#') {
      while (i < text.length && text[i] !== '\n' && text[i] !== '\r') i++;
    } else if (c === '"' && text.startsWith('"""', i)) {
      // a block string ends at the first """ not escaped as \"""
      for (i += 3; i < text.length && !text.startsWith('"""', i); i++) {
        if (text.startsWith('\\"""', i)) i += 3;
      }
      i += 2;
    } else if (c === '"') {
      for (i++; i < text.length && text[i] !== '"' && text[i] !== '\n'; i++) {
        if (text[i] === '\\') i++;
      }
    } else if (c === '{' || c === '[' || c === '(') {
      if (++depth > limit) return true;
    } else if (c === '}' || c === ']' || c === ')') {
      depth--;
    }
  }
  return false;
}

/** The refusal of a query text longer than maxQueryBytes or nested past
 *  MAX_QUERY_TEXT_NESTING, or nothing: asked before the text is parsed. */
export function refuseQueryText(limits: ApiLimits, query: unknown): SafeError | undefined {
  if (typeof query !== 'string') return undefined;
  // a character is at most 3 bytes of UTF-8 (a surrogate pair, 2 characters, 4)
  if (query.length * 3 > limits.maxQueryBytes && Buffer.byteLength(query) > limits.maxQueryBytes) {
    return new SafeError(`query text is larger than ${limits.maxQueryBytes} bytes (${LIMIT_SETTINGS.maxQueryBytes}): ` +
      'ask in several requests; values belong in variables, which count toward the body only',
    { statusCode: 413, code: LIMIT_CODES.queryText, limit: limits.maxQueryBytes });
  }
  if (!textNestsDeeperThan(query, MAX_QUERY_TEXT_NESTING)) return undefined;
  return new SafeError(`query text nests brackets more than ${MAX_QUERY_TEXT_NESTING} levels deep: no query needs that many`,
    { statusCode: 400, code: LIMIT_CODES.depth, limit: MAX_QUERY_TEXT_NESTING });
}

/** The depth limit, as a validation rule (depth does not depend on variables). */
export function depthRule(limits: ApiLimits): ValidationRule {
  return maxDepthRule({
    n: limits.maxDepth,
    // a fragment spread is not a level of the answer
    flattenFragments: true,
    ignoreIntrospection: true,
    // reported as a validation error of our own (named), not thrown
    propagateOnRejection: false,
    onReject: [
      (context, error) => {
        const found = Number(/found (\d+)/.exec(error.message)?.[1]);
        context?.reportError(refusal(
          `query is too deep: ${found} levels, at most ${limits.maxDepth} (${LIMIT_SETTINGS.maxDepth})`,
          LIMIT_CODES.depth, { limit: limits.maxDepth, found }));
      },
    ],
  }) as unknown as ValidationRule;
}

/** A field as written, with its definition (none for an unknown field or __typename) and whether it is a field of a root type (Query, Mutation). */
interface WrittenField {
  node: FieldNode;
  definition: GraphQLField<unknown, unknown> | undefined;
  ofRoot: boolean;
}

/** What one field of a selection counts (`self`), and whether what it selects counts too. */
type FieldWeight = (field: WrittenField) => { self: number; inside: boolean };

/** The fields selected in the selection set, weighed, each fragment counted as often as it is spread. */
function expandedCount(context: ValidationContext, selectionSet: SelectionSetNode | undefined,
  parent: GraphQLNamedType | undefined, weigh: FieldWeight, fragments: Map<string, number>): number {
  const schema = context.getSchema();
  const ofRoot = parent !== undefined && (parent === schema.getQueryType() || parent === schema.getMutationType());
  let count = 0;
  for (const selection of selectionSet?.selections ?? []) {
    if (selection.kind === Kind.FIELD) {
      const definition = parent && (isObjectType(parent) || isInterfaceType(parent))
        ? parent.getFields()[selection.name.value] : undefined;
      const { self, inside } = weigh({ node: selection, definition, ofRoot });
      count += self + (inside
        ? expandedCount(context, selection.selectionSet, definition && getNamedType(definition.type), weigh, fragments)
        : 0);
    } else if (selection.kind === Kind.INLINE_FRAGMENT) {
      const type = selection.typeCondition ? schema.getType(selection.typeCondition.name.value) : parent;
      count += expandedCount(context, selection.selectionSet, type, weigh, fragments);
    } else {
      const name = selection.name.value;
      let size = fragments.get(name);
      if (size === undefined) {
        // a cycle counts nothing here: NoFragmentCyclesRule refuses it
        fragments.set(name, 0);
        const fragment = context.getFragment(name);
        const type = fragment ? schema.getType(fragment.typeCondition.name.value) : undefined;
        size = expandedCount(context, fragment?.selectionSet, type, weigh, fragments);
        fragments.set(name, size);
      }
      count += size;
    }
  }
  return count;
}

/** Every field is one. */
const EVERY_FIELD: FieldWeight = () => ({ self: 1, inside: true });

/** The introspection fields that answer from the schema: one each, and nothing inside counted. */
const INTROSPECTION_FIELDS = new Set(['__schema', '__type']);
const INTROSPECTION: FieldWeight = ({ node }) =>
  INTROSPECTION_FIELDS.has(node.name.value) ? { self: 1, inside: false } : { self: 0, inside: true };

/**
 * The fields that each plan a read of their own: every field of Query or Mutation (a
 * function, a table, a mutation; a mutation's payload selects Query again), every field that takes arguments (a connection, a computed
 * field such as historyCount) and every field that selects fields (a row, a page).
 * A column of a row that takes no arguments is read with its row, and counts nothing.
 * The planner compares each such field's steps with the others' to merge them, so
 * its time grows with the square of their number: 500 aliases of a one-row page of
 * history (31 kB, about 1,500 values) held the server's one thread, which every
 * company shares, for 4 to 8 s. Introspection is answered from the schema, not
 * planned (and asked once a request, above).
 */
const PLANNED_FIELD: FieldWeight = ({ node, definition, ofRoot }) => {
  if (node.name.value.startsWith('__')) return { self: 0, inside: false };
  const planned = ofRoot || definition === undefined || definition.args.length > 0 || isCompositeType(getNamedType(definition.type));
  return { self: planned ? 1 : 0, inside: true };
};

/**
 * Fields as the planner sees them, fragments expanded, at most maxFields; and
 * introspection once. The node count counts a field selected twice under one name
 * once, as the answer holds it once; the planner expands every spread of a fragment,
 * so fragments that each spread the next twice ask it for 2^n fields in a few hundred
 * bytes (seconds of the server's one thread at n = 20, for every company). The node
 * count counts a list of the schema (types, fields) as one value, though `__schema`
 * answers tens of kB: GraphQL bounds how deep an introspection goes, not how many
 * aliases ask it, so 1,500 of them in 98 kB answered 44 MB. A validation rule that
 * counts each fragment once, and refuses before the other rules run (below).
 */
export function expandedFieldsRule(limits: ApiLimits): ValidationRule {
  return (context) => ({
    // every operation counted as the document is entered, before any rule has visited
    // what it holds, and the first refusal thrown rather than reported: GraphQL's own
    // rules go on over the whole document whatever one reports, and one of them
    // (that fields of one name can be merged) compares every pair of fields of a
    // selection: 900 copies of `webhookById(id: 1) { id }` (18 kB) held the server's
    // thread for 150 to 350 ms before they were refused, each text a comment apart
    // anew. Thrown, the refusal is not kept with the text; counting it again costs a parse.
    Document(document) {
      for (const operation of document.definitions) {
        if (operation.kind !== Kind.OPERATION_DEFINITION) continue;
        const refused = fieldsRefusal(context, operation, limits);
        if (refused) throw new SafeError(refused.message, { statusCode: 400, ...refused.extensions });
      }
    },
  });
}

/** Why the operation may not run for its fields as written (above), or nothing. */
function fieldsRefusal(context: ValidationContext, operation: OperationDefinitionNode, limits: ApiLimits): GraphQLError | undefined {
  const root = context.getSchema().getRootType(operation.operation) ?? undefined;
  const found = expandedCount(context, operation.selectionSet, root, EVERY_FIELD, new Map());
  if (found > limits.maxFields) {
    return refusal(
      `query selects too many fields: ${found} as written, each alias and each spread of a fragment counted, ` +
      `at most ${limits.maxFields} (${LIMIT_SETTINGS.maxFields}); ask in several requests`,
      LIMIT_CODES.nodes, { limit: limits.maxFields, found });
  }
  const planned = expandedCount(context, operation.selectionSet, root, PLANNED_FIELD, new Map());
  if (planned > limits.maxPlannedFields) {
    return refusal(
      `query plans too many fields: ${planned} fields of Query or Mutation, fields with arguments and fields that select fields, ` +
      `at most ${limits.maxPlannedFields} (${LIMIT_SETTINGS.maxPlannedFields}); ask in fewer aliases, or in several requests`,
      LIMIT_CODES.nodes, { limit: limits.maxPlannedFields, found: planned });
  }
  const introspections = expandedCount(context, operation.selectionSet, root, INTROSPECTION, new Map());
  if (introspections > 1) {
    return refusal(
      `query asks for the schema ${introspections} times: introspection (__schema, __type) at most once a request`,
      LIMIT_CODES.nodes, { limit: 1, found: introspections });
  }
  return undefined;
}

/**
 * The most rows a list that is not a connection's page may hold: replayFailed's
 * deliveries, at most webhooks_private.replay_max_deliveries() (sql/30_delivery.sql;
 * test/api/limits.test.ts holds the two equal), and the users or statuses of the ids
 * asked (companyUsersNamed, companyStatusesNamed), at most
 * webhooks_private.names_asked_max() (sql/55_report.sql; test/api/choices.test.ts).
 * A search's (companyUsersMatching) are fewer: webhooks.company_choices_up_to() + 1.
 */
export const LONGEST_LIST = 1_000;

/** A connection field: it pages (first/last) over a set. */
function isConnection(field: GraphQLField<unknown, unknown>): boolean {
  return field.args.some((arg) => arg.name === 'first');
}

/** A page argument refused: its message and code say which and why. */
class PageRefused extends Error {
  readonly code: string;
  readonly extensions: Record<string, unknown>;
  constructor(message: string, code: string, extensions: Record<string, unknown>) {
    super(message);
    this.code = code;
    this.extensions = extensions;
  }
}

/**
 * The most rows a page may lie past the start of its list: an `offset`, and a 'natural'
 * cursor (a function's rows in no order of ours: PostGraphile's cursor is the row's
 * number, so that `after` is an offset too), each read and thrown away row by row, so
 * that a page at 240,000 of a company's deliveries read 240,000 rows first, within the
 * statement timeout. 400 pages of 25: more than a person pages through; a list read
 * further pages by its keyset cursor (a table's, PostGraphile's own, on the order's
 * columns) or by a history's afterCreatedAt and afterId.
 */
export const MAX_OFFSET = 10_000;

/** The rows a 'natural' cursor counts (["natural", n] in base64), or undefined for any other. */
function naturalCursorRows(cursor: unknown): number | undefined {
  if (typeof cursor !== 'string') return undefined;
  try {
    const parts: unknown = JSON.parse(Buffer.from(cursor, 'base64').toString('utf8'));
    return Array.isArray(parts) && parts[0] === 'natural' && typeof parts[1] === 'number' ? parts[1] : undefined;
  } catch {
    // not a cursor at all: api/input-refusals.ts names it
    return undefined;
  }
}

/** Why a page argument may not be used (Postgres refuses a negative LIMIT or OFFSET
 *  only as it runs, and the error would reach the caller as an internal one), or nothing. */
function pageArgumentRefusal(limits: ApiLimits, name: string, value: unknown): PageRefused | undefined {
  if (typeof value !== 'number') return undefined;
  if (value < 0) {
    return new PageRefused(`${name}: ${value} is negative: ask for 0 or more`, LIMIT_CODES.pageNegative, {});
  }
  if (name !== 'offset' && value > limits.maxPageSize) {
    return new PageRefused(`${name}: ${value} is more than one page may hold: at most ${limits.maxPageSize} (${LIMIT_SETTINGS.maxPageSize})`,
      LIMIT_CODES.pageSize, { limit: limits.maxPageSize });
  }
  return undefined;
}

/** Why a page lies too deep in its list (offset and a natural cursor together past MAX_OFFSET), or nothing. */
function pageDepthRefusal(args: Record<string, unknown>): PageRefused | undefined {
  const offset = typeof args.offset === 'number' ? args.offset : 0;
  // (a function's rows, the only ones so paged, have no before)
  const counted = naturalCursorRows(args.after) ?? 0;
  const depth = offset + counted;
  if (depth <= MAX_OFFSET) return undefined;
  const asked = counted > 0 ? `${offset > 0 ? `offset ${offset} after ` : ''}a cursor ${counted} rows in` : `offset: ${offset}`;
  return new PageRefused(
    `${asked} is deeper than a page may start: at most ${MAX_OFFSET} rows in; page on with the cursor of a table's ordered list, or a history's afterCreatedAt and afterId`,
    LIMIT_CODES.pageDepth, { limit: MAX_OFFSET, found: depth });
}

function pageSizeOf(limits: ApiLimits, args: Record<string, unknown>): number {
  for (const name of ['first', 'last', 'offset'] as const) {
    const refusal = pageArgumentRefusal(limits, name, args[name]);
    if (refusal) throw refusal;
  }
  const tooDeep = pageDepthRefusal(args);
  if (tooDeep) throw tooDeep;
  const asked = (args.first ?? args.last) as number | null | undefined;
  return typeof asked === 'number' ? asked : limits.defaultPageSize;
}

/**
 * A list of rows that is not a connection's page (its nodes and edges are counted at
 * the connection), nor the schema's own (introspection: once a request, above).
 */
function isListOfRows(type: GraphQLCompositeType, field: GraphQLField<unknown, unknown>): boolean {
  return isListType(getNullableType(field.type)) && isCompositeType(getNamedType(field.type))
    && !type.name.startsWith('__') && !(isObjectType(type) && 'pageInfo' in type.getFields());
}

/**
 * What a delivery's payload counts for: it may be webhooks.max_payload_bytes long (1 MiB
 * by default), where another value is a few bytes. A page of the maximum size with
 * its payloads was a gigabyte read into the API's one process, which serves every
 * company. At 150, one answer holds at most 133 payloads (API_MAX_NODES / 150), and a
 * page of the default size with its payloads and a few dozen other fields still fits
 * (the Reports page asks 50).
 */
export const PAYLOAD_VALUES = 150;

/** A field that serves a delivery's payload: its value, or its text as sent (payloadText). */
function isPayload(field: GraphQLField<unknown, unknown>): boolean {
  return field.name === 'payload' || field.name === 'payloadText';
}

/**
 * The most values the answer may hold: every field is one (a payload PAYLOAD_VALUES),
 * a connection holds what it selects once per row of its page (first, last or the
 * default page size), and another list of rows once per row it may hold (LONGEST_LIST).
 */
function estimator(limits: ApiLimits, servedOrders: ServedOrders): ComplexityEstimator {
  return ({ type, field, args, childComplexity }) => {
    const refused = orderRefusal(servedOrders, `${type.name}.${field.name}`, field, args.orderBy);
    if (refused) throw refused;
    return (isPayload(field) ? PAYLOAD_VALUES : 1)
      + (isConnection(field) ? pageSizeOf(limits, args) : isListOfRows(type, field) ? LONGEST_LIST : 1) * childComplexity;
  };
}

/**
 * The orders a list may lead with (Type.field: orderBy values), where its others sort
 * every row of the company, the webhook or the delivery for each page; a list not
 * named takes any of its orders.
 */
export type ServedOrders = Readonly<Record<string, readonly string[]>>;

/** The names of an orderBy argument's values, as the request wrote them (GraphQL hands the estimator their internal values). */
function orderNames(field: GraphQLField<unknown, unknown>, orderBy: unknown): string[] {
  const type = field.args.find((arg) => arg.name === 'orderBy')?.type;
  const OrderBy = type && getNamedType(type);
  if (!OrderBy || !isEnumType(OrderBy)) return [];
  const values = Array.isArray(orderBy) ? orderBy : [orderBy];
  return values.flatMap((value) => OrderBy.getValues().find((candidate) => candidate.value === value)?.name ?? []);
}

const direction = (name: string) => /_(ASC|DESC)$/.exec(name)?.[1];

/**
 * Why a list may not be read in the order asked, or nothing: its first value is not
 * one its index serves (servedOrders; an empty list is no order, as NATURAL is), or
 * its values go both ways. PostGraphile's cursor of a table's list is a keyset on the
 * order's columns (with the key's, in the first one's direction, where the order is
 * not unique): on columns all one way and not null it is a row comparison, which
 * starts the index at the cursor; both ways, it is tested on every row before it.
 */
function orderRefusal(servedOrders: ServedOrders, list: string, field: GraphQLField<unknown, unknown>, orderBy: unknown): PageRefused | undefined {
  if (orderBy === undefined || orderBy === null) return undefined;
  const names = orderNames(field, orderBy);
  const served = servedOrders[list];
  const first = names[0] ?? 'NATURAL';
  if (served && !served.includes(first)) {
    return new PageRefused(`orderBy: ${list} by ${first} sorts every row before a page: lead with one of ${served.join(', ')}`,
      LIMIT_CODES.order, { found: first, served: [...served] });
  }
  const otherWay = names.find((name) => direction(name) !== direction(first));
  if (otherWay !== undefined) {
    return new PageRefused(`orderBy: ${list} by ${first} then ${otherWay} goes both ways: a page after a cursor would test every row before it; order all ${direction(first)} or all ${direction(otherWay)}`,
      LIMIT_CODES.order, { found: otherWay });
  }
  return undefined;
}

export interface Operation {
  schema: import('postgraphile/graphql').GraphQLSchema;
  document: import('postgraphile/graphql').DocumentNode;
  variableValues?: Record<string, unknown> | null;
  operationName?: string | null;
}

/** Why this operation may not run (its page sizes, its lists' orders (servedOrders) and its size with its variables), or nothing. */
export function refuseCostly(limits: ApiLimits, operation: Operation, servedOrders: ServedOrders = {}): GraphQLError | undefined {
  let nodes: number;
  try {
    nodes = getComplexity({
      schema: operation.schema,
      query: operation.document,
      variables: operation.variableValues ?? {},
      operationName: operation.operationName ?? undefined,
      estimators: [estimator(limits, servedOrders)],
    });
  } catch (error) {
    if (error instanceof PageRefused) return refusal(error.message, error.code, error.extensions);
    // a bad variable or operation name: GraphQL itself says so when it runs
    return undefined;
  }
  if (nodes > limits.maxNodes) {
    return refusal(
      `query may return too much: up to ${nodes} values, at most ${limits.maxNodes} (${LIMIT_SETTINGS.maxNodes}); ask for smaller pages (first) or fewer nested connections`,
      LIMIT_CODES.nodes, { limit: limits.maxNodes, found: nodes });
  }
  return undefined;
}

/**
 * The page a connection reads: `first`, else `last`, else the default page size,
 * and never more than the maximum (refuseCostly has said so already; this is the
 * floor under it). Replaces the first/last arguments' own application.
 */
export function boundedPage(limits: ApiLimits, $first: Step | undefined, $last: Step | undefined): { $first: Step; $last?: Step } {
  const check = (name: string) => (value: unknown) => {
    const refused = pageArgumentRefusal(limits, name, value);
    if (refused) throw new SafeError(refused.message, { code: refused.code, ...refused.extensions });
    return value ?? null;
  };
  return {
    $first: lambda([$first ?? constant(null), $last ?? constant(null)],
      ([first, last]) => check('first')(first) ?? (last == null ? limits.defaultPageSize : null)),
    ...($last ? { $last: lambda($last, check('last')) } : {}),
  };
}

/** What is left of one answer's bytes of payloads (ApiLimits.answerPayloadBytes). */
export interface PayloadBudget {
  bytesLeft: number;
  served: number;
}

export function payloadBudget(limits: Pick<ApiLimits, 'answerPayloadBytes'>): PayloadBudget {
  return { bytesLeft: limits.answerPayloadBytes, served: 0 };
}

/**
 * A payload's value, parsed from Postgres's JSON text, when the answer may hold it: its
 * first payload whatever its size (one may be webhooks.max_payload_bytes, up to 64 MiB),
 * then others while their text fits in what is left of answerPayloadBytes. Else a
 * refusal of that payload, by name. The node count (PAYLOAD_VALUES) bounds how many
 * payloads an answer may hold, not what they cost: each is parsed, walked for its depth
 * (api/deep-json.ts) and written out again on the API's one thread, which grows with
 * its keys, and 100 payloads of 20,000 keys (28 MB) held it for 2.2 to 3 s.
 */
export function chargePayload(limits: Pick<ApiLimits, 'answerPayloadBytes'>, budget: PayloadBudget, text: string | null): unknown {
  const charged = chargePayloadText(limits, budget, text);
  return charged === null ? null : JSON.parse(charged);
}

/**
 * A payload's text as sent (payloadText), when the answer may hold it: charged to the
 * same bytes as its value (chargePayload), for the text of a page of payloads is read
 * and held by the API's one process as their values are.
 */
export function chargePayloadText(limits: Pick<ApiLimits, 'answerPayloadBytes'>, budget: PayloadBudget, text: string | null): string | null {
  if (text === null) return null;
  const bytes = Buffer.byteLength(text);
  if (budget.served > 0 && bytes > budget.bytesLeft) {
    throw new SafeError(`this answer holds ${limits.answerPayloadBytes} bytes of payloads at most ` +
      `(${LIMIT_SETTINGS.answerPayloadBytes}), and this payload is ${bytes}: ask for it alone (deliveryById), or in smaller pages`,
    { code: LIMIT_CODES.payloads, limit: limits.answerPayloadBytes, found: bytes });
  }
  budget.bytesLeft -= bytes;
  budget.served++;
  return text;
}

/** what pg-pool rejects a connect() with once connectionTimeoutMillis has passed */
const POOL_WAIT_TIMEOUT_MESSAGE = 'timeout exceeded when trying to connect';

/**
 * The refusal of a statement that waited `poolWaitMs` for one of the pool's
 * connections (the pool's connectionTimeoutMillis, api/server.ts), or undefined for any
 * other error of connecting. That statement never ran; those of the request before it did.
 */
export function poolWaitRefusal(error: unknown, limits: Pick<ApiLimits, 'poolWaitMs'>): SafeError | undefined {
  if (!(error instanceof Error) || error.message !== POOL_WAIT_TIMEOUT_MESSAGE) return undefined;
  return new SafeError(
    `every database connection of the API was in use for ${limits.poolWaitMs} ms (${LIMIT_SETTINGS.poolWaitMs}): ` +
    'this statement of the request did not run; try again in a moment',
    { code: LIMIT_CODES.poolWait });
}

/**
 * The refusal of a query text the API has not planned, sent while its company's
 * budget of the thread for new texts is spent (api/planning-budget.ts): before the text
 * is parsed. Its Retry-After, in seconds, is when the budget allows one again.
 */
export function newQueryRefusal(waitMs: number): { error: SafeError; retryAfterSeconds: number } {
  const retryAfterSeconds = Math.max(1, Math.ceil(waitMs / 1000));
  return {
    retryAfterSeconds,
    error: new SafeError(
      'this company\'s new query texts have taken their share of the API\'s time to plan them ' +
      `(${LIMIT_SETTINGS.companyPlanningMsPerSecond}, ${LIMIT_SETTINGS.companyPlanningBurstMs}): ` +
      'texts sent before still run; put values in variables rather than in the text, ' +
      `or try this one again in ${retryAfterSeconds} s`,
      { statusCode: 429, code: LIMIT_CODES.newQueries, retryAfter: retryAfterSeconds }),
  };
}
