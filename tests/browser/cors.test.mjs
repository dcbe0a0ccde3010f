// The dashboard served from ANOTHER origin (a static server for web/) and pointed at the API with
// ?api=http://127.0.0.1:PORT. explaind runs with --cors_origins naming the page's origin:
//   - from that origin the page lists the models and gets predictions;
//   - with api_keys_file set, the page shows the 401 detail, then works once the key is entered
//     (the Authorization header makes the browser send a preflight, which must pass too);
//   - from an origin not in cors_origins the browser blocks the answers and the page says so;
//   - when the API goes away between two requests, the run shows a network error.
//   node tests/browser/cors.test.mjs        (mk/browser.mk: make browser-test)
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import {
  ARTIFACTS, FASHION_DIR, launchBrowser, prepareModels, startServer, startStaticServer, watchPage,
} from './lib.mjs';

const IMAGE = path.join(FASHION_DIR, 'test_00002_trouser.png');
const KEY = 'browser-test-key-7f3a';
let allowed, other, browser, models;
const servers = [];

before(async () => {
  models = prepareModels();
  allowed = await startStaticServer();
  other = await startStaticServer();
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  for (const s of servers) await s.stop();
  if (allowed) await allowed.close();
  if (other) await other.close();
});

async function explaind(opts) {
  const s = await startServer({ modelsDir: models.dir, ...opts });
  servers.push(s);
  return s;
}

async function directTop(server, headers = {}) {
  const r = await fetch(`${server.base}/v1/models/${models.model}/predict`, {
    method: 'POST', body: fs.readFileSync(IMAGE), headers: { 'Content-Type': 'image/png', ...headers },
  });
  assert.equal(r.status, 200);
  return (await r.json()).predictions[0];
}

async function explainFromPage(page) {
  await page.selectOption('#model', models.model);
  await page.waitForFunction((m) => !document.querySelector('#run').disabled
    && document.querySelector('#model').value === m && document.querySelector('#m-gradcam'), models.model);
  await page.setInputFiles('#file', IMAGE);
  await page.waitForSelector('#preview:not([hidden])');
  for (const box of await page.$$('input[name="methods"], input[name="sanity"]')) await box.uncheck();
  await page.check('#m-gradcam');
  await page.click('#run');
  await page.waitForSelector('#out:not([hidden]) #preds .pred', { timeout: 60000 });
  return page.$eval('#preds .pred', (li) => ({ index: Number(li.dataset.index), label: li.dataset.label }));
}

test('page on an allowed origin gets predictions from the API on another port', { timeout: 90000 }, async () => {
  const api = await explaind({ corsOrigins: allowed.origin });
  const page = await browser.context.newPage();
  const logs = watchPage(page);
  try {
    await page.goto(`${allowed.origin}/?api=${encodeURIComponent(api.base)}`);
    await page.waitForSelector('#conn-status[data-state="ok"]', { timeout: 20000 });
    const top = await explainFromPage(page);
    const want = await directTop(api);
    assert.deepEqual(top, { index: want.index, label: want.label });
    assert.equal(await page.isHidden('#error'), true);
    // the footer links follow the API base
    assert.equal(await page.getAttribute('#link-metrics', 'href'), `${api.base}/metrics`);
  } catch (e) {
    console.log(logs.join('\n'));
    throw e;
  } finally {
    await page.close();
  }
});

test('with api_keys_file the page shows the 401 detail, then works with the key', { timeout: 90000 }, async () => {
  const keys = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'explaind-keys-')), 'keys.txt');
  fs.writeFileSync(keys, `${KEY}\n`);
  const api = await explaind({ corsOrigins: allowed.origin, apiKeysFile: keys });
  const page = await browser.context.newPage();
  const logs = watchPage(page);
  try {
    await page.goto(`${allowed.origin}/?api=${encodeURIComponent(api.base)}`);
    await page.waitForSelector('#banner:not([hidden])', { timeout: 20000 });
    const problem = await (await fetch(`${api.base}/v1/models`)).json();
    const banner = await page.textContent('#banner');
    assert.ok(banner.includes('401') && banner.includes(problem.detail), banner);
    await page.click('#banner button');
    await page.fill('#api-key', KEY);
    await page.click('#conn-form button[type="submit"]');
    await page.waitForSelector('#conn-status[data-state="ok"]', { timeout: 20000 });
    const top = await explainFromPage(page);
    const want = await directTop(api, { Authorization: `Bearer ${KEY}` });
    assert.equal(top.index, want.index);
    // the key lives in this tab's sessionStorage, under the API's origin only
    const stored = await page.evaluate((o) => sessionStorage.getItem(`explaind.api_key ${o}`), new URL(api.base).origin);
    assert.equal(stored, KEY);
  } catch (e) {
    console.log(logs.join('\n'));
    throw e;
  } finally {
    await page.close();
  }
});

test('a page on an origin not in cors_origins is blocked and says so', { timeout: 90000 }, async () => {
  const api = await explaind({ corsOrigins: allowed.origin });
  const page = await browser.context.newPage();
  try {
    await page.goto(`${other.origin}/?api=${encodeURIComponent(api.base)}`);
    await page.waitForSelector('#conn-status[data-state="error"]', { timeout: 20000 });
    const banner = await page.textContent('#banner');
    assert.ok(await page.isVisible('#banner'), 'the error banner is visible');
    assert.match(banner, /Network error/);
    assert.match(banner, /cors_origins/);
    assert.ok(banner.includes(other.origin), banner);
    // the page is not blank: the form is there, the methods say why they are missing
    assert.ok(await page.isVisible('#form'));
    assert.match(await page.textContent('#methods'), /once the API answers/);
    // and the server did answer: it is the browser that blocked the response (no CORS headers)
    const r = await fetch(`${api.base}/v1/models`, { headers: { Origin: other.origin } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('access-control-allow-origin'), null);
  } finally {
    await page.close();
  }
});

test('an API that went away: the run shows a network error, the page stays', { timeout: 90000 }, async () => {
  const api = await explaind({ corsOrigins: allowed.origin });
  const page = await browser.context.newPage();
  try {
    await page.goto(`${allowed.origin}/?api=${encodeURIComponent(api.base)}`);
    await page.waitForSelector('#conn-status[data-state="ok"]', { timeout: 20000 });
    await page.selectOption('#model', models.model);
    await page.waitForFunction(() => !document.querySelector('#run').disabled);
    await page.setInputFiles('#file', IMAGE);
    await page.waitForSelector('#preview:not([hidden])');
    await api.stop();
    await page.click('#run');
    await page.waitForSelector('#error:not([hidden])', { timeout: 20000 });
    const text = await page.textContent('#error');
    assert.match(text, /Network error/);
    assert.ok(text.includes(api.base), text);
    assert.match(await page.textContent('#run-status'), /^Failed/);
    assert.equal(await page.isEnabled('#run'), true, 'the form can be sent again');
  } finally {
    await page.close();
  }
});
