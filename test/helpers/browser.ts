// A real, headless Chromium for the page tests: Debian's `chromium` package driven by
// playwright-core. No browser is ever downloaded; the one on the machine is used.
// Without it the page tests are skipped on a workstation, but fail under CI (`CI`
// set), where `.ci/run` installs it.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export type BrowserAvailability = { ok: true } | { ok: false; reason: string };

/** Whether the page tests can run here. Under CI a missing browser is an error. */
export function browserAvailability(): BrowserAvailability {
  if (existsSync(CHROMIUM_PATH)) return { ok: true };
  const reason = `no Chromium at ${CHROMIUM_PATH} (install Debian's chromium package, or set CHROMIUM_PATH)`;
  if (process.env.CI) throw new Error(`CI is set and ${reason}`);
  return { ok: false, reason };
}

export interface RunningBrowser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** Launches Chromium with a fresh profile folder of its own, thrown away on close. */
export async function launchBrowser(): Promise<RunningBrowser> {
  const userDataDir = await mkdtemp(join(tmpdir(), 'bpd-chromium-'));
  // launchPersistentContext passes the folder as --user-data-dir: a fresh profile each run
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ARGS,
    viewport: { width: 1366, height: 820 },
    locale: 'en-US',
    timezoneId: 'UTC',
  });
  return {
    context,
    async close() {
      await context.close();
      await rm(userDataDir, { recursive: true, force: true });
    },
  };
}
