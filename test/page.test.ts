// Reports » Webhooks, end to end: the real API server on a free port, a database of
// this file's own, and headless Chromium clicking through the page like an admin.
import test from 'ava';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import type pg from 'pg';
import { freePort } from '../relay/db/embedded.ts';
import { browserAvailability, launchBrowser, type RunningBrowser } from './helpers/browser.ts';
import { useTestDatabase } from './helpers/db.ts';
import { factories, type Contact, type Webhook } from './helpers/factories.ts';

const RESULTS = fileURLToPath(new URL('../test-results/', import.meta.url));

const db = useTestDatabase(test);
const availability = browserAvailability();
const browserTest = availability.ok ? test : test.skip;
if (!availability.ok) console.warn(`page tests skipped: ${availability.reason}`);

let browser: RunningBrowser | undefined;
let baseUrl = '';
let stopServer = async () => {};

test.before(async () => {
  if (!availability.ok) return;
  await mkdir(RESULTS, { recursive: true });
  const port = await freePort();
  // TODO: start the API server
  baseUrl = `http://127.0.0.1:${port}`;
  browser = await launchBrowser();
});

test.after.always(async () => {
  await browser?.close();
  await stopServer();
});

