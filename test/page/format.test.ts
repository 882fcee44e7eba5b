// The page's own checks of a setup, without a browser (page/format.js).
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';

// (the page's modules are plain JavaScript for the browser, without types)
const formatModule: string = '../../page/format.js';
const { urlProblem } = (await import(formatModule)) as { urlProblem: (url: string, urlMax: number) => string | null };

const db = useTestDatabase(test);

test('every action a firing may have is said in words in the history, a backfill\'s snapshot too; the setup form offers the contact actions alone', async (t) => {
  const { actionWords, CONTACT_ACTIONS } = (await import(formatModule)) as
    { actionWords: (action: string) => string; CONTACT_ACTIONS: string[] };
  const { rows } = await db().pool.query('select unnest(enum_range(null::webhooks.action))::text as action');
  const words: Record<string, string> = Object.fromEntries(rows.map((r) => [r.action, actionWords(r.action)]));
  t.like(words, { 'contact.created': 'Contact created', 'webhook.test': 'Test', 'contact.snapshot': 'Backfill snapshot' });
  for (const [action, said] of Object.entries(words)) t.false(said.includes('.'), `${action}: ${said}`);
  t.deepEqual(CONTACT_ACTIONS, rows.map((r) => r.action).filter((a) => a !== 'webhook.test' && a !== 'contact.snapshot'));
});

test('a URL the standard cannot read is refused before it is sent: a host ending in a number that is no IPv4 address', (t) => {
  for (const url of ['http://999999999999/in', 'http://1.2.3.4.5/in', 'https://receiver.example.123/in']) {
    t.regex(urlProblem(url, 2048) ?? '', /^This URL cannot be read: a host that ends in a number must be an IPv4 address/, url);
  }
  for (const url of ['http://203.0.113.9/in', 'https://receiver.example.com/hooks/bpd', 'http://4294967295/in']) {
    t.is(urlProblem(url, 2048), null, url);
  }
  t.regex(urlProblem('ftp://files.example.com/in', 2048) ?? '', /^Enter an absolute http:\/\/ or https:\/\/ URL/);
});

test('a pending firing says when it is tried next; a backfill\'s snapshot held while its webhook is disabled (no time) says it waits for the enable', async (t) => {
  const { nextTry } = (await import(formatModule)) as { nextTry: (at: string | null) => string };
  t.regex(nextTry('2026-12-05T23:50:00.000000+00:00'), /^next try \w{3} \d+, 2026, /);
  t.is(nextTry(null), 'waiting for the webhook to be enabled');
});

test('a custom range is the days as typed, years 1 to 99 too (not 1901 to 1999); a year the API cannot take is said so before it is sent', async (t) => {
  const { rangeInstants, rangeWords } = (await import(formatModule)) as {
    rangeInstants: (from: string, to: string) => { from?: string; to?: string; error?: string };
    rangeWords: (from: string, to: string) => string;
  };
  // (the test runs in the time zone of the machine: the instants are local midnights)
  const range = rangeInstants('0025-03-01', '0025-03-02');
  t.is(new Date(range.from!).getFullYear(), 25);
  t.is(new Date(range.to!).getDate(), 3);
  t.is(rangeWords('0025-03-01', '2026-12-01'), 'Mar 1, 25 – Dec 1, 2026');
  t.deepEqual(rangeInstants('2026-12-01', '10000-01-01'), { error: 'Choose days from the year 1 to 9999.' });
  t.deepEqual(rangeInstants('0000-12-31', '2026-12-01'), { error: 'Choose days from the year 1 to 9999.' });
  t.truthy(rangeInstants('0001-01-02', '9999-12-30').from);
});

test('a condition\'s value with characters that show nothing (zero-width space, joiners, word joiner, BOM, soft hyphen) shows each of them marked, in the triggers, the history of changes and the form', async (t) => {
  const { triggerLines, auditWords, conditionsText, parseConditions } = (await import(formatModule)) as {
    triggerLines: (webhook: object) => string[];
    auditWords: (entry: object) => { what: string; detail: string };
    conditionsText: (conditions: unknown) => string;
    parseConditions: (text: string) => { conditions?: unknown };
  };
  const invisible = ['\u200B', '\u200C', '\u200D', '\u2060', '\uFEFF', '\u00AD'];
  for (const character of invisible) {
    const code = `U+${character.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
    const conditions = { all: [{ field: 'city', op: 'eq', value: `Par${character}is` }, { field: 'state', op: 'in', value: ['VA', `M${character}D`] }] };
    // "Paris" that never matches a contact of Paris is not shown as "Paris"
    t.deepEqual(triggerLines({ actions: ['contact.created'], conditions }),
      ['Contact created', `city is Par[${code}]is`, `state is VA or M[${code}]D`], code);
    const { detail } = auditWords({ action: 'webhook.updated', details: { changed: { conditions: { from: null, to: conditions.all[0] } } } });
    t.false(detail.includes(character), code);
    t.true(detail.includes(`Par\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}is`), `${code}: ${detail}`);
    // the form writes it as a JSON escape, which reads back as the same value
    const text = conditionsText(conditions);
    t.false(text.includes(character), code);
    t.deepEqual(parseConditions(text).conditions, conditions, code);
  }
  // a character beyond the first plane (a tag) is escaped as JSON writes it, two halves
  const tagged = { field: 'city', op: 'eq', value: 'Paris\u{E0041}' };
  t.deepEqual(parseConditions(conditionsText(tagged)).conditions, tagged);
  t.true(conditionsText(tagged).includes('\\udb40\\udc41'));
  t.deepEqual(triggerLines({ actions: ['contact.created'], conditions: tagged }), ['Contact created', 'city is Paris[U+E0041]']);
  // and text that shows all it holds is as it was, letters with their marks, emoji
  t.deepEqual(triggerLines({ actions: ['contact.created'], conditions: { field: 'city', op: 'eq', value: 'Zürich 🏠' } }),
    ['Contact created', 'city is Zürich 🏠']);
  t.is(conditionsText(null), '');
});

test('Backfill says how many contacts it sends, and where: those that pass the conditions of a webhook with some; past the count\'s cap, more than it', async (t) => {
  type Words = (webhook: { url: string; conditions: unknown }, contacts: { count: number; more: boolean }) => string;
  const { backfillWords } = (await import(formatModule)) as { backfillWords: Words };
  const url = 'https://receiver.example.com/in';
  t.is(backfillWords({ url, conditions: null }, { count: 1, more: false }),
    `Sends 1 contact of your company to ${url}, once each, as contact.snapshot deliveries beside its live ones.`);
  t.is(backfillWords({ url, conditions: { field: 'state', op: 'eq', value: 'VA' } }, { count: 1234, more: false }),
    `Sends those of the 1,234 contacts of your company that pass its conditions to ${url}, once each, as contact.snapshot deliveries beside its live ones.`);
  t.is(backfillWords({ url, conditions: null }, { count: 10_000, more: true }),
    `Sends more than 10,000 contacts of your company to ${url}, once each, as contact.snapshot deliveries beside its live ones.`);
});

test('a URL is as long as the database counts it, in characters: one of 1,100 emoji is no URL too long', (t) => {
  const emoji = '\u{1F600}';
  t.is(urlProblem(`https://receiver.example.com/${emoji.repeat(1100)}`, 2048), null);
  t.regex(urlProblem(`https://receiver.example.com/${emoji.repeat(2048)}`, 2048) ?? '', /^The URL is too long: at most 2,048 characters\.$/);
});

test('a URL is held to the bound the API gives (inputBounds.url, the database\'s webhook_url_max()), not to a number of the page\'s own', (t) => {
  const url = 'https://receiver.example.com/hooks';
  t.is(urlProblem(url, url.length), null);
  t.is(urlProblem(`${url}/1`, url.length), `The URL is too long: at most ${url.length} characters.`);
  t.is(urlProblem(`${url}/${'x'.repeat(3000)}`, 4096), null);
});

test('a condition\'s number the page\'s JSON reader would not hold as written (1e-400 read as 0, 1e400 as infinity, a 17th digit) is said so in the form, not sent as another number', async (t) => {
  const { parseConditions } = (await import(formatModule)) as { parseConditions: (text: string) => { conditions?: unknown; problem?: string } };
  for (const [value, readAs] of [['1e-400', '0'], ['1e400', 'infinity'], ['-1e400', '-infinity'], ['9007199254740993', '9007199254740992'], ['1.23456789e-320', '1.2347e-320']]) {
    t.deepEqual(parseConditions(`{"field": "custom.amount", "op": "in", "value": [1, ${value}], "x": "1e-400"}`),
      { problem: `The number ${value} cannot be kept as written: JSON readers (this page's too) read it as ${readAs}.` }, value);
  }
  // read back as written, and a number in a string is text
  t.deepEqual(parseConditions('{"field": "custom.amount", "op": "in", "value": [5e-324, 0.1, 1.10, -0, 9007199254740992, "1e-400"]}'),
    { conditions: { field: 'custom.amount', op: 'in', value: [5e-324, 0.1, 1.1, -0, 9007199254740992, '1e-400'] } });
});
