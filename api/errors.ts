// Which errors reach the client as they are. PostGraphile hides unexpected errors
// behind an id (a bug's stack trace is nobody's business); but an error the database
// raised on purpose about the request is the answer the admin needs: a bad URL, an
// unknown field, a status of another company, a webhook that is not theirs. Those
// pass through with their SQLSTATE and, when Postgres names them, the rule
// (constraint) and the field (column) in `extensions`.
import { createHash, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { isSafeError, SafeError } from 'postgraphile/grafast';
import { defaultMaskError } from 'postgraphile/grafserv';
import { GraphQLError } from 'postgraphile/graphql';
import { isConnectionError } from '../relay/database.ts';
import { LIMIT_CODES, LIMIT_SETTINGS } from './limits.ts';

// SQLSTATEs that describe the request, not a fault of the server
const REQUEST_ERRORS = new Set([
  '22P02', // invalid_text_representation (e.g. an unknown action as text)
  '22003', // numeric_value_out_of_range (e.g. an id beyond bigint)
  '22021', // character_not_in_repertoire (e.g. a NUL character in text)
  '22P05', // untranslatable_character (e.g. \u0000 in a JSON argument)
  '22007', // invalid_datetime_format
  '22008', // datetime_field_overflow
  '22009', // invalid_time_zone_displacement_value (e.g. a time at +99:00)
  '22015', // interval_field_overflow (e.g. an interval of 10^18 seconds)
  '22023', // invalid_parameter_value
  '23502', // not_null_violation
  '23503', // foreign_key_violation
  '23505', // unique_violation
  '23514', // check_violation (the configuration rules of sql/10_config.sql)
  '42501', // insufficient_privilege (a viewer trying to change something)
  '54000', // program_limit_exceeded (a company's changes of the hour, sql/47_audit.sql)
  '55000', // object_not_in_prerequisite_state (e.g. replaying an in-flight delivery)
  'P0002', // no_data_found (not found, or not yours: the same to the caller)
]);

/**
 * The most characters of a caller's text a refusal quotes: a message that quoted all
 * of it answered the request's whole body back (a time of 90 kB: 90,104 characters;
 * a variable GraphQL could not take, quoted twice: 180,087). The database's refusals
 * cut alike (webhooks_private.quoted_part, sql/10_config.sql; test/api/errors.test.ts
 * holds the two together).
 */
export const QUOTED_MAX = 100;

/** A caller's text as a message shows it: its first QUOTED_MAX characters, and … after them. */
export const shortened = (text: string) => (text.length > QUOTED_MAX ? `${text.slice(0, QUOTED_MAX)}…` : text);

/** a JSON string of more than QUOTED_MAX characters, as GraphQL's words quote a value */
const LONG_QUOTED = new RegExp(`"(?:[^"\\\\]|\\\\.){${QUOTED_MAX + 1},}"`, 'g');

/** GraphQL's words with each value they quote shortened (graphql-js quotes a variable's value whole). */
function withValuesShortened(message: string): string {
  return message.replace(LONG_QUOTED, (whole) => {
    try {
      return JSON.stringify(shortened(JSON.parse(whole) as string));
    } catch {
      return `${whole.slice(0, QUOTED_MAX + 1)}…"`;
    }
  });
}

interface PgErrorFields {
  code?: string;
  constraint?: string;
  column?: string;
  detail?: string;
  message: string;
}

/** The database's error within error (a GraphQL error's originalError, its cause, …), or nothing. */
export function databaseErrorIn(error: unknown): PgErrorFields | undefined {
  return causeIn(error, (e) => typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) && typeof e.severity === 'string');
}

/** The first of error and its causes (originalError, else cause; five deep at most) that
 *  matches, or nothing; the walk ends at `stopAt`. */
function causeIn(error: unknown, matches: (e: any) => boolean, stopAt: (e: any) => boolean = () => false): any {
  for (let e = error as any, depth = 0; e && depth < 5; e = e.originalError ?? e.cause, depth++) {
    if (stopAt(e)) return undefined;
    if (matches(e)) return e;
  }
  return undefined;
}

/** The field a database error is about: COLUMN, else the key of a foreign-key DETAIL. */
function columnOf(error: PgErrorFields): string | undefined {
  if (error.column) return error.column;
  return /^Key \(([a-z_][a-z0-9_]*)\)=/.exec(error.detail ?? '')?.[1];
}

/**
 * SQLSTATEs of a transaction the database ended so that another could go on (a
 * deadlock; a serialization failure, should a caller's isolation allow one): the
 * request's transaction is rolled back whole, and the same request sent again is
 * what Postgres's documentation prescribes.
 */
const TRY_AGAIN_STATES = new Set(['40P01', '40001']);

/** extensions.code of a request to send again as it is */
const TRY_AGAIN_CODE = 'TRY_AGAIN';

/**
 * A change in a read-only transaction (read_only_sql_transaction): a DBA's
 * default_transaction_read_only = on for the database or the API's login, or a standby
 * in its DATABASE_URL. Reads still answer; a change was an unnamed "An error occurred"
 * (test/api/read-only.test.ts).
 */
const READ_ONLY_STATE = '25006';
const READ_ONLY_CODE = 'DATABASE_READ_ONLY';

/**
 * The database could not be reached, or ended the request's connection while it ran
 * (a restart, a failover, a DBA's pg_terminate_backend): before, an unnamed "An error
 * occurred". The request's transaction ended with its connection, so nothing it did
 * was kept, unless the connection was lost as it committed; the API's pool connects
 * again by itself, so the same request sent again once the database is back answers
 * (test/api/lost-database.test.ts).
 */
export const DATABASE_UNAVAILABLE_CODE = 'DATABASE_UNAVAILABLE';

/** The error of a lost or refused database connection within error (as databaseErrorIn looks), or nothing. */
function lostConnectionIn(error: unknown): { code?: string } | undefined {
  return causeIn(error, isConnectionError, (e) => e instanceof SafeError);
}

/**
 * The page arguments PostGraphile refuses itself, with a message and nothing else: a
 * cursor that is no cursor of ours or was given out for another order, and offset
 * with last. Named here like the page arguments of api/limits.ts, so that a client
 * can tell them apart from the rest.
 */
const PAGE_ARGUMENT_REFUSALS: ReadonlyArray<[RegExp, string]> = [
  [/^Invalid cursor\b|^Invalid '(after|before)' cursor\b/, LIMIT_CODES.cursor],
  [/^Cannot use 'offset' with 'last'/, LIMIT_CODES.pageArguments],
];

/**
 * The refusals grafserv makes itself, of a request it cannot take as one operation,
 * by HTTP status: a message and `statusCode`, no code (a batch, a JSON array of
 * operations, answered "Invalid body; expected object"). Named here so that a client
 * can tell them from the rest, as every other refusal is.
 */
export const HTTP_REFUSAL_CODES: Readonly<Record<number, string>> = {
  400: 'BAD_REQUEST',
  405: 'METHOD_NOT_ALLOWED',
  406: 'NOT_ACCEPTABLE',
  413: LIMIT_CODES.body,
  415: 'UNSUPPORTED_MEDIA_TYPE',
};

/** The answer to a request whose body is refused before it is parsed (api/preset.ts, BodyRefusals): 400 and why. */
export function bodyRefused(message: string, extensions: Record<string, unknown>): { type: 'buffer'; statusCode: number; headers: Record<string, string>; buffer: Buffer } {
  const buffer = Buffer.from(JSON.stringify({ errors: [{ message, extensions }] }), 'utf8');
  return {
    type: 'buffer', statusCode: 400,
    headers: { 'content-type': 'application/json; charset=utf-8', 'content-length': String(buffer.length) }, buffer,
  };
}

/**
 * GraphQL's validation stopped short: its rule that fields of one name can be merged
 * compares pairs of them up to a budget, past which it refuses the document ("Validation
 * aborted."), as it does past 100 errors. A document too costly to check, named as
 * ours are (QUERY_TOO_COSTLY).
 */
const VALIDATION_ABORTED = /^(Too many validation errors, error limit reached\. )?Validation aborted\.$/;

/**
 * GraphQL's refusals of a document before anything runs (text that does not parse,
 * a field that is not there, a variable of a type its argument does not take): a
 * message and its place in the text (locations), no code. Named as ours are, so that
 * a client can tell them from the rest: grafserv answers them 400 to a client that
 * accepts application/graphql-response+json, and 200 to one that accepts only
 * application/json, as GraphQL over HTTP says; the code is the same in both.
 */
const DOCUMENT_REFUSAL_CODES = Object.freeze({
  parse: 'GRAPHQL_PARSE_FAILED', validation: 'GRAPHQL_VALIDATION_FAILED', operation: 'OPERATION_NOT_CHOSEN',
});
const PARSE_FAILED = /^Syntax Error: /;

/**
 * GraphQL's refusals of the request's operationName, which chooses the operation of the
 * text to run: a name in no operation of it, or none for a text of several. They have
 * no place in the text, and came with no code, alone among the refusals of a request.
 */
const OPERATION_NOT_CHOSEN = /^(Must provide operation name if query contains multiple operations\.|Unknown operation named ".*"\.)$/s;

/**
 * Every extensions.code an error of this module's naming carries, besides those of
 * the limits (LIMIT_CODES): docs/api.md and docs/api-limits.md name each
 * (test/tools/docs-names.test.ts).
 */
export const NAMED_ERROR_CODES: readonly string[] = Object.freeze([
  TRY_AGAIN_CODE, READ_ONLY_CODE, DATABASE_UNAVAILABLE_CODE,
  ...Object.values(HTTP_REFUSAL_CODES), ...Object.values(DOCUMENT_REFUSAL_CODES),
]);

/** The code of one of GraphQL's refusals of a document, by its message. */
function documentRefusalCode(message: string): string {
  if (VALIDATION_ABORTED.test(message)) return LIMIT_CODES.nodes;
  if (OPERATION_NOT_CHOSEN.test(message)) return DOCUMENT_REFUSAL_CODES.operation;
  return PARSE_FAILED.test(message) ? DOCUMENT_REFUSAL_CODES.parse : DOCUMENT_REFUSAL_CODES.validation;
}

/** A JSON answer of grafserv's: its status and its body's bytes. */
interface BufferAnswer {
  type: string;
  statusCode?: number;
  headers?: Record<string, string>;
  buffer?: Buffer;
}

interface AnswerBody {
  data?: unknown;
  errors?: Array<{ message?: string; locations?: unknown; extensions?: Record<string, unknown> }>;
}

/** The answer's body, when it may hold a refusal to name: grafserv's own (by status), or errors without data (only those are read). */
function refusalBody(answer: BufferAnswer): AnswerBody | undefined {
  if (answer.type !== 'buffer' || !answer.buffer) return undefined;
  const status = answer.statusCode ?? 200;
  if (HTTP_REFUSAL_CODES[status] === undefined
      && !(status === 200 && answer.buffer.subarray(0, 10).toString('latin1') === '{"errors":')) return undefined;
  try {
    return JSON.parse(answer.buffer.toString('utf8'));
  } catch {
    return undefined;
  }
}

/**
 * A literal one of the schema's scalars does not take (`id: 7` for a BigInt, a number
 * for a Datetime): graphile-build's parseLiteral throws a GraphQLError of its own,
 * which validation reports as it is, without its place in the text.
 */
const SCALAR_LITERAL_REFUSED = /^\w+ can only parse string(\/integer)? values \(kind ?= ?'\w+'\)$/;

/**
 * True of an error of GraphQL's refusal of a document: in an answer without data (the
 * operation never ran), with its place in the text, or validation stopped short, a
 * scalar's literal refused or no operation chosen (which have none). An error thrown while running one,
 * answered without data to a client of application/json, has no place: it is left as
 * maskError made it.
 */
function refusesTheDocument(body: AnswerBody, error: NonNullable<AnswerBody['errors']>[number]): boolean {
  const message = error.message ?? '';
  return !('data' in body)
    && (error.locations !== undefined || VALIDATION_ABORTED.test(message) || SCALAR_LITERAL_REFUSED.test(message)
      || OPERATION_NOT_CHOSEN.test(message));
}

/**
 * The answer with a code in each of grafserv's own refusals (HTTP_REFUSAL_CODES), and
 * in each of GraphQL's refusals of a document (DOCUMENT_REFUSAL_CODES; QUERY_TOO_COSTLY
 * for its validation stopped short, VALIDATION_ABORTED), that have none, whatever the
 * media type: a 400 or a 200 without data whose errors have their place in the text.
 * Every other answer as it is; of those answered 200, only one that starts with its
 * errors is read.
 */
export function nameHttpRefusals<T extends BufferAnswer | null>(answer: T): T {
  const body = answer ? refusalBody(answer) : undefined;
  if (!answer || !body) return answer;
  const status = answer.statusCode ?? 200;
  let named = false;
  for (const error of body.errors ?? []) {
    const message = error.message === undefined ? undefined : withValuesShortened(error.message);
    if (message !== error.message) {
      error.message = message;
      named = true;
    }
    if (error.extensions?.code !== undefined) continue;
    // a 400 (or a 200 to a client of application/json) is also GraphQL's answer to a
    // document it refuses, which is not grafserv's refusal: those have no statusCode
    const its = (status === 400 || status === 200) && error.extensions?.statusCode === undefined
      ? (refusesTheDocument(body, error) ? documentRefusalCode(error.message ?? '') : undefined)
      : HTTP_REFUSAL_CODES[status];
    if (its === undefined) continue;
    error.extensions = { ...error.extensions, code: its };
    named = true;
  }
  if (!named) return answer;
  const buffer = Buffer.from(JSON.stringify(body), 'utf8');
  return { ...answer, buffer, headers: { ...answer.headers, 'content-length': String(buffer.length) } };
}

/** How long after an unnamed error's line the same error (its hash) is counted, not logged again. */
export const UNNAMED_ERROR_LOG_EVERY_MS = 60_000;
/** Lines of unnamed errors a minute, whatever their hashes: an error whose text holds the request's values has a hash a request. */
export const UNNAMED_ERROR_LINES_PER_MINUTE = 60;
/** Hashes kept with their counts; past them the one logged longest ago is forgotten. */
const UNNAMED_ERRORS_KEPT = 1_000;

/**
 * Errors no rule here names (a bug, or the database refusing in a way nobody foresaw:
 * a disk full, a DBA's trigger): the caller reads "An error occurred" with a hash of
 * the error and an id; the operator's log has one JSON line of the error, its first
 * in UNNAMED_ERROR_LOG_EVERY_MS, then one a minute at most saying how many were
 * answered since without a line (`repeated`), and at most
 * UNNAMED_ERROR_LINES_PER_MINUTE lines of them all (those past it counted in the next
 * line, `unlogged`). PostGraphile's own mask wrote each to console.error, outside the
 * JSON log: about 52 lines and 3 KB of text, the statement of the function that
 * failed among them, for every request (test/api/unnamed-error-log.test.ts), so one
 * company's script asking the same thing 20 times a second wrote 5 GB a day.
 */
export class UnnamedErrors {
  readonly #log: Logger;
  readonly #now: () => number;
  /** each hash's last line, and the errors of it answered since without one; oldest line first */
  readonly #byHash = new Map<string, { loggedAt: number; repeated: number }>();
  #lines: number[] = [];
  #unlogged = 0;

  constructor(log: Logger, now: () => number = () => performance.now()) {
    this.#log = log;
    this.#now = now;
  }

  answer(error: GraphQLError): GraphQLError {
    const hash = createHash('sha1').update(String(error)).digest('base64url');
    const errorId = randomBytes(5).toString('hex');
    this.#note(hash, errorId, error);
    return new GraphQLError(`An error occurred (logged with hash: '${hash}', id: '${errorId}')`, {
      nodes: error.nodes, source: error.source, positions: error.positions, path: error.path,
      originalError: error.originalError, extensions: { errorId },
    });
  }

  #note(hash: string, errorId: string, error: GraphQLError): void {
    const now = this.#now();
    const seen = this.#byHash.get(hash);
    if (seen && now - seen.loggedAt < UNNAMED_ERROR_LOG_EVERY_MS) {
      seen.repeated++;
      return;
    }
    this.#lines = this.#lines.filter((at) => now - at < 60_000);
    if (this.#lines.length >= UNNAMED_ERROR_LINES_PER_MINUTE) {
      this.#unlogged++;
      if (seen) seen.repeated++;
      else this.#keep(hash, { loggedAt: -Infinity, repeated: 1 });
      return;
    }
    this.#lines.push(now);
    this.#log.error(
      { hash, errorId, path: error.path, repeated: seen?.repeated ?? 0, unlogged: this.#unlogged, err: error.originalError ?? error },
      'a request failed with an error the API does not name: answered "An error occurred" with this hash',
    );
    this.#unlogged = 0;
    this.#keep(hash, { loggedAt: now, repeated: 0 });
  }

  #keep(hash: string, entry: { loggedAt: number; repeated: number }): void {
    this.#byHash.delete(hash);
    this.#byHash.set(hash, entry);
    if (this.#byHash.size > UNNAMED_ERRORS_KEPT) this.#byHash.delete(this.#byHash.keys().next().value!);
  }
}

/** grafserv's maskError: the API's names for errors, and unnamed ones logged by `unnamed`. */
export function errorMasker(unnamed: UnnamedErrors): (error: GraphQLError) => GraphQLError {
  return (error) => maskError(error, unnamed);
}

function maskError(error: GraphQLError, unnamed: UnnamedErrors): GraphQLError {
  if (error.originalError instanceof SafeError && error.extensions?.code === undefined) {
    const code = PAGE_ARGUMENT_REFUSALS.find(([pattern]) => pattern.test(error.message))?.[1];
    if (code) {
      return new GraphQLError(error.message, {
        nodes: error.nodes, source: error.source, positions: error.positions, path: error.path,
        originalError: error.originalError, extensions: { code },
      });
    }
  }
  const db = databaseErrorIn(error.originalError);
  if (db?.code && TRY_AGAIN_STATES.has(db.code)) {
    const why = db.code === '40P01' ? 'to break a deadlock with another transaction' : 'as it conflicted with another transaction';
    return new GraphQLError(
      `the database ended this request ${why} (SQLSTATE ${db.code}); nothing it did was kept: send it again`,
      { nodes: error.nodes, source: error.source, positions: error.positions, path: error.path,
        originalError: error.originalError, extensions: { code: TRY_AGAIN_CODE, sqlstate: db.code } });
  }
  if (db?.code === READ_ONLY_STATE) {
    return new GraphQLError(
      `the database takes no changes now: its transactions are read-only (SQLSTATE ${READ_ONLY_STATE}); nothing was changed: ask your operator`,
      { nodes: error.nodes, source: error.source, positions: error.positions, path: error.path,
        originalError: error.originalError, extensions: { code: READ_ONLY_CODE, sqlstate: db.code } });
  }
  const lost = lostConnectionIn(error.originalError);
  if (lost) {
    // (the SQLSTATE Postgres ended the connection with: the lost connection's own, else
    // its cause's, which EngineClient gives pg's words of a connection the server ended)
    const sqlstate = lost.code && /^[0-9A-Z]{5}$/.test(lost.code) ? lost.code : databaseErrorIn(lost)?.code;
    return new GraphQLError(
      'the database could not be reached, or ended this request\'s connection while it ran: nothing it did was kept ' +
      '(a change whose connection was lost as it committed may have been: read it first); send it again in a moment',
      { nodes: error.nodes, source: error.source, positions: error.positions, path: error.path,
        originalError: error.originalError, extensions: { code: DATABASE_UNAVAILABLE_CODE, ...(sqlstate ? { sqlstate } : {}) } });
  }
  // statement_timeout (api/limits.ts): the request asked for more work than allowed
  if (db?.code === '57014') {
    return new GraphQLError(
      `the query ran longer than ${LIMIT_SETTINGS.statementTimeoutMs} allows and was cancelled: ask for less (a smaller page, a shorter date range)`,
      { nodes: error.nodes, source: error.source, positions: error.positions, path: error.path,
        originalError: error.originalError, extensions: { code: LIMIT_CODES.timeout } });
  }
  if (db?.code && REQUEST_ERRORS.has(db.code)) {
    const column = columnOf(db);
    return new GraphQLError(db.message, {
      nodes: error.nodes,
      source: error.source,
      positions: error.positions,
      path: error.path,
      originalError: error.originalError,
      extensions: {
        code: db.code,
        ...(db.constraint ? { constraint: db.constraint } : {}),
        ...(column ? { column } : {}),
      },
    });
  }
  const original = error.originalError;
  // (GraphQL's own, and safe errors: passed as they are, logged by nobody)
  if (!original || original instanceof GraphQLError || isSafeError(original)) return defaultMaskError(error);
  return unnamed.answer(error);
}
