#!/usr/bin/env node
// Behaviour tests of the dashboard that need a metrics.json that changes under the page: demo
// fallback and its reasons, recovery, refresh failures after a good load, staleness, sample data,
// saved preferences, auto-refresh, sorting, in-place chart updates.
//
//   node scenarios.mjs [--chromium PATH]
//
// Serves exporter/dashboard/ itself from an in-process HTTP server on 127.0.0.1 (ephemeral port),
// with /metrics.json controlled by each scenario, and drives the system Chromium (never downloads
// one). Prints "N passed, N failed"; exit 0 only when all passed. Bounded to 90 s in total.

import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DASHBOARD_DIR = path.resolve(HERE, '../../exporter/dashboard');
const FIXTURE = path.join(HERE, 'fixtures/metrics.json');
const CHROMIUM = (() => {
  const i = process.argv.indexOf('--chromium');
  return i > 0 ? process.argv[i + 1] : (process.env.CHROMIUM || '/usr/bin/chromium');
})();
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic'];
const CHART_IDS = ['chart-p95', 'chart-throughput', 'chart-memory', 'chart-cache'];
const WAIT = 10_000;

let passed = 0;
let failed = 0;
function check(cond, msg, detail) {
  if (cond) { passed++; console.log(`ok   ${msg}`); } else { failed++; console.log(`FAIL ${msg}${detail ? ': ' + detail : ''}`); }
  return !!cond;
}

// ------------------------------------------------------------------ server with a controllable metrics.json

const MIME = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.json': 'application/json', '.md': 'text/markdown; charset=utf-8' };
const metrics = { status: 200, body: null, requests: 0 };

const server = createServer(async (req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  let p = decodeURIComponent(url.pathname);
  if (p === '/metrics.json') {
    metrics.requests++;
    if (metrics.body === null) { res.writeHead(404, { 'Content-Type': 'text/plain' }); res.end('not found'); return; }
    res.writeHead(metrics.status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(metrics.body);
    return;
  }
  if (p === '/') p = '/coordinator_performance.html';
  const file = path.resolve(DASHBOARD_DIR, '.' + p);
  if (!file.startsWith(DASHBOARD_DIR + path.sep)) { res.writeHead(403); res.end(); return; }
  try {
    const data = await readFile(file);
    res.writeHead(200, { 'Content-Type': MIME[path.extname(file)] || 'application/octet-stream', 'X-Content-Type-Options': 'nosniff' });
    res.end(data);
  } catch {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found');
  }
});

// The fixture moved so that its newest snapshot is `ageSeconds` old.
async function fixtureAged(ageSeconds, patch) {
  const d = JSON.parse(await readFile(FIXTURE, 'utf8'));
  const shift = Date.now() - ageSeconds * 1000 - Date.parse(d.timestamp);
  const move = (iso) => new Date(Date.parse(iso) + shift).toISOString();
  d.timestamp = move(d.timestamp);
  d.history.forEach((h) => { h.timestamp = move(h.timestamp); });
  d.recent_errors.forEach((e) => { e.timestamp = move(e.timestamp); });
  if (patch) patch(d);
  return d;
}

// ------------------------------------------------------------------ page helpers

async function newPage(context) {
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e}`));
  page.on('dialog', async (d) => { problems.push(`dialog: ${d.message()}`); await d.dismiss().catch(() => {}); });
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.setDefaultTimeout(WAIT);
  return { page, problems };
}

const renderCount = (page) => page.evaluate(() => Number(document.documentElement.dataset.renderCount || 0));
async function waitRender(page, after = 0) {
  await page.waitForFunction((n) => Number(document.documentElement.dataset.renderCount || 0) > n, after, { timeout: WAIT });
}
async function clickRefresh(page) {
  const before = await renderCount(page);
  await page.click('#refresh-button');
  await waitRender(page, before);
}
const visible = (page, id) => page.evaluate((i) => {
  const e = document.getElementById(i);
  return !!e && !e.hidden && e.getClientRects().length > 0;
}, id);
const text = (page, sel) => page.evaluate((s) => document.querySelector(s)?.textContent ?? null, sel);
const pageState = (page) => page.evaluate(() => document.documentElement.dataset.state);
const markCharts = (page) => page.evaluate((ids) => ids.forEach((id) => {
  window.Chart.getChart(document.getElementById(id)).$mark = id;
}), CHART_IDS);
const chartsKept = (page) => page.evaluate((ids) => ids.every((id) => window.Chart.getChart(document.getElementById(id))?.$mark === id), CHART_IDS);

// ------------------------------------------------------------------ scenarios

async function run(browser, base) {
  const ctx = () => browser.newContext({ viewport: { width: 1280, height: 900 }, reducedMotion: 'reduce', serviceWorkers: 'block' });

  // 1. live data, then a failed refresh keeps the data and says so, then recovery
  {
    const context = await ctx();
    const { page, problems } = await newPage(context);
    const fresh = await fixtureAged(5);
    metrics.status = 200; metrics.body = JSON.stringify(fresh);
    await page.goto(base + '/');
    await waitRender(page);
    check(await pageState(page) === 'live', 'served at / : live data shown');
    check(!(await visible(page, 'stale-banner')), 'fresh data: no stale warning');
    check(!(await visible(page, 'sample-banner')), '"demo": false: no sample banner');

    // executions over the last minute = total now - cumulative at the history point 60 s back
    const now = Date.parse(fresh.timestamp);
    const old = [...fresh.history].reverse().find((h) => now - Date.parse(h.timestamp) >= 59_000);
    const expected = fresh.overall_stats.total_executions - Object.values(old.coordinators).reduce((a, c) => a + c.executions, 0);
    const delta = await page.getAttribute('#executions-delta', 'data-value');
    check(Number(delta) === expected, `executions in the last minute = ${expected}`, `page says ${delta}`);

    await markCharts(page);
    metrics.body = null;
    await clickRefresh(page);
    check(await pageState(page) === 'live', 'failed refresh after a good load keeps the real data (no demo)');
    check(await visible(page, 'refresh-error-banner'), 'failed refresh shows the refresh-error banner');
    check(/HTTP 404/.test(await text(page, '#refresh-error-text')), 'refresh-error banner gives the reason', await text(page, '#refresh-error-text'));
    check(!(await visible(page, 'demo-banner')), 'no demo banner after a failed refresh of real data');

    metrics.body = JSON.stringify(await fixtureAged(1));
    await clickRefresh(page);
    check(!(await visible(page, 'refresh-error-banner')), 'next good refresh clears the refresh-error banner');
    check(await chartsKept(page), 'charts kept (updated in place) across failed and good refreshes');

    metrics.body = JSON.stringify(await fixtureAged(600));
    await clickRefresh(page);
    check(await visible(page, 'stale-banner'), 'data 10 min old: stale warning');
    check(/10m/.test(await text(page, '#stale-text')), 'stale warning says how old', await text(page, '#stale-text'));
    // switching the colour scheme re-themes the charts in place
    const tickColor = () => page.evaluate(() => window.Chart.getChart(document.getElementById('chart-p95')).scales.x.options.ticks.color);
    const lightColor = await tickColor();
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.waitForFunction((c) => window.Chart.getChart(document.getElementById('chart-p95')).scales.x.options.ticks.color !== c,
      lightColor, { timeout: WAIT }).catch(() => {});
    const darkColor = await tickColor();
    check(darkColor !== lightColor && await chartsKept(page), 'dark scheme: charts re-themed in place', `${lightColor} -> ${darkColor}`);
    await page.emulateMedia({ colorScheme: 'light' });

    check(problems.length === 0, 'scenario 1: no page errors, console errors or dialogs', problems.join(' | '));
    await context.close();
  }

  // 2. demo fallback for each kind of failure, and recovery in place
  for (const [label, setup, reason] of [
    ['404', () => { metrics.body = null; }, /HTTP 404/],
    ['HTTP 500', () => { metrics.status = 500; metrics.body = '{"error":"boom"}'; }, /HTTP 500/],
    ['invalid JSON', () => { metrics.status = 200; metrics.body = '{"schema_version": 1, "coordinators": ['; }, /invalid JSON/],
    ['not an object', () => { metrics.status = 200; metrics.body = '[1,2,3]'; }, /not an object/],
    ['no coordinators array', () => { metrics.status = 200; metrics.body = '{"schema_version":1}'; }, /coordinators/],
  ]) {
    const context = await ctx();
    const { page, problems } = await newPage(context);
    metrics.status = 200;
    setup();
    await page.goto(base + '/coordinator_performance.html');
    await waitRender(page);
    check(await pageState(page) === 'demo' && await visible(page, 'demo-banner'), `${label}: demo data with the demo banner`);
    const why = await text(page, '#demo-reason');
    check(reason.test(why || ''), `${label}: the banner says why`, why);
    check(await visible(page, 'demo-badge'), `${label}: DEMO badge in the header`);
    if (label === '404') {
      // deterministic demo data: the same numbers on every load
      const a = await page.evaluate(() => [...document.querySelectorAll('#breakdown-body td[data-col="p95_latency"]')].map((t) => t.dataset.value).join());
      await page.reload();
      await waitRender(page);
      const b = await page.evaluate(() => [...document.querySelectorAll('#breakdown-body td[data-col="p95_latency"]')].map((t) => t.dataset.value).join());
      check(a === b && a.length > 0, 'demo data is deterministic across loads');
      await markCharts(page);
      metrics.status = 200; metrics.body = JSON.stringify(await fixtureAged(2));
      await clickRefresh(page);
      check(await pageState(page) === 'live' && !(await visible(page, 'demo-banner')), 'metrics.json appears: demo replaced by real data, banner gone');
      check(await chartsKept(page), 'demo -> real data updates the same Chart instances');
      const rows = await page.evaluate(() => document.querySelectorAll('#breakdown-body tr').length);
      check(rows === 9, 'real rows replace the demo rows', `${rows} rows`);
    }
    check(problems.length === 0, `${label}: no page errors or dialogs`, problems.join(' | '));
    await context.close();
  }

  // 3. "demo": true (sample mode) and odd values, all as text
  {
    const context = await ctx();
    const { page, problems } = await newPage(context);
    metrics.status = 200;
    metrics.body = JSON.stringify(await fixtureAged(3, (d) => {
      d.demo = true;
      d.exporter.last_error = 'segment <img src=x onerror=alert(3)> corrupt';
      d.source.segment = '/dev/shm/<script>alert(4)</script>';
      d.coordinators[1].status_reasons = ['<img src=y onerror=alert(5)>'];
      d.coordinators[2].status = '<i>odd</i>';
      d.schema_version = 2;
    }));
    await page.goto(base + '/');
    await waitRender(page);
    check(await pageState(page) === 'live' && await visible(page, 'sample-banner') && !(await visible(page, 'demo-banner')),
      '"demo": true: sample banner, not the demo-fallback banner');
    check(await visible(page, 'exporter-error-banner') && (await text(page, '#exporter-error-text')) === 'segment <img src=x onerror=alert(3)> corrupt',
      'exporter.last_error shown, as text');
    check(await visible(page, 'schema-banner'), 'unknown schema_version: warning');
    const markup = await page.evaluate(() => document.querySelectorAll('main img, main script, main i, header img, header script').length);
    check(markup === 0, 'no markup from metrics.json was parsed', `${markup} elements`);
    check(problems.length === 0, 'scenario 3: no page errors or dialogs', problems.join(' | '));
    await context.close();
  }

  // 4. preferences persist; pause; auto-refresh fires on the chosen interval
  {
    const context = await ctx();
    const { page, problems } = await newPage(context);
    metrics.status = 200; metrics.body = JSON.stringify(await fixtureAged(1));
    await page.clock.install();
    await page.goto(base + '/');
    await waitRender(page);
    check(await page.inputValue('#refresh-interval') === '30', 'default auto-refresh interval is 30 s');
    await page.selectOption('#refresh-interval', '10');
    let before = await renderCount(page);
    let reqs = metrics.requests;
    await page.clock.runFor(10_500);
    await waitRender(page, before);
    check(metrics.requests > reqs, 'auto-refresh fetches metrics.json again after 10 s');

    await page.click('#pause-button');
    check(await page.getAttribute('#pause-button', 'aria-pressed') === 'true', 'Pause is a toggle button (aria-pressed)');
    before = await renderCount(page);
    reqs = metrics.requests;
    await page.clock.runFor(35_000);
    check(metrics.requests === reqs, 'paused: no automatic refresh', `${metrics.requests - reqs} requests`);

    await page.reload();
    await waitRender(page);
    check(await page.inputValue('#refresh-interval') === '10', 'interval remembered across reloads (localStorage)');
    check(await page.getAttribute('#pause-button', 'aria-pressed') === 'true', 'pause remembered across reloads');
    check(/paused/.test(await text(page, '#next-refresh')), 'header says auto-refresh is paused', await text(page, '#next-refresh'));
    await page.click('#pause-button');
    before = await renderCount(page);
    await page.clock.runFor(10_500);
    await waitRender(page, before);
    check(true, 'resumed: auto-refresh fires again');
    check(problems.length === 0, 'scenario 4: no page errors or dialogs', problems.join(' | '));
    await context.close();
  }

  // 5. sorting: every column, both directions, nulls last, aria-sort on exactly one header
  {
    const context = await ctx();
    const { page, problems } = await newPage(context);
    metrics.status = 200; metrics.body = JSON.stringify(await fixtureAged(1));
    await page.goto(base + '/');
    await waitRender(page);
    const keys = await page.evaluate(() => [...document.querySelectorAll('#breakdown-table th[data-sort]')].map((t) => t.dataset.sort));
    const bad = [];
    for (const key of keys) {
      for (let i = 0; i < 2; i++) {
        await page.click(`#breakdown-table th[data-sort="${key}"] button`);
        const r = await page.evaluate((k) => {
          const sorted = [...document.querySelectorAll('#breakdown-table th[aria-sort]:not([aria-sort="none"])')].map((t) => t.dataset.sort);
          const dir = document.querySelector(`#breakdown-table th[data-sort="${k}"]`).getAttribute('aria-sort');
          const vals = [...document.querySelectorAll(`#breakdown-body [data-col="${k}"]`)].map((c) => c.dataset.value ?? c.textContent);
          return { sorted, dir, vals };
        }, key);
        if (r.sorted.length !== 1 || r.sorted[0] !== key) bad.push(`${key}: aria-sort on ${r.sorted}`);
        if (!['coordinator', 'status'].includes(key)) {
          const nums = r.vals.filter((v) => v !== '').map(Number);
          const firstNull = r.vals.indexOf('');
          if (firstNull >= 0 && r.vals.slice(firstNull).some((v) => v !== '')) bad.push(`${key}: nulls not last`);
          const okOrder = nums.every((v, j) => j === 0 || (r.dir === 'ascending' ? nums[j - 1] <= v : nums[j - 1] >= v));
          if (!okOrder) bad.push(`${key} ${r.dir}: ${nums.join(',')}`);
        }
      }
    }
    check(bad.length === 0, `every column sorts both ways (${keys.length} columns)`, bad.join('; '));
    check(problems.length === 0, 'scenario 5: no page errors or dialogs', problems.join(' | '));
    await context.close();
  }
}

// ------------------------------------------------------------------ main

const watchdog = setTimeout(() => {
  check(false, 'scenarios finished within 90 s');
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(2);
}, 90_000);
watchdog.unref();

let browser;
try {
  await new Promise((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve); });
  const base = `http://127.0.0.1:${server.address().port}`;
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 20_000 });
  await run(browser, base);
} catch (e) {
  check(false, `unexpected error: ${e && e.stack ? e.stack : e}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  server.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
