// setWebhookDelivery: the coalesce window and ordering through GraphQL, for admins of
// the webhook's own company only; the window's bound named.
import test from 'ava';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';

const { db, api } = useTestDatabaseWithApi(test);

const SET = `mutation($id: BigInt!, $window: IntervalInput, $ordered: Boolean) {
  setWebhookDelivery(input: { id: $id, coalesceWindow: $window, ordered: $ordered }) {
    result { id ordered coalesceWindow { seconds minutes } }
  }
}`;

test('an admin sets the window and ordering; null turns coalescing off; a viewer and another company cannot', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const other = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'] });
  const theirs = await f.webhook({ companyId: other.id, actions: ['contact.updated'] });
  const admin = await api().token(company.id);

  const set = await api().gql(admin, SET, { id: hook.id, window: { seconds: 10 }, ordered: true });
  t.falsy(set.errors, JSON.stringify(set.errors));
  t.like(set.data.setWebhookDelivery.result, { ordered: true, coalesceWindow: { seconds: 10 } });
  const off = await api().gql(admin, SET, { id: hook.id, window: null, ordered: false });
  t.like(off.data.setWebhookDelivery.result, { ordered: false, coalesceWindow: null });

  const tooLong = await api().gql(admin, SET, { id: hook.id, window: { minutes: 61 }, ordered: false });
  t.is(tooLong.errors?.[0]?.extensions?.constraint, 'webhooks_coalesce_window_range');
  const notOurs = await api().gql(admin, SET, { id: theirs.id, window: { seconds: 5 }, ordered: true });
  t.truthy(notOurs.errors);
  const viewer = await api().gql(await api().token(company.id, 'webhook_viewer'), SET, { id: hook.id, window: { seconds: 5 }, ordered: true });
  t.truthy(viewer.errors);
  const { rows } = await db().pool.query('select coalesce_window, ordered from webhooks.webhooks where id = any ($1::bigint[]) order by id', [[hook.id, theirs.id]]);
  t.deepEqual(rows.map((r) => [r.coalesce_window, r.ordered]), [[null, false], [null, false]]);
});

test('ordered left out of an update, or null, leaves ordering as it is: changing the window alone keeps it', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'] });
  const admin = await api().token(company.id);
  const set = await api().gql(admin, SET, { id: hook.id, window: { seconds: 10 }, ordered: true });
  t.falsy(set.errors, JSON.stringify(set.errors));

  const windowAlone = await api().gql(admin, `mutation($id: BigInt!, $window: IntervalInput) {
    setWebhookDelivery(input: { id: $id, coalesceWindow: $window }) { result { ordered coalesceWindow { seconds } } } }`,
  { id: hook.id, window: { seconds: 30 } });
  t.falsy(windowAlone.errors, JSON.stringify(windowAlone.errors));
  t.like(windowAlone.data.setWebhookDelivery.result, { ordered: true, coalesceWindow: { seconds: 30 } });
  const nullOrdered = await api().gql(admin, SET, { id: hook.id, window: { seconds: 40 }, ordered: null });
  t.falsy(nullOrdered.errors, JSON.stringify(nullOrdered.errors));
  t.like(nullOrdered.data.setWebhookDelivery.result, { ordered: true, coalesceWindow: { seconds: 40 } });
  const { rows } = await db().pool.query('select extract(epoch from coalesce_window)::int as window_s, ordered from webhooks.webhooks where id = $1', [hook.id]);
  t.deepEqual(rows, [{ window_s: 40, ordered: true }]);
});

test('a window of months and days that the check takes for an hour waits an hour, not the length of a month', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'] });
  const admin = await api().token(company.id);
  // 1 month - 29 days - 23 hours is 1 hour to the check (a month of 30 days), and was
  // stored as it was written: after a day of December, 25 hours
  const set = await api().gql(admin, `mutation($id: BigInt!, $window: IntervalInput) {
    setWebhookDelivery(input: { id: $id, coalesceWindow: $window, ordered: false }) {
      result { coalesceWindow { months days hours minutes seconds } } } }`,
  { id: hook.id, window: { months: 1, days: -29, hours: -23 } });
  t.falsy(set.errors, JSON.stringify(set.errors));
  t.deepEqual(set.data.setWebhookDelivery.result.coalesceWindow, { months: 0, days: 0, hours: 1, minutes: 0, seconds: 0 });
  const { rows } = await db().pool.query(
    `select (timestamptz '2026-12-04 00:00Z' + coalesce_window - timestamptz '2026-12-04 00:00Z')::text as waits,
            (timestamptz '2026-02-04 00:00Z' + coalesce_window - timestamptz '2026-02-04 00:00Z')::text as waits_in_february
     from webhooks.webhooks where id = $1`, [hook.id]);
  t.deepEqual(rows[0], { waits: '01:00:00', waits_in_february: '01:00:00' });
});

// The window left out (an admin, or an integration script, that changes the order
// alone) leaves coalescing as it is, as ordered left out leaves ordering: until
// 2026-12-07 it turned coalescing off. Null given still turns it off, and so does a
// window of 0.
test('coalesceWindow left out leaves coalescing as it is: changing the order alone keeps the window; null or 0 turns it off', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'] });
  const admin = await api().token(company.id);
  const set = await api().gql(admin, SET, { id: hook.id, window: { seconds: 10 }, ordered: false });
  t.falsy(set.errors, JSON.stringify(set.errors));

  const orderedAlone = await api().gql(admin, `mutation($id: BigInt!) {
    setWebhookDelivery(input: { id: $id, ordered: true }) { result { ordered coalesceWindow { seconds } } } }`,
  { id: hook.id });
  t.falsy(orderedAlone.errors, JSON.stringify(orderedAlone.errors));
  t.like(orderedAlone.data.setWebhookDelivery.result, { ordered: true, coalesceWindow: { seconds: 10 } });
  // a variable not given is a field left out too
  const variableNotGiven = await api().gql(admin, SET, { id: hook.id, ordered: false });
  t.falsy(variableNotGiven.errors, JSON.stringify(variableNotGiven.errors));
  t.like(variableNotGiven.data.setWebhookDelivery.result, { ordered: false, coalesceWindow: { seconds: 10 } });
  const settings = async () => (await db().pool.query(
    'select extract(epoch from coalesce_window)::int as window_s, ordered from webhooks.webhooks where id = $1', [hook.id])).rows;
  t.deepEqual(await settings(), [{ window_s: 10, ordered: false }]);

  const zero = await api().gql(admin, SET, { id: hook.id, window: { seconds: 0 } });
  t.falsy(zero.errors, JSON.stringify(zero.errors));
  t.like(zero.data.setWebhookDelivery.result, { ordered: false, coalesceWindow: null });
  await api().gql(admin, SET, { id: hook.id, window: { seconds: 20 } });
  t.deepEqual(await settings(), [{ window_s: 20, ordered: false }]);
  const off = await api().gql(admin, SET, { id: hook.id, window: null });
  t.falsy(off.errors, JSON.stringify(off.errors));
  t.like(off.data.setWebhookDelivery.result, { ordered: false, coalesceWindow: null });
  t.deepEqual(await settings(), [{ window_s: null, ordered: false }]);
});
