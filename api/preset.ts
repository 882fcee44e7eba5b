// The PostGraphile configuration: GraphQL generated from schema `webhooks` alone
// (webhooks_private never appears), with the smart comments of sql/70_graphql.sql
// deciding what is shown, and each request run as the role its token names.
import './env.ts';
import type {} from 'postgraphile';
import type pg from 'pg';
import { makePgService } from 'postgraphile/adaptors/pg';
import { PostGraphileAmberPreset } from 'postgraphile/presets/amber';
import { jsonPgSmartTags } from 'postgraphile/utils';
import { pgSettingsFor, type Claims } from './auth.ts';
import { maskError } from './errors.ts';

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
 *   in GraphQL the action enum reads CONTACT_CREATED. The database keeps its names.
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
    },
  },
};

/**
 * A webhook's history reads newest first and pages with cursors that stay put while
 * new deliveries arrive: ordering by (created_at, id) makes the cursors keysets on
 * those columns (without an order, PostGraphile would count rows instead).
 */
const HistoryNewestFirst: GraphileConfig.Plugin = {
  name: 'HistoryNewestFirst',
  version: '1.0.0',
  after: ['PgConnectionArgOrderByPlugin'],
  schema: {
    hooks: {
      GraphQLObjectType_fields_field_args_arg(arg, build, context) {
        const { argName, pgFieldResource } = context.scope as { argName?: string; pgFieldResource?: { name: string } };
        if (argName !== 'orderBy' || pgFieldResource?.name !== 'webhooks_history') return arg;
        const OrderBy = build.getTypeByName('DeliveryOrderBy') as import('postgraphile/graphql').GraphQLEnumType | undefined;
        const values = ['CREATED_AT_DESC', 'ID_DESC'].map((name) => OrderBy?.getValue(name)?.value);
        if (values.some((value) => value === undefined)) return arg;
        return build.extend(arg, { defaultValue: values }, 'history: newest first by default');
      },
    },
  },
};

export interface PresetOptions {
  /** the API's connections; the caller owns the pool and ends it */
  pool: pg.Pool;
  /** claims of the request, verified before GraphQL runs (server.ts) */
  claimsOf: (request: unknown) => Claims | undefined;
}

export function apiPreset(options: PresetOptions): GraphileConfig.Preset {
  return {
    extends: [PostGraphileAmberPreset],
    plugins: [HideDbaViews, PlainNames, HistoryNewestFirst],
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
      maskError,
    },
    grafast: {
      explain: false,
      context(requestContext) {
        const claims = options.claimsOf(requestContext.node?.req);
        // server.ts answers 401 before GraphQL for a request without valid claims;
        // an empty role here would be a bug, so refuse rather than run as the login
        if (!claims) throw new Error('request reached GraphQL without verified claims');
        return { pgSettings: pgSettingsFor(claims) };
      },
    },
  };
}
