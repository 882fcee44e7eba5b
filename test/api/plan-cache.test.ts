// The API keeps a bounded number of parsed documents and plans, whatever texts its
// callers send (api/preset.ts, CACHED_DOCUMENTS): each text of its own, a comment
// or an alias apart, is another document and another plan.
import test from 'ava';
import { CACHED_DOCUMENTS, CACHED_PLANS_PER_OPERATION } from '../../api/preset.ts';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';
import { scrape } from '../helpers/prometheus.ts';

// (one after the other: each counts the plans the API makes)
const { db, api } = useTestDatabaseWithApi(test);

/** Operations planned so far (bpd_webhooks_api_planning_seconds' count). */
async function planned(): Promise<number> {
  return (await scrape(api().api.url)).get('bpd_webhooks_api_planning_seconds_count') ?? 0;
}

test.serial('distinct query texts are kept up to CACHED_DOCUMENTS: past them the oldest is planned again, a text sent again is not', async (t) => {
  const company = await factories(db().pool).company();
  const token = await api().token(company.id, 'webhook_viewer');
  const kept = '{ currentCompanyId }';
  const first = await planned();
  t.deepEqual((await api().gql(token, kept)).data, { currentCompanyId: company.id });
  t.is(await planned(), first + 1);
  // the same text again: its plan is kept, whatever company and role send it (a plan
  // made for each would be the cache's bound again, a company at a time)
  t.is((await api().gql(token, kept)).errors, undefined);
  const other = await factories(db().pool).company();
  t.deepEqual((await api().gql(await api().token(other.id, 'webhook_admin'), kept)).data, { currentCompanyId: other.id });
  t.is(await planned(), first + 1);
  // texts that differ by a comment each: each is planned, and the cache holds the
  // latest CACHED_DOCUMENTS of them; with grafserv's and grafast's defaults (500),
  // a company's distinct texts each held their plan, megabytes apiece
  for (let i = 0; i < CACHED_DOCUMENTS; i++) {
    t.is((await api().gql(token, `# ${i}\n${kept}`)).errors, undefined);
  }
  t.is(await planned(), first + 1 + CACHED_DOCUMENTS);
  t.is((await api().gql(token, kept)).errors, undefined);
  t.is(await planned(), first + 2 + CACHED_DOCUMENTS);
});

test.serial('one text keeps at most CACHED_PLANS_PER_OPERATION plans, one for each shape of variables its plan depends on', async (t) => {
  const company = await factories(db().pool).company();
  const token = await api().token(company.id, 'webhook_viewer');
  // @include is decided as the operation is planned: each choice of $a, $b, $c is a
  // plan of its own, 8 of them here and 2^n for n such variables
  const text = `query($a: Boolean!, $b: Boolean!, $c: Boolean!) {
    a: currentCompanyId @include(if: $a) b: currentCompanyId @include(if: $b) c: currentCompanyId @include(if: $c) }`;
  const choice = (n: number) => ({ a: (n & 1) > 0, b: (n & 2) > 0, c: (n & 4) > 0 });
  const first = await planned();
  for (let n = 0; n <= CACHED_PLANS_PER_OPERATION; n++) {
    const answer = await api().gql(token, text, choice(n));
    t.is(answer.errors, undefined);
    t.is(Object.keys(answer.data).length, [1, 2, 4].filter((bit) => (n & bit) > 0).length);
  }
  t.is(await planned(), first + 1 + CACHED_PLANS_PER_OPERATION);
  // the latest are kept; the first, past them, is planned again (grafast kept 50)
  t.is((await api().gql(token, text, choice(CACHED_PLANS_PER_OPERATION))).errors, undefined);
  t.is(await planned(), first + 1 + CACHED_PLANS_PER_OPERATION);
  t.is((await api().gql(token, text, choice(0))).errors, undefined);
  t.is(await planned(), first + 2 + CACHED_PLANS_PER_OPERATION);
});
