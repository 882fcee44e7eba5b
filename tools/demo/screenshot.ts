// `npm run demo:screenshot`: the Reports page as the demo fills it, photographed by
// headless Chromium into docs/reports-page.png (the picture the docs show). Run it
// while `npm run demo` runs. DEMO_COMPANY_ID (default 1) is the demo's company.
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { signToken } from '../../api/auth.ts';
import { jwtSecret } from '../../api/jwt-secret.ts';
import { apiUrl as reachedAt } from '../../api/address.ts';

const apiUrl = reachedAt();
const out = fileURLToPath(new URL('../../docs/reports-page.png', import.meta.url));
const token = await signToken(await jwtSecret({ allowDevSecret: true }), {
  companyId: process.env.DEMO_COMPANY_ID ?? '1',
  role: 'webhook_admin',
  sub: 'admin@demo-realty.example',
  expiresIn: '10m',
});
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1366, height: 720 }, locale: 'en-US', timezoneId: 'UTC' });
  await page.goto(`${apiUrl}/reports/webhooks`);
  await page.fill('#token', token);
  await page.click('#sign-in-form button[type=submit]');
  await page.waitForSelector('#report:not([hidden]) #webhooks-body tr[data-webhook-id]', { timeout: 30_000 });
  const height = await page.evaluate(() => Math.ceil(document.querySelector('main')!.getBoundingClientRect().bottom));
  await page.screenshot({ path: out, clip: { x: 0, y: 0, width: 1366, height } });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
}
