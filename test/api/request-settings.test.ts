// What every GraphQL request's transaction is set to (api/preset.ts): the caller's
// role and company, the statement timeout, and the planner settings the history pages
// were measured with (test/sql/history-pages.test.ts asserts the plans those settings
// give; this asserts that a request gets them). Pure: no database.
import test from 'ava';
import type pg from 'pg';
import { DEFAULT_LIMITS } from '../../api/limits.ts';
import { apiPreset } from '../../api/preset.ts';

function settingsOfARequest(): Record<string, string> {
  const preset = apiPreset({
    pool: {} as pg.Pool,
    claimsOf: () => ({ role: 'webhook_viewer', company_id: '7', sub: 'viewer@example.com' }),
    limits: { ...DEFAULT_LIMITS, statementTimeoutMs: 4_321 },
  });
  const context = preset.grafast?.context as (requestContext: unknown) => { pgSettings: Record<string, string> };
  return context({ node: { req: {} } }).pgSettings;
}

test('a request runs as its caller, within the statement timeout, with generic plans and partitionwise joins', (t) => {
  t.like(settingsOfARequest(), {
    role: 'webhook_viewer',
    'jwt.claims.company_id': '7',
    statement_timeout: '4321',
    // a connection's first five executions of a prepared statement would otherwise each
    // be planned for their own arguments (40–70 ms over the history's partitions)
    plan_cache_mode: 'force_generic_plan',
    enable_partitionwise_join: 'on',
  });
});
