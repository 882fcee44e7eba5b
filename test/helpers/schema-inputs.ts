// Every input of the API's schema of one scalar type, found by walking the schema
// (not listed by hand, so a new argument or condition field is found as it is added),
// each with an operation that sends a value there as the variable $v. The tests of
// test/api/errors.test.ts send bad values to each and expect a refusal that names it.
import {
  buildClientSchema, getIntrospectionQuery, getNamedType, getNullableType, isInputObjectType, isListType, isNonNullType,
  isObjectType, isScalarType, type GraphQLArgument, type GraphQLField, type GraphQLInputType, type GraphQLObjectType,
  type GraphQLSchema,
} from 'postgraphile/graphql';
import type { TestApi } from './api.ts';

/** One input of the schema: where it is, and an operation that sends $v there. */
export interface SchemaInput {
  /** Type.field(argument.inputField…), as a test's message names it */
  where: string;
  /** the argument's or input field's own name: what a refusal's column names */
  name: string;
  /** the input's type as a variable declares it (String, [String], Datetime!, …) */
  variableType: string;
  /** whether the input is a list of the scalar: a value is sent as a list of one */
  list: boolean;
  /** an operation with the variable $v at this input */
  operation: string;
}

/** The API's schema, as its introspection answers it. */
export async function apiSchema(api: TestApi, token: string): Promise<GraphQLSchema> {
  const response = await api.gql(token, getIntrospectionQuery());
  if (response.errors) throw new Error(JSON.stringify(response.errors));
  return buildClientSchema(response.data);
}

/** What the test's rows are: a field returning one of these types is given its id. */
export type Ids = Record<string, string>;

/** The shortest way from a root type to each object type: its fields, one after the other. */
function routes(schema: GraphQLSchema): Map<string, Array<{ parent: GraphQLObjectType; field: GraphQLField<unknown, unknown> }>> {
  const found = new Map<string, Array<{ parent: GraphQLObjectType; field: GraphQLField<unknown, unknown> }>>();
  // queries before mutations: a mutation's payload selects Query again, and a route through it would change something
  const queue: GraphQLObjectType[] = [schema.getQueryType()!, schema.getMutationType()!].filter(Boolean);
  for (const root of queue) found.set(root.name, []);
  while (queue.length > 0) {
    const parent = queue.shift()!;
    for (const field of Object.values(parent.getFields())) {
      const type = getNamedType(field.type);
      if (!isObjectType(type) || found.has(type.name)) continue;
      found.set(type.name, [...found.get(parent.name)!, { parent, field }]);
      queue.push(type);
    }
  }
  return found;
}

/** The arguments a field cannot go without, written as literals (ids of the test's rows). */
function requiredArguments(field: GraphQLField<unknown, unknown>, ids: Ids, except?: string): string[] {
  const returns = getNamedType(field.type).name;
  return field.args.filter((arg) => isNonNullType(arg.type) && arg.name !== except).map((arg) => {
    const type = getNamedType(arg.type);
    if (isInputObjectType(type)) return `${arg.name}: {}`;
    if (type.name === 'Datetime') return `${arg.name}: "2026-01-01T00:00:00Z"`;
    return `${arg.name}: ${JSON.stringify(ids[returns] ?? ids.default)}`;
  });
}

/** What a field selects: nothing of a scalar, __typename of anything else. */
function selection(field: GraphQLField<unknown, unknown>): string {
  return isScalarType(getNamedType(field.type)) ? '' : ' { __typename }';
}

/**
 * Every argument and input field of the schema whose type is `scalar` (or a list of
 * it), with an operation that reaches it from Query (or Mutation) by the shortest
 * route, the route's required arguments given the test's ids. An input object
 * argument that holds the input is written as a literal around $v; a mutation's
 * input has the test's webhook for its other BigInt fields named id or webhookId.
 */
export function inputsOfType(schema: GraphQLSchema, scalar: string, ids: Ids): SchemaInput[] {
  const inputs: SchemaInput[] = [];
  const route = routes(schema);
  const operationOf = (parent: GraphQLObjectType, field: GraphQLField<unknown, unknown>, argument: GraphQLArgument,
    value: string, variableType: string): string => {
    const steps = route.get(parent.name);
    if (!steps) throw new Error(`no route to ${parent.name}`);
    const kind = steps.length > 0 ? (steps[0].parent === schema.getMutationType() ? 'mutation' : 'query')
      : parent === schema.getMutationType() ? 'mutation' : 'query';
    const inner = `${field.name}(${[...requiredArguments(field, ids, argument.name), `${argument.name}: ${value}`].join(', ')})${selection(field)}`;
    const body = steps.reduceRight((within, { field: step }) => {
      const args = requiredArguments(step, ids);
      return `${step.name}${args.length > 0 ? `(${args.join(', ')})` : ''} { ${within} }`;
    }, inner);
    return `${kind}($v: ${variableType}) { ${body} }`;
  };
  const variableTypeOf = (type: GraphQLInputType): string => String(type);
  const isScalar = (type: GraphQLInputType) => {
    const named = getNamedType(type);
    return isScalarType(named) && named.name === scalar;
  };
  for (const type of Object.values(schema.getTypeMap())) {
    if (!isObjectType(type) || type.name.startsWith('__') || !route.has(type.name)) continue;
    for (const field of Object.values(type.getFields())) {
      for (const argument of field.args) {
        if (isScalar(argument.type)) {
          inputs.push({
            where: `${type.name}.${field.name}(${argument.name})`, name: argument.name,
            variableType: variableTypeOf(argument.type), list: isListType(getNullableType(argument.type)),
            operation: operationOf(type, field, argument, '$v', variableTypeOf(argument.type)),
          });
          continue;
        }
        // input objects, to their scalars (one level of nesting is all the schema has; deeper is walked too)
        const walk = (objectType: GraphQLInputType, path: string[], seen: Set<string>) => {
          const named = getNamedType(objectType);
          if (!isInputObjectType(named) || seen.has(named.name)) return;
          const fields = Object.values(named.getFields());
          for (const inner of fields) {
            if (isScalar(inner.type)) {
              // the test's webhook for the other ids of a mutation's input
              const others = type !== schema.getMutationType() ? [] : fields.filter((other) => other !== inner
                && getNamedType(other.type).name === 'BigInt' && (other.name === 'id' || other.name === 'webhookId'))
                .map((other) => `${other.name}: ${JSON.stringify(ids.Webhook ?? ids.default)}`);
              const names = [...path.slice(1), inner.name];
              let value = '$v';
              for (let i = names.length - 1; i >= 0; i--) {
                value = `{ ${[`${names[i]}: ${value}`, ...(i === names.length - 1 ? others : [])].join(', ')} }`;
              }
              inputs.push({
                where: `${type.name}.${field.name}(${[argument.name, ...path.slice(1), inner.name].join('.')})`, name: inner.name,
                variableType: variableTypeOf(inner.type), list: isListType(getNullableType(inner.type)),
                operation: operationOf(type, field, argument, value, variableTypeOf(inner.type)),
              });
            } else {
              walk(inner.type, [...path, inner.name], new Set([...seen, named.name]));
            }
          }
        };
        walk(argument.type, [argument.name], new Set());
      }
    }
  }
  return inputs;
}
