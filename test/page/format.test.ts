// The page's own checks of a setup, without a browser (page/format.js).
import test from 'ava';

// (the page's modules are plain JavaScript for the browser, without types)
const formatModule: string = '../../page/format.js';
const { urlProblem } = (await import(formatModule)) as { urlProblem: (url: string) => string | null };

test('a URL the standard cannot read is refused before it is sent: a host ending in a number that is no IPv4 address', (t) => {
  for (const url of ['http://999999999999/in', 'http://1.2.3.4.5/in', 'https://receiver.example.123/in']) {
    t.regex(urlProblem(url) ?? '', /^This URL cannot be read: a host that ends in a number must be an IPv4 address/, url);
  }
  for (const url of ['http://203.0.113.9/in', 'https://receiver.example.com/hooks/bpd', 'http://4294967295/in']) {
    t.is(urlProblem(url), null, url);
  }
  t.regex(urlProblem('ftp://files.example.com/in') ?? '', /^Enter an absolute http:\/\/ or https:\/\/ URL/);
});

test('a pending firing says when it is tried next; a backfill\'s snapshot held while its webhook is disabled (no time) says it waits for the enable', async (t) => {
  const { nextTry } = (await import(formatModule)) as { nextTry: (at: string | null) => string };
  t.regex(nextTry('2026-12-05T23:50:00.000000+00:00'), /^next try \w{3} \d+, 2026, /);
  t.is(nextTry(null), 'waiting for the webhook to be enabled');
});
