// Bad webhook configuration is refused by the database itself, with a named error.
import test, { type ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import { ownConnection, useTestDatabase } from '../helpers/db.ts';
import { CHANNEL, WEBHOOK_CHANGED_NOTICE } from '../../relay/engine-names.ts';
import { factories } from '../helpers/factories.ts';
import { until } from '../helpers/until.ts';

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
  ['a name of tabs and newlines', () => ({ name: '\t\n\r\u000b\f' }), 'webhook_name_required', 'name'],
  ['a name of Unicode white space', () => ({ name: '\u00a0\u1680\u2000\u2003\u200a\u2028\u2029\u202f\u205f\u3000\u0085' }), 'webhook_name_required', 'name'],
  ['a name of 201 characters', () => ({ name: 'x'.repeat(201) }), 'webhook_name_too_long', 'name'],
  ['a name of 201 characters beyond the BMP', () => ({ name: '🪝'.repeat(201) }), 'webhook_name_too_long', 'name'],
  ['a name with a bell', () => ({ name: 'Ding\u0007' }), 'webhook_name_control_characters', 'name'],
  ['a name with a terminal escape', () => ({ name: '\u001b[31mRed' }), 'webhook_name_control_characters', 'name'],
  ['a name with a line break inside', () => ({ name: 'Two\nlines' }), 'webhook_name_control_characters', 'name'],
  ['a name with a line separator inside', () => ({ name: 'Two\u2028lines' }), 'webhook_name_control_characters', 'name'],
  ['a name with a paragraph separator inside', () => ({ name: 'Two\u2029paragraphs' }), 'webhook_name_control_characters', 'name'],
  ['a name with DEL', () => ({ name: 'a\u007fb' }), 'webhook_name_control_characters', 'name'],
  ['a name with a C1 control', () => ({ name: 'a\u009bb' }), 'webhook_name_control_characters', 'name'],
  // a name is shown on the Reports page, in the audit and in logs: bidi controls
  // reorder what follows them (and the page's text around it), and a name of
  // characters that show nothing looks like no name, or like another
  ['a name with a right-to-left override', () => ({ name: 'Invoice\u202eslx.exe' }), 'webhook_name_bidi_controls', 'name'],
  ['a name with a right-to-left override alone', () => ({ name: '\u202e' }), 'webhook_name_bidi_controls', 'name'],
  ['a name with bidi isolates', () => ({ name: 'a\u2066b\u2067c\u2068d\u2069' }), 'webhook_name_bidi_controls', 'name'],
  ['a name of bidi isolates alone', () => ({ name: '\u2066\u2069' }), 'webhook_name_bidi_controls', 'name'],
  ['a name with a bidi embedding', () => ({ name: 'Hook\u202a' }), 'webhook_name_bidi_controls', 'name'],
  ['a name with a right-to-left mark', () => ({ name: 'Hook\u200f' }), 'webhook_name_bidi_controls', 'name'],
  ['a name with a left-to-right mark', () => ({ name: '\u200eHook' }), 'webhook_name_bidi_controls', 'name'],
  ['a name with an Arabic letter mark', () => ({ name: 'Hook\u061c' }), 'webhook_name_bidi_controls', 'name'],
  ['a name of a zero-width space', () => ({ name: '\u200b' }), 'webhook_name_invisible', 'name'],
  ['a name of a byte order mark', () => ({ name: '\ufeff' }), 'webhook_name_invisible', 'name'],
  ['a name of a soft hyphen', () => ({ name: '\u00ad' }), 'webhook_name_invisible', 'name'],
  ['a name of zero-width joiners and a word joiner', () => ({ name: '\u200c\u200d\u2060' }), 'webhook_name_invisible', 'name'],
  ['a name of zero-width spaces around white space', () => ({ name: '\u200b \u3000\u200b' }), 'webhook_name_invisible', 'name'],
  ['a name of a Hangul filler', () => ({ name: '\u3164' }), 'webhook_name_invisible', 'name'],
  ['a name of a blank Braille pattern', () => ({ name: '\u2800\u2800' }), 'webhook_name_invisible', 'name'],
  ['a name of a variation selector', () => ({ name: '\ufe0f' }), 'webhook_name_invisible', 'name'],
  ['a name of tag characters', () => ({ name: '\u{e0041}\u{e007f}' }), 'webhook_name_invisible', 'name'],
  ['a URL with port 0', () => ({ url: 'https://receiver.example.com:0/in' }), 'webhook_url_port_invalid', 'url'],
  ['a URL with port 65536', () => ({ url: 'https://receiver.example.com:65536/in' }), 'webhook_url_port_invalid', 'url'],
  ['a URL with a port of 30 digits', () => ({ url: `https://receiver.example.com:${'9'.repeat(30)}/in` }), 'webhook_url_port_invalid', 'url'],
  ['an IPv6 URL with port 0', () => ({ url: 'http://[2001:db8::1]:0/in' }), 'webhook_url_port_invalid', 'url'],
  ['a URL longer than 2048 characters', () => ({ url: `https://receiver.example.com/${'a'.repeat(2048)}` }), 'webhook_url_invalid', 'url'],
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

test('refused: a URL whose authority is no host and port, which the relay could never send to (webhook_url_invalid)', async (t) => {
  // each was stored, and every delivery of the webhook failed with "invalid URL"
  const known = await ids();
  for (const url of ['http://receiver.example.com:https/', 'http://[2001:db8::1/in', 'http://[2001:db8::1]]/in',
    'http://[fe80::1%25eth0]/in', 'http://:443/in', 'http://[2001:db8::1]:80:80/in', 'http://recei<ver.example.com/',
    'http://recei^ver.example.com/', 'http://recei|ver.example.com/', 'http://recei%zzver.example.com/',
    'http://recei\u0001ver.example.com/']) {
    t.throws(() => new URL(url), undefined, url);
    const error = await refusal(t, make().webhook({ companyId: known.company, actions: ['contact.created'], url }));
    t.is(error.constraint, 'webhook_url_invalid', url);
    t.is(error.column, 'url', url);
  }
  // odd but readable: accepted
  for (const url of ['http://receiver.example.com:/in', 'http://recei%76er.example.com/in', 'https://[2001:db8::1]:8443/in',
    'http://[::ffff:203.0.113.9]/in', 'https://例え.jp/in', 'http://203.0.113.9:8080/in?a=b#c']) {
    t.notThrows(() => new URL(url), url);
    await t.notThrowsAsync(make().webhook({ companyId: known.company, actions: ['contact.created'], url }), url);
  }
});

test('refused: a host whose percent-escapes decode to a character the URL standard forbids in a host, or to no UTF-8 (webhook_url_invalid)', async (t) => {
  // each was stored, and every delivery of the webhook failed with "invalid URL": the
  // standard decodes a host's escapes before it reads the host
  const known = await ids();
  for (const host of ['a%20b', 'a%2fb', 'a%00b', 'a%25b', 'a%3Ab', 'a%40b', 'a%5bb', 'a%5Db', 'a%5cb', 'a%7cb', 'a%5eb',
    'a%3cb', 'a%3eb', 'a%23b', 'a%3fb', 'a%09b', 'a%01b', 'a%1fb', 'a%7fb', 'a%ff', 'a%c3', 'a%80b', 'a%ed%a0%80b', 'a%c2%a0b',
    'a%e2%80%aeb']) {
    const url = `http://${host}.example/in`;
    t.throws(() => new URL(url), undefined, url);
    const error = await refusal(t, make().webhook({ companyId: known.company, actions: ['contact.created'], url }));
    t.is(error.constraint, 'webhook_url_invalid', url);
    t.is(error.column, 'url', url);
    t.regex(error.message, /percent-escapes/, url);
  }
  // escapes of what a host may hold: accepted
  for (const host of ['recei%76er', 'a%2eb', 'a%c3%a9', 'a%2ab', 'a%7eb', 'a%22b', 'a%e3%80%82b', '%ef%bb%bfa']) {
    const url = `http://${host}.example/in`;
    t.notThrows(() => new URL(url), url);
    await t.notThrowsAsync(make().webhook({ companyId: known.company, actions: ['contact.created'], url }), url);
  }
});

test('refused: a host with a character the URL standard\'s IDNA processing refuses: Unicode white space, C1 controls, bidi controls, noncharacters, private use (webhook_url_invalid)', async (t) => {
  // each was stored, and every delivery of the webhook failed with "invalid URL"
  const known = await ids();
  for (const c of ['\u00a0', '\u3000', '\u2028', '\u0085', '\u0080', '\u009f', '\u200e', '\u202e', '\u2066', '\u061c',
    '\ufdd0', '\uffff', '\ue000', '\u{10fffd}']) {
    const url = `https://a${c}b.example/in`;
    t.throws(() => new URL(url), undefined, url);
    const error = await refusal(t, make().webhook({ companyId: known.company, actions: ['contact.created'], url }));
    t.is(error.constraint, 'webhook_url_invalid', url);
    t.is(error.column, 'url', url);
  }
  // what IDNA maps or ignores, and letters of any script: accepted
  for (const c of ['\u00ad', '\u200b', '\ufeff', '\u00e9', '\u4f8b', '\u{1f600}', '\uff21']) {
    const url = `https://a${c}b.example/in`;
    t.notThrows(() => new URL(url), url);
    await t.notThrowsAsync(make().webhook({ companyId: known.company, actions: ['contact.created'], url }), url);
  }
});

test('refused: a URL with a bidi control anywhere, which the URL standard reads but the Reports page would show reordered (webhook_url_invalid)', async (t) => {
  // each was stored: the path and query may hold any character but white space, and
  // "/\u202egnp.exe" showed as "/exe.png"
  const known = await ids();
  for (const url of ['https://receiver.example.com/in/\u202egnp.exe', 'https://receiver.example.com/in?to=\u2067moc.elpmaxe\u2069',
    'https://receiver.example.com/\u200fin', 'https://receiver.example.com/in#\u061c']) {
    t.notThrows(() => new URL(url), url);
    const error = await refusal(t, make().webhook({ companyId: known.company, actions: ['contact.created'], url }));
    t.like(error, { code: '23514', constraint: 'webhook_url_invalid', column: 'url' }, url);
    t.regex(error.message, /^webhook url must not contain bidi controls \(U\+061C, U\+200E, U\+200F, U\+202A to U\+202E, U\+2066 to U\+2069\); write them percent-encoded \(%E2%80%AE\)$/, url);
  }
  // percent-encoded, as the URL standard sends them anyway: accepted
  await t.notThrowsAsync(make().webhook({ companyId: known.company, actions: ['contact.created'], url: 'https://receiver.example.com/in/%E2%80%AEgnp.exe' }));
});

test('refused: brackets that hold no IPv6 address, which the URL standard (and so the relay) refuses (webhook_url_invalid)', async (t) => {
  // each was stored, and every delivery of the webhook failed with "invalid URL"
  const known = await ids();
  for (const host of ['[:::::]', '[1.2.3.4]', '[1::2::3]', '[12345::]', '[1:2:3:4:5:6:7:8:9]', '[::1.2.3]', '[::1.2]',
    '[::1.2.3.256]', '[::01.2.3.4]', '[1.2.3.4::]', '[:]', '[.]', '[::ffff:1.2.3.04]', '[1:2:3:4:5:6:7:1.2.3.4]']) {
    const url = `http://${host}/in`;
    t.throws(() => new URL(url), undefined, url);
    const error = await refusal(t, make().webhook({ companyId: known.company, actions: ['contact.created'], url }));
    t.is(error.constraint, 'webhook_url_invalid', url);
    t.is(error.column, 'url', url);
    t.regex(error.message, /no IPv6 address/, url);
  }
  // every form of an IPv6 address: accepted
  for (const host of ['[::1]', '[::]', '[2001:DB8::1]', '[1:2:3:4:5:6:7:8]', '[1:2:3:4:5:6:7::]', '[::1:2:3:4:5:6:7]',
    '[0001::]', '[::ffff:203.0.113.9]', '[1:2:3:4:5:6:1.2.3.4]', '[fe80::0.0.0.0]', '[2001:db8::1]:8443']) {
    const url = `http://${host}/in`;
    t.notThrows(() => new URL(url), url);
    await t.notThrowsAsync(make().webhook({ companyId: known.company, actions: ['contact.created'], url }), url);
  }
});

test('refused: a host that ends in a number but is no IPv4 address, which the URL standard (and so the relay) refuses (webhook_url_invalid)', async (t) => {
  // each was stored, and every delivery of the webhook failed with "invalid URL"
  const known = await ids();
  for (const host of ['999999999999', '1.2.3.4.5', '0x100000000', '1.256.0.0', 'receiver.example.123', 'a.0x1', '1.2.3.08',
    '08.1.1.1', '4294967296', '1.16777216', '%31.2.3.4.5', 'receiver.example.1.']) {
    const url = `http://${host}/in`;
    t.throws(() => new URL(url), undefined, url);
    const error = await refusal(t, make().webhook({ companyId: known.company, actions: ['contact.created'], url }));
    t.is(error.constraint, 'webhook_url_invalid', url);
    t.regex(error.message, /ends in a number but is no IPv4 address/, url);
  }
  // numbers the standard reads as addresses, and names that only look numeric: accepted
  for (const host of ['4294967295', '1.16777215', '0x7f.1', '0300.0250.0.1', '203.0.113.9.', 'receiver.example.1a',
    '0xg.example', '1.2.3.0x', '123.example.com', 'recei%76er.example.com']) {
    const url = `http://${host}/in`;
    t.notThrows(() => new URL(url), url);
    await t.notThrowsAsync(make().webhook({ companyId: known.company, actions: ['contact.created'], url }), url);
  }
});

// A DBA's session with standard_conforming_strings off (an old script's) reads a
// backslash in a plain literal as an escape, those of the URL's patterns too: there
// every URL was refused (\S read as S: a path of other letters; \s as s: a host with
// an s) or met "invalid regular expression" (\[ read as [), and a host escaping a
// backslash (%5C) passed its check.
test('a DBA\'s session with standard_conforming_strings off reads a URL as any session: the same stored, the same refused with the same message', async (t) => {
  const known = await ids();
  const outcomes = async (session: Awaited<ReturnType<typeof ownConnection>>) => {
    const said: string[] = [];
    for (const url of ['https://receiver.example.com/hook', 'https://hooks.slack.com/services/T0/B0?x=1#s',
      'https://[2001:db8::1]:8443/in', 'http://recei%76er.example.com/in', 'https://a%5cb.example/in', 'https://a%5bb.example/in',
      'https://a b.example/in', 'https://a\\b.example/in', 'https://a[b.example/in', 'https://receiver.example.com/a b',
      'http://[1.2.3.4]/in', 'http://1.2.3.4.5/in', 'https://a\u00a0b.example/in', 'https://receiver.example.com:99999/in']) {
      await session.query('begin');
      said.push(await factories(session).webhook({ companyId: known.company, actions: ['contact.created'], url })
        .then(() => `${url}: stored`, (e) => `${url}: ${e.code} ${e.constraint} ${e.message}`));
      await session.query('rollback');
    }
    return said;
  };
  const current = await outcomes(await ownConnection(db().url, t));
  t.deepEqual(current.filter((o) => o.endsWith(': stored')).map((o) => o.split(': ')[0]),
    ['https://receiver.example.com/hook', 'https://hooks.slack.com/services/T0/B0?x=1#s', 'https://[2001:db8::1]:8443/in',
     'http://recei%76er.example.com/in']);
  t.regex(current.find((o) => o.startsWith('https://a%5cb'))!, /23514 webhook_url_invalid webhook url host has percent-escapes of characters a host may not hold \(a control character, a space, # % \/ : < > \? @ \[ \\ \] \^ \|\)/);
  const legacy = await ownConnection(db().url, t);
  await legacy.query('set standard_conforming_strings = off; set escape_string_warning = off');
  t.deepEqual(await outcomes(legacy), current);
});

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

test('accepted: names and URLs at their bounds, trimmed of any white space', async (t) => {
  const known = await ids();
  const long = await make().webhook({ companyId: known.company, actions: ['contact.created'], name: '🪝'.repeat(200) });
  t.is([...long.name].length, 200);
  const padded = await make().webhook({ companyId: known.company, actions: ['contact.created'], name: '\u3000\t Hook\u00a0\n' });
  t.is(padded.name, 'Hook');
  const inner = await make().webhook({ companyId: known.company, actions: ['contact.created'], name: 'Zoë\u00a0&\u2003Co' });
  t.is(inner.name, 'Zoë\u00a0&\u2003Co', 'white space inside a name is kept');
  // right-to-left scripts, and invisible characters beside visible ones (a family
  // emoji's joiners, a Persian word's non-joiner, a soft hyphen): kept as written
  for (const name of ['שלום', 'مرحبا بالعالم', '👨\u200d👩\u200d👧', 'می\u200cخواهم', 'Hook\u00adshot', '\u200bHook']) {
    const hook = await make().webhook({ companyId: known.company, actions: ['contact.created'], name });
    t.is(hook.name, name);
  }
  for (const url of ['https://receiver.example.com:1/in', 'https://receiver.example.com:65535/in', 'http://[2001:db8::1]:8080/in', 'http://[2001:db8::1]/in', `https://receiver.example.com/${'a'.repeat(2000)}`]) {
    await t.notThrowsAsync(make().webhook({ companyId: known.company, actions: ['contact.created'], url }), url);
  }
});

test('a plain SQL disable or enable works: disabled_at and disabled_by are filled, then cleared', async (t) => {
  const known = await ids();
  const hook = await make().webhook({ companyId: known.company, actions: ['contact.created'] });
  const row = async () =>
    (await db().pool.query('select enabled, disabled_at is not null as has_when, disabled_by, disabled_reason from webhooks.webhooks where id = $1', [hook.id])).rows[0];

  await db().pool.query('update webhooks.webhooks set enabled = false where id = $1', [hook.id]);
  const { rows: [me] } = await db().pool.query('select current_user::text as name');
  t.deepEqual(await row(), { enabled: false, has_when: true, disabled_by: me.name, disabled_reason: null }, 'the database role that did it');

  await db().pool.query('update webhooks.webhooks set enabled = true where id = $1', [hook.id]);
  t.deepEqual(await row(), { enabled: true, has_when: false, disabled_by: null, disabled_reason: null });

  // with a reason, and as the token subject when one is set (as the API's functions do)
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    await client.query("select set_config('jwt.claims.sub', 'dba@example.com', true)");
    await client.query("update webhooks.webhooks set enabled = false, disabled_reason = 'maintenance' where id = $1", [hook.id]);
    await client.query('commit');
  } finally {
    client.release();
  }
  t.deepEqual(await row(), { enabled: false, has_when: true, disabled_by: 'dba@example.com', disabled_reason: 'maintenance' });

  // an explicit value is kept
  await db().pool.query('update webhooks.webhooks set enabled = true where id = $1', [hook.id]);
  await db().pool.query("update webhooks.webhooks set enabled = false, disabled_at = '2026-01-01T00:00:00Z', disabled_by = 'ops' where id = $1", [hook.id]);
  const { rows: [explicit] } = await db().pool.query('select disabled_at, disabled_by from webhooks.webhooks where id = $1', [hook.id]);
  t.deepEqual(explicit, { disabled_at: new Date('2026-01-01T00:00:00Z'), disabled_by: 'ops' });

  // a webhook inserted disabled gets the same
  const born = await db().pool.query(
    `insert into webhooks.webhooks (company_id, name, url, fields, actions, enabled)
     values ($1, 'Born off', 'https://receiver.example.com/in', '{email}', '{contact.created}', false)
     returning disabled_at is not null as has_when, disabled_by`,
    [known.company],
  );
  t.deepEqual(born.rows[0], { has_when: true, disabled_by: me.name });
});

test('an enabled webhook carries no stale reason', async (t) => {
  const known = await ids();
  const hook = await make().webhook({ companyId: known.company, actions: ['contact.created'] });
  const stale = await refusal(t, db().pool.query("update webhooks.webhooks set disabled_reason = 'x' where id = $1", [hook.id]));
  t.is(stale.constraint, 'webhooks_disabled_consistent');
});

test('a disable reason: trimmed, at most 500 characters, no control characters but tabs and line breaks, no bidi controls; one that shows nothing is none', async (t) => {
  const known = await ids();
  const hook = await make().webhook({ companyId: known.company, actions: ['contact.created'] });
  const disable = (reason: string) =>
    db().pool.query('update webhooks.webhooks set enabled = false, disabled_reason = $2 where id = $1 returning disabled_reason', [hook.id, reason]);
  const enable = () => db().pool.query('update webhooks.webhooks set enabled = true where id = $1', [hook.id]);

  for (const [reason, rule] of [
    ['x'.repeat(501), 'webhook_disabled_reason_too_long'],
    ['bell\u0007', 'webhook_disabled_reason_control_characters'],
    ['\u001b[2Jcleared', 'webhook_disabled_reason_control_characters'],
    ['paused by \u202eemda', 'webhook_disabled_reason_bidi_controls'],
    ['\u2067maintenance\u2069', 'webhook_disabled_reason_bidi_controls'],
  ] as const) {
    const error = await refusal(t, disable(reason));
    t.like(error, { code: '23514', constraint: rule, column: 'disabled_reason' }, rule);
  }
  t.is((await disable('\u3000 two\nlines\tand a tab \u00a0')).rows[0].disabled_reason, 'two\nlines\tand a tab');
  await enable();
  t.is((await disable('x'.repeat(500))).rows[0].disabled_reason.length, 500);
  await enable();
  t.is((await disable(' \u2003 ')).rows[0].disabled_reason, null, 'white space only is no reason');
  await enable();
  t.is((await disable('\u200b\ufeff \u00ad')).rows[0].disabled_reason, null, 'nothing that shows is no reason either');
  await enable();
  t.is((await disable('עדכון \u200d')).rows[0].disabled_reason, 'עדכון \u200d', 'a right-to-left script is kept as written');
});

test('an update that changes nothing writes nothing: no new row version, no audit row, no change of the hour spent, no notice to the relays; it answers the webhook as it is', async (t) => {
  // such an update wrote the row (updated_at moved on) but no audit row, so it was no
  // change of the hour (webhooks.max_changes_per_hour): a loop of them was unbounded
  const known = await ids();
  const hook = await make().webhook({
    companyId: known.company, name: 'Same', actions: ['contact.status_added'], statusId: known.status, fields: ['email', 'city'],
  });
  await db().pool.query(`update webhooks.webhooks set ignore_sources = '{import}', watch_fields = '{email}', max_in_flight = 4,
                           conditions = '{"field": "city", "op": "eq", "value": "Springfield"}', coalesce_window = '10 minutes'
                         where id = $1`, [hook.id]);
  const client = await db().pool.connect();
  const listener = await db().pool.connect();
  t.teardown(() => { client.release(true); listener.release(true); });
  const heard: string[] = [];
  listener.on('notification', (n) => heard.push(n.payload ?? ''));
  await listener.query(`listen ${CHANNEL}`);
  const asAdmin = async (sql: string, params: unknown[]) => {
    await client.query('begin');
    try {
      await client.query(`select set_config('jwt.claims.company_id', $1, true)`, [known.company]);
      await client.query('set local role webhook_admin');
      const result = await client.query(sql, params);
      await client.query('commit');
      return result;
    } catch (error) {
      await client.query('rollback');
      throw error;
    }
  };
  const state = async () => (await db().pool.query(
    `select w.xmin::text as version, w.updated_at, (select count(*)::int from webhooks.audit_log a where a.webhook_id = w.id) as audit_rows,
            (select row(c.tokens, c.at)::text from webhooks_private.company_changes c where c.company_id = w.company_id) as spent
     from webhooks.webhooks w where w.id = $1`, [hook.id])).rows[0];
  // a change through the API first, so that the company has spent one of its hour
  await asAdmin('select webhooks.update_webhook($1, name => $2)', [hook.id, 'Same ']);
  await asAdmin('select webhooks.set_webhook_delivery($1, $2, false)', [hook.id, '10 minutes']);
  const before = await state();
  const { rows: [row] } = await db().pool.query('select * from webhooks.webhooks where id = $1', [hook.id]);

  const { rows: [answer] } = await asAdmin(
    `select (w).* from webhooks.update_webhook($1, name => $2, url => $3, fields => $4, actions => $5, status_id => $6,
       ignore_sources => $7, watch_fields => $8, conditions => $9, max_in_flight => $10) w`,
    [hook.id, ' Same\u00a0', row.url, ['email', 'city', 'email'], row.actions, known.status, ['import', 'import'], ['email'],
      row.conditions, 4]);
  t.deepEqual(answer, row, 'the webhook as it is');
  const { rows: [unchanged] } = await asAdmin('select (w).* from webhooks.update_webhook($1) w', [hook.id]);
  t.deepEqual(unchanged, row, 'nothing given: the webhook as it is');
  const { rows: [delivery] } = await asAdmin('select (w).* from webhooks.set_webhook_delivery($1, $2, false) w', [hook.id, '600 seconds']);
  t.deepEqual(delivery, row, 'setWebhookDelivery with the same settings: the webhook as it is');
  await asAdmin('update webhooks.webhooks set url = url, name = name where id = $1', [hook.id]);
  t.deepEqual(await state(), before, 'no row written, no audit row, nothing spent of the hour');

  // a change is still one: written, audited, spent, and the relays told of a new URL
  await asAdmin('select webhooks.update_webhook($1, url => $2)', [hook.id, 'https://moved.example.com/in']);
  const after = await state();
  t.not(after.version, before.version);
  t.true(after.updated_at > before.updated_at);
  t.is(after.audit_rows, before.audit_rows + 1);
  t.not(after.spent, before.spent);
  // (other tests' webhooks are told of on the same channel: this one's notices, in
  // the order of their commits)
  const notice = `${WEBHOOK_CHANGED_NOTICE}${hook.id}`;
  await until('the notice of the change', async () => heard.includes(notice));
  t.deepEqual(heard.filter((payload) => payload === notice), [notice], 'the change alone was told');
});

test.serial('the name rules apply to a name as it is written: a webhook whose name was stored before them can still be changed otherwise, and renamed only to a name that passes', async (t) => {
  const known = await ids();
  const hook = await make().webhook({ companyId: known.company, actions: ['contact.created'] });
  // as if stored before bidi controls were refused
  await db().pool.query('alter table webhooks.webhooks disable trigger _100_validate');
  await db().pool.query(`update webhooks.webhooks set name = 'Old\u202ename' where id = $1`, [hook.id]);
  await db().pool.query('alter table webhooks.webhooks enable trigger _100_validate');
  // disabled (by an admin, or by the relay on a 410) and moved: no name given, none checked
  await db().pool.query(`update webhooks.webhooks set enabled = false, url = 'https://moved.example.com/in' where id = $1`, [hook.id]);
  const renamed = await refusal(t, db().pool.query(`update webhooks.webhooks set name = 'New\u2066name' where id = $1`, [hook.id]));
  t.like(renamed, { code: '23514', constraint: 'webhook_name_bidi_controls', column: 'name' });
  const { rows: [row] } = await db().pool.query('select name, enabled, url from webhooks.webhooks where id = $1', [hook.id]);
  t.deepEqual(row, { name: 'Old\u202ename', enabled: false, url: 'https://moved.example.com/in' });
  await db().pool.query(`update webhooks.webhooks set name = 'New name' where id = $1`, [hook.id]);
});

test.serial('the URL rules apply to a URL as it is written: a webhook whose URL was stored before a rule can still be disabled, by an admin or the relay, and changed otherwise', async (t) => {
  const known = await ids();
  const hook = await make().webhook({ companyId: known.company, actions: ['contact.created'] });
  // as if stored before brackets had to hold an IPv6 address
  await db().pool.query('alter table webhooks.webhooks disable trigger _100_validate');
  await db().pool.query(`update webhooks.webhooks set url = 'https://[1.2.3.4]/in' where id = $1`, [hook.id]);
  await db().pool.query('alter table webhooks.webhooks enable trigger _100_validate');
  // every delivery to it fails ("invalid URL"): the relay disables it, as an admin may
  await db().pool.query(`update webhooks.webhooks set enabled = false, disabled_by = 'relay', disabled_at = now(),
    disabled_reason = 'every attempt failed for 5 days' where id = $1`, [hook.id]);
  await db().pool.query(`update webhooks.webhooks set name = 'Renamed' where id = $1`, [hook.id]);
  const { rows: [row] } = await db().pool.query('select name, enabled, disabled_by, url from webhooks.webhooks where id = $1', [hook.id]);
  t.deepEqual(row, { name: 'Renamed', enabled: false, disabled_by: 'relay', url: 'https://[1.2.3.4]/in' });
  // a URL written now passes the rules
  const moved = await refusal(t, db().pool.query(`update webhooks.webhooks set url = 'https://[5.6.7.8]/in' where id = $1`, [hook.id]));
  t.like(moved, { code: '23514', constraint: 'webhook_url_invalid', column: 'url' });
  await db().pool.query(`update webhooks.webhooks set url = 'https://moved.example.com/in' where id = $1`, [hook.id]);
});

test.serial('the other rules apply to what is written too: a webhook whose field the CRM dropped, or whose user moved to another company, can still be disabled and changed otherwise', async (t) => {
  const known = await ids();
  const fields = await make().webhook({ companyId: known.company, actions: ['contact.created'] });
  const user = await make().webhook({ companyId: known.company, actions: ['contact.user_assigned'], userId: known.user });
  // a field of a column the CRM has since dropped
  await db().pool.query('alter table webhooks.webhooks disable trigger _100_validate');
  await db().pool.query(`update webhooks.webhooks set fields = '{email,fax}' where id = $1`, [fields.id]);
  await db().pool.query('alter table webhooks.webhooks enable trigger _100_validate');
  // the user moved to another company
  const { rows: [foreign] } = await db().pool.query('select company_id from crm.users where id = $1', [known.foreignUser]);
  await db().pool.query('update crm.users set company_id = $2 where id = $1', [known.user, foreign.company_id]);
  for (const hook of [fields, user]) {
    await db().pool.query(`update webhooks.webhooks set enabled = false, disabled_by = 'relay', disabled_at = now(),
      disabled_reason = 'every attempt failed for 5 days' where id = $1`, [hook.id]);
    await db().pool.query(`update webhooks.webhooks set name = 'Renamed', rate_limit = 5 where id = $1`, [hook.id]);
  }
  const { rows } = await db().pool.query(
    'select fields, user_id, enabled, name, rate_limit from webhooks.webhooks where id = any($1) order by id', [[fields.id, user.id]]);
  t.like(rows[0], { fields: ['email', 'fax'], enabled: false, name: 'Renamed', rate_limit: 5 });
  t.like(rows[1], { user_id: known.user, enabled: false, name: 'Renamed', rate_limit: 5 });
  // written again, they are checked
  t.like(await refusal(t, db().pool.query(`update webhooks.webhooks set fields = '{fax,email}' where id = $1`, [fields.id])),
    { constraint: 'webhook_field_unknown', column: 'fields' });
  t.like(await refusal(t, db().pool.query('update webhooks.webhooks set user_id = $2 where id = $1', [user.id, known.foreignUser])),
    { constraint: 'webhook_user_other_company', column: 'user_id' });
});

test("every rule that refuses a webhook's configuration is named in docs/sql.md's Refusals: the validation's and the table's CHECK constraints", async (t) => {
  const root = new URL('../../', import.meta.url);
  const docs = readFileSync(new URL('docs/sql.md', root), 'utf8');
  const start = docs.indexOf('## Refusals');
  const refusals = docs.slice(start, docs.indexOf('\n## ', start + 1));
  const named = new Set([...refusals.matchAll(/^\|([^|]*)\|/gm)].flatMap(([, cell]) => [...cell!.matchAll(/`(\w+)`/g)].map(([, name]) => name!)));
  // what the validation triggers raise (webhooks_private.config_error)
  const raised = new Set(['10_config.sql', '15_filters.sql'].flatMap((file) =>
    [...readFileSync(new URL(`sql/${file}`, root), 'utf8').matchAll(/config_error\('(\w+)'/g)].map(([, name]) => name!)));
  // the table's own checks, less those the validation raises first under its own name
  // (webhooks_max_in_flight_range is met as webhook_max_in_flight_range)
  const { rows } = await db().pool.query<{ conname: string }>(
    `select conname from pg_constraint where conrelid = 'webhooks.webhooks'::regclass and contype = 'c' order by conname`);
  const checks = rows.map((r) => r.conname).filter((name) => !raised.has(name.replace(/^webhooks_/, 'webhook_')));
  t.true(raised.size >= 20, `${raised.size} rules found in sql/`);
  t.deepEqual([...raised, ...checks].filter((name) => !named.has(name)).sort(), []);
});

// set_webhook_delivery's ordered, null or left out, leaves ordering as it is, as
// update_webhook's null arguments do: an admin who changed the window alone turned
// ordering off, and a receiver relying on it got a contact's deliveries out of order.
test('set_webhook_delivery: a null ordered leaves ordering as it is; false turns it off', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'] });
  const settings = async () => (await db().pool.query(
    'select coalesce_window::text, ordered from webhooks.webhooks where id = $1', [hook.id])).rows[0];

  await db().pool.query(`select webhooks.set_webhook_delivery($1, '10 seconds', true)`, [hook.id]);
  await db().pool.query(`select webhooks.set_webhook_delivery($1, '20 seconds', null)`, [hook.id]);
  t.deepEqual(await settings(), { coalesce_window: '00:00:20', ordered: true }, 'the window changed, ordering kept');
  const { rows: [answer] } = await db().pool.query(`select (w).ordered from webhooks.set_webhook_delivery(id => $1, coalesce_window => null) w`, [hook.id]);
  t.deepEqual(answer, { ordered: true }, 'ordered left out: kept');
  t.deepEqual(await settings(), { coalesce_window: null, ordered: true }, 'the window off, ordering kept');
  await db().pool.query('select webhooks.set_webhook_delivery($1, null, false)', [hook.id]);
  t.deepEqual(await settings(), { coalesce_window: null, ordered: false }, 'false: off');
  await db().pool.query('select webhooks.set_webhook_delivery($1, null, null)', [hook.id]);
  t.deepEqual(await settings(), { coalesce_window: null, ordered: false }, 'null on an unordered webhook: still unordered');
});

// (two admins editing one webhook: the second Save overwrote the first's change without a word)
test('update_webhook with the version the editor read: written and the version moves on; refused by name once another change came between; without one, the last write wins', async (t) => {
  const known = await ids();
  const hook = await make().webhook({ companyId: known.company, name: 'Versioned', actions: ['contact.created'] });
  const version = async () => (await db().pool.query<{ version: number }>('select version from webhooks.webhooks where id = $1', [hook.id])).rows[0]!.version;
  const read = await version();
  t.is(read, 1, 'a new webhook is at version 1');
  const { rows: [first] } = await db().pool.query(
    'select (w).name, (w).version from webhooks.update_webhook($1, name => $2, expected_version => $3) w', [hook.id, 'First admin', read]);
  t.deepEqual(first, { name: 'First admin', version: read + 1 });
  // the second admin read the webhook before the first saved
  const refused = await t.throwsAsync(db().pool.query(
    'select webhooks.update_webhook($1, url => $2, expected_version => $3)', [hook.id, 'https://second.example.com/in', read]));
  t.like(refused, { code: '55000', constraint: 'webhook_changed_since', column: 'version',
    message: `webhook ${hook.id} was changed since it was read (version ${read + 1}, read at ${read}): nothing was saved; read it again and make the change over it` });
  t.deepEqual((await db().pool.query('select name, url, version from webhooks.webhooks where id = $1', [hook.id])).rows[0],
    { name: 'First admin', url: hook.url, version: read + 1 }, 'nothing of the refused change');
  // an unchanged save at the version read changes nothing, and the version stays
  await db().pool.query('select webhooks.update_webhook($1, name => $2, expected_version => $3)', [hook.id, 'First admin', read + 1]);
  t.is(await version(), read + 1);
  // a caller that sends no version: the last write wins, as before
  await db().pool.query('select webhooks.update_webhook($1, url => $2)', [hook.id, 'https://second.example.com/in']);
  t.is(await version(), read + 2);
});

// The version is what an editor's Save is refused over: it moved on with every write,
// so an admin whose form was open across a Disable, an Enable, the relay's disable of a
// failing endpoint or a rotation of the secret, none of which the form shows or its Save
// writes, was refused (webhook_changed_since) and had to make the change again. It moves
// on with what the form shows: its settings, and a filter whose user or status the CRM
// deleted (the form asks for another).
test('the version moves on with what an editor shows and Save writes, not with a disable, an enable, the relay\'s disable or a secret rotation, and a Save over those is saved', async (t) => {
  const known = await ids();
  const hook = await make().webhook({ companyId: known.company, name: 'Versioned', actions: ['contact.user_assigned'] });
  const version = async () => (await db().pool.query<{ version: number }>('select version from webhooks.webhooks where id = $1', [hook.id])).rows[0]!.version;
  const read = await version();
  await db().pool.query("select webhooks.disable_webhook($1, 'receiver moved')", [hook.id]);
  await db().pool.query('select webhooks.enable_webhook($1)', [hook.id]);
  await db().pool.query('select webhooks.rotate_webhook_secret($1)', [hook.id]);
  // (the relay's write, for a 410 Gone or an endpoint failing for days: 30_delivery.sql, 28_lanes.sql)
  await db().pool.query(`update webhooks.webhooks set enabled = false, disabled_at = now(), disabled_by = 'relay',
                                disabled_reason = 'the endpoint answered 410 Gone' where id = $1`, [hook.id]);
  t.is(await version(), read, 'none of them changes what the editor shows');
  const { rows: [saved] } = await db().pool.query(
    'select (w).name, (w).enabled, (w).disabled_by, (w).version from webhooks.update_webhook($1, name => $2, expected_version => $3) w',
    [hook.id, 'Saved after', read]);
  t.deepEqual(saved, { name: 'Saved after', enabled: false, disabled_by: 'relay', version: read + 1 }, 'saved, and the status kept');
  // each thing the form shows moves it on, and a Save at the version before is refused
  const changes: Array<[string, string, unknown]> = [
    ['name', '$2', 'Renamed'], ['url', '$2', 'https://moved.example.com/in'], ['fields', '$2', ['email', 'city']],
    ['user_id', '$2', known.user], ['deleted_filter_target', '$2', `user ${known.user} (Gone Away)`], ['user_id', '$2', null],
    ['actions', '$2::webhooks.action[]', ['contact.created', 'contact.updated']],
    ['ignore_sources', '$2', ['api']], ['watch_fields', '$2', ['city']], ['conditions', '$2::jsonb', JSON.stringify({ field: 'state', op: 'eq', value: 'VA' })],
    ['max_in_flight', '$2', 3], ['rate_limit', '$2', 5], ['coalesce_window', '$2::interval', '10 seconds'], ['ordered', '$2', true],
  ];
  for (const [column, as, value] of changes) {
    const before = await version();
    await db().pool.query(`update webhooks.webhooks set ${column} = ${as} where id = $1`, [hook.id, value]);
    t.is(await version(), before + 1, column);
    const refused = await t.throwsAsync(db().pool.query('select webhooks.update_webhook($1, name => $2, expected_version => $3)', [hook.id, `Over ${column}`, before]));
    t.like(refused, { code: '55000', constraint: 'webhook_changed_since' }, column);
  }
});

// set_webhook_delivery's window left out leaves coalescing as it is, as ordered left
// out leaves ordering: a call that changed the order alone turned coalescing off. A
// null given turns it off, as documented; so does a window of 0, which is no window.
test('set_webhook_delivery: the window left out leaves coalescing as it is; null or 0 turns it off; a negative one is refused', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'] });
  const settings = async () => (await db().pool.query(
    'select coalesce_window::text, ordered from webhooks.webhooks where id = $1', [hook.id])).rows[0];

  await db().pool.query(`select webhooks.set_webhook_delivery($1, '10 seconds', false)`, [hook.id]);
  const { rows: [answer] } = await db().pool.query(
    'select (w).coalesce_window::text, (w).ordered from webhooks.set_webhook_delivery(id => $1, ordered => true) w', [hook.id]);
  t.deepEqual(answer, { coalesce_window: '00:00:10', ordered: true }, 'the window left out: kept');
  t.deepEqual(await settings(), { coalesce_window: '00:00:10', ordered: true });
  await db().pool.query('select webhooks.set_webhook_delivery($1)', [hook.id]);
  t.deepEqual(await settings(), { coalesce_window: '00:00:10', ordered: true }, 'both left out: nothing changed');

  await db().pool.query(`select webhooks.set_webhook_delivery($1, '0')`, [hook.id]);
  t.deepEqual(await settings(), { coalesce_window: null, ordered: true }, '0: off, ordering kept');
  await db().pool.query(`select webhooks.set_webhook_delivery($1, '20 seconds')`, [hook.id]);
  await db().pool.query(`select webhooks.set_webhook_delivery($1, '1 day -24 hours')`, [hook.id]);
  t.deepEqual(await settings(), { coalesce_window: null, ordered: true }, 'a window that comes to 0: off');
  await db().pool.query(`select webhooks.set_webhook_delivery($1, '20 seconds')`, [hook.id]);
  await db().pool.query('select webhooks.set_webhook_delivery($1, null)', [hook.id]);
  t.deepEqual(await settings(), { coalesce_window: null, ordered: true }, 'null given: off, as it always was');

  const negative = await refusal(t, db().pool.query(`select webhooks.set_webhook_delivery($1, '-5 seconds')`, [hook.id]));
  t.like(negative, { code: '23514', constraint: 'webhooks_coalesce_window_range', column: 'coalesce_window' });
});

// A URL with a user and password before its host is refused (the relay would drop them,
// and a receiver that needs them would refuse every delivery). Its refusal quoted the
// URL whole: the credentials went back in the error, and into the database server's
// log, which records every error's message.
// A refusal's message is the caller's answer and a line of the database server's log
// (and the API's): it quoted the URL's first 100 characters, a token in its path or
// query with them. Each refusal now says what is wrong, quoting at most the host.
test('every refusal of a URL names what is wrong without quoting its path or query (webhook_url_invalid, webhook_url_port_invalid)', async (t) => {
  const known = await ids();
  const secret = 'T0KEN_s3cret';
  const cases: Array<[string, string, RegExp]> = [
    [`https://receiver.example.com/${secret}/\u202egnp.exe`, 'webhook_url_invalid', /^webhook url must not contain bidi controls/],
    [`https://hook:pw@receiver.example.com/${secret}?key=${secret}`, 'webhook_url_invalid', /^webhook url must not hold a user or password before its host .*, host 'receiver\.example\.com'$/],
    [`ftp://files.example.com/${secret}`, 'webhook_url_invalid', /^webhook url must start with http:\/\/ or https:\/\/, got 'ftp:\/\/'$/],
    [`javascript:alert('${secret}')`, 'webhook_url_invalid', /^webhook url must start with http:\/\/ or https:\/\/$/],
    [`${secret}.example.com/in`, 'webhook_url_invalid', /^webhook url must start with http:\/\/ or https:\/\/$/],
    [`https://receiver.example.com/${secret}/${'a'.repeat(2048)}`, 'webhook_url_invalid', /^webhook url must be at most 2048 characters, got 2090$/],
    [`https://receiver.example.com/${secret}/a b`, 'webhook_url_invalid', /^webhook url must not contain white space \(write it percent-encoded: %20\)$/],
    [`https:///${secret}`, 'webhook_url_invalid', /^webhook url must have a host after https:\/\/$/],
    [`https://recei<ver.example.com/${secret}`, 'webhook_url_invalid', /^webhook url host must be a name or an IPv6 address in brackets, without .*, got 'recei<ver\.example\.com'$/],
    [`http://receiver.example.com:https/${secret}`, 'webhook_url_invalid', /^webhook url port must be digits$/],
    [`http://[2001:db8::1]]/${secret}`, 'webhook_url_invalid', /^webhook url must be an absolute http:\/\/ or https:\/\/ URL whose authority is a host and an optional port$/],
    [`http://[1.2.3.4]/${secret}`, 'webhook_url_invalid', /^webhook url host is in brackets but is no IPv6 address, got '\[1\.2\.3\.4\]'$/],
    [`https://a%5cb.example/${secret}`, 'webhook_url_invalid', /^webhook url host has percent-escapes .*, got 'a%5cb\.example'$/],
    [`http://1.2.3.4.5/${secret}`, 'webhook_url_invalid', /^webhook url host ends in a number but is no IPv4 address .*, got '1\.2\.3\.4\.5'$/],
    [`https://receiver.example.com:99999/${secret}`, 'webhook_url_port_invalid', /^webhook url port must be from 1 to 65535, got 99999$/],
  ];
  for (const [url, rule, message] of cases) {
    const error = await refusal(t, make().webhook({ companyId: known.company, actions: ['contact.created'], url }));
    t.like(error, { code: '23514', constraint: rule, column: 'url' }, url);
    t.regex(error.message, message, url);
    t.false(error.message.includes(secret), error.message);
  }
  // a host is quoted by its first 100 characters at most
  const long = await refusal(t, make().webhook({ companyId: known.company, actions: ['contact.created'], url: `https://${'h'.repeat(150)}<x/${secret}` }));
  t.true(long.message.endsWith(`got '${'h'.repeat(100)}…'`), long.message);
});

test('refused: a URL with a user or password before its host, whose refusal quotes neither (webhook_url_invalid)', async (t) => {
  const known = await ids();
  for (const [url, secrets] of [
    ['https://hook-user:s3cret-pass@receiver.example.com/in', ['hook-user', 's3cret-pass']],
    ['https://ghp_t0kenT0ken@receiver.example.com/in?x=1', ['ghp_t0kenT0ken']],
    ['http://a%40b:p%3Ass@receiver.example.com:8080/', ['a%40b', 'p%3Ass']],
  ] as const) {
    const error = await refusal(t, make().webhook({ companyId: known.company, actions: ['contact.created'], url }));
    t.is(error.code, '23514', url);
    t.is(error.constraint, 'webhook_url_invalid', url);
    t.is(error.column, 'url', url);
    for (const secret of secrets) t.false(error.message.includes(secret), error.message);
    t.regex(error.message, /user or password/, error.message);
    t.true(error.message.includes('receiver.example.com'), error.message);
  }
});
