// The times a caller asks about: `since` and `until` of the report, a history,
// historyCount and replayFailed. webhooks_private.requested_time (sql/22_outbox.sql)
// refuses one outside 1970-01-01 to 9999-12-31 by name (requested_time_range, 22008,
// the field as its column); but it sees a time only once Postgres has read the text,
// and Postgres's parser refuses some texts of such times itself, naming nothing: a
// year with a sign, as ISO 8601 writes one outside 0000 to 9999 (-4712-01-01,
// JavaScript's +275760-09-13T00:00:00.000Z), is read as a time zone displacement
// (22009), and a year past 294276 or before 4714 BC is "timestamp out of range".
// So the year of such a text is read here, before the query runs, and a time whose
// year is written with a sign, is past 9999 or is before Christ is refused as
// requested_time would refuse it. Any other text goes to Postgres as a value, as before.
import {
  getNullableType, getOperationAST, GraphQLError, isInputObjectType, isListType, isScalarType, TypeInfo, typeFromAST,
  valueFromAST, visit, visitWithTypeInfo, type GraphQLInputType, type ValueNode,
} from 'postgraphile/graphql';
import type { Operation } from './limits.ts';

/** the arguments and input fields that are times asked about (every one of the schema so named is) */
const REQUESTED_TIMES: ReadonlySet<string> = new Set(['since', 'until']);

/** graphile-build's scalar of a timestamptz */
const DATETIME = 'Datetime';

/** a time written as an ISO date: its year's sign and digits (Postgres skips white space before it) */
const ISO_YEAR = /^[\t\n\v\f\r ]*([+-]?)([0-9]+)-/;
/** a time written with BC after it, as Postgres writes one */
const BEFORE_CHRIST = /BC[\t\n\v\f\r ]*$/i;

/** The refusal of a time asked about that is outside what may be asked by its year alone, or nothing. */
export function requestedTimeRefusal(field: string, text: string, nodes?: ValueNode): GraphQLError | undefined {
  const year = ISO_YEAR.exec(text);
  if (!year) return undefined;
  const [, sign, digits] = year;
  if (!sign && !BEFORE_CHRIST.test(text) && Number(digits) <= 9999) return undefined;
  // the words of requested_time's refusal; the text as written, not as read (shortened)
  return new GraphQLError(
    `${field} must be from 1970-01-01 to 9999-12-31 (UTC), or open (null), got ${JSON.stringify(text.slice(0, 100))}` +
      (sign ? ' (a year is written without a sign)' : ''),
    { nodes, extensions: { code: '22008', constraint: 'requested_time_range', column: field } });
}

/** The refusal of a time asked about within value (of type), or nothing; input objects are walked to their fields. */
function refusalIn(type: GraphQLInputType, value: unknown, field: string, node: ValueNode): GraphQLError | undefined {
  if (value === null || value === undefined) return undefined;
  const nullable = getNullableType(type);
  if (isListType(nullable)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      const refusal = refusalIn(nullable.ofType, item, field, node);
      if (refusal) return refusal;
    }
  } else if (isInputObjectType(nullable)) {
    if (typeof value !== 'object') return undefined;
    for (const inner of Object.values(nullable.getFields())) {
      const refusal = refusalIn(inner.type, (value as Record<string, unknown>)[inner.name], inner.name, node);
      if (refusal) return refusal;
    }
  } else if (isScalarType(nullable) && nullable.name === DATETIME && REQUESTED_TIMES.has(field) && typeof value === 'string') {
    return requestedTimeRefusal(field, value, node);
  }
  return undefined;
}

/**
 * Why the operation may not run: a time it asks about, written in the query or given
 * as a variable (or a variable's default), whose year is outside what may be asked
 * (requestedTimeRefusal); or nothing. A bad variable or operation is left to GraphQL,
 * which says so when it runs.
 */
export function refuseRequestedTimes(operation: Operation): GraphQLError | undefined {
  const chosen = getOperationAST(operation.document, operation.operationName ?? undefined);
  if (!chosen) return undefined;
  const variables: Record<string, unknown> = { ...(operation.variableValues ?? {}) };
  for (const definition of chosen.variableDefinitions ?? []) {
    const name = definition.variable.name.value;
    const type = typeFromAST(operation.schema, definition.type);
    if (!Object.hasOwn(variables, name) && definition.defaultValue && type) {
      variables[name] = valueFromAST(definition.defaultValue, type as GraphQLInputType);
    }
  }
  let refusal: GraphQLError | undefined;
  const typeInfo = new TypeInfo(operation.schema);
  visit(operation.document, visitWithTypeInfo(typeInfo, {
    OperationDefinition: (node) => (node === chosen ? undefined : false),
    Argument(node) {
      const argument = typeInfo.getArgument();
      if (refusal || !argument) return;
      refusal = refusalIn(argument.type, valueFromAST(node.value, argument.type, variables), argument.name, node.value);
    },
  }));
  return refusal;
}
