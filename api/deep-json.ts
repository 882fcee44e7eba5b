// JSON values the API serves (payloads) come from tenants' contacts, and jsonb may
// nest thousands of levels deep. JSON.stringify recurses and overflows the stack near
// 9,000 levels, which failed the whole answer (HTTP 500) for every query selecting
// such a payload: one contact could break another company's history page. The rule:
// a JSON value nested deeper than MAX_SERVED_JSON_DEPTH is served as its JSON text
// (a string, written without recursion), everything else as it is. Nothing is lost,
// and no depth can break an answer. docs/api-limits.md says so to API users.
import { GraphQLError } from 'postgraphile/graphql';
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

/**
 * A JSON input as it is, or a named refusal when it nests deeper than
 * MAX_SERVED_JSON_DEPTH, or holds a number beyond ±Number.MAX_VALUE: the request's
 * JSON.parse read it as infinity, which JSON.stringify writes as null, and a condition
 * `{"op": "gt", "value": 1e400}` was refused as "must be a number" (or an infinity in a
 * list stored as null).
 */
export function acceptableJson(value: unknown): unknown {
  if (nestsDeeperThan(value, MAX_SERVED_JSON_DEPTH)) {
    throw new GraphQLError(`a JSON value nested deeper than ${MAX_SERVED_JSON_DEPTH} levels is not accepted`,
      { extensions: { code: LIMIT_CODES.jsonDepth, limit: MAX_SERVED_JSON_DEPTH } });
  }
  if (holdsInfinity(value)) {
    throw new GraphQLError(`a JSON number beyond ±${Number.MAX_VALUE} is not accepted: JSON readers (this API's too) take it as infinity`,
      { extensions: { code: LIMIT_CODES.jsonNumber, limit: Number.MAX_VALUE } });
  }
  return value;
}
