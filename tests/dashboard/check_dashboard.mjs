#!/usr/bin/env node
// Headless check of the coordmetrics dashboard (exporter/dashboard/) in the system Chromium.
//
//   node check_dashboard.mjs --url URL --out DIR [--expect-demo] [--expect-errors-file FILE]
//
//   --url URL                 the page, e.g. http://127.0.0.1:9184/ or .../coordinator_performance.html;
//                             metrics.json is expected beside it (new URL('metrics.json', URL))
//   --out DIR                 where desktop.png (1280x900) and phone.png (375x812) are written
//                             (plus desktop-full.png, phone-full.png and desktop-dark.png for review)
//   --expect-demo             metrics.json is meant to be unloadable: the demo banner must be shown
//                             and must say why
//   --expect-errors-file FILE messages that must appear in the page's error log: a JSON array of
//                             strings, or else one message per line (blank lines ignored)
//   --chromium PATH           browser binary (default $CHROMIUM or /usr/bin/chromium)
//
// Never downloads a browser. Every wait is bounded; the whole run is capped at 60 s.
// Exit status: 0 all checks passed, 1 some check failed, 2 usage or infrastructure error.

import { chromium } from 'playwright-core';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';

const TOTAL_BUDGET_MS = 60_000;
const STEP_TIMEOUT_MS = 15_000;
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
const CHART_IDS = ['chart-p95', 'chart-throughput', 'chart-memory', 'chart-cache'];

function usage(msg) {
  if (msg) console.error(`error: ${msg}`);
  console.error('usage: node check_dashboard.mjs --url URL --out DIR [--expect-demo] [--expect-errors-file FILE] [--chromium PATH]');
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { expectDemo: false, chromium: process.env.CHROMIUM || '/usr/bin/chromium' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--url') opts.url = value();
    else if (a === '--out') opts.out = value();
    else if (a === '--expect-demo') opts.expectDemo = true;
    else if (a === '--expect-errors-file') opts.expectErrorsFile = value();
    else if (a === '--chromium') opts.chromium = value();
    else if (a === '-h' || a === '--help') usage();
    else usage(`unknown argument ${a}`);
  }
  if (!opts.url) usage('--url is required');
  if (!opts.out) usage('--out is required');
  try { new URL(opts.url); } catch { usage(`--url is not a URL: ${opts.url}`); }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

let passed = 0;
let failed = 0;
function ok(msg) { passed++; console.log(`ok   ${msg}`); }
function fail(msg) { failed++; console.log(`FAIL ${msg}`); }
function check(cond, msg, detail) {
  if (cond) ok(msg);
  else fail(detail ? `${msg}: ${detail}` : msg);
  return !!cond;
}
function summaryAndExit(code) {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(code);
}

let browser = null;
const watchdog = setTimeout(async () => {
  fail(`the whole check took longer than ${TOTAL_BUDGET_MS / 1000} s`);
  try { if (browser) await browser.close(); } catch { /* ignore */ }
  summaryAndExit(2);
}, TOTAL_BUDGET_MS);
watchdog.unref();

const pageUrl = new URL(opts.url);
const metricsUrl = new URL('metrics.json', pageUrl);

// ------------------------------------------------------------------ helpers

async function loadExpectedErrors(file) {
  const text = await readFile(file, 'utf8');
  try {
    const parsed = JSON.parse(text);
    if (Array.isArray(parsed) && parsed.every((s) => typeof s === 'string')) return parsed;
  } catch { /* not JSON: one message per line */ }
  return text.split(/\r?\n/).filter((l) => l.trim() !== '');
}

async function fetchMetricsJson() {
  const res = await fetch(metricsUrl, { signal: AbortSignal.timeout(10_000), cache: 'no-store' });
  if (!res.ok) throw new Error(`GET ${metricsUrl} -> HTTP ${res.status}`);
  return JSON.parse(await res.text());
}

// A page with listeners that record console errors, page errors, dialogs and off-origin requests.
async function openPage(context, label) {
  const page = await context.newPage();
  const problems = { console: [], pageErrors: [], dialogs: [], external: [] };
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const loc = msg.location();
    problems.console.push({ text: msg.text(), url: loc && loc.url ? loc.url : '' });
  });
  page.on('pageerror', (err) => problems.pageErrors.push(String(err && err.stack ? err.stack : err)));
  page.on('dialog', async (dialog) => {
    problems.dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    try { await dialog.dismiss(); } catch { /* ignore */ }
  });
  await page.route('**/*', (route) => {
    const u = route.request().url();
    let allowed = u.startsWith('data:') || u.startsWith('blob:');
    try { allowed = allowed || new URL(u).origin === pageUrl.origin; } catch { /* ignore */ }
    if (!allowed) {
      problems.external.push(u);
      return route.abort('blockedbyclient');
    }
    return route.continue();
  });
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.__label = label;
  return { page, problems };
}

async function gotoAndWait(page) {
  const resp = await page.goto(pageUrl.href, { waitUntil: 'load', timeout: STEP_TIMEOUT_MS });
  if (!resp || !resp.ok()) throw new Error(`GET ${pageUrl.href} -> ${resp ? 'HTTP ' + resp.status() : 'no response'}`);
  await page.waitForFunction(() => {
    const root = document.documentElement;
    return root.dataset.state !== 'loading' && Number(root.dataset.renderCount || 0) >= 1;
  }, null, { timeout: STEP_TIMEOUT_MS });
  // Charts exist and carry data (they are filled during the first render).
  await page.waitForFunction((ids) => typeof window.Chart === 'function' && ids.every((id) => {
    const c = document.getElementById(id);
    const chart = c && window.Chart.getChart(c);
    return chart && chart.data && chart.data.datasets.length > 0;
  }), CHART_IDS, { timeout: 5_000 }).catch(() => { /* reported by checkCharts */ });
  // Let any animation frame land before pixels are inspected.
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
}

function reportProblems(problems, label) {
  const consoleErrors = problems.console.filter((e) => {
    // With --expect-demo the failed metrics.json request logs "Failed to load resource"; that one is expected.
    if (opts.expectDemo && /Failed to load resource/.test(e.text) && /\/metrics\.json(\?|$)/.test(e.url)) return false;
    return true;
  });
  const distinct = new Map();
  for (const e of consoleErrors) {
    const key = `${e.text}${e.url ? ' (' + e.url + ')' : ''}`;
    distinct.set(key, (distinct.get(key) || 0) + 1);
  }
  check(consoleErrors.length === 0, `${label}: no console errors`,
    [...distinct].map(([k, n]) => (n > 1 ? `${n}x ${k}` : k)).join(' | '));
  check(problems.pageErrors.length === 0, `${label}: no page errors`, problems.pageErrors.join(' | '));
  check(problems.dialogs.length === 0, `${label}: no dialog (alert/confirm/prompt) fired`, problems.dialogs.join(' | '));
  check(problems.external.length === 0, `${label}: no request left the page's origin`, problems.external.join(' | '));
}

// Charts that metrics.json legitimately leaves empty (no history yet, no cache traffic, ...): for
// those the Chart instance must exist and the page must say why instead of drawing nothing silently.
function emptyChartsFor(json) {
  const empty = new Set();
  if (!json) return empty;
  const coords = Array.isArray(json.coordinators) ? json.coordinators : [];
  const has = (f) => coords.some((c) => typeof f(c) === 'number');
  if (!has((c) => c.p95_duration_ms)) empty.add('chart-p95');
  if (!has((c) => c.cache_hit_rate)) empty.add('chart-cache');
  if (!coords.some((c) => typeof c.memory_bytes === 'number' && c.memory_bytes > 0)) empty.add('chart-memory');
  if (!Array.isArray(json.history) || json.history.length === 0) empty.add('chart-throughput');
  return empty;
}

async function checkCharts(page, label, expectEmpty = new Set()) {
  const charts = await page.evaluate((ids) => ids.map((id) => {
    const canvas = document.getElementById(id);
    if (!canvas) return { id, error: 'canvas missing' };
    if (!canvas.dataset.chart) return { id, error: 'canvas has no data-chart attribute' };
    if (typeof window.Chart !== 'function') return { id, error: 'window.Chart is not loaded' };
    const chart = window.Chart.getChart(canvas);
    if (!chart) return { id, error: 'no Chart instance on the canvas' };
    const datasets = chart.data.datasets || [];
    const points = datasets.reduce((n, d) => n + (d.data || []).filter((v) => v !== null && v !== undefined).length, 0);
    let inked = 0;
    try {
      const ctx = canvas.getContext('2d');
      const img = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      for (let i = 3; i < img.length; i += 16) if (img[i] !== 0) inked++;
    } catch (e) { return { id, error: `cannot read pixels: ${e}` }; }
    const note = canvas.parentElement.querySelector('.chart-empty');
    const emptyNote = !!note && !note.hidden && note.textContent.trim() !== '';
    return { id, type: chart.config.type, datasets: datasets.length, points, inked, w: canvas.width, h: canvas.height, emptyNote };
  }), CHART_IDS);
  for (const c of charts) {
    if (c.error) { fail(`${label}: chart #${c.id}: ${c.error}`); continue; }
    if (expectEmpty.has(c.id)) {
      check(c.w > 0 && c.h > 0 && c.emptyNote, `${label}: chart #${c.id} (${c.type}) has no data in metrics.json and says so`,
        `size=${c.w}x${c.h} empty note shown=${c.emptyNote}`);
      continue;
    }
    check(c.datasets > 0 && c.points > 0 && c.w > 0 && c.h > 0 && c.inked > 0,
      `${label}: chart #${c.id} (${c.type}) drawn with data`,
      `datasets=${c.datasets} points=${c.points} size=${c.w}x${c.h} inked=${c.inked}`);
  }
}

// Everything the page rendered from one metrics.json, for comparison with the file.
function readPage(page) {
  return page.evaluate(() => {
    const text = (e) => (e ? e.textContent : null);
    const visible = (e) => !!e && !e.hidden && e.getClientRects().length > 0;
    const rows = [...document.querySelectorAll('#breakdown-table tbody tr[data-coordinator]')].map((tr) => {
      const cells = {};
      tr.querySelectorAll('[data-col]').forEach((td) => {
        cells[td.dataset.col] = { text: td.textContent, value: td.getAttribute('data-value') };
      });
      return { name: tr.getAttribute('data-coordinator'), cells };
    });
    const errorMessages = [...document.querySelectorAll('#error-log tbody td[data-col="message"]')].map((td) => td.textContent);
    return {
      state: document.documentElement.dataset.state,
      renderCount: Number(document.documentElement.dataset.renderCount || 0),
      timestamp: document.getElementById('last-updated')?.getAttribute('datetime') || null,
      demoBanner: visible(document.getElementById('demo-banner')),
      demoBannerText: text(document.getElementById('demo-banner')),
      demoReason: text(document.getElementById('demo-reason')),
      sampleBanner: visible(document.getElementById('sample-banner')),
      staleBanner: visible(document.getElementById('stale-banner')),
      refreshSeconds: Number(document.getElementById('refresh-interval')?.value || 0),
      totalExecutions: document.getElementById('total-executions')?.getAttribute('data-value'),
      rows,
      errorMessages,
      imgCount: document.querySelectorAll('img').length,
      scripts: [...document.scripts].map((s) => s.getAttribute('src')),
    };
  });
}

function sameNumber(attr, expected) {
  if (expected === null || expected === undefined) return attr === '';
  return attr !== null && attr !== '' && Number(attr) === expected;
}

// ------------------------------------------------------------------ main

async function main() {
  await mkdir(opts.out, { recursive: true });
  const expectedErrors = opts.expectErrorsFile ? await loadExpectedErrors(opts.expectErrorsFile) : [];

  try {
    browser = await chromium.launch({ executablePath: opts.chromium, headless: true, args: CHROMIUM_ARGS, timeout: 20_000 });
  } catch (e) {
    console.error(`error: cannot start Chromium at ${opts.chromium}: ${e.message.split('\n')[0]}`);
    summaryAndExit(2);
  }

  // ---------------- desktop, light
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1,
    reducedMotion: 'reduce', colorScheme: 'light', serviceWorkers: 'block' });
  const { page, problems } = await openPage(desktop, 'desktop');
  try {
    await gotoAndWait(page);
  } catch (e) {
    fail(`desktop: page did not render: ${e.message.split('\n')[0]}`);
    reportProblems(problems, 'desktop');
    await browser.close();
    summaryAndExit(1);
  }

  let seen = await readPage(page);
  let json = null;
  if (!opts.expectDemo) {
    // metrics.json may be rewritten between the page's load and ours: line both up on the same timestamp.
    for (let attempt = 1; attempt <= 4; attempt++) {
      try {
        json = await fetchMetricsJson();
      } catch (e) {
        fail(`fetch ${metricsUrl} from the check itself: ${e.message}`);
        json = null;
        break;
      }
      if (json.timestamp === seen.timestamp || attempt === 4) break;
      const before = seen.renderCount;
      await page.click('#refresh-button');
      await page.waitForFunction((n) => Number(document.documentElement.dataset.renderCount || 0) > n, before,
        { timeout: STEP_TIMEOUT_MS }).catch(() => {});
      seen = await readPage(page);
    }
  }
  const expectEmpty = emptyChartsFor(json);
  await checkCharts(page, 'desktop', expectEmpty);

  if (opts.expectDemo) {
    check(seen.state === 'demo', 'page is in demo mode', `data-state=${seen.state}`);
    check(seen.demoBanner, 'demo banner is visible');
    check(seen.demoReason && seen.demoReason.trim().length > 0 && /metrics\.json/.test(seen.demoBannerText || ''),
      'demo banner says why metrics.json could not be loaded', `banner text: ${JSON.stringify(seen.demoBannerText)}`);
    check(!seen.sampleBanner, 'sample-data banner is not shown for generated demo data');
    check(seen.rows.length > 0, 'demo data fills the breakdown table', `${seen.rows.length} rows`);
  } else {
    check(seen.state === 'live', 'page shows loaded data (not demo)', `data-state=${seen.state}`);
    check(!seen.demoBanner, 'no demo banner', `banner text: ${JSON.stringify(seen.demoBannerText)}`);

    if (json) {
      check(json.timestamp === seen.timestamp, 'page and check read the same metrics.json',
        `page timestamp ${seen.timestamp}, file timestamp ${json.timestamp}`);
      check(seen.sampleBanner === (json.demo === true), `sample-data banner ${json.demo === true ? 'shown' : 'hidden'} ("demo": ${json.demo})`);
      check(sameNumber(seen.totalExecutions, json.overall_stats?.total_executions), 'Total executions card matches overall_stats',
        `page ${seen.totalExecutions}, file ${json.overall_stats?.total_executions}`);

      const coords = Array.isArray(json.coordinators) ? json.coordinators : [];
      check(seen.rows.length === coords.length, 'one table row per coordinator', `${seen.rows.length} rows, ${coords.length} coordinators`);
      const rowNames = seen.rows.map((r) => r.name);
      for (const c of coords) {
        const name = c.coordinator_name;
        const matching = seen.rows.filter((r) => r.name === name);
        if (matching.length !== 1) { fail(`row for ${JSON.stringify(name)}: found ${matching.length}`); continue; }
        const cells = matching[0].cells;
        const cols = [
          ['p95_latency', c.p95_duration_ms], ['error_rate', c.error_rate], ['executions', c.execution_count],
          ['avg_latency', c.avg_duration_ms], ['p99_latency', c.p99_duration_ms], ['errors', c.error_count],
          ['cache_hit_rate', c.cache_hit_rate], ['throughput', c.throughput_per_sec], ['memory', c.memory_bytes],
        ];
        const bad = [];
        for (const [col, expected] of cols) {
          const cell = cells[col];
          if (!cell) { bad.push(`${col}: no cell`); continue; }
          if (!sameNumber(cell.value, expected)) bad.push(`${col}: data-value ${JSON.stringify(cell.value)} != ${JSON.stringify(expected)}`);
          if (expected === null && cell.text.trim() !== '\u2014') bad.push(`${col}: null shown as ${JSON.stringify(cell.text)} instead of \u2014`);
          if (expected !== null && !/\d/.test(cell.text)) bad.push(`${col}: shown as ${JSON.stringify(cell.text)}`);
        }
        if (!cells.status || cells.status.value !== c.status) bad.push(`status: ${JSON.stringify(cells.status?.value)} != ${JSON.stringify(c.status)}`);
        if (!cells.coordinator || cells.coordinator.text !== name) bad.push(`coordinator cell text ${JSON.stringify(cells.coordinator?.text)}`);
        check(bad.length === 0, `row ${JSON.stringify(name)}: p95 ${c.p95_duration_ms}, error rate ${c.error_rate} and other cells match metrics.json`, bad.join('; '));
      }
      const extra = rowNames.filter((n) => !coords.some((c) => c.coordinator_name === n));
      check(extra.length === 0, 'no rows for coordinators missing from metrics.json', JSON.stringify(extra));

      const names = coords.map((c) => String(c.coordinator_name));
      const missingAsText = await page.evaluate((wanted) => {
        const all = [...document.body.querySelectorAll('*')];
        return wanted.filter((n) => !all.some((e) => e.textContent === n));
      }, names);
      check(missingAsText.length === 0, 'every coordinator name appears as text', JSON.stringify(missingAsText));

      const recent = Array.isArray(json.recent_errors) ? json.recent_errors : [];
      const missingErrors = recent.map((e) => String(e.message)).filter((m) => !seen.errorMessages.includes(m));
      check(missingErrors.length === 0 && seen.errorMessages.length === recent.length,
        `error log lists every recent_errors message (${recent.length})`,
        `missing ${JSON.stringify(missingErrors)}; page shows ${seen.errorMessages.length}`);

      // Staleness: expected iff the file is older than three refresh periods (with 5 s of slack).
      const ts = Date.parse(json.timestamp);
      const period = Math.max(seen.refreshSeconds || 30, Number(json.source?.interval_seconds) || 0);
      const age = (Date.now() - ts) / 1000;
      if (!Number.isFinite(ts)) check(seen.staleBanner, 'stale warning shown for a missing/invalid timestamp');
      else if (age > 3 * period + 5) check(seen.staleBanner, `stale warning shown (data ${Math.round(age)} s old, limit ${3 * period} s)`);
      else if (age < 3 * period - 5) check(!seen.staleBanner, `no stale warning (data ${Math.round(age)} s old, limit ${3 * period} s)`);
    }

    check(seen.imgCount === 0, 'no <img> element in the page (names and messages are inserted as text)', `${seen.imgCount} found`);
    const scriptsOk = seen.scripts.length === 2 && seen.scripts[0] === 'vendor/chart.umd.min.js' && seen.scripts[1] === 'dashboard.js';
    check(scriptsOk, 'only the two page scripts are in the document', JSON.stringify(seen.scripts));

    // Sorting by keyboard: Enter then Space on the p95 header button.
    const sortResult = await page.evaluate(async () => {
      const th = document.querySelector('#breakdown-table th[data-sort="p95_latency"]');
      return th ? th.getAttribute('aria-sort') : null;
    });
    await page.focus('#breakdown-table th[data-sort="p95_latency"] button');
    await page.keyboard.press('Enter');
    const afterEnter = await page.evaluate(() => {
      const th = document.querySelector('#breakdown-table th[data-sort="p95_latency"]');
      const vals = [...document.querySelectorAll('#breakdown-table tbody td[data-col="p95_latency"]')]
        .map((td) => td.getAttribute('data-value')).filter((v) => v !== '').map(Number);
      return { sort: th.getAttribute('aria-sort'), vals };
    });
    const desc = afterEnter.vals.every((v, i, a) => i === 0 || a[i - 1] >= v);
    check(afterEnter.sort === 'descending' && desc, 'Enter on the p95 header sorts descending (aria-sort)',
      `aria-sort ${sortResult} -> ${afterEnter.sort}, values ${afterEnter.vals.join(',')}`);
    await page.keyboard.press('Space');
    const afterSpace = await page.evaluate(() => document.querySelector('#breakdown-table th[data-sort="p95_latency"]').getAttribute('aria-sort'));
    check(afterSpace === 'ascending', 'Space on the same header flips to ascending', `aria-sort ${afterSpace}`);
    await page.focus('#breakdown-table th[data-sort="coordinator"] button');
    await page.keyboard.press('Enter'); // back to the default order (name, ascending) for the screenshots

    // Refresh updates the charts in place (same Chart instances).
    await page.evaluate((ids) => ids.forEach((id) => { window.Chart.getChart(document.getElementById(id)).$checkMarker = id; }), CHART_IDS);
    const before = (await readPage(page)).renderCount;
    await page.click('#refresh-button');
    const refreshed = await page.waitForFunction((n) => Number(document.documentElement.dataset.renderCount || 0) > n, before,
      { timeout: STEP_TIMEOUT_MS }).then(() => true, () => false);
    check(refreshed, 'Refresh button re-renders the page');
    const kept = await page.evaluate((ids) => ids.filter((id) => {
      const chart = window.Chart.getChart(document.getElementById(id));
      return chart && chart.$checkMarker === id;
    }), CHART_IDS);
    check(kept.length === CHART_IDS.length, 'charts are updated in place on refresh, not recreated', `kept ${kept.join(',')}`);
    seen = await readPage(page);
  }

  if (expectedErrors.length) {
    const missing = expectedErrors.filter((m) => !seen.errorMessages.includes(m));
    check(missing.length === 0, `error log shows all ${expectedErrors.length} messages of ${opts.expectErrorsFile}`, `missing ${JSON.stringify(missing)}`);
  }

  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(opts.out, 'desktop.png') });
  await page.screenshot({ path: path.join(opts.out, 'desktop-full.png'), fullPage: true });
  reportProblems(problems, 'desktop');
  await desktop.close();

  // ---------------- desktop, dark (screenshot for review + error checks)
  const dark = await browser.newContext({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1,
    reducedMotion: 'reduce', colorScheme: 'dark', serviceWorkers: 'block' });
  const d = await openPage(dark, 'dark');
  try {
    await gotoAndWait(d.page);
    await checkCharts(d.page, 'dark', expectEmpty);
    await d.page.screenshot({ path: path.join(opts.out, 'desktop-dark.png') });
  } catch (e) {
    fail(`dark: page did not render: ${e.message.split('\n')[0]}`);
  }
  reportProblems(d.problems, 'dark');
  await dark.close();

  // ---------------- phone
  const phone = await browser.newContext({ viewport: { width: 375, height: 812 }, deviceScaleFactor: 1, isMobile: true,
    hasTouch: true, reducedMotion: 'reduce', colorScheme: 'light', serviceWorkers: 'block' });
  const p = await openPage(phone, 'phone');
  try {
    await gotoAndWait(p.page);
    await checkCharts(p.page, 'phone', expectEmpty);
    const overflow = await p.page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: window.innerWidth }));
    check(overflow.scroll <= overflow.width, 'phone: no horizontal page overflow at 375 px (tables scroll inside their box)',
      `document ${overflow.scroll}px wide`);
    const phoneSeen = await readPage(p.page);
    check(phoneSeen.rows.length > 0, 'phone: breakdown table rendered', `${phoneSeen.rows.length} rows`);
    if (opts.expectDemo) check(phoneSeen.demoBanner, 'phone: demo banner visible');
    await p.page.screenshot({ path: path.join(opts.out, 'phone.png') });
    await p.page.screenshot({ path: path.join(opts.out, 'phone-full.png'), fullPage: true });
  } catch (e) {
    fail(`phone: page did not render: ${e.message.split('\n')[0]}`);
  }
  reportProblems(p.problems, 'phone');
  await phone.close();

  await browser.close();
  browser = null;
  console.log(`screenshots in ${opts.out}: desktop.png phone.png (and desktop-full.png phone-full.png desktop-dark.png)`);
  summaryAndExit(failed === 0 ? 0 : 1);
}

main().catch(async (e) => {
  fail(`unexpected error: ${e && e.stack ? e.stack : e}`);
  try { if (browser) await browser.close(); } catch { /* ignore */ }
  summaryAndExit(2);
});
