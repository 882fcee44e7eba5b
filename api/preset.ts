// The PostGraphile configuration: GraphQL generated from schema `webhooks` alone
// (webhooks_private never appears), with the smart comments of sql/70_graphql.sql
// deciding what is shown, and each request run as the role its token names.
import './env.ts';
import type {} from 'postgraphile';
import { isUtf8 } from 'node:buffer';
import type pg from 'pg';
import type { Logger } from 'pino';
import { makePgService } from 'postgraphile/adaptors/pg';
import { context as contextStep, isPromiseLike, lambda } from 'postgraphile/grafast';
import { Kind, type DocumentNode } from 'postgraphile/graphql';
import { PostGraphileAmberPreset } from 'postgraphile/presets/amber';
import { jsonPgSmartTags } from 'postgraphile/utils';
import { pgSettingsFor, type Claims } from './auth.ts';
import { bodyRefused, errorMasker, HTTP_REFUSAL_CODES, nameHttpRefusals, UnnamedErrors } from './errors.ts';
import { acceptableJson, firstNumberNotHeld, jsonNumberRefusal, servableJson } from './deep-json.ts';
import { apiLogger } from './log.ts';
import { boundedPage, chargePayload, chargePayloadText, depthRule, expandedFieldsRule, LIMIT_CODES, MAX_QUERY_TEXT_NESTING, newQueryRefusal, payloadBudget, poolWaitRefusal, refuseCostly, refuseQueryText, textNestsDeeperThan, type ApiLimits, type PayloadBudget } from './limits.ts';
import { KnownTexts, PlanningBudget, threadClock } from './planning-budget.ts';
import { nameInputErrors, refuseInputs } from './input-refusals.ts';

export const GRAPHQL_PATH = '/graphql';
export const GRAPHIQL_PATH = '/graphiql';

/**
 * The DBAs' view webhooks.fire_history (sql/40_history.sql) stays out of GraphQL:
 * the API has the same rows as deliveries and each webhook's history. A tag here
 * rather than in its comment, which is written for psql readers.
 */
const HideDbaViews = jsonPgSmartTags({
  version: 1,
  config: { class: { 'webhooks.fire_history': { tags: { behavior: '-*' } } } },
});

/**
 * Names as the database has them:
 * - `id` is the database id (PostGraphile would say rowId, keeping `id` for Relay
 *   global ids, which this API does not use: ids go into URLs and SQL as they are);
 * - action names contain dots (contact.created), which GraphQL enum values may not:
 *   in GraphQL the action enum reads CONTACT_CREATED. The database keeps its names;
 * - a function listed whole, not paged (companyUsersMatching), is named as its
 *   comment's @fieldName says.
 */
const PlainNames: GraphileConfig.Plugin = {
  name: 'PlainNames',
  version: '1.0.0',
  after: ['PgAttributesPlugin'],
  inflection: {
    replace: {
      _attributeName(previous, _options, details) {
        const name = previous!(details);
        return name === 'row_id' && !details.skipRowId ? 'id' : name;
      },
      enumValue(previous, _options, value, codec) {
        return previous!(value.replaceAll('.', '_').toUpperCase(), codec);
      },
      // a function shown as a list alone (@behavior -connection +list) whose comment
      // names its field (@fieldName): that name, without PostGraphile's "List"
      customQueryListField(previous, _options, details) {
        return details.resource.extensions?.tags?.fieldName ? this.customQueryField(details) : previous!(details);
      },
    },
  },
};

/**
 * Lists of these rows have no totalCount: it counts every row of the company (or of a
 * webhook, or of a delivery) one by one, however many they are. Attempts: a delivery
 * replayed by hand for days has thousands, and deliveryAttemptsCount counts up to a
 * cap; deliveries: historyCount gives a history's from the report's counts; the audit
 * log is kept for good, and a webhook changed by a script every few seconds has a row
 * for each change (a page says whether there are more: pageInfo.hasNextPage). Here, and
 * not in sql/70_graphql.sql: an API of the previous release running on through a
 * migration keeps what its page asks of it.
 */
const UNCOUNTED = new Set(['webhooks.deliveries', 'webhooks.delivery_attempts', 'webhooks.audit_log']);

/**
 * And the rows of these functions (their record types, as PostGraphile names them):
 * companyUsers and companyStatuses walk the company's index of names a page at a time
 * (sql/55_report.sql), and a count would read every user or status of the company.
 */
const UNCOUNTED_FUNCTION_ROWS = new Set(['CompanyUsersRecord', 'CompanyStatusesRecord']);

/**
 * The columns a connection of each relation may order and filter by: those an index
 * serves under the company's filter of row-level security, so that a page reads about
 * a page. Any other order sorts every row of the company, and any other condition
 * tests every one, for each page (within the statement timeout): ordering a company's
 * deliveries by lastError read all of them and their queue, result and attempt rows.
 * PostGraphile keeps orders and conditions to indexed columns of plain tables only, by
 * any column of an index, where a leading one is what serves: deliveries is a view,
 * and the attempts a partitioned table.
 * - deliveries: history's (company_id, id); created_at, the order of a webhook's
 *   history (HISTORY_ORDERS) and of its deliveriesByWebhookId (RELATION_ORDERS), by
 *   (webhook_id, company_id, created_at, id);
 * - delivery_attempts: the (company_id, id, …) key; a delivery's by (delivery_id, attempt);
 * - a webhook's deliveries and a delivery's attempts are their relation's lists, in
 *   their index's order: filtered by webhook_id or delivery_id, a company's list in id
 *   order read every row of the webhook or the delivery (3,013 history rows for a page
 *   of 10), or every row of the company before them;
 * - audit_log: (company_id, at, id) and (webhook_id, at, id);
 * - backfills: (company_id, id) and (webhook_id, created_at); a company has few, and
 *   ordering by created_at sorts them, where ordering by webhook_id walked every
 *   company's.
 * test/api/connection-costs.test.ts holds every connection of the schema to these.
 */
const INDEXED_COLUMNS: Record<string, { orderBy: string[]; filterBy: string[] }> = {
  'webhooks.deliveries': { orderBy: ['id', 'company_id', 'created_at'], filterBy: ['id', 'company_id'] },
  'webhooks.delivery_attempts': { orderBy: ['id', 'company_id', 'attempt'], filterBy: ['id', 'company_id'] },
  'webhooks.audit_log': { orderBy: ['id', 'company_id', 'at'], filterBy: ['id', 'company_id', 'at', 'webhook_id'] },
  'webhooks.backfills': { orderBy: ['id', 'company_id', 'created_at'], filterBy: ['id', 'company_id', 'webhook_id', 'created_at'] },
};

/**
 * Columns of a view that its table keeps not null, which PostGraphile cannot know of a
 * view: a cursor of a list ordered by a column that may be null is tested on each row
 * (created_at > $1 or created_at is not distinct from $1 and id > $2), which no index
 * bounds, so that a page of a webhook's deliveries after the 2,990th of 3,000 read
 * 3,000 of them, and a page of its history after the 1,500th 1,520. Not null, the
 * cursor is (created_at, id) > ($1, $2), where the index (webhook_id, company_id,
 * created_at, id) starts the page, the history's too (its function is inlined): 10
 * rows each (test/api/connection-costs.test.ts). created_at is delivery_history's,
 * not null.
 */
const VIEW_COLUMNS_NOT_NULL: Record<string, string[]> = {
  'webhooks.deliveries': ['created_at'],
};

const ViewColumnsNotNull: GraphileConfig.Plugin = {
  name: 'ViewColumnsNotNull',
  version: '1.0.0',
  gather: {
    hooks: {
      pgCodecs_attribute(_info, { pgClass, pgAttribute, attribute }) {
        const name = `${pgClass.getNamespace()?.nspname}.${pgClass.relname}`;
        if (VIEW_COLUMNS_NOT_NULL[name]?.includes(pgAttribute.attname)) attribute.notNull = true;
      },
    },
  },
};

/** A table's or view's schema-qualified name, as UNCOUNTED and INDEXED_COLUMNS have it. */
function relationName(codec: { extensions?: { pg?: unknown } }): string | undefined {
  const pg = codec.extensions?.pg as { schemaName?: string; name?: string } | undefined;
  return pg && `${pg.schemaName}.${pg.name}`;
}

/** What a page of a list reads is about a page (UNCOUNTED, INDEXED_COLUMNS). */
const BoundedLists: GraphileConfig.Plugin = {
  name: 'BoundedLists',
  version: '1.0.0',
  schema: {
    entityBehavior: {
      pgCodec: {
        inferred: {
          after: ['inferred'],
          provides: ['BoundedLists'],
          callback(behavior, codec) {
            const name = relationName(codec);
            const uncounted = name ? UNCOUNTED.has(name) : codec.isAnonymous && UNCOUNTED_FUNCTION_ROWS.has(codec.name);
            return uncounted ? [behavior, '-totalCount'] : behavior;
          },
        },
      },
      pgCodecAttribute: {
        inferred: {
          after: ['inferred'],
          provides: ['BoundedLists'],
          callback(behavior, [codec, attributeName]) {
            const name = relationName(codec);
            const served = name ? INDEXED_COLUMNS[name] : undefined;
            if (!served) return behavior;
            return [behavior,
              ...(served.orderBy.includes(attributeName) ? [] : ['-orderBy'] as const),
              ...(served.filterBy.includes(attributeName) ? [] : ['-filterBy'] as const)];
          },
        },
      },
    },
  },
};

/**
 * Each history's order by default, as its SQL function orders it (sql/55_report.sql):
 * the same, so that nothing is sorted again. A webhook's history reads newest first
 * (and historyOldestFirst oldest first) and pages with cursors that stay put while
 * new deliveries arrive: ordering by (created_at, id) makes the cursors keysets on
 * those columns (without an order, PostGraphile would count rows instead). Such a
 * cursor is a row comparison, which reaches the function's index scan, since
 * createdAt is known not null (VIEW_COLUMNS_NOT_NULL); the history's own
 * afterCreatedAt and afterId bound it too.
 */
const HISTORY_ORDERS: Record<string, string[]> = {
  webhooks_history: ['CREATED_AT_DESC', 'ID_DESC'],
  // (its last pages, read from their end)
  webhooks_history_oldest_first: ['CREATED_AT_ASC', 'ID_ASC'],
};

/**
 * A webhook's deliveries and a delivery's attempts as their relation lists them
 * (Type.field), by default in the order of the index that finds them: by their key,
 * PostGraphile's default, a page of 10 read 3,013 history rows of a webhook of 3,000
 * deliveries (11 in this order), and all 2,000 attempts of a delivery replayed by hand
 * (12) (test/api/connection-costs.test.ts). Asked by id, they still read that much.
 */
const RELATION_ORDERS: Record<string, string[]> = {
  // history's (webhook_id, company_id, created_at, id), each day's partition in turn
  'Webhook.deliveriesByWebhookId': ['CREATED_AT_ASC', 'ID_ASC'],
  // (delivery_id, attempt)
  'Delivery.deliveryAttemptsByDeliveryId': ['ATTEMPT_ASC', 'ID_ASC'],
};

/**
 * The orders each list may lead with: those its index gives (RELATION_ORDERS,
 * HISTORY_ORDERS, the key of a company's list), both ways. The others are refused by
 * name (ORDER_NOT_SERVED, api/limits.ts): each sorts every row of the list for a page.
 * The order types are shared, so the schema offers them all:
 * - allDeliveries by createdAt sorted the company's deliveries (the order is a
 *   webhook's history's; an index of the company's deliveries by time would be one
 *   more entry written for every delivery captured, and id is the same order);
 * - a webhook's deliveries by id, or by their key, sorted all of the webhook's (3,013
 *   history rows read for a page of 10, test/api/connection-costs.test.ts);
 * - a delivery's attempts by id, or by their key, read all of the delivery's (2,000);
 * - the company's attempts by attempt sorted all of the company's;
 * - a history in the other direction (historyOldestFirst is that) or by id sorted the
 *   history's range.
 */
const both = (...columns: string[]) => columns.flatMap((column) => [`${column}_ASC`, `${column}_DESC`]);
const COMPANY_LIST_ORDERS = ['NATURAL', ...both('PRIMARY_KEY', 'ID', 'COMPANY_ID')];
export const SERVED_ORDERS: Readonly<Record<string, readonly string[]>> = {
  'Query.allDeliveries': COMPANY_LIST_ORDERS,
  'Query.allDeliveryAttempts': COMPANY_LIST_ORDERS,
  'Webhook.deliveriesByWebhookId': both('CREATED_AT'),
  'Delivery.deliveryAttemptsByDeliveryId': both('ATTEMPT'),
  'Webhook.history': ['CREATED_AT_DESC'],
  'Webhook.historyOldestFirst': ['CREATED_AT_ASC'],
};

const ListsInIndexOrder: GraphileConfig.Plugin = {
  name: 'ListsInIndexOrder',
  version: '1.0.0',
  after: ['PgConnectionArgOrderByPlugin'],
  schema: {
    hooks: {
      GraphQLObjectType_fields_field_args_arg(arg, build, context) {
        const { argName, fieldName, pgFieldResource } = context.scope as { argName?: string; fieldName?: string; pgFieldResource?: { name: string } };
        if (argName !== 'orderBy') return arg;
        const order = (pgFieldResource && HISTORY_ORDERS[pgFieldResource.name]) ?? RELATION_ORDERS[`${context.Self.name}.${fieldName}`];
        if (!order) return arg;
        const OrderBy = build.graphql.getNamedType(arg.type);
        const values = order.map((name) => (build.graphql.isEnumType(OrderBy) ? OrderBy.getValue(name)?.value : undefined));
        if (values.some((value) => value === undefined)) return arg;
        // (in place of PostGraphile's default of a relation's list: its key)
        return { ...arg, defaultValue: values };
      },
    },
  },
};

/**
 * The functions whose lists page after a row of their own (sql/55_report.sql: the
 * report by afterCreatedAt and afterId, a delivery's attempts by afterAttempt and
 * afterId), by resource name. Their rows come in the function's order, which
 * PostGraphile does not know, so its cursor (after) is a row number, as offset is: a
 * page by either reads and throws away every row before it (every webhook of the
 * company, each page). They have neither; first sizes a page.
 */
const PAGED_AFTER_A_ROW = new Set(['webhook_report', 'delivery_attempts_latest_first']);

const OnlyKeysetPages: GraphileConfig.Plugin = {
  name: 'OnlyKeysetPages',
  version: '1.0.0',
  after: ['PgFirstLastBeforeAfterArgsPlugin'],
  schema: {
    hooks: {
      GraphQLObjectType_fields_field_args(args, _build, context) {
        const { pgFieldResource } = context.scope as { pgFieldResource?: { name: string } };
        if (!pgFieldResource || !PAGED_AFTER_A_ROW.has(pgFieldResource.name)) return args;
        const { after: _after, before: _before, offset: _offset, last: _last, ...kept } = args;
        return kept;
      },
    },
  },
};

/**
 * The request limits of api/limits.ts: depth and fields with fragments expanded as
 * validation rules (a depth refused is cached with the parsed document; fields are
 * refused before the other rules run, and not cached); page sizes and the answer's
 * size once the variables are known, before anything is planned or run; and every connection's page bounded, with a
 * default when the request gives neither first nor last.
 */
function RequestLimits(limits: ApiLimits): GraphileConfig.Plugin {
  const isPageArg = (name: string | undefined) => name === 'first' || name === 'last';
  return {
    name: 'RequestLimits',
    version: '1.0.0',
    after: ['PgFirstLastBeforeAfterArgsPlugin'],
    grafserv: {
      middleware: {
        setPreset(next, event) {
          event.validationRules.push(depthRule(limits), expandedFieldsRule(limits));
          return next();
        },
        // before GraphQL's parser, which recurses on every bracket
        processGraphQLRequestBody(next, event) {
          const refusal = refuseQueryText(limits, event.body.query);
          if (refusal) throw refusal;
          return next();
        },
      },
    },
    grafast: {
      middleware: {
        execute(next, event) {
          const refusal = refuseCostly(limits, event.args, SERVED_ORDERS);
          return refusal ? { errors: [refusal] } : next();
        },
      },
    },
    schema: {
      hooks: {
        // the field's plan sets first and last itself (below): their own application goes
        GraphQLObjectType_fields_field_args_arg(arg, _build, context) {
          const { argName, isPgFieldConnection } = context.scope as { argName?: string; isPgFieldConnection?: boolean };
          if (!isPgFieldConnection || !isPageArg(argName) || !arg.applyPlan) return arg;
          const { applyPlan: _replaced, ...rest } = arg;
          return rest;
        },
        GraphQLObjectType_fields_field(field, _build, context) {
          const { isPgFieldConnection } = context.scope as { isPgFieldConnection?: boolean };
          const plan = field.plan;
          if (!isPgFieldConnection || !plan) return field;
          return {
            ...field,
            plan(this: unknown, $parent, fieldArgs, info) {
              const $connection = plan.call(this, $parent, fieldArgs, info) as any;
              const has = (name: string) => info.field.args.some((arg) => arg.name === name);
              const page = boundedPage(limits,
                has('first') ? fieldArgs.getRaw('first') : undefined,
                has('last') ? fieldArgs.getRaw('last') : undefined);
              $connection.setFirst(page.$first);
              if (page.$last) $connection.setLast(page.$last);
              return $connection;
            },
          };
        },
      },
    },
  };
}

/**
 * Every value sent into an argument or input field is judged by its type before the
 * operation runs, and a bad one refused naming its rule and its argument or field;
 * what Postgres still refuses of a time or a cursor is named after the input that sent
 * it once the operation has run (api/input-refusals.ts).
 */
const InputRefusals: GraphileConfig.Plugin = {
  name: 'InputRefusals',
  version: '1.0.0',
  grafast: {
    middleware: {
      execute(next, event) {
        const { refusal, sent } = refuseInputs(event.args);
        if (refusal) return { errors: [refusal] };
        const result = next();
        if (sent.length === 0) return result;
        const named = (outcome: Awaited<typeof result>) =>
          (Symbol.asyncIterator in outcome ? outcome : nameInputErrors(outcome, sent));
        return isPromiseLike(result) ? Promise.resolve(result).then(named) : named(result);
      },
    },
  },
};

declare global {
  namespace Grafast {
    interface Context {
      /** what is left of this request's bytes of payloads (PayloadsWithinBudget) */
      payloadBudget?: PayloadBudget;
      /** the company of the request's token (its plans are charged to it: newTextsWithinBudget) */
      companyId?: string;
    }
  }
}

/**
 * A delivery's payload read as Postgres's JSON text and parsed only once the answer
 * may hold it (api/limits.ts, chargePayload), not parsed by PostGraphile's codec for
 * every row first. Beside it, payloadText: that text itself, as the relay sends it
 * (payload::text), for a value parsed in JavaScript loses a number's digits past its
 * precision; charged to the same bytes, so that neither gets around them.
 */
function PayloadsWithinBudget(limits: ApiLimits): GraphileConfig.Plugin {
  return {
    name: 'PayloadsWithinBudget',
    version: '1.0.0',
    after: ['PgAttributesPlugin'],
    schema: {
      hooks: {
        GraphQLObjectType_fields(fields, build, context) {
          const { pgCodec } = context.scope as { pgCodec?: { attributes?: Record<string, unknown> } };
          if (!pgCodec?.attributes?.payload || !fields.payload) return fields;
          const { sql, dataplanPg: { TYPES }, graphql: { GraphQLString } } = build;
          return build.extend(fields, {
            payloadText: {
              type: GraphQLString,
              description: 'The payload\'s JSON text as the relay sends it (payload::text): its numbers\' digits and its spacing as sent. '
                + 'Counted with payload towards the bytes of payloads one answer holds.',
              plan($record: any) {
                const $text = $record.select(sql`(${$record.getClassStep().alias}.payload)::text`, TYPES.text);
                return lambda([$text, contextStep()], ([text, ctx]) =>
                  chargePayloadText(limits, (ctx as Grafast.Context).payloadBudget ?? payloadBudget(limits), text as string | null));
              },
            },
          }, 'the payload as sent, beside its value (PayloadsWithinBudget)');
        },
        GraphQLObjectType_fields_field(field, build, context) {
          const { fieldName, pgFieldAttribute } = context.scope as { fieldName?: string; pgFieldAttribute?: unknown };
          // (an attribute's field has no plan of its own: the row's get() is the default)
          if (fieldName !== 'payload' || !pgFieldAttribute) return field;
          const { sql, dataplanPg: { TYPES } } = build;
          return {
            ...field,
            plan($record: any) {
              const $text = $record.select(sql`(${$record.getClassStep().alias}.payload)::text`, TYPES.text);
              return lambda([$text, contextStep()], ([text, ctx]) =>
                chargePayload(limits, (ctx as Grafast.Context).payloadBudget ?? payloadBudget(limits), text as string | null));
            },
          };
        },
      },
    },
  };
}

/**
 * A body refused by name before it is parsed (api/errors.ts, bodyRefused):
 * - bytes that are no UTF-8: grafserv read each as U+FFFD, and a name or URL sent so
 *   was stored with it in their place, unsaid;
 * - brackets nested past MAX_QUERY_TEXT_NESTING: grafserv parses the whole body before
 *   anything looks at what it holds, and 98 kB of one array nested 49,000 levels took
 *   JSON.parse 8 ms of the API's one thread (a flat one 0.5 ms; this count 0.3 ms), for
 *   each request, its variable used or not; no value the API takes nests that deep.
 * - a number of a JSON body a JSON reader does not hold as written (api/deep-json.ts,
 *   jsonNumberRefusal): grafserv's JSON.parse read 1e-400 as 0 and 9007199254740993 as
 *   9007199254740992, and a condition so sent was stored as another, unsaid.
 * The body, once read here, is the one grafserv reads (and a body it refuses, too
 * long, is its refusal as before).
 */
const BodyRefusals: GraphileConfig.Plugin = {
  name: 'BodyRefusals',
  version: '1.0.0',
  grafserv: {
    middleware: {
      async processRequest(next, event) {
        const digest = event.requestDigest;
        if (digest.method !== 'POST' || digest.path !== GRAPHQL_PATH) return next();
        const read = Promise.resolve(digest.getBody());
        digest.getBody = () => read;
        const body = await read.catch(() => undefined);
        if (body?.type !== 'buffer') return next();
        if (!isUtf8(body.buffer)) {
          return bodyRefused('request body is not UTF-8: send JSON (or GraphQL text) encoded as UTF-8', { code: HTTP_REFUSAL_CODES[400] });
        }
        const text = body.buffer.toString('utf8');
        if (textNestsDeeperThan(text, MAX_QUERY_TEXT_NESTING)) {
          return bodyRefused(`request body nests brackets more than ${MAX_QUERY_TEXT_NESTING} levels deep: no request needs that many`,
            { code: LIMIT_CODES.jsonDepth, limit: MAX_QUERY_TEXT_NESTING });
        }
        // (JSON: its numbers are variables' values, which grafserv's JSON.parse reads as doubles)
        if (digest.headers['content-type']?.split(';')[0].trim() === 'application/json') {
          const number = firstNumberNotHeld(text);
          const refused = number === undefined ? undefined : jsonNumberRefusal(number);
          if (refused) return bodyRefused(refused.message, refused.extensions);
        }
        return next();
      },
    },
  },
};

/** grafserv's own refusals of a request named (api/errors.ts, nameHttpRefusals). */
const NamedHttpRefusals: GraphileConfig.Plugin = {
  name: 'NamedHttpRefusals',
  version: '1.0.0',
  grafserv: {
    middleware: {
      async processRequest(next) {
        return nameHttpRefusals(await next());
      },
    },
  },
};

/**
 * JSON values (payloads) nested too deep to serialise are served as their text, and
 * JSON inputs nested as deep are refused by name (api/deep-json.ts).
 */
const DeepJsonAsText: GraphileConfig.Plugin = {
  name: 'DeepJsonAsText',
  version: '1.0.0',
  schema: {
    hooks: {
      GraphQLScalarType(spec, build) {
        if (spec.name !== build.inflection.builtin('JSON')) return spec;
        const serialize = spec.serialize ?? ((value: unknown) => value);
        const parseValue = spec.parseValue ?? ((value: unknown) => value);
        const parseLiteral = spec.parseLiteral;
        return {
          ...spec,
          serialize: (value: unknown) => servableJson(serialize(value)),
          parseValue: (value: unknown) => acceptableJson(parseValue(value)),
          ...(parseLiteral ? { parseLiteral: (...args: Parameters<typeof parseLiteral>) => acceptableJson(parseLiteral(...args), args[0]) } : {}),
        };
      },
    },
  },
};

/**
 * One connection for a request at a time: its statements one after the other, all
 * within one statement timeout. Each top-level field of a query is a statement of its
 * own, and grafast ran them at once, each on a connection of the pool: one request of
 * six fields held six connections (and six backends, or the whole pool), past its
 * company's share (api/company-share.ts), which counts requests. One after the other,
 * each statement gets what is left of the request's time (at least a millisecond:
 * Postgres cancels it then), so a request's SQL is bounded as a statement's is.
 * Mutations run one after the other already.
 *
 * The request's time is its statements' time on a connection, not its waits for one:
 * counted from the first turn, a request of two fields whose second waited for the
 * pool while other companies' requests held it was cancelled with nearly nothing
 * left, and told to ask for less (test/api/limits.test.ts).
 */
function OneConnectionPerRequest(limits: ApiLimits): GraphileConfig.Plugin {
  return {
    name: 'OneConnectionPerRequest',
    version: '1.0.0',
    after: ['PgContextPlugin'],
    grafast: {
      middleware: {
        prepareArgs(next, event) {
          const context = event.args.contextValue as Grafast.Context;
          const withPgClient = context.withPgClient;
          if (withPgClient) {
            let previous: Promise<unknown> = Promise.resolve();
            // ms the request's statements have held a connection so far
            let used = 0;
            const inTurn: typeof withPgClient = (pgSettings, callback) => {
              const turn = previous.then(() => {
                const left = Math.max(1, Math.ceil(limits.statementTimeoutMs - used));
                let connected = false;
                return withPgClient(pgSettings && { ...pgSettings, statement_timeout: String(left) }, async (client) => {
                  connected = true;
                  const started = performance.now();
                  try {
                    return await callback(client);
                  } finally {
                    used += performance.now() - started;
                  }
                }).catch((error: unknown) => {
                  throw connected ? error : (poolWaitRefusal(error, limits) ?? error);
                });
              });
              previous = turn.catch(() => undefined);
              return turn;
            };
            context.withPgClient = inTurn;
          }
          return next();
        },
      },
    },
  };
}

/**
 * How many documents and plans the API keeps, whoever sent them. grafserv keeps each
 * query text's parsed and validated document, and grafast each operation's plans (one
 * for each shape of variables a plan depends on), in LRUs of 500 documents, 500
 * operations and 50 plans an operation by default. Every company shares them, and the
 * text is the caller's: the document and plan of 24 one-row pages of every list (3.5 kB
 * of text) held about 3 MB of the API's heap, and 600 such texts, each with a comment
 * of its own, grew it by 1.4 GB. The Reports page sends about 25 texts, the same for
 * every company.
 */
export const CACHED_DOCUMENTS = 50;
/**
 * Plans kept for one operation: grafast makes another for each choice of variables its
 * plan depends on (@include, @skip), and each may be megabytes. The page's texts have
 * one such variable at most.
 */
export const CACHED_PLANS_PER_OPERATION = 2;

/**
 * The cache of plans bounded (CACHED_DOCUMENTS; grafserv's of documents is set with
 * the preset's grafserv options), and each plan made told to `planned` with the
 * milliseconds it took: a plan grafast did not have; and to `planMade`, with its
 * operation and the request's context, as is a planning that failed.
 */
function PlanCache(planned: (ms: number) => void, planMade: NewTexts['planMade']): GraphileConfig.Plugin {
  const seen = new WeakSet<object>();
  return {
    name: 'PlanCache',
    version: '1.0.0',
    grafast: {
      middleware: {
        establishOperationPlan(next, event) {
          const started = performance.now();
          const took = threadClock();
          let plan: ReturnType<typeof next>;
          try {
            plan = next();
          } catch (error) {
            planMade(event.operation, event.context, took());
            throw error;
          }
          if (!seen.has(plan)) {
            seen.add(plan);
            planned(performance.now() - started);
            planMade(event.operation, event.context, took());
          }
          return plan;
        },
      },
    },
    schema: {
      hooks: {
        GraphQLSchema(spec) {
          const extensions = spec.extensions ?? {};
          return {
            ...spec,
            extensions: {
              ...extensions,
              grafast: {
                ...extensions.grafast,
                operationsCacheMaxLength: CACHED_DOCUMENTS,
                operationOperationPlansCacheMaxLength: CACHED_PLANS_PER_OPERATION,
              },
            },
          };
        },
      },
    },
  };
}

interface NewTexts {
  plugin: GraphileConfig.Plugin;
  /** A plan made (or failed) of the operation, for the request of this context, in `ms` of the thread (threadClock). */
  planMade(operation: object, context: Grafast.Context, ms: number): void;
}

/**
 * A company's new query texts within its budget of the server's thread
 * (api/planning-budget.ts). A text the API keeps parsed and validated runs whatever
 * the budget says, for the cost of a lookup in KnownTexts; any other is refused
 * before it is parsed while the company's budget is spent (429, Retry-After), and
 * else the time its parsing and validation take is the company's, as is the time of
 * each plan made for it (PlanCache, planMade). grafserv parses and validates between
 * its reading of the body (processGraphQLRequestBody) and grafast's first step
 * (prepareArgs), or answers with the text's errors: the time between is the text's.
 *
 * A text kept may still be planned anew: one plan for each choice of the variables its
 * plan depends on (@include, @skip), CACHED_PLANS_PER_OPERATION of them kept. Sent with
 * one choice after another, such a text was planned each time, kept, and never
 * refused: a text whose operation has been planned more times than its plans are kept
 * is no longer a text kept, and is judged as a new one each time.
 */
function newTextsWithinBudget(budget: PlanningBudget, claimsOf: PresetOptions['claimsOf'], refused: () => void): NewTexts {
  const known = new KnownTexts(CACHED_DOCUMENTS);
  /** the requests whose text is being parsed and validated: their company and since when */
  const parsing = new WeakMap<object, { companyId: string; text: string; took: () => number }>();
  /** each operation of a valid text parsed here (grafserv keeps its document): its text, and the plans made of it */
  const operations = new WeakMap<object, { text: string; plans: number }>();
  /**
   * The parse and validation of the request's text ended (`document`: a valid one):
   * their time charged, and the text kept unless it is planned anew for its variables.
   */
  const parsed = (req: object | undefined, document?: DocumentNode) => {
    const parse = req && parsing.get(req);
    if (!parse) return;
    parsing.delete(req);
    budget.spend(parse.companyId, parse.took());
    if (!document) return;
    let replanned = false;
    for (const definition of document.definitions) {
      if (definition.kind !== Kind.OPERATION_DEFINITION) continue;
      const operation = operations.get(definition) ?? { text: parse.text, plans: 0 };
      operations.set(definition, operation);
      replanned ||= operation.plans > CACHED_PLANS_PER_OPERATION;
    }
    if (!replanned) known.add(parse.text);
  };
  const plugin: GraphileConfig.Plugin = {
    name: 'NewTextsWithinBudget',
    version: '1.0.0',
    after: ['RequestLimits'],
    grafserv: {
      middleware: {
        processGraphQLRequestBody(next, event) {
          const text = event.body.query;
          // a text kept: nothing else is asked
          if (typeof text !== 'string' || known.use(text)) return next();
          const node = event.request?.requestContext.node;
          const claims = node && claimsOf(node.req);
          if (!node || !claims) return next();
          const waitMs = budget.waitMs(claims.company_id);
          if (waitMs > 0) {
            const { error, retryAfterSeconds } = newQueryRefusal(waitMs);
            node.res.setHeader('retry-after', String(retryAfterSeconds));
            refused();
            throw error;
          }
          parsing.set(node.req, { companyId: claims.company_id, text, took: threadClock() });
          return next();
        },
        // a text refused by the parser or a validation rule ends here, without prepareArgs
        async processRequest(next, event) {
          try {
            return await next();
          } finally {
            parsed(event.requestDigest.requestContext.node?.req);
          }
        },
      },
    },
    grafast: {
      middleware: {
        prepareArgs(next, event) {
          parsed(event.args.requestContext?.node?.req, event.args.document);
          return next();
        },
      },
    },
  };
  return {
    plugin,
    planMade(operation, context, ms) {
      if (context.companyId !== undefined) budget.spend(context.companyId, ms);
      const planned = operations.get(operation);
      if (planned && ++planned.plans > CACHED_PLANS_PER_OPERATION) known.forget(planned.text);
    },
  };
}

export interface PresetOptions {
  /** the API's connections; the caller owns the pool and ends it */
  pool: pg.Pool;
  /** claims of the request, verified before GraphQL runs (server.ts) */
  claimsOf: (request: unknown) => Claims | undefined;
  limits: ApiLimits;
  /** told of each operation plan made, with the milliseconds it took (a plan not in grafast's cache) */
  planned?: (ms: number) => void;
  /** told of each new text refused for its company's budget (TOO_MANY_NEW_QUERIES) */
  newTextRefused?: () => void;
  /** where errors the API does not name are logged (api/errors.ts, UnnamedErrors) */
  log?: Logger;
}

/**
 * The planner settings of every request.
 * - Partitionwise joins let a webhook's history page join each day's history rows to
 *   that day's results and stop at the page's end; without them it sorts all of the
 *   webhook's history first (webhooks.webhooks_history, sql/55_report.sql). Not a
 *   database-wide setting: the relay's statements reach one partition and were
 *   measured without it, and it makes planning a join of partitioned tables dearer.
 * - Generic plans from a connection's first request: PostGraphile prepares each
 *   statement, and Postgres plans the first five executions of a prepared statement
 *   for their own arguments before it keeps one plan. Over the history's partitions
 *   those plans cost 40–70 ms a request against 10–15 for the kept one, and for a
 *   page of history they may sort all of a webhook's rows (BENCHMARKS.md, "Generic
 *   plans from a connection's first request").
 * - No sequential scan where an index will do: every request reads one company's rows
 *   by an index. A day's partition still nearly empty (the first hour of a UTC day,
 *   two rows in it) was read by a sequential scan, which gives its rows in no order:
 *   the page of history then sorted all of a webhook's rows of every day instead of
 *   merging the days newest first (test/sql/history-pages.test.ts failed from 00:00
 *   to about 01:00 UTC, 3,002 rows read for a page of 25).
 */
export const API_PLANNER_SETTINGS: Readonly<Record<string, string>> = {
  enable_partitionwise_join: 'on',
  plan_cache_mode: 'force_generic_plan',
  enable_seqscan: 'off',
};

export function apiPreset(options: PresetOptions): GraphileConfig.Preset {
  // each company's time of the thread for texts the API has not planned
  const newTexts = newTextsWithinBudget(new PlanningBudget({
    msPerSecond: options.limits.companyPlanningMsPerSecond,
    burstMs: options.limits.companyPlanningBurstMs,
  }), options.claimsOf, options.newTextRefused ?? (() => {}));
  return {
    extends: [PostGraphileAmberPreset],
    plugins: [HideDbaViews, PlainNames, ViewColumnsNotNull, BoundedLists, ListsInIndexOrder, OnlyKeysetPages, DeepJsonAsText, InputRefusals, BodyRefusals, NamedHttpRefusals, PayloadsWithinBudget(options.limits), RequestLimits(options.limits), newTexts.plugin, OneConnectionPerRequest(options.limits), PlanCache(options.planned ?? (() => {}), newTexts.planMade)],
    // No Relay global object ids: \`id\` is the database id everywhere, as in SQL,
    // in the page's URLs and in the mutations' arguments.
    disablePlugins: ['NodePlugin'],
    pgServices: [
      makePgService({
        pool: options.pool,
        schemas: ['webhooks'],
        // no GraphQL subscriptions: no LISTEN connection held for them
        pubsub: false,
      }),
    ],
    grafserv: {
      graphqlPath: GRAPHQL_PATH,
      graphiql: true,
      graphiqlPath: GRAPHIQL_PATH,
      graphiqlOnGraphQLGET: false,
      websockets: false,
      maxRequestLength: options.limits.maxBodyBytes,
      parseAndValidateCacheSize: CACHED_DOCUMENTS,
      maskError: errorMasker(new UnnamedErrors(options.log ?? apiLogger())),
    },
    grafast: {
      explain: false,
      context(requestContext) {
        const claims = options.claimsOf(requestContext.node?.req);
        // server.ts answers 401 before GraphQL for a request without valid claims;
        // an empty role here would be a bug, so refuse rather than run as the login
        if (!claims) throw new Error('request reached GraphQL without verified claims');
        return {
          pgSettings: {
            ...pgSettingsFor(claims),
            // SET LOCAL for the request's transaction: whatever role the API logs in as
            statement_timeout: String(options.limits.statementTimeoutMs),
            ...API_PLANNER_SETTINGS,
          },
          payloadBudget: payloadBudget(options.limits),
          companyId: claims.company_id,
        };
      },
    },
  };
}
