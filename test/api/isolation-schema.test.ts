// Each company sealed off from the others, proved from the API's schema rather than
// from a list: every query field and every mutation, found by introspection, is sent
// by company A's admin and viewer with company B's ids wherever an argument or input
// field is an id, selecting every field of the answer it can. Nothing of B may come
// back and nothing of B may change. A field added later is sent without editing this
// file; one with a required input this file cannot make up fails the test until
// INPUTS says what to send.
import test from 'ava';
import {
  getNamedType, getNullableType, isEnumType, isInputObjectType, isListType, isNonNullType, isObjectType, isScalarType,
  type GraphQLArgument, type GraphQLField, type GraphQLInputField, type GraphQLInputType, type GraphQLObjectType, type GraphQLSchema,
} from 'postgraphile/graphql';
import { RATE_UNBOUNDED, useTestDatabaseWithApi } from '../helpers/api.ts';
import { apiSchema } from '../helpers/schema-inputs.ts';
import { bTraces, comparable, moreOfB, snapshotOf, twoCompanies, type TwoCompanies } from '../helpers/two-companies.ts';

// (the API's limits on what a company may ask are not what this file is about: each
// operation here is a new text, and many select every field they can: a payload
// both ways, payload and payloadText, in every list of deliveries)
const { db, api } = useTestDatabaseWithApi(test, {
  limits: { ...RATE_UNBOUNDED, companyPlanningMsPerSecond: 1_000_000, companyPlanningBurstMs: 1_000_000, maxNodes: 100_000_000, maxPlannedFields: 10_000 },
});

/**
 * Inputs a value made from the type does not fit, by Type.field.argument(.inputField):
 * GraphQL literals, given in every operation of the field. Every other input is made
 * from its type below, and a required input of a type not known there fails the test.
 */
const INPUTS: Record<string, string> = {
  // a webhook that could be made, so that a create reaches the check of B's ids
  'Mutation.createWebhook.input.name': '"made by A"',
  'Mutation.createWebhook.input.url': '"https://a.example.com/hook"',
  'Mutation.createWebhook.input.fields': '["email"]',
  'Mutation.createWebhook.input.actions': '[CONTACT_CREATED]',
};

/**
 * Inputs that go with another: given the first (one of B's ids), each of the second
 * that its field has is given too. A page starts after a row named by two values; a
 * status or user filters only the actions about it.
 */
const COMPANIONS: Record<string, Record<string, string>> = {
  afterId: { afterCreatedAt: '"2100-01-01T00:00:00Z"', afterAttempt: '1' },
  statusId: { actions: '[CONTACT_STATUS_ADDED]' },
  userId: { actions: '[CONTACT_USER_ASSIGNED]' },
};

/** Which of B's ids an id input names, by its name; an id of no named kind is given each of B's ids in turn. */
function bIdsFor(w: TwoCompanies, name: string): string[] {
  const ids: Record<string, string[]> = {
    webhook: [w.bHook.id, w.bDisabled.id, w.bGone.id], delivery: [w.bDelivery.id], attempt: [w.bAttempt], backfill: [w.bBackfill],
    user: [w.bUser.id], status: [w.bStatus.id], company: [w.b.id], audit: [w.bAudit], contact: [w.bContact.id],
  };
  const kinds = Object.keys(ids).filter((kind) => name.toLowerCase().includes(kind));
  return (kinds.length > 0 ? kinds : Object.keys(ids)).flatMap((kind) => ids[kind]);
}

/** A value of a scalar or enum input that is no id: the first of an enum, a plain value of a scalar. */
function plainValue(type: GraphQLInputType, where: string): string {
  const named = getNamedType(type);
  const value = (() => {
    if (isEnumType(named)) return named.getValues()[0].name;
    switch (named.name) {
      case 'String': return '"Zeb"'; // the beginning of B's names: a search that looks beyond A finds them
      case 'Int': return '1';
      case 'Boolean': return 'false';
      case 'Datetime': return '"2000-01-01T00:00:00Z"';
      case 'JSON': return '"{}"';
      default: throw new Error(`${where}: no value for ${named.name}: add it to INPUTS`);
    }
  })();
  return isListType(getNullableType(type)) ? `[${value}]` : value;
}

type Input = GraphQLArgument | GraphQLInputField;
const isId = (input: Input) => getNamedType(input.type).name === 'BigInt';
/** The input naming the row a mutation acts on (a webhook): A's own, where another input carries B's id. */
const namesTheRow = (input: Input) => input.name === 'id' || input.name === 'webhookId';

/**
 * Every set of values of some inputs (a field's arguments, an input object's fields):
 * those required or listed in INPUTS, and in turn each id given each of B's ids (with
 * its companions; the row acted on being A's own webhook where the id is another's).
 */
function variantsOf(w: TwoCompanies, inputs: readonly Input[], where: string): string[][] {
  const base = new Map<string, string>();
  for (const input of inputs) {
    const listed = INPUTS[`${where}.${input.name}`];
    if (listed) base.set(input.name, listed);
    else if (isNonNullType(input.type)) base.set(input.name, valuesOf(w, input, `${where}.${input.name}`)[0]);
  }
  const variants: Array<Map<string, string>> = [base];
  for (const input of inputs) {
    const named = getNamedType(input.type);
    if (!isId(input) && !isInputObjectType(named)) continue;
    const values = valuesOf(w, input, `${where}.${input.name}`).filter((value) => value !== base.get(input.name));
    for (const value of values) {
      const variant = new Map(base);
      if (isId(input) && !namesTheRow(input)) {
        for (const other of inputs.filter(namesTheRow)) if (variant.has(other.name)) variant.set(other.name, `"${w.aHook.id}"`);
      }
      variant.set(input.name, value);
      for (const [name, companion] of Object.entries(COMPANIONS[input.name] ?? {})) {
        if (inputs.some((other) => other.name === name)) variant.set(name, companion);
      }
      variants.push(variant);
    }
  }
  return variants.map((variant) => [...variant].map(([name, value]) => `${name}: ${value}`));
}

/** The values of one input: B's ids for an id, each variant of an input object, one plain value otherwise. */
function valuesOf(w: TwoCompanies, input: Input, where: string): string[] {
  if (INPUTS[where]) return [INPUTS[where]];
  const named = getNamedType(input.type);
  if (named.name === 'BigInt') {
    const ids = bIdsFor(w, input.name);
    return isListType(getNullableType(input.type)) ? [`[${ids.map((id) => `"${id}"`).join(', ')}]`] : ids.map((id) => `"${id}"`);
  }
  if (isInputObjectType(named)) {
    return variantsOf(w, Object.values(named.getFields()), where).map((fields) => `{ ${fields.join(', ')} }`);
  }
  return [plainValue(input.type, where)];
}

/** What a field's answer selects: every field without arguments it needs, objects to a few levels deep. */
function selectionOf(type: GraphQLObjectType, schema: GraphQLSchema, depth: number): string {
  const parts: string[] = [];
  for (const field of Object.values(type.getFields())) {
    if (field.args.some((arg) => isNonNullType(arg.type))) continue;
    const named = getNamedType(field.type);
    if (isScalarType(named) || isEnumType(named)) parts.push(field.name);
    else if (isObjectType(named) && named !== schema.getQueryType() && depth > 0) {
      const inner = selectionOf(named, schema, depth - 1);
      if (inner) parts.push(`${field.name} { ${inner} }`);
    }
  }
  return parts.join(' ');
}

/** Every operation sending the root field: one for each variant of its arguments, selecting all it can. */
function operationsOf(w: TwoCompanies, schema: GraphQLSchema, root: GraphQLObjectType, field: GraphQLField<unknown, unknown>): string[] {
  const kind = root === schema.getMutationType() ? 'mutation' : 'query';
  const named = getNamedType(field.type);
  const selection = isObjectType(named) ? ` { ${selectionOf(named, schema, 3) || '__typename'} }` : '';
  return variantsOf(w, field.args, `${root.name}.${field.name}`)
    .map((args) => `${kind} { ${field.name}${args.length > 0 ? `(${args.join(', ')})` : ''}${selection} }`);
}

test('every query and mutation of the API, sent by company A with company B\'s ids, answers nothing of B and changes nothing of B', async (t) => {
  const pool = db().pool;
  const w = await twoCompanies(pool);
  const schema = await apiSchema(api(), await api().token(w.a.id));
  const queries = Object.values(schema.getQueryType()!.getFields());
  const mutations = Object.values(schema.getMutationType()!.getFields());
  const queryOperations = queries.flatMap((field) => operationsOf(w, schema, schema.getQueryType()!, field));
  const mutationOperations = mutations.flatMap((field) => operationsOf(w, schema, schema.getMutationType()!, field));
  const before = await snapshotOf(pool, w.b.id);
  const problems: string[] = [];
  let answered = 0;
  const tokens = { webhook_viewer: await api().token(w.a.id, 'webhook_viewer'), webhook_admin: await api().token(w.a.id, 'webhook_admin') };
  const send = async (role: keyof typeof tokens, operation: string): Promise<string> => {
    const response = await api().gql(tokens[role], operation);
    if (response.data && Object.values(response.data).some((value) => value !== null)) answered += 1;
    const said = JSON.stringify(response);
    const given = new Set(bTraces(operation, []).map((trace) => trace.toLowerCase()));
    const traces = bTraces(said, w.bSecrets).filter((trace) => !given.has(trace.toLowerCase()));
    if (traces.length > 0) problems.push(`${role} ${operation}: answers ${[...new Set(traces)].join(', ')}`);
    // a refusal is fine when it is the database's: no right (42501) or a named error
    // (webhook_not_found, …); any other means the operation was not sent as meant
    // (an input made up wrong, a limit), proving nothing: make it right in INPUTS
    const unmeant = response.errors?.find((error) => error.extensions?.code !== '42501' && !error.extensions?.constraint);
    if (unmeant) problems.push(`${role} ${operation}: not sent as meant: ${unmeant.message}`);
    return comparable(said);
  };
  // every query twice, the second time with more of B's rows: a count of B's shows as a different answer
  const first = new Map<string, string>();
  for (const role of ['webhook_viewer', 'webhook_admin'] as const) {
    for (const operation of queryOperations) first.set(`${role} ${operation}`, await send(role, operation));
  }
  await moreOfB(pool, w);
  const bMore = await snapshotOf(pool, w.b.id);
  for (const role of ['webhook_viewer', 'webhook_admin'] as const) {
    for (const operation of queryOperations) {
      const again = await send(role, operation);
      if (again !== first.get(`${role} ${operation}`)) problems.push(`${role} ${operation}: answers otherwise when B has more rows: ${first.get(`${role} ${operation}`)} then ${again}`);
    }
  }
  for (const role of ['webhook_viewer', 'webhook_admin'] as const) {
    for (const operation of mutationOperations) await send(role, operation);
  }
  t.log(`${queries.length} query fields, ${mutations.length} mutations, ${queryOperations.length + mutationOperations.length} operations, each as viewer and admin (queries twice); ${answered} answered with data`);
  t.true(queries.length > 10 && mutations.length > 10, 'the schema is read');
  t.deepEqual(problems, []);
  t.deepEqual(await snapshotOf(pool, w.b.id), bMore, 'company B is exactly as it was');
  t.notDeepEqual(bMore, before, 'B had more rows the second time');
});
