// The POS demo as an installable app, in headless Chromium against a real server behind the demo proxy: Chromium
// finds no installability error (manifest with name, start_url, display standalone, 192 and 512 px icons and a
// maskable one, a service worker), and the installed start URL renders the app offline, in the same page and
// after the browser restarted with no network at all.
// If Chromium cannot start, this fails; it never skips.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startProxy } from '../dev/serve.js';
import { OWNER } from './harness.js';
import { ARTIFACTS, phonesBehindProxy } from './phones.js';


let stack;
let server;
let proxy;
/** Starts (or restarts) a phone: see phones.js. */
const launch = (profile, options) => stack.launch(profile, options);

before(async () => {
  stack = await phonesBehindProxy('pwa');
  ({ server, proxy } = stack);
});

after(() => stack?.stop());

test('the demo is installable, and its start URL opens offline after install', async () => {
  let b = await launch('installed');
  await b.page.goto(`${proxy.url}/app/#token=${server.token(OWNER, 'owner-pwa')}&scope=retail`);
  await b.page.waitForSelector('body[data-offline-ready="true"]');
  await b.page.waitForSelector('button[data-product="r-sugar-1kg"]');

  const cdp = await b.context.newCDPSession(b.page);
  const manifest = await cdp.send('Page.getAppManifest');
  assert.deepEqual(manifest.errors, [], 'the manifest parses without errors');
  assert.equal(manifest.url, `${proxy.url}/app/manifest.webmanifest`);
  const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
  assert.deepEqual(installabilityErrors, [], 'Chromium would offer to install the app');
  const parsed = JSON.parse(manifest.data);
  assert.equal(parsed.display, 'standalone');
  const startUrl = new URL(parsed.start_url, manifest.url).href;
  assert.equal(startUrl, `${proxy.url}/app/`);
  const icons = new Set(parsed.icons.map((i) => `${i.sizes} ${i.purpose}`));
  for (const want of ['192x192 any', '512x512 any', '512x512 maskable']) assert.ok(icons.has(want), want);
  // The icons are real PNGs of their stated size.
  for (const icon of parsed.icons) {
    const size = await b.page.evaluate(async (src) => {
      const bitmap = await createImageBitmap(await (await fetch(src)).blob());
      return `${bitmap.width}x${bitmap.height}`;
    }, new URL(icon.src, manifest.url).href);
    assert.equal(size, icon.sizes, icon.src);
  }

  // Offline, the start URL reloads from the service worker's cache and the app renders from IndexedDB.
  await b.context.setOffline(true);
  await b.page.goto(startUrl);
  await b.page.waitForSelector('#pos:not([hidden]) button[data-product="r-sugar-1kg"]');
  assert.equal(await b.page.getAttribute('#sync', 'data-state'), 'offline');
  await b.close();

  // The installed app started again with no network at all (the proxy is down too): it still opens.
  const port = new URL(proxy.url).port;
  await proxy.close();
  try {
    b = await launch('installed', { offline: true });
    await b.page.goto(startUrl);
    await b.page.waitForSelector('#pos:not([hidden]) button[data-product="r-sugar-1kg"]');
    assert.equal(await b.page.locator('button[data-product]').count(), 7);
    await b.page.screenshot({ path: path.join(ARTIFACTS, 'pwa-offline-start.png'), fullPage: true });
    assert.deepEqual(b.errors, []);
    await b.close();
  } finally {
    proxy = stack.proxy = await startProxy({ upstream: server.url, port: Number(port) });
  }
});

test('without the manifest Chromium reports why the app cannot be installed', async () => {
  // The check above can fail: the same page served without its manifest link is not installable.
  const b = await launch('not-installable');
  await b.page.route('**/app/', async (route) => {
    const res = await route.fetch();
    const html = (await res.text()).replace(/<link rel="manifest"[^>]*>/, '');
    await route.fulfill({ response: res, body: html });
  });
  await b.page.goto(`${proxy.url}/app/#token=${server.token(OWNER, 'owner-no-manifest')}&scope=retail`);
  await b.page.waitForSelector('button[data-product="r-sugar-1kg"]');
  const cdp = await b.context.newCDPSession(b.page);
  const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
  assert.ok(installabilityErrors.some((e) => e.errorId === 'no-manifest'), JSON.stringify(installabilityErrors));
  await b.close();
});
