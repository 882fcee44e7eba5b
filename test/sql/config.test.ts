// Bad webhook configuration is refused by the database itself, with a named error.
import test, { type ExecutionContext } from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);
const make = () => factories(db().pool);

interface PgError extends Error { code: string; constraint?: string; column?: string }

/** Asserts that the database refused the write, and returns its error. */
async function refusal(t: ExecutionContext, write: Promise<unknown>): Promise<PgError> {
  const error = await t.throwsAsync(write);
  return error as PgError;
}

const badConfigurations: Array<[string, (ids: Ids) => Record<string, unknown>, string, string]> = [
  ['a URL that is not http(s)', () => ({ url: 'ftp://files.example.com/in' }), 'webhook_url_invalid', 'url'],
  ['a URL with no host', () => ({ url: 'https://' }), 'webhook_url_invalid', 'url'],
  ['a URL with spaces', () => ({ url: 'https://example.com/a b' }), 'webhook_url_invalid', 'url'],
  ['an empty field list', () => ({ fields: [] }), 'webhook_fields_empty', 'fields'],
  ['a field that is not a contact column', () => ({ fields: ['first_name', 'shoe_size'] }), 'webhook_field_unknown', 'fields'],
  ['an empty action list', () => ({ actions: [] }), 'webhook_actions_empty', 'actions'],
  ['an empty name', () => ({ name: '  ' }), 'webhook_name_required', 'name'],
  ['a status of another company', (ids) => ({ actions: ['contact.status_added'], statusId: ids.foreignStatus }), 'webhook_status_other_company', 'status_id'],
  ['a user of another company', (ids) => ({ actions: ['contact.user_assigned'], userId: ids.foreignUser }), 'webhook_user_other_company', 'user_id'],
  ['a status filter on a non-status action', (ids) => ({ actions: ['contact.created'], statusId: ids.status }), 'webhook_status_needs_status_actions', 'status_id'],
  ['a status action with a user_id', (ids) => ({ actions: ['contact.status_added'], userId: ids.user }), 'webhook_user_needs_user_assigned', 'user_id'],
];

interface Ids { company: string; status: string; user: string; foreignStatus: string; foreignUser: string }

async function ids(): Promise<Ids> {
  const f = make();
  const company = await f.company();
  const foreign = await f.company();
  return {
    company: company.id,
    status: (await f.status(company.id)).id,
    user: (await f.user(company.id)).id,
    foreignStatus: (await f.status(foreign.id)).id,
    foreignUser: (await f.user(foreign.id)).id,
  };
}

for (const [what, change, rule, column] of badConfigurations) {
  test(`refused: ${what} (${rule})`, async (t) => {
    const known = await ids();
    const error = await refusal(t, make().webhook({ companyId: known.company, actions: ['contact.created'], ...change(known) }));
    t.is(error.code, '23514');
    t.is(error.constraint, rule);
    t.is(error.column, column);
    const { rows } = await db().pool.query('select count(*)::int as n from webhooks.webhooks where company_id = $1', [known.company]);
    t.is(rows[0].n, 0, 'nothing was stored');
  });
}

test('refused: an unknown action, by the webhooks.action type', async (t) => {
  const known = await ids();
  const error = await refusal(t, make().webhook({ companyId: known.company, actions: ['contact.exploded'] }));
  t.is(error.code, '22P02');
  t.regex(error.message, /invalid input value for enum webhooks\.action: "contact\.exploded"/);
});

test('the unknown-field error lists the fields one may choose', async (t) => {
  const known = await ids();
  const error = await refusal(t, make().webhook({ companyId: known.company, actions: ['contact.created'], fields: ['shoe_size'] }));
  t.regex(error.message, /unknown contact field 'shoe_size'; known fields: id, company_id, first_name, .*postal_code, birthday, custom/);
});

test('refused on update too: a bad URL, and moving a webhook to another company', async (t) => {
  const known = await ids();
  const other = await make().company();
  const hook = await make().webhook({ companyId: known.company, actions: ['contact.created'] });
  const badUrl = await refusal(t, db().pool.query("update webhooks.webhooks set url = 'javascript:alert(1)' where id = $1", [hook.id]));
  t.is(badUrl.constraint, 'webhook_url_invalid');
  const moved = await refusal(t, db().pool.query('update webhooks.webhooks set company_id = $2 where id = $1', [hook.id, other.id]));
  t.is(moved.constraint, 'webhook_company_immutable');
  const { rows } = await db().pool.query('select url, company_id from webhooks.webhooks where id = $1', [hook.id]);
  t.deepEqual(rows[0], { url: 'https://receiver.example.com/hook', company_id: known.company });
});

test('accepted: a good configuration is stored tidy, with a secret of its own', async (t) => {
  const known = await ids();
  const hook = await make().webhook({
    companyId: known.company, name: '  Zapier  ', url: 'https://hooks.zapier.example/catch/1/abc?x=1',
    actions: ['contact.status_added', 'contact.status_removed', 'contact.status_added'], statusId: known.status,
    fields: ['email', 'first_name', 'email'],
  });
  t.is(hook.name, 'Zapier');
  t.deepEqual(hook.fields, ['email', 'first_name']);
  t.deepEqual(hook.actions, ['contact.status_added', 'contact.status_removed']);
  t.regex(hook.secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
  const other = await make().webhook({ companyId: known.company, actions: ['contact.created'] });
  t.not(other.secret, hook.secret);
});

test('a disabled webhook must say when it was disabled; an enabled one carries no stale reason', async (t) => {
  const known = await ids();
  const hook = await make().webhook({ companyId: known.company, actions: ['contact.created'] });
  const noWhen = await refusal(t, db().pool.query('update webhooks.webhooks set enabled = false where id = $1', [hook.id]));
  t.is(noWhen.constraint, 'webhooks_disabled_consistent');
  const stale = await refusal(t, db().pool.query("update webhooks.webhooks set disabled_reason = 'x' where id = $1", [hook.id]));
  t.is(stale.constraint, 'webhooks_disabled_consistent');
});
