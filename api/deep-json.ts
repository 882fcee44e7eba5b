// JSON values the API serves (payloads) come from tenants' contacts, and jsonb may
// nest thousands of levels deep. JSON.stringify recurses and overflows the stack near
// 9,000 levels, which failed the whole answer (HTTP 500) for every query selecting
// such a payload: one contact could break another company's history page. The rule:
// a JSON value nested deeper than MAX_SERVED_JSON_DEPTH is served as its JSON text
// (a string, written without recursion), everything else as it is. Nothing is lost,
// and no depth can break an answer. docs/api-limits.md says so to API users.
import { GraphQLError, Kind, type ValueNode } from 'postgraphile/graphql';
import { shortened } from './errors.ts';
import { LIMIT_CODES } from './limits.ts';

/**
 * Deeper than this, a JSON value is served as its text, and a JSON input (a webhook's
 * conditions, a condition on a payload) is refused: turned into SQL, it went through
 * JSON.stringify too, and a few thousand levels failed the request with a masked
 * "An error occurred". Few JSON parsers accept more (Ruby: 100).
 */
export const MAX_SERVED_JSON_DEPTH = 100;

/**
 * Whether value nests deeper than depth (arrays and objects count one level each).
 * Recursive, but never deeper than depth + 1 calls: it stops at the level past it. It
 * looks at every value of every answer's JSON (a page of payloads may hold millions):
 * a stack of [value, level] pairs, one made for each of them, took 0.9 s of the API's
 * one thread for 100 payloads of 20,000 keys each; this takes 0.4 s.
 */
export function nestsDeeperThan(value: unknown, depth: number): boolean {
  if (value === null || typeof value !== 'object') return false;
  if (depth < 1) return true;
  if (Array.isArray(value)) {
    for (const child of value) if (nestsDeeperThan(child, depth - 1)) return true;
    return false;
  }
  // (for...in, not Object.values: no array of each object's values made)
  const object = value as Record<string, unknown>;
  for (const key in object) if (nestsDeeperThan(object[key], depth - 1)) return true;
  return false;
}

/** JSON.stringify without recursion, for values parsed from JSON (no toJSON, no cycles). */
export function stringifyDeep(value: unknown): string {
  const out: string[] = [];
  // work items: a value to write, or a literal piece of text
  const work: Array<{ value: unknown } | string> = [{ value }];
  while (work.length > 0) {
    const item = work.pop()!;
    if (typeof item === 'string') {
      out.push(item);
      continue;
    }
    const v = item.value;
    if (v === null || typeof v !== 'object') {
      out.push(JSON.stringify(v) ?? 'null');
    } else if (Array.isArray(v)) {
      const pieces: Array<{ value: unknown } | string> = ['['];
      v.forEach((child, i) => pieces.push(...(i > 0 ? [','] : []), { value: child }));
      pieces.push(']');
      for (let i = pieces.length - 1; i >= 0; i--) work.push(pieces[i]);
    } else {
      const entries = Object.entries(v).filter(([, child]) => child !== undefined);
      const pieces: Array<{ value: unknown } | string> = ['{'];
      entries.forEach(([key, child], i) => pieces.push(`${i > 0 ? ',' : ''}${JSON.stringify(key)}:`, { value: child }));
      pieces.push('}');
      for (let i = pieces.length - 1; i >= 0; i--) work.push(pieces[i]);
    }
  }
  return out.join('');
}

/** What the API serves for a JSON value: itself, or its text when it nests too deep. */
export function servableJson(value: unknown): unknown {
  return nestsDeeperThan(value, MAX_SERVED_JSON_DEPTH) ? stringifyDeep(value) : value;
}

/** Whether value holds a number JSON.parse read as infinity (one past ±Number.MAX_VALUE: 1e400). */
function holdsInfinity(value: unknown): boolean {
  if (typeof value === 'number') return !Number.isFinite(value);
  if (value === null || typeof value !== 'object') return false;
  // (no deeper than MAX_SERVED_JSON_DEPTH: acceptableJson looks after the depth)
  for (const child of Array.isArray(value) ? value : Object.values(value)) if (holdsInfinity(child)) return true;
  return false;
}

/** a JSON number: its sign, whole digits, fraction digits and exponent */
const JSON_NUMBER = /^(-?)([0-9]+)(?:[.]([0-9]+))?(?:[eE]([+-]?[0-9]+))?$/;

/** A decimal number's value as text: its digits without zeros at either end, then the power of ten of the last ("1e-4" for 0.00010), "0" for zero. */
function decimalValue(text: string): string {
  const [, sign, whole, fraction = '', exponent = '0'] = JSON_NUMBER.exec(text) ?? [];
  const digits = `${whole}${fraction}`.replace(/^0+/, '');
  if (digits === '') return '0';
  const significant = digits.replace(/0+$/, '');
  return `${sign}${significant}e${Number(exponent) - fraction.length + digits.length - significant.length}`;
}

/**
 * What a JSON reader (a double: JSON.parse, this API's, the page's, a receiver's) reads
 * a JSON number's text as, when that is another number, written as JSON.stringify
 * writes it ("0" for 1e-400, "9007199254740992" for 9007199254740993, "Infinity" for
 * 1e400); nothing when it reads the number as written (0.1, 1.10, 5e-324).
 */
export function jsonNumberReadAs(text: string): string | undefined {
  // (at most 15 characters without an exponent: at most 15 significant digits, from
  // 1e-14 to 1e15, which a double holds as written, asked without writing it again)
  if (text.length <= 15 && !text.includes('e') && !text.includes('E')) return undefined;
  const read = Number(text);
  // (NaN: no number)
  if (Number.isNaN(read) || !JSON_NUMBER.test(text) || String(read) === text) return undefined;
  if (!Number.isFinite(read)) return String(read);
  return decimalValue(text) === decimalValue(String(read).replace('e+', 'e')) ? undefined : String(read);
}

/** Whether a character may be part of a JSON number: a digit, -, +, . or e. */
const inNumber = (c: number) => (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2b || c === 0x2e || c === 0x65 || c === 0x45;

/**
 * The first number of a JSON text that a JSON reader does not read as written
 * (jsonNumberReadAs), or nothing; in one pass, strings skipped (a number in a string is
 * text, held as written). The text need not be valid JSON: what is no number is passed.
 * 87 kB of 12,000 numbers took it 3.1 ms, JSON.parse 2.6 (each number written again,
 * String(Number(text)), had taken 20: a number of 15 characters without an exponent is not).
 */
export function firstNumberNotHeld(text: string): string | undefined {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) { // "
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) {
        if (text.charCodeAt(i) === 0x5c) i++; // a backslash escapes the next character
      }
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) { // - or a digit
      let end = i + 1;
      while (end < text.length && inNumber(text.charCodeAt(end))) end++;
      const number = text.slice(i, end);
      if (jsonNumberReadAs(number) !== undefined) return number;
      i = end - 1;
    }
  }
  return undefined;
}

/** The first number written in a GraphQL value (a JSON literal) that a JSON reader does not read as written, or nothing. */
function literalNumberNotHeld(node: ValueNode): string | undefined {
  // (nested no deeper than MAX_QUERY_TEXT_NESTING: the text was refused before it was parsed)
  if (node.kind === Kind.INT || node.kind === Kind.FLOAT) return jsonNumberReadAs(node.value) === undefined ? undefined : node.value;
  const children = node.kind === Kind.LIST ? node.values : node.kind === Kind.OBJECT ? node.fields.map((field) => field.value) : [];
  for (const child of children) {
    const found = literalNumberNotHeld(child);
    if (found !== undefined) return found;
  }
  return undefined;
}

/**
 * The refusal of a JSON number a JSON reader does not hold as written, by its text:
 * beyond ±Number.MAX_VALUE (read as infinity, which JSON.stringify writes as null), or
 * read as another number (1e-400 as 0: an admin's condition `amount gt 1e-400` was
 * stored as `amount gt 0`; 9007199254740993 as 9007199254740992); or nothing.
 */
export function jsonNumberRefusal(text: string): { message: string; extensions: Record<string, unknown> } | undefined {
  const readAs = jsonNumberReadAs(text);
  if (readAs === undefined) return undefined;
  if (readAs === 'Infinity' || readAs === '-Infinity') {
    return {
      message: `a JSON number beyond ±${Number.MAX_VALUE} is not accepted: JSON readers (this API's too) take it as infinity`,
      extensions: { code: LIMIT_CODES.jsonNumber, limit: Number.MAX_VALUE },
    };
  }
  return {
    message: `a JSON number JSON readers do not hold as written is not accepted: they (this API's too) read ${shortened(text)} as ${readAs}`,
    extensions: { code: LIMIT_CODES.jsonNumber, number: shortened(text), readAs },
  };
}

/**
 * A JSON input as it is, or a named refusal when it nests deeper than
 * MAX_SERVED_JSON_DEPTH, or holds a number a JSON reader does not hold as written:
 * beyond ±Number.MAX_VALUE the request's JSON.parse read it as infinity, which
 * JSON.stringify writes as null, and a condition `{"op": "gt", "value": 1e400}` was
 * refused as "must be a number" (or an infinity in a list stored as null). literal: the
 * value as written in the query, whose numbers' texts are judged (a variable's are
 * judged in the request's body, before it is parsed: api/preset.ts, BodyRefusals).
 */
export function acceptableJson(value: unknown, literal?: ValueNode): unknown {
  if (nestsDeeperThan(value, MAX_SERVED_JSON_DEPTH)) {
    throw new GraphQLError(`a JSON value nested deeper than ${MAX_SERVED_JSON_DEPTH} levels is not accepted`,
      { extensions: { code: LIMIT_CODES.jsonDepth, limit: MAX_SERVED_JSON_DEPTH } });
  }
  const written = literal === undefined ? undefined : literalNumberNotHeld(literal);
  const refused = written !== undefined ? jsonNumberRefusal(written) : holdsInfinity(value) ? jsonNumberRefusal('1e400') : undefined;
  if (refused) throw new GraphQLError(refused.message, { extensions: refused.extensions });
  return value;
}
