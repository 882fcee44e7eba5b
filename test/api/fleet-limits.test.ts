// max_in_flight and rate_limit: editable through GraphQL, bounded, visible in the report.
import test from 'ava';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';

const { db, api } = useTestDatabaseWithApi(test);

const UPDATE = `mutation($input: UpdateWebhookInput!) { updateWebhook(input: $input) { result { maxInFlight rateLimit } } }`;

test('maxInFlight and rateLimit are set, shown in the report, and cleared through GraphQL', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const token = await api().token(company.id);

  const set = await api().gql(token, UPDATE, { input: { id: webhook.id, maxInFlight: 4, rateLimit: 20 } });
  t.falsy(set.errors);
  t.deepEqual(set.data.updateWebhook.result, { maxInFlight: 4, rateLimit: 20 });
  const { rows } = await db().pool.query('select max_in_flight, rate_limit from webhooks.webhooks where id = $1', [webhook.id]);
  t.deepEqual(rows[0], { max_in_flight: 4, rate_limit: 20 });

  const viewer = await api().token(company.id, 'webhook_viewer');
  const report = await api().gql(viewer, '{ webhookReport { nodes { webhookId maxInFlight rateLimit } } }');
  t.deepEqual(report.data.webhookReport.nodes, [{ webhookId: webhook.id, maxInFlight: 4, rateLimit: 20 }]);

  const kept = await api().gql(token, UPDATE, { input: { id: webhook.id, name: 'Renamed' } });
  t.deepEqual(kept.data.updateWebhook.result, { maxInFlight: 4, rateLimit: 20 }, 'unchanged when not given');
  const cleared = await api().gql(token, UPDATE, { input: { id: webhook.id, clearMaxInFlight: true, clearRateLimit: true } });
  t.deepEqual(cleared.data.updateWebhook.result, { maxInFlight: null, rateLimit: null });
});

test('limits out of range are refused with their rule and field', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const token = await api().token(company.id);
  for (const [input, constraint, column] of [
    [{ maxInFlight: 0 }, 'webhook_max_in_flight_range', 'max_in_flight'],
    [{ maxInFlight: 1001 }, 'webhook_max_in_flight_range', 'max_in_flight'],
    [{ rateLimit: 0 }, 'webhook_rate_limit_range', 'rate_limit'],
    [{ rateLimit: 10001 }, 'webhook_rate_limit_range', 'rate_limit'],
  ] as const) {
    const response = await api().gql(token, UPDATE, { input: { id: webhook.id, ...input } });
    t.is(response.errors?.length, 1, JSON.stringify(input));
    t.like(response.errors![0]!.extensions, { code: '23514', constraint, column }, JSON.stringify(input));
  }
  const { rows } = await db().pool.query('select max_in_flight, rate_limit from webhooks.webhooks where id = $1', [webhook.id]);
  t.deepEqual(rows[0], { max_in_flight: null, rate_limit: null }, 'nothing was written');
});
