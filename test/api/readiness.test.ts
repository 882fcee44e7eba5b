// /readyz (ops/operations.ts) without a database: the answer for each place of this
// code's release among those that migrated the database (below), and the reason when
// the database does not answer: the API serves /readyz on the port of its page and GraphQL, so the reason
// says what kind of failure it is, never the driver's words, which name the
// database's host, address, port or role.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { Registry } from 'prom-client';
import { ENGINE_FINGERPRINT } from '../../ops/engine.ts';
import { type Asked, EXPECTED_MIGRATION, operationsRoutes, readiness, requestPath } from '../../ops/operations.ts';

const failing = (error: Error) => ({ query: () => Promise.reject(error) }) as unknown as Parameters<typeof readiness>[0];

test('a database that does not answer: its error code, not its host, address, port or role', async (t) => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 10.1.2.3:5432'), { code: 'ECONNREFUSED' });
  t.deepEqual(await readiness(failing(refused)), { ready: false, reason: 'database: not answering (ECONNREFUSED)', unanswered: 'failed' });
  const unknownHost = Object.assign(new Error('getaddrinfo ENOTFOUND db.internal.example'), { code: 'ENOTFOUND' });
  t.deepEqual(await readiness(failing(unknownHost)), { ready: false, reason: 'database: not answering (ENOTFOUND)', unanswered: 'failed' });
  const refusedLogin = Object.assign(new Error('password authentication failed for user "bpd_api_login"'), { code: '28P01' });
  t.deepEqual(await readiness(failing(refusedLogin)), { ready: false, reason: 'database: not answering (SQLSTATE 28P01)', unanswered: 'failed' });
  t.deepEqual(await readiness(failing(new Error('Connection terminated unexpectedly'))), { ready: false, reason: 'database: not answering', unanswered: 'failed' });
  // (it answers: it has no engine yet, its migrate to run; this said "not answering (SQLSTATE 3F000)")
  const noEngine = Object.assign(new Error('schema "webhooks_ops" does not exist'), { code: '3F000' });
  t.deepEqual(await readiness(failing(noEngine)),
    { ready: false, migration: undefined, reason: `database migrated to nothing, this code expects ${EXPECTED_MIGRATION}: run npm run migrate` });
});

// (the API that waited for its database as it started reads its GraphQL schema once the
// database answers: between the two, the database was ready and GraphQL not yet served)
test('/readyz: a process not ready of its own (notReadyBecause) says why once the database is ready; the database\'s reason first', async (t) => {
  const current = { query: async () => ({ rows: [{ migration: EXPECTED_MIGRATION, applied: ENGINE_FINGERPRINT, replaced: null, releases: null }] }) };
  const refused = failing(Object.assign(new Error('connect ECONNREFUSED 10.1.2.3:5432'), { code: 'ECONNREFUSED' }));
  const answers = async (db: unknown, own: string | undefined) => {
    const serve = operationsRoutes({ registry: new Registry(), db: db as Parameters<typeof readiness>[0], reuseMs: 0, notReadyBecause: () => own });
    const server = createServer((req, res) => void serve(req, res, requestPath(req)!));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const response = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/readyz`);
      return { status: response.status, body: await response.json() };
    } finally {
      server.close();
    }
  };
  t.deepEqual(await answers(current, undefined), { status: 200, body: { status: 'ready', migration: EXPECTED_MIGRATION } });
  t.deepEqual(await answers(current, 'schema not read'), { status: 503, body: { status: 'unavailable', reason: 'schema not read' } });
  t.deepEqual(await answers(refused, 'schema not read'), { status: 503, body: { status: 'unavailable', reason: 'database: not answering (ECONNREFUSED)' } });
});

// /readyz of the processes of three releases in a row, N-2, N-1 and N, this code
// playing each in turn, over the database as each case leaves it (docs/operations.md,
// "Upgrading", has the same table): what the releases that migrated the database
// record (webhooks_ops.sql_releases) places this code's among them.
type Played = 'N-2' | 'N-1' | 'N';
const PLAYED: Played[] = ['N-2', 'N-1', 'N'];

/** The three releases, this code's in the `played` place; N has no migration of its own when `sqlOnly` (a rollback needs that). */
function releasesAround(played: Played, sqlOnly = false) {
  const own = { fingerprint: ENGINE_FINGERPRINT, migration: EXPECTED_MIGRATION };
  const other = (fingerprint: string, migration: string) => ({ fingerprint: fingerprint.repeat(32), migration });
  if (played === 'N-2') return [own, other('b1', '9998_of_n_minus_1'), other('c0', sqlOnly ? '9998_of_n_minus_1' : '9999_of_n')];
  if (played === 'N-1') return [other('a2', '0001_of_n_minus_2'), own, other('c0', sqlOnly ? EXPECTED_MIGRATION : '9999_of_n')];
  return [other('a2', '0001_of_n_minus_2'), other('b1', sqlOnly ? EXPECTED_MIGRATION : '0002_of_n_minus_1'), own];
}

/** What /readyz says over a database that answers `asked`. */
async function said(asked: Asked) {
  const answered = await readiness(failing(new Error('not asked')), async () => asked);
  return answered.ready ? (answered.note ? `ready: ${answered.note}` : 'ready') : `not ready: ${answered.reason}`;
}

/** What /readyz says over the database in the state `state` leaves it, this code playing `played`. */
async function answer(played: Played, state: (releases: ReturnType<typeof releasesAround>) => Asked, sqlOnly = false) {
  return said(state(releasesAround(played, sqlOnly)));
}

const applied = (...flags: boolean[]) => (releases: ReturnType<typeof releasesAround>) =>
  releases.flatMap((release, i) => (i < flags.length ? [{ ...release, applied: flags[i]! }] : []));

const CASES: Array<{ title: string; sqlOnly?: boolean; state: (r: ReturnType<typeof releasesAround>) => Asked;
                     says: Record<Played, RegExp> }> = [
  { title: 'before N\'s migrate',
    state: (r) => ({ migration: r[1]!.migration, applied: r[1]!.fingerprint, replaced: r[0]!.fingerprint,
                     releases: { appliedMigration: r[1]!.migration, releases: applied(true, true)(r) } }),
    says: { 'N-2': /^ready: database's sql\/ b1b1b1b1b1b1 \(migrated to 9998_of_n_minus_1\) replaced this code's: replace this process/,
            'N-1': /^ready$/,
            'N': /^not ready: database migrated to 0002_of_n_minus_1, this code expects .*: run npm run migrate$/ } },
  { title: 'N\'s migrate ran its migrations, not yet its sql/ (it runs, or it stopped between them)',
    state: (r) => ({ migration: r[2]!.migration, applied: r[1]!.fingerprint, replaced: r[0]!.fingerprint,
                     releases: { appliedMigration: r[1]!.migration, releases: applied(true, true, false)(r) } }),
    says: { 'N-2': /^not ready: database migrated by code two or more releases past this one's \(9999_of_n, sql\/ b1b1b1b1b1b1\): replace this process with the newest release's$/,
            'N-1': /^ready: database migrated by newer code \(9999_of_n\), under this code's sql\/ still: run that release's migrate to its end/,
            'N': /^not ready: database's sql\/ .*is not this code's \(b1b1b1b1b1b1, this code's [0-9a-f]{12}\): run npm run migrate$/ } },
  { title: 'N\'s migrate ran to its end',
    state: (r) => ({ migration: r[2]!.migration, applied: r[2]!.fingerprint, replaced: r[1]!.fingerprint,
                     releases: { appliedMigration: r[2]!.migration, releases: applied(true, true, true)(r) } }),
    says: { 'N-2': /^not ready: database migrated by code two or more releases past this one's \(9999_of_n, sql\/ c0c0c0c0c0c0\)/,
            'N-1': /^ready: database's sql\/ c0c0c0c0c0c0 \(migrated to 9999_of_n\) replaced this code's: replace this process with that release's$/,
            'N': /^ready$/ } },
  { title: 'N-1\'s migrate run after N\'s (a rollback; N has no migration of its own, or N-1\'s migrate would refuse)', sqlOnly: true,
    state: (r) => ({ migration: r[1]!.migration, applied: r[1]!.fingerprint, replaced: r[2]!.fingerprint,
                     releases: { appliedMigration: r[1]!.migration, releases: applied(true, true, true)(r) } }),
    says: { 'N-2': /^ready: database's sql\/ b1b1b1b1b1b1 \(migrated to 9998_of_n_minus_1\) replaced this code's/,
            'N-1': /^ready$/,
            'N': /^not ready: database's sql\/ b1b1b1b1b1b1 \(migrated to \w+\) is an earlier release's, rolled back to after this code's was applied: replace this process with that release's, or run this release's npm run migrate again \(its npm start over a shared database does not\)$/ } },
];

for (const { title, sqlOnly, state, says } of CASES) {
  test(`/readyz of N-2's, N-1's and N's processes: ${title}`, async (t) => {
    for (const played of PLAYED) t.regex(await answer(played, state, sqlOnly), says[played], `${played}'s process`);
  });
}

// N's migrate abandoned: registered, it stopped (killed, or failed) before its sql/,
// and N′ (N mended) migrated after it. N never ran its engine here: N′ is the
// release after N-1, and N's processes, whose sql/ never ran, are not ready.
type Abandoning = 'N-2' | 'N-1' | 'N';

/** N-2, N-1, N (abandoned, its migration 9998 run or not) and N′, this code's in the `played` place. */
function releasesWithAbandoned(played: Abandoning) {
  const own = { fingerprint: ENGINE_FINGERPRINT, migration: EXPECTED_MIGRATION };
  const other = (fingerprint: string, migration: string) => ({ fingerprint: fingerprint.repeat(32), migration });
  return [played === 'N-2' ? own : other('a2', '0001_of_n_minus_2'),
          played === 'N-1' ? own : other('b1', played === 'N' ? '0002_of_n_minus_1' : '9997_of_n_minus_1'),
          played === 'N' ? own : other('c0', '9998_of_n'),
          other('d3', '9999_of_n_mended')];
}

const ABANDONED: Array<{ title: string; state: (r: ReturnType<typeof releasesWithAbandoned>) => Asked; says: Record<Abandoning, RegExp> }> = [
  { title: 'N′\'s migrate ran its migrations, not yet its sql/',
    state: (r) => ({ migration: r[3]!.migration, applied: r[1]!.fingerprint, replaced: r[0]!.fingerprint,
                     releases: { appliedMigration: r[1]!.migration, releases: [true, true, false, false].map((applied, i) => ({ ...r[i]!, applied })) } }),
    says: { 'N-2': /^not ready: database migrated by code two or more releases past this one's \(9999_of_n_mended, sql\/ b1b1b1b1b1b1\)/,
            'N-1': /^ready: database migrated by newer code \(9999_of_n_mended\), under this code's sql\/ still: run that release's migrate to its end/,
            'N': /^not ready: this code's migrate stopped before its sql\/ was applied, and a later release's has run since \(9999_of_n_mended, sql\/ b1b1b1b1b1b1\): replace this process with the newest release's$/ } },
  { title: 'N′\'s migrate ran to its end',
    state: (r) => ({ migration: r[3]!.migration, applied: r[3]!.fingerprint, replaced: r[1]!.fingerprint,
                     releases: { appliedMigration: r[3]!.migration, releases: [true, true, false, true].map((applied, i) => ({ ...r[i]!, applied })) } }),
    says: { 'N-2': /^not ready: database migrated by code two or more releases past this one's \(9999_of_n_mended, sql\/ d3d3d3d3d3d3\)/,
            'N-1': /^ready: database's sql\/ d3d3d3d3d3d3 \(migrated to 9999_of_n_mended\) replaced this code's: replace this process with that release's$/,
            'N': /^not ready: this code's migrate stopped before its sql\/ was applied, and a later release's has run since \(9999_of_n_mended, sql\/ d3d3d3d3d3d3\): replace this process with the newest release's$/ } },
];

for (const { title, state, says } of ABANDONED) {
  test(`/readyz of N-2's, N-1's and N's processes, N's migrate abandoned before its sql/ and N′'s run after it: ${title}`, async (t) => {
    for (const played of ['N-2', 'N-1', 'N'] as const) t.regex(await said(state(releasesWithAbandoned(played))), says[played], `${played}'s process`);
  });
}

// Every order in which the migrates of four releases in a row can run over one
// database, each release with or without a migration of its own, and with or without
// a sql/ of its own (one with the same sql/ as the release before: a release of
// migrations alone): forward one release at a time, back to any release migrated here
// before (across one release or more), or back to an older release whose migrate never
// ran here (an install that began at a later one: its migrate, asked to roll back,
// places it before every release registered, whatever the later release changed,
// tools/migrate.ts; not asked, it refuses where it finds functions of the engine its
// sql/ does not make, and npm start over a shared database refuses it either way),
// each migrate run to its end or stopped
// before its sql/ (a new release is migrated only once every release registered
// before it applied its sql/: those abandoned are the tests above); and the processes
// of each release, whether its migrate ran here or not. Whatever the order, and
// whether standing() places the releases or leaves the answer to the migrations and
// fingerprints alone, a process is never ready where its release's sql/ or the next
// one's does not run under their migrations, and is ready wherever it does and its
// release's sql/ was applied here in its place (one whose sql/ never was, or one
// rolled back to from a later release, cannot tell the release after it from one two
// releases on: not ready; docs/operations.md has the table).
const RELEASES = 4;

interface Migrate { release: number; stops: boolean }

/** The orders of up to `length` migrates, as above. */
function* migrateOrders(ownMigrations: number[], length: number, done: Migrate[] = []): Generator<Migrate[]> {
  if (done.length > 0) yield done;
  if (done.length === length) return;
  const registered = new Set(done.map((step) => step.release));
  const newest = done.length > 0 ? Math.max(...registered) : -1;
  const oldest = done.length > 0 ? Math.min(...registered) : RELEASES;
  const everyApplied = [...registered].every((release) => done.some((step) => step.release === release && !step.stops));
  const migrated = Math.max(-1, ...done.map((step) => ownMigrations[step.release]!));
  for (let release = 0; release < RELEASES; release++) {
    const isNew = !registered.has(release);
    if (isNew && done.length > 0 && ((release !== newest + 1 && release >= oldest) || !everyApplied)) continue;
    if (ownMigrations[release]! < migrated) continue; // its migrate refuses a database with migrations it has not
    for (const stops of [false, true]) yield* migrateOrders(ownMigrations, length, [...done, { release, stops }]);
  }
}

/**
 * Where each release stands in sql_releases after `order`: a release older than every
 * one registered, migrated to its sql/, goes first, marked rolled back to (how much
 * older, the database cannot tell).
 */
function registeredAfter(order: Migrate[], sqlOf: (release: number) => number): { registered: number[]; rolledBackTo: Set<number> } {
  const registered: number[] = [];
  const rolledBackTo = new Set<number>();
  const applied = new Set<number>();
  let inForce: number | null = null;
  for (const { release, stops } of order) {
    if (!registered.includes(release)) registered.push(release);
    if (stops) continue;
    const older = !applied.has(release) && inForce !== null && release < inForce && sqlOf(release) !== sqlOf(inForce);
    if (older) {
      registered.splice(registered.indexOf(release), 1);
      registered.unshift(release);
      rolledBackTo.add(release);
    }
    applied.add(release);
    inForce = release;
  }
  return { registered, rolledBackTo };
}

test('/readyz over every order of migrates of four releases in a row, rollbacks across one release or more among them, to releases migrated here or not: each process is ready exactly where its release\'s sql/ or the next one\'s runs under their migrations', async (t) => {
  const wrong: string[] = [];
  let asked = 0;
  for (let withMigration = 0; withMigration < 1 << (RELEASES - 1); withMigration++) {
    for (let withSql = 0; withSql < 1 << (RELEASES - 1); withSql++) {
      // the index of each release's newest migration: one more than the release before's, or the same;
      // and of its sql/: another than the release before's, or the same (not both the same)
      const ownMigrations = [0];
      const ownSql = [0];
      for (let i = 1; i < RELEASES; i++) {
        const migration = (withMigration >> (i - 1)) & 1;
        const sql = (withSql >> (i - 1)) & 1;
        ownMigrations.push(ownMigrations[i - 1]! + migration);
        ownSql.push(ownSql[i - 1]! + (sql || !migration ? 1 : 0));
      }
      // (a release without a migration of its own has a sql/ of its own either way)
      if (ownMigrations.some((migration, i) => i > 0 && migration === ownMigrations[i - 1] && !((withSql >> (i - 1)) & 1))) continue;
      for (const order of migrateOrders(ownMigrations, 4)) {
        let newest = -1;
        let inForce: number | null = null;
        let replaced: number | null = null;
        const applied = new Set<number>();
        for (const { release, stops } of order) {
          newest = Math.max(newest, ownMigrations[release]!);
          if (stops) continue;
          if (inForce !== release) replaced = inForce;
          inForce = release;
          applied.add(release);
        }
        if (inForce === null) continue;
        const { registered, rolledBackTo } = registeredAfter(order, (release) => ownSql[release]!);
        for (let played = 0; played < RELEASES; played++) {
          const migrationName = (index: number) => {
            const ahead = index - ownMigrations[played]!;
            return ahead === 0 ? EXPECTED_MIGRATION : ahead < 0 ? `0000_${10 + ahead}` : `9999_${10 + ahead}`;
          };
          const fingerprint = (release: number) => (ownSql[release] === ownSql[played] ? ENGINE_FINGERPRINT : `${ownSql[release]}`.repeat(64));
          const answer = await said({
            migration: migrationName(newest), applied: fingerprint(inForce), replaced: replaced === null ? null : fingerprint(replaced),
            releases: { appliedMigration: migrationName(ownMigrations[inForce]!),
                        releases: registered.map((release) => ({ fingerprint: fingerprint(release), migration: migrationName(ownMigrations[release]!),
                                                                 applied: applied.has(release), rolledBackTo: rolledBackTo.has(release) })) } });
          asked++;
          const next = played + 1 < RELEASES ? ownMigrations[played + 1]! : ownMigrations[played]!;
          const works = (ownSql[inForce] === ownSql[played] && newest >= ownMigrations[played]! && newest <= next)
            || (inForce === played + 1 && newest === next);
          if (answer.startsWith('ready') ? !works : works && applied.has(played) && !rolledBackTo.has(played)) {
            wrong.push(`migrations ${ownMigrations}, sql/ ${ownSql}, migrates ${order.map((step) => `${step.release}${step.stops ? ' stopped' : ''}`).join(', ')}: ` +
              `release ${played}'s process ${answer}`);
          }
        }
      }
    }
  }
  t.deepEqual(wrong.slice(0, 5), []);
  t.true(asked > 3_000, `${asked} answers`);
});
