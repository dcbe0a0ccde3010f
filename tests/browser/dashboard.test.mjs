// The dashboard against the real server: upload a Fashion-MNIST test PNG, run gradcam, saliency and
// integrated_gradients with the model and label sanity checks, and check what the page shows
// against the API's own answers. Saves build/browser/dashboard.png; with UPDATE_SCREENSHOT=1 also
// docs/dashboard.png (committed).
//   node tests/browser/dashboard.test.mjs        (mk/browser.mk: make browser-test)
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import {
  ARTIFACTS, FASHION_DIR, ROOT, launchBrowser, prepareModels, startServer, watchPage,
} from './lib.mjs';

const IMAGE = path.join(FASHION_DIR, 'test_00000_ankle_boot.png');
const METHODS = ['gradcam', 'saliency', 'integrated_gradients'];
let server, browser, models;

before(async () => {
  models = prepareModels();
  server = await startServer({ modelsDir: models.dir });
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

async function apiPredict(model) {
  const fd = new FormData();
  fd.append('image', new Blob([fs.readFileSync(IMAGE)], { type: 'image/png' }), 'x.png');
  const r = await fetch(`${server.base}/v1/models/${model}/predict`, { method: 'POST', body: fd });
  assert.equal(r.status, 200, await r.clone().text());
  return r.json();
}

/** Open the page with `model` picked and the test image chosen. */
async function openPage(page, model) {
  await page.goto(server.base + '/');
  await page.waitForSelector('#conn-status[data-state="ok"]');
  await page.selectOption('#model', model);
  await page.waitForFunction((m) => !document.querySelector('#run').disabled
    && document.querySelector('#m-gradcam') && document.querySelector('#model').value === m, model);
  await page.setInputFiles('#file', IMAGE);
  await page.waitForSelector('#preview:not([hidden])');
}

async function tickOnly(page, name, values) {
  for (const box of await page.$$(`input[name="${name}"]`)) {
    const v = await box.getAttribute('value');
    if (values.includes(v)) await box.check(); else await box.uncheck();
  }
}

test('explain with sanity checks: heatmaps, predictions, randomization chart', { timeout: 180000 }, async () => {
  const page = await browser.context.newPage();
  const logs = watchPage(page);
  try {
    const direct = await apiPredict(models.model);
    await openPage(page, models.model);
    await tickOnly(page, 'methods', METHODS);
    await tickOnly(page, 'sanity', ['model', 'label']);
    const answer = page.waitForResponse((r) => r.url().endsWith(`/v1/models/${models.model}/explain`)
      && r.request().method() === 'POST', { timeout: 150000 });
    await page.click('#run');
    const res = await answer;
    assert.equal(res.status(), 200);
    assert.match(res.request().headers()['content-type'], /^multipart\/form-data/);
    const doc = await res.json();
    await page.waitForSelector('#out:not([hidden]) .rand-chart', { timeout: 30000 });

    // every heatmap and overlay <img> has loaded
    const imgs = await page.$$eval('#out .xcard img', (els) => els.map((i) => ({
      cls: i.className, method: i.closest('.xcard').dataset.method, complete: i.complete, w: i.naturalWidth,
    })));
    for (const m of METHODS) {
      for (const kind of ['heatmap', 'overlay']) {
        const im = imgs.find((i) => i.method === m && i.cls.split(' ').includes(kind));
        assert.ok(im, `${m}: no ${kind} <img>`);
        assert.ok(im.complete && im.w > 0, `${m}: ${kind} <img> did not load (${JSON.stringify(im)})`);
      }
    }
    assert.ok(imgs.every((i) => i.complete && i.w > 0), JSON.stringify(imgs));

    // predictions: the page's top class is the API's top class
    const top = direct.predictions[0];
    const first = await page.$eval('#preds .pred', (li) => ({ index: Number(li.dataset.index), label: li.dataset.label }));
    assert.deepEqual(first, { index: top.index, label: top.label });
    assert.equal(doc.predictions[0].index, top.index);
    assert.equal((await page.textContent('#top-class')).startsWith(top.label), true);
    const bars = await page.$$eval('#preds .pred', (els) => els.length);
    assert.equal(bars, doc.predictions.length);

    // the cascading-randomization chart: one point per randomized layer on each method's line
    const mr = doc.sanity.model_randomization;
    assert.ok(mr.steps.length >= 2, 'the model should have several parameterized layers');
    for (const m of METHODS) {
      const steps = mr.methods[m].steps.length;
      assert.equal(steps, mr.steps.length);
      const points = await page.$$eval(`.rand-chart .pt-step[data-method="${m}"]`, (els) => els.map((e) => Number(e.dataset.step)));
      assert.deepEqual(points, [...Array(steps).keys()], `${m}: chart points`);
      assert.equal(await page.$$eval(`.rand-chart .series[data-method="${m}"] .pt-orig`, (e) => e.length), 1);
    }
    // switching the measure redraws with the same number of points
    await page.click('.metric-tabs button[data-metric="ssim"]');
    await page.waitForSelector('.rand-chart[data-metric="ssim"]');
    assert.equal(await page.$$eval('.rand-chart .pt-step', (e) => e.length), METHODS.length * mr.steps.length);
    await page.click('.metric-tabs button[data-metric="spearman_abs"]');

    // label randomization: a row with a pass/fail mark per method, or the server's reason
    const lr = doc.sanity.label_randomization;
    if (lr.status === 'ok') {
      for (const m of METHODS) {
        const passed = await page.$eval(`#label-randomization tr[data-method="${m}"] .mark`, (e) => e.dataset.passed);
        assert.equal(passed, String(lr.methods[m].passed));
      }
    } else {
      assert.match(await page.textContent('#label-unavailable'), new RegExp(lr.reason.slice(0, 20).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    }

    // timing and passes are shown
    assert.match(await page.textContent('#out'), new RegExp(`${doc.passes.forward} forward`));

    // the opacity slider re-blends on a canvas, without a request
    let requests = 0;
    page.on('request', () => { requests++; });
    await page.$eval('#view-alpha', (el) => { el.value = '0.9'; el.dispatchEvent(new Event('input', { bubbles: true })); });
    await page.waitForFunction(() => [...document.querySelectorAll('.xcard canvas.reblend')].every((c) => !c.hidden));
    const painted = await page.$$eval('.xcard canvas.reblend', (cs) => cs.map((c) => {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let sum = 0;
      for (let i = 0; i < d.length; i += 4) sum += d[i] + d[i + 1] + d[i + 2];
      return { w: c.width, sum };
    }));
    assert.equal(painted.length, METHODS.length);
    assert.ok(painted.every((p) => p.w > 0 && p.sum > 0), JSON.stringify(painted));
    assert.equal(requests, 0, 'moving the opacity slider must not send a request');
    await page.$eval('#view-alpha', (el) => { el.value = '0.5'; el.dispatchEvent(new Event('input', { bubbles: true })); });

    // screenshot artifact (and the committed one when asked)
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const shot = path.join(ARTIFACTS, 'dashboard.png');
    // one viewport from the top of the page to the end of the randomization card: a full-page
    // capture would paint the sticky header and Explain bar where the scroll left them
    await page.evaluate(() => { document.querySelector('.controls').scrollTop = 0; window.scrollTo(0, 0); });
    const bottom = await page.$eval('#model-randomization', (el) => el.getBoundingClientRect().bottom + window.scrollY);
    await page.setViewportSize({ width: 1440, height: Math.min(2600, Math.ceil(bottom) + 24) });
    await page.evaluate(() => { document.querySelector('.controls').scrollTop = 0; window.scrollTo(0, 0); });
    await page.screenshot({ path: shot });
    if (process.env.UPDATE_SCREENSHOT) {
      // docs copy as a 256-colour PNG (a third of the size; the UI has few colours)
      const doc = path.join(ROOT, 'docs', 'dashboard.png');
      try {
        execFileSync(process.env.PYTHON || '/usr/bin/python3', ['-c',
          'import sys; from PIL import Image; Image.open(sys.argv[1]).convert("RGB")'
          + '.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(sys.argv[2], optimize=True)', shot, doc]);
      } catch (e) {
        fs.copyFileSync(shot, doc);
      }
      console.log(`# updated docs/dashboard.png (${fs.statSync(doc).size} bytes)`);
    }
  } catch (e) {
    console.log(logs.join('\n'));
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-failure.png'), fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await page.close();
  }
});

test('a problem+json error shows its detail', { timeout: 60000 }, async () => {
  const page = await browser.context.newPage();
  try {
    await openPage(page, models.model);
    await tickOnly(page, 'methods', ['integrated_gradients']);
    await tickOnly(page, 'sanity', []);
    await page.fill('#ig_steps', '5000');
    const answer = page.waitForResponse((r) => r.url().endsWith('/explain'));
    await page.click('#run');
    const res = await answer;
    assert.equal(res.status(), 422);
    const problem = await res.json();
    await page.waitForSelector('#error:not([hidden])');
    const text = await page.textContent('#error');
    assert.ok(text.includes(problem.detail), `error card "${text}" lacks the detail "${problem.detail}"`);
    assert.ok(text.includes('422'));
    assert.ok((await page.textContent('#run-status')).includes(problem.detail));
  } finally {
    await page.close();
  }
});

test('every control has a label and the form works from the keyboard', { timeout: 60000 }, async () => {
  const page = await browser.context.newPage();
  try {
    await openPage(page, models.model);
    const unnamed = await page.$$eval('input:not([type=hidden]), select, textarea, button', (els) => els
      .filter((el) => {
        const id = el.id && document.querySelector(`label[for="${el.id}"]`);
        const named = id || el.closest('label') || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')
          || (el.tagName === 'BUTTON' && el.textContent.trim());
        return !named;
      })
      .map((el) => el.outerHTML.slice(0, 120)));
    assert.deepEqual(unnamed, []);
    // Tab reaches the Explain button; Enter on it submits
    await tickOnly(page, 'methods', ['gradcam']);
    await tickOnly(page, 'sanity', []);
    await page.focus('#sanity_target');
    let focused = '';
    for (let i = 0; i < 10 && focused !== 'run'; i++) {
      await page.keyboard.press('Tab');
      focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
    }
    assert.equal(focused, 'run');
    const outline = await page.$eval('#run', (el) => getComputedStyle(el).outlineStyle);
    assert.notEqual(outline, 'none', 'the focused button shows a focus ring');
    const answer = page.waitForResponse((r) => r.url().endsWith('/explain'));
    await page.keyboard.press('Enter');
    assert.equal((await answer).status(), 200);
    await page.waitForSelector('#out:not([hidden]) .xcard[data-method="gradcam"]');
    // WCAG AA contrast of every visible text, results and sanity tables included
    await tickOnly(page, 'sanity', ['model', 'label', 'random_logit']);
    await page.click('#run');
    await page.waitForSelector('#out:not([hidden]) .rand-chart');
    const low = await page.evaluate(contrastFailures);
    assert.deepEqual(low, [], 'texts below WCAG AA contrast');
  } finally {
    await page.close();
  }
});

/* Runs in the page: every visible text node (and SVG text) whose contrast with its effective
 * background is below WCAG 2.1 AA (4.5:1, or 3:1 for large text). Backgrounds are composited from
 * the ancestors' background colours; disabled controls are exempt, as WCAG says. */
function contrastFailures() {
  const parse = (c) => {
    const m = /rgba?\(([^)]+)\)/.exec(c);
    if (!m) return [0, 0, 0, 0];
    const p = m[1].split(/[\s,/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const lum = (rgb) => {
    const f = (v) => { const c = v / 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(rgb[0]) + 0.7152 * f(rgb[1]) + 0.0722 * f(rgb[2]);
  };
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] >= 0.9) break; }
    }
    let acc = [255, 255, 255];
    for (const c of layers.reverse()) acc = acc.map((v, i) => v * (1 - c[3]) + c[i] * c[3]);
    return acc;
  };
  const ratio = (fg, bg) => {
    const f = fg.slice(0, 3).map((v, i) => v * fg[3] + bg[i] * (1 - fg[3]));
    const a = lum(f), b = lum(bg);
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  };
  const bad = [];
  const check = (el, text, fg) => {
    const cs = getComputedStyle(el);
    if (cs.visibility === 'hidden' || !el.getClientRects().length) return;
    if (el.closest('[hidden], .visually-hidden, :disabled, [data-disabled]')) return;
    const size = parseFloat(cs.fontSize);
    const need = size >= 24 || (Number(cs.fontWeight) >= 700 && size >= 18.66) ? 3 : 4.5;
    const r = ratio(fg, background(el));
    if (r < need) bad.push(`${text.trim().slice(0, 40)} (${el.tagName.toLowerCase()}.${el.className}): ${r.toFixed(2)} < ${need}`);
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!n.textContent.trim() || el.closest('svg, script, style')) continue;
    check(el, n.textContent, parse(getComputedStyle(el).color));
  }
  for (const t of document.querySelectorAll('svg text')) check(t, t.textContent, parse(getComputedStyle(t).fill));
  return [...new Set(bad)];
}
