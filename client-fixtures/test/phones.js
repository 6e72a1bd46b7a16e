// Phones for the browser tests: Debian's Chromium (playwright-core), one persistent profile per phone, so IndexedDB,
// the service worker and pending Background Syncs survive a restart of that phone. If Chromium cannot start, the
// tests fail; they never skip.
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startProxy } from '../dev/serve.js';
import { FIXTURES, startServer } from './harness.js';

export const CHROMIUM = process.env.DUKASYNC_CHROMIUM ?? '/usr/bin/chromium';
export const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'];
/** Screenshots the tests save, kept after the run. */
export const ARTIFACTS = path.join(FIXTURES, 'artifacts');

/**
 * A set of phones with profiles under a scratch directory named after `name`; `closeAll()` closes every phone still
 * open and removes the profiles.
 */
export async function phones(name) {
  const tmp = await mkdtemp(path.join(tmpdir(), `dukasync-${name}-`));
  await mkdir(ARTIFACTS, { recursive: true });
  const open = new Set();
  return {
    /**
     * Starts (or restarts) the phone `profile`: `errors` collects its page errors and console errors (failed loads
     * while offline excepted), `page` is its first tab.
     */
    async launch(profile, { offline = false } = {}) {
      const context = await chromium.launchPersistentContext(path.join(tmp, profile), {
        executablePath: CHROMIUM,
        headless: true,
        args: ARGS,
        viewport: { width: 360, height: 760 },
        deviceScaleFactor: 1,
        offline,
      });
      open.add(context);
      const errors = [];
      const watch = (page) => {
        page.on('pageerror', (e) => errors.push(e.message));
        page.on('console', (m) => m.type() === 'error' && !/Failed to load resource|ERR_INTERNET_DISCONNECTED/.test(m.text()) && errors.push(m.text()));
      };
      context.on('page', watch);
      context.pages().forEach(watch);
      return {
        context,
        errors,
        page: context.pages()[0] ?? (await context.newPage()),
        async close() {
          await context.close();
          open.delete(context);
        },
      };
    },
    async closeAll() {
      for (const c of open) await c.close().catch(() => {});
      await rm(tmp, { recursive: true, force: true });
    },
  };
}

/**
 * What every browser test starts: a real server, the same-origin demo proxy in front of it (`proxyOptions`, e.g.
 * `dir` to serve a built app instead of the demo), and phones. `stop()` ends them in reverse order.
 */
export async function phonesBehindProxy(name, proxyOptions = {}) {
  const server = await startServer();
  const proxy = await startProxy({ upstream: server.url, ...proxyOptions });
  const set = await phones(name);
  return {
    server,
    /** The proxy to close at the end: a test that restarts the proxy sets the new one here. */
    proxy,
    launch: set.launch,
    async stop() {
      await set.closeAll();
      await this.proxy.close();
      await server.stop();
    },
  };
}
