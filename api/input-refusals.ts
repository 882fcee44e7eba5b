// Every value a caller sends into the schema's inputs is judged here, by the type of
// the argument or input field it is given to, and a bad one is refused by name: its
// rule (extensions.constraint), its SQLSTATE (extensions.code) and the argument or
// field (extensions.column). Without this, Postgres read the text first and refused
// it with a message of its own that named nothing (or, for a lone UTF-16 surrogate,
// stored U+FFFD in its place).
//
// Before the operation runs (refuseInputs), each scalar the caller wrote in the query
// or passed as a variable (or as a variable's default) is checked, found by walking
// the operation's arguments with the schema's types, so every input of a type is
// checked without a list of them:
// - any text (String, Datetime, BigInt, Cursor, and every key and string in JSON):
//   no NUL (U+0000: Postgres text cannot hold it, 22021) and no lone UTF-16 surrogate
//   (no character at all: text stored U+FFFD in its place, JSON was refused unnamed),
//   nul_character and lone_surrogate (22021);
// - Datetime: a year written with a sign (-4712-01-01, JavaScript's
//   +275760-09-13T00:00:00.000Z), past 9999, zero or before Christ. Postgres's parser
//   read such a sign as a time zone displacement (22009) and refused a year past
//   294276 or before 4714 BC, or zero, as out of range (22008), naming nothing. A
//   since or until (a time asked about: the report, a history, historyCount,
//   replayFailed) is refused as webhooks_private.requested_time refuses one outside
//   1970 to 9999 (requested_time_range, sql/22_outbox.sql); any other Datetime as
//   datetime_range; both 22008. A value that is not text at all is datetime_invalid;
// - BigInt: what Postgres's bigint reads (decimal, 0x, 0o or 0b digits, _ between
//   them, a sign, white space around), from -2^63 to 2^63 - 1: else bigint_invalid
//   (22P02) or bigint_range (22003);
// - Int: a JSON number that is whole, from -2^31 to 2^31 - 1 (what GraphQL's Int and
//   Postgres's integer hold): else int_invalid (22P02) or int_range (22003). GraphQL
//   refused them itself, as GRAPHQL_VALIDATION_FAILED ("Int cannot represent non
//   32-bit signed integer value: 3000000000"), naming neither the argument nor a rule,
//   so a rateLimit of 3000000000 read as a document written wrong. The argument's own
//   bound (rateLimit 1 to 10,000) is the engine's to name, once the value reaches it.
//   (A literal written in the query text is GraphQL's to refuse still: it validates
//   the text before this runs, GRAPHQL_VALIDATION_FAILED);
// - IntervalInput: an interval Postgres can hold, its seconds as plain decimals
//   (interval_range, 22015);
// - Cursor: a cursor this API could have given out: a 'natural' one counts rows from
//   0, a keyset one holds texts, numbers, booleans or nulls (INVALID_CURSOR);
// - any list: at most LONGEST_LIST items (list_too_long, 22023). The body's size
//   alone bounded one: latestBackfills of 10,000 webhook ids took 115 to 166 ms a
//   request, where one took 27.
//
// What Postgres still refuses of a Datetime (a month 13, a word it does not read, an
// offset past 15:59, a zone it does not know) or of a cursor's values is named once
// the operation has run (nameInputErrors): its message quotes the text, which is
// matched to the input that sent it (datetime_invalid with Postgres's SQLSTATE;
// INVALID_CURSOR).
import {
  getNullableType, getOperationAST, GraphQLError, isInputObjectType, isListType, isScalarType, TypeInfo, typeFromAST,
  valueFromAST, visit, visitWithTypeInfo, type ExecutionResult, type GraphQLInputType, type ValueNode,
} from 'postgraphile/graphql';
import { databaseErrorIn, QUOTED_MAX, shortened } from './errors.ts';
import { LIMIT_CODES, LONGEST_LIST, type Operation } from './limits.ts';

/** the arguments and input fields that are times asked about (every one of the schema so named is) */
const REQUESTED_TIMES: ReadonlySet<string> = new Set(['since', 'until']);

/** graphile-build's scalars */
const DATETIME = 'Datetime';
const BIGINT = 'BigInt';
const INT = 'Int';
const CURSOR = 'Cursor';
const JSON_SCALAR = 'JSON';
/** the fields of graphile-build-pg's IntervalInput, whatever the type is named */
const INTERVAL_FIELDS = ['seconds', 'minutes', 'hours', 'days', 'months', 'years'];

/** the names of the rules (extensions.constraint) */
export const INPUT_RULES = Object.freeze({
  nul: 'nul_character',
  loneSurrogate: 'lone_surrogate',
  requestedTime: 'requested_time_range',
  datetimeRange: 'datetime_range',
  datetimeInvalid: 'datetime_invalid',
  bigintInvalid: 'bigint_invalid',
  bigintRange: 'bigint_range',
  intInvalid: 'int_invalid',
  intRange: 'int_range',
  intervalRange: 'interval_range',
  listTooLong: 'list_too_long',
});

/** A refusal of an input: its message, its SQLSTATE or code, its rule and the argument or field. */
function refusal(message: string, code: string, constraint: string | undefined, column: string, nodes?: ValueNode): GraphQLError {
  return new GraphQLError(message, { nodes, extensions: { code, ...(constraint ? { constraint } : {}), column } });
}

/** A text as a message quotes it: JSON, shortened. */
const quoted = (text: string) => JSON.stringify(shortened(text));

/** Postgres's message with each place it quotes one of the caller's texts shortened (it quoted all of it: 90,104 characters of a 90 kB time). */
const withTextsShortened = (message: string, ...texts: string[]) =>
  texts.reduce((shown, text) => (text.length > QUOTED_MAX ? shown.split(text).join(shortened(text)) : shown), message);

// -- text -----------------------------------------------------------------------------

/** Where text has a UTF-16 surrogate that is not half of a pair, or -1. */
function loneSurrogateAt(text: string): number {
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0xd800 || unit > 0xdfff) continue;
    const next = text.charCodeAt(i + 1);
    if (unit <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
      i++;
      continue;
    }
    return i;
  }
  return -1;
}

/** The refusal of a text Postgres cannot hold (a NUL) or that is no Unicode (a lone surrogate), or nothing. */
function textRefusal(field: string, text: string, nodes?: ValueNode): GraphQLError | undefined {
  if (text.includes('\u0000')) {
    return refusal(`${field} must not contain a NUL character (U+0000): Postgres text cannot hold one`,
      '22021', INPUT_RULES.nul, field, nodes);
  }
  const lone = loneSurrogateAt(text);
  if (lone >= 0) {
    const unit = text.charCodeAt(lone).toString(16).toUpperCase();
    return refusal(`${field} must not contain a lone UTF-16 surrogate (U+${unit}, not half of a pair): it is no character`,
      '22021', INPUT_RULES.loneSurrogate, field, nodes);
  }
  return undefined;
}

/** The refusal of the first key or string within a JSON value that textRefusal refuses (walked without recursion), or nothing. */
function jsonRefusal(field: string, value: unknown, nodes?: ValueNode): GraphQLError | undefined {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const item = stack.pop();
    if (typeof item === 'string') {
      const refused = textRefusal(field, item, nodes);
      if (refused) return refused;
    } else if (item !== null && typeof item === 'object') {
      if (Array.isArray(item)) {
        for (const child of item) stack.push(child);
      } else {
        for (const [key, child] of Object.entries(item)) stack.push(key, child);
      }
    }
  }
  return undefined;
}

// -- Datetime --------------------------------------------------------------------------

/** a time written as an ISO date: its year's sign and digits (Postgres skips white space before it) */
const ISO_YEAR = /^[\t\n\v\f\r ]*([+-]?)([0-9]+)-/;
/** a time written with BC after it, as Postgres writes one */
const BEFORE_CHRIST = /BC[\t\n\v\f\r ]*$/i;

/**
 * The refusal of a time whose year is outside what may be written by its year alone:
 * with a sign, past 9999, zero or before Christ (requested_time_range for since and
 * until, else datetime_range); or nothing.
 */
export function timeRefusal(field: string, text: string, nodes?: ValueNode): GraphQLError | undefined {
  const year = ISO_YEAR.exec(text);
  if (!year) return undefined;
  const [, sign, digits] = year;
  const number = Number(digits);
  if (!sign && !BEFORE_CHRIST.test(text) && number <= 9999 && number > 0) return undefined;
  const why = sign ? ' (a year is written without a sign)' : '';
  // the words of requested_time's refusal; the text as written, not as read (shortened)
  if (REQUESTED_TIMES.has(field)) {
    return refusal(`${field} must be from 1970-01-01 to 9999-12-31 (UTC), or open (null), got ${quoted(text)}${why}`,
      '22008', INPUT_RULES.requestedTime, field, nodes);
  }
  return refusal(`${field} must be a time of the years 1 to 9999, got ${quoted(text)}${why}`,
    '22008', INPUT_RULES.datetimeRange, field, nodes);
}

// -- BigInt ----------------------------------------------------------------------------

/** what Postgres's bigint input reads (pg_strtoint64): white space, a sign, digits in one of four bases with _ between them */
const BIGINT_TEXT = /^[\t\n\v\f\r ]*([+-]?)(?:0[xX]((?:_?[0-9a-fA-F])+)|0[oO]((?:_?[0-7])+)|0[bB]((?:_?[01])+)|([0-9](?:_?[0-9])*))[\t\n\v\f\r ]*$/;
const BIGINT_MIN = -(2n ** 63n);
const BIGINT_MAX = 2n ** 63n - 1n;

/** The refusal of a BigInt Postgres would not read, or that is beyond bigint; or nothing. */
function bigintRefusal(field: string, value: unknown, nodes?: ValueNode): GraphQLError | undefined {
  const text = typeof value === 'string' ? value : typeof value === 'number' && Number.isFinite(value) ? String(value) : undefined;
  const parts = text === undefined ? null : BIGINT_TEXT.exec(text);
  if (!parts) {
    return refusal(`${field} must be an integer, written as a string of digits ("42"), got ${quoted(text ?? JSON.stringify(value) ?? String(value))}`,
      '22P02', INPUT_RULES.bigintInvalid, field, nodes);
  }
  const [, sign, hex, octal, binary, decimal] = parts;
  const magnitude = BigInt(hex !== undefined ? `0x${hex.replaceAll('_', '')}` : octal !== undefined ? `0o${octal.replaceAll('_', '')}`
    : binary !== undefined ? `0b${binary.replaceAll('_', '')}` : decimal.replaceAll('_', ''));
  const number = sign === '-' ? -magnitude : magnitude;
  if (number < BIGINT_MIN || number > BIGINT_MAX) {
    return refusal(`${field} must be from ${BIGINT_MIN} to ${BIGINT_MAX} (bigint), got ${quoted(text!)}`,
      '22003', INPUT_RULES.bigintRange, field, nodes);
  }
  return undefined;
}

// -- Int -------------------------------------------------------------------------------

const INT_MIN = -(2 ** 31);
const INT_MAX_VALUE = 2 ** 31 - 1;

/** The refusal of an Int that is no whole JSON number, or is beyond 32 bits; or nothing. */
function intRefusal(field: string, value: unknown, nodes?: ValueNode): GraphQLError | undefined {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    return refusal(`${field} must be a whole number written as a JSON number (42), got ${shortened(JSON.stringify(value) ?? String(value))}`,
      '22P02', INPUT_RULES.intInvalid, field, nodes);
  }
  if (value < INT_MIN || value > INT_MAX_VALUE) {
    // (written as digits: 1e20 is 100000000000000000000)
    return refusal(`${field} must be a whole number from ${INT_MIN} to ${INT_MAX_VALUE}, got ${BigInt(value)}`,
      '22003', INPUT_RULES.intRange, field, nodes);
  }
  return undefined;
}

// -- IntervalInput ---------------------------------------------------------------------

const INT32_MAX = 2 ** 31 - 1;
/** the most seconds an interval's time part holds, a little under 2^63 microseconds */
const INTERVAL_MAX_SECONDS = 9.2e12;

/** Whether an input object type is graphile-build-pg's IntervalInput. */
function isIntervalInput(type: GraphQLInputType): boolean {
  const fields = isInputObjectType(type) ? Object.keys(type.getFields()) : [];
  return fields.length === INTERVAL_FIELDS.length && INTERVAL_FIELDS.every((name) => fields.includes(name));
}

/**
 * The refusal of an interval Postgres cannot hold, or nothing. PostGraphile writes one
 * as "<seconds> seconds <minutes> minutes …": a number JavaScript writes with an
 * exponent (1e21 and more, or under 0.000001) is no text Postgres reads (22007), and
 * its months (a year is 12) are an int32, its time an int64 of microseconds
 * ("interval out of range", 22008, and "interval field value out of range", 22015).
 */
function intervalRefusal(field: string, value: Record<string, unknown>, nodes?: ValueNode): GraphQLError | undefined {
  const part = (name: string) => (typeof value[name] === 'number' ? value[name] as number : 0);
  const seconds = part('seconds');
  const plain = seconds === 0 || (Math.abs(seconds) >= 1e-6 && Math.abs(seconds) < 1e21);
  const months = part('years') * 12 + part('months');
  const time = part('hours') * 3600 + part('minutes') * 60 + seconds;
  if (plain && Math.abs(part('years') * 12) <= INT32_MAX && Math.abs(months) <= INT32_MAX
    && Math.abs(seconds) <= INTERVAL_MAX_SECONDS && Math.abs(time) <= INTERVAL_MAX_SECONDS) return undefined;
  return refusal(`${field} is beyond what an interval holds: its years and months at most ${INT32_MAX} months together, ` +
    `its hours, minutes and seconds at most ${INTERVAL_MAX_SECONDS} seconds together, its seconds 0 or at least 0.000001 (a microsecond); ` +
    `got ${JSON.stringify(value)}`, '22015', INPUT_RULES.intervalRange, field, nodes);
}

// -- Cursor ----------------------------------------------------------------------------

/** A cursor's parts as PostGraphile reads them (base64 of a JSON list), or undefined where it refuses it itself. */
function cursorParts(cursor: string): unknown[] | undefined {
  try {
    const decoded: unknown = JSON.parse(Buffer.from(cursor, 'base64').toString('utf8'));
    return Array.isArray(decoded) ? decoded : undefined;
  } catch {
    return undefined;
  }
}

/** The refusal of a cursor, in the words of PostGraphile's own, naming the argument. */
function cursorRefusal(field: string, nodes?: ValueNode): GraphQLError {
  return refusal(`Invalid '${field}' cursor: not a cursor this API gave out; please enter a cursor from a previous request, or null.`,
    LIMIT_CODES.cursor, undefined, field, nodes);
}

/**
 * The refusal of a cursor whose parts no cursor of this API has: a 'natural' cursor
 * (a count of rows) that is not a whole number from 0, or a keyset cursor holding
 * a list or an object, or a text textRefusal refuses; or nothing (a cursor that is
 * not a list, or of another order, PostGraphile refuses itself).
 */
function cursorValueRefusal(field: string, cursor: string, nodes?: ValueNode): GraphQLError | undefined {
  const parts = cursorParts(cursor);
  if (!parts || parts.length === 0) return undefined;
  const [digest, ...values] = parts;
  if (digest === 'natural') {
    return values.length === 1 && Number.isSafeInteger(values[0]) && (values[0] as number) >= 0 ? undefined : cursorRefusal(field, nodes);
  }
  for (const value of values) {
    if (value === null || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value))) continue;
    if (typeof value === 'string' && !textRefusal(field, value)) continue;
    return cursorRefusal(field, nodes);
  }
  return undefined;
}

// -- the walk --------------------------------------------------------------------------

/** A text the operation sends to Postgres that Postgres may yet refuse: matched to its input by nameInputErrors. */
interface SentText {
  text: string;
  /** the argument or input field */
  field: string;
  kind: 'time' | 'cursor';
  nodes?: ValueNode;
}

/** The refusal of the first bad value within value (of type), or nothing; every Datetime and cursor text is noted in sent. */
function refusalIn(type: GraphQLInputType, value: unknown, field: string, node: ValueNode, sent: SentText[]): GraphQLError | undefined {
  if (value === null || value === undefined) return undefined;
  const nullable = getNullableType(type);
  if (isListType(nullable)) {
    // (LONGEST_LIST, the most rows a list answers, is the longest any input needs:
    // companyUsersNamed's ids, at most webhooks_private.names_asked_max(); a webhook's
    // fields, actions and filters, and latestBackfills' webhook ids, are fewer)
    if (Array.isArray(value) && value.length > LONGEST_LIST) {
      return refusal(`${field} has at most ${LONGEST_LIST} items, not ${value.length}`, '22023', INPUT_RULES.listTooLong, field, node);
    }
    for (const item of Array.isArray(value) ? value : [value]) {
      const refused = refusalIn(nullable.ofType, item, field, node, sent);
      if (refused) return refused;
    }
    return undefined;
  }
  if (isInputObjectType(nullable)) {
    if (typeof value !== 'object' || Array.isArray(value)) return undefined;
    if (isIntervalInput(nullable)) {
      const refused = intervalRefusal(field, value as Record<string, unknown>, node);
      if (refused) return refused;
    }
    for (const inner of Object.values(nullable.getFields())) {
      const refused = refusalIn(inner.type, (value as Record<string, unknown>)[inner.name], inner.name, node, sent);
      if (refused) return refused;
    }
    return undefined;
  }
  if (!isScalarType(nullable)) return undefined;
  if (nullable.name === JSON_SCALAR) return jsonRefusal(field, value, node);
  if (nullable.name === INT) return intRefusal(field, value, node);
  if (nullable.name === BIGINT) return (typeof value === 'string' ? textRefusal(field, value, node) : undefined) ?? bigintRefusal(field, value, node);
  if (typeof value !== 'string') {
    if (nullable.name === DATETIME) {
      return refusal(`${field} must be a time written as text (ISO 8601: "2026-01-01T00:00:00Z"), got ${shortened(JSON.stringify(value) ?? String(value))}`,
        '22007', INPUT_RULES.datetimeInvalid, field, node);
    }
    return undefined;
  }
  if (nullable.name === CURSOR) {
    const refused = cursorValueRefusal(field, value, node);
    if (refused) return refused;
    const [digest, ...parts] = cursorParts(value) ?? [];
    for (const part of digest === 'natural' ? [] : parts) {
      if (part !== null) sent.push({ text: String(part), field, kind: 'cursor', nodes: node });
    }
    return undefined;
  }
  const refused = textRefusal(field, value, node);
  if (refused) return refused;
  if (nullable.name === DATETIME) {
    sent.push({ text: value, field, kind: 'time', nodes: node });
    return timeRefusal(field, value, node);
  }
  return undefined;
}

/** What the pre-check found: a refusal, or the texts Postgres may still refuse. */
export interface InputCheck {
  refusal?: GraphQLError;
  sent: SentText[];
}

/**
 * Why the operation may not run: the first value of an argument or input field,
 * written in the query or given as a variable (or a variable's default), that the
 * rules above refuse; or nothing, with the texts it sends that Postgres may still
 * refuse. A bad variable or operation is left to GraphQL, which says so when it runs.
 */
export function refuseInputs(operation: Operation): InputCheck {
  const sent: SentText[] = [];
  const chosen = getOperationAST(operation.document, operation.operationName ?? undefined);
  if (!chosen) return { sent };
  const variables: Record<string, unknown> = { ...(operation.variableValues ?? {}) };
  for (const definition of chosen.variableDefinitions ?? []) {
    const name = definition.variable.name.value;
    const type = typeFromAST(operation.schema, definition.type);
    if (!Object.hasOwn(variables, name) && definition.defaultValue && type) {
      variables[name] = valueFromAST(definition.defaultValue, type as GraphQLInputType);
    }
  }
  let refused: GraphQLError | undefined;
  const typeInfo = new TypeInfo(operation.schema);
  visit(operation.document, visitWithTypeInfo(typeInfo, {
    OperationDefinition: (node) => (node === chosen ? undefined : false),
    Argument(node) {
      const argument = typeInfo.getArgument();
      if (refused || !argument) return;
      refused = refusalIn(argument.type, valueFromAST(node.value, argument.type, variables), argument.name, node.value, sent);
    },
  }));
  return refused ? { refusal: refused, sent } : { sent };
}

// -- after the run ---------------------------------------------------------------------

/** SQLSTATEs of Postgres reading a text as a value of a type (a time, a bigint, …) */
const READING_STATES = new Set(['22007', '22008', '22009', '22023', '22P02', '22003', '22021']);
/** Postgres's words for a time zone it does not know (it quotes the zone, lower-cased) */
const UNKNOWN_ZONE = /^time zone "(.*)" not recognized$/;

/** The input whose text Postgres's message quotes, times before cursors; or nothing. */
function inputQuoted(message: string, sent: SentText[]): SentText | undefined {
  const zone = UNKNOWN_ZONE.exec(message)?.[1];
  const matches = (input: SentText) => message.includes(`"${input.text}"`)
    || (input.kind === 'time' && zone !== undefined && input.text.toLowerCase().includes(zone));
  return sent.find((input) => input.kind === 'time' && matches(input)) ?? sent.find((input) => input.kind === 'cursor' && matches(input));
}

/**
 * The result with each error in which Postgres refused a text of the operation's
 * (a Datetime it does not read, a cursor's value) named after the input that sent it:
 * datetime_invalid (with Postgres's SQLSTATE and message), or INVALID_CURSOR.
 */
export function nameInputErrors<R extends ExecutionResult>(result: R, sent: SentText[]): R {
  if (!result.errors || sent.length === 0) return result;
  let changed = false;
  const errors = result.errors.map((error) => {
    const db = databaseErrorIn(error.originalError);
    // (an error with a constraint is a rule's refusal already: requested_time_range, …)
    if (!db?.code || !READING_STATES.has(db.code) || db.constraint) return error;
    const input = inputQuoted(db.message, sent);
    if (!input) return error;
    changed = true;
    const zone = UNKNOWN_ZONE.exec(db.message)?.[1];
    const named = input.kind === 'cursor' ? cursorRefusal(input.field)
      : refusal(`${input.field} is not a time Postgres reads: ${withTextsShortened(db.message, input.text, ...(zone === undefined ? [] : [zone]))}`,
        db.code, INPUT_RULES.datetimeInvalid, input.field);
    return new GraphQLError(named.message, {
      nodes: error.nodes, source: error.source, positions: error.positions, path: error.path, extensions: named.extensions,
    });
  });
  return changed ? { ...result, errors } : result;
}
