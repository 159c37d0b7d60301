/*
 * coordmetrics dashboard: renders metrics.json (docs/FORMATS.md) next to this page.
 *
 * Rules this file keeps:
 *  - every value that comes from metrics.json is inserted with textContent / createTextNode,
 *    never innerHTML;
 *  - no request leaves the page's origin: metrics.json is fetched relative to the page;
 *  - demo data is generated here, deterministically, and only shown when metrics.json cannot be
 *    loaded at all (network error, HTTP error, invalid JSON); a banner then says why;
 *  - charts are created once and updated in place (chart.data = ...; chart.update('none')).
 *
 * Hooks for tests: <html data-state="loading|live|demo" data-render-count="N">, canvases
 * #chart-p95 / #chart-throughput / #chart-memory / #chart-cache with data-chart, table rows
 * with data-coordinator, cells with data-col (and data-value holding the raw number).
 */
(function () {
  'use strict';

  var SCHEMA_VERSION = 1;
  var INTERVAL_CHOICES = [10, 30, 60];
  var DEFAULT_INTERVAL = 30;
  var STALE_PERIODS = 3;
  var FETCH_TIMEOUT_MS = 10000;
  var DELTA_WINDOW_S = 60;
  var STORE_INTERVAL = 'coordmetrics.dashboard.refreshSeconds';
  var STORE_PAUSED = 'coordmetrics.dashboard.paused';
  var STORE_SORT = 'coordmetrics.dashboard.sort';
  var DASH = '\u2014';

  // Colour-blind friendly categorical palette (Tableau 10); lines past 10 get dashes.
  var PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2',
    '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
  var DASHES = [[], [6, 3], [2, 2], [8, 3, 2, 3]];

  var state = {
    data: null,          // the object being shown (loaded or demo)
    mode: 'loading',     // 'live' | 'demo'
    lastError: null,     // why the last load failed (string) or null
    lastSuccessAt: null, // Date.now() of the last successful load
    refreshSeconds: DEFAULT_INTERVAL,
    paused: false,
    timer: null,
    nextRefreshAt: null,
    loading: false,
    pending: false,
    renderCount: 0,
    sort: { key: 'coordinator', label: 'Coordinator', dir: 'asc' },
    charts: {},
    chartError: null
  };

  var $ = function (id) { return document.getElementById(id); };

  /* ------------------------------------------------------------------ storage */

  function storeGet(key) {
    try { return window.localStorage.getItem(key); } catch (e) { return null; }
  }
  function storeSet(key, value) {
    try { window.localStorage.setItem(key, value); } catch (e) { /* private mode etc. */ }
  }

  /* ------------------------------------------------------------------ values */

  function num(v) {
    return (typeof v === 'number' && isFinite(v)) ? v : null;
  }
  function str(v) {
    if (v === null || v === undefined) return '';
    return String(v);
  }
  function obj(v) {
    return (v && typeof v === 'object' && !Array.isArray(v)) ? v : {};
  }
  function arr(v) {
    return Array.isArray(v) ? v : [];
  }
  // Code-point order, like the exporter's byte-wise sort of UTF-8 names.
  function compareNames(a, b) {
    var ca = Array.from(a), cb = Array.from(b);
    var n = Math.min(ca.length, cb.length);
    for (var i = 0; i < n; i++) {
      var x = ca[i].codePointAt(0), y = cb[i].codePointAt(0);
      if (x !== y) return x < y ? -1 : 1;
    }
    return ca.length - cb.length;
  }

  /* ------------------------------------------------------------------ formatting (locale-independent) */

  function groupDigits(intString) {
    return intString.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  }
  function fmtInt(v) {
    v = num(v);
    if (v === null) return DASH;
    var sign = v < 0 ? '-' : '';
    return sign + groupDigits(String(Math.round(Math.abs(v))));
  }
  function fmtFixed(v, digits) {
    var s = Math.abs(v).toFixed(digits);
    var parts = s.split('.');
    return (v < 0 ? '-' : '') + groupDigits(parts[0]) + (parts.length > 1 ? '.' + parts[1] : '');
  }
  function fmtMs(v) {
    v = num(v);
    if (v === null) return DASH;
    if (Math.abs(v) >= 10000) return fmtFixed(v / 1000, 1) + ' s';
    if (Math.abs(v) >= 1000) return fmtFixed(v / 1000, 2) + ' s';
    if (Math.abs(v) >= 100) return v.toFixed(0) + ' ms';
    if (Math.abs(v) >= 10) return v.toFixed(1) + ' ms';
    return v.toFixed(2) + ' ms';
  }
  // Axis ticks: round numbers without padding decimals ("50 ms", "1.5 s").
  function fmtMsTick(v) {
    v = num(v);
    if (v === null) return '';
    if (Math.abs(v) >= 1000) return String(Math.round(v / 10) / 100) + ' s';
    return String(Math.round(v * 100) / 100) + ' ms';
  }
  function fmtPct(v, digits) {
    v = num(v);
    if (v === null) return DASH;
    return (v * 100).toFixed(digits) + '%';
  }
  function fmtRate(v) {
    v = num(v);
    if (v === null) return DASH;
    return fmtFixed(v, Math.abs(v) >= 100 ? 0 : 2) + '/s';
  }
  function fmtBytes(v) {
    v = num(v);
    if (v === null) return DASH;
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var i = 0, x = Math.abs(v);
    while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
    return (v < 0 ? '-' : '') + (i === 0 ? String(Math.round(x)) : x.toFixed(x >= 100 ? 0 : 1)) + ' ' + units[i];
  }
  function fmtDuration(seconds) {
    seconds = num(seconds);
    if (seconds === null) return DASH;
    var s = Math.max(0, Math.floor(seconds));
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    var m = Math.floor((s % 3600) / 60), r = s % 60;
    if (d > 0) return d + 'd ' + h + 'h ' + m + 'm';
    if (h > 0) return h + 'h ' + m + 'm';
    if (m > 0) return m + 'm ' + r + 's';
    return r + 's';
  }
  function pad(n, w) {
    var s = String(n);
    while (s.length < (w || 2)) s = '0' + s;
    return s;
  }
  function parseTime(iso) {
    if (typeof iso !== 'string') return null;
    var t = Date.parse(iso);
    return isFinite(t) ? t : null;
  }
  function fmtLocalDateTime(ms) {
    var d = new Date(ms);
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
      pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }
  function fmtLocalTime(ms) {
    var d = new Date(ms);
    return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }
  function tzLabel() {
    var off = -new Date().getTimezoneOffset();
    var sign = off >= 0 ? '+' : '-';
    off = Math.abs(off);
    return 'UTC' + sign + pad(Math.floor(off / 60)) + ':' + pad(off % 60);
  }
  function fmtAgo(seconds) {
    if (seconds < -5) return 'in the future (clock skew?)';
    if (seconds < 5) return 'just now';
    return fmtDuration(seconds) + ' ago';
  }
  function truncate(s, n) {
    var chars = Array.from(s);
    return chars.length > n ? chars.slice(0, n - 1).join('') + '\u2026' : s;
  }
  function plural(n, one, many) {
    return n === 1 ? one : many;
  }

  /* ------------------------------------------------------------------ DOM helpers (text only) */

  function setText(el, text) {
    if (el) el.textContent = text;
  }
  function el(tag, className, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function show(elem, visible) {
    if (elem) elem.hidden = !visible;
  }

  /* ------------------------------------------------------------------ theme */

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }
  function theme() {
    return {
      text: cssVar('--text'), muted: cssVar('--muted'), grid: cssVar('--grid'),
      surface: cssVar('--surface'), border: cssVar('--border'),
      ok: cssVar('--ok'), warn: cssVar('--warn'), crit: cssVar('--crit'),
      font: cssVar('--font')
    };
  }

  /* ------------------------------------------------------------------ demo data (deterministic) */

  // mulberry32: a tiny seeded PRNG, so the demo looks the same on every load.
  function seededRandom(seed) {
    var a = seed >>> 0;
    return function () {
      a = (a + 0x6D2B79F5) >>> 0;
      var t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  function makeDemoData(nowMs) {
    var rnd = seededRandom(0xC0FFEE);
    var names = ['AnalyticsCoordinator', 'CacheCoordinator', 'ChatCoordinator', 'ContextCoordinator',
      'EmbeddingCoordinator', 'PlanningCoordinator', 'ProviderCoordinator', 'RetrievalCoordinator',
      'SafetyCoordinator', 'ToolCoordinator'];
    var interval = 10, points = 36;
    var end = Math.floor(nowMs / 1000) * 1000;
    var iso = function (ms) { return new Date(ms).toISOString(); };
    var round = function (v, d) { var f = Math.pow(10, d); return Math.round(v * f) / f; };
    var thresholds = {
      p95_ms: { warning: 100.0, critical: 200.0 },
      error_rate: { warning: 0.01, critical: 0.05 },
      cache_hit_rate: { warning: 0.7, critical: 0.5 },
      memory_growth_mb_per_hour: { warning: 5.0, critical: 10.0 }
    };
    var profiles = names.map(function (name, i) {
      return {
        name: name,
        rate: round(0.4 + rnd() * 3.2, 2),
        latency: round(12 + rnd() * (i === 6 ? 190 : 70), 1),
        errorRate: i === 6 ? 0.062 : (i === 2 ? 0.018 : round(rnd() * 0.006, 4)),
        cache: i === 0 || i === 8 ? null : round(0.42 + rnd() * 0.55, 3),
        memory: Math.round((8 + rnd() * 120) * 1048576),
        phase: rnd() * 6.283
      };
    });
    var history = [];
    var cumulative = profiles.map(function () { return 0; });
    var cumulativeErrors = profiles.map(function () { return 0; });
    var startUptime = 5400;
    for (var p = 0; p < points; p++) {
      var ts = end - (points - 1 - p) * interval * 1000;
      var entry = { timestamp: iso(ts), interval_seconds: interval, coordinators: {} };
      profiles.forEach(function (pr, i) {
        var wave = 1 + 0.35 * Math.sin(pr.phase + p / 4) + 0.15 * Math.sin(pr.phase * 3 + p / 1.7);
        var tput = round(Math.max(0, pr.rate * wave), 2);
        var count = Math.round(tput * interval);
        cumulative[i] += count + (p === 0 ? Math.round(pr.rate * startUptime) : 0);
        cumulativeErrors[i] = Math.round(cumulative[i] * pr.errorRate);
        entry.coordinators[pr.name] = {
          executions: cumulative[i], errors: cumulativeErrors[i], throughput_per_sec: tput,
          window_p95_ms: round(pr.latency * (0.9 + 0.2 * wave), 1), memory_bytes: pr.memory
        };
      });
      history.push(entry);
    }
    var last = history[history.length - 1];
    var coordinators = profiles.map(function (pr, i) {
      var h = last.coordinators[pr.name];
      var execs = h.executions, errs = h.errors;
      var hits = pr.cache === null ? 0 : Math.round(execs * 0.8 * pr.cache);
      var misses = pr.cache === null ? 0 : Math.round(execs * 0.8) - hits;
      var avg = round(pr.latency * 0.55, 1);
      var p95 = h.window_p95_ms;
      var reasons = [];
      var status = 'healthy';
      if (p95 >= thresholds.p95_ms.critical) { status = 'error'; reasons.push('recent p95 ' + p95 + ' ms >= critical 200 ms'); }
      else if (p95 >= thresholds.p95_ms.warning) { status = 'warning'; reasons.push('recent p95 ' + p95 + ' ms >= warning 100 ms'); }
      var er = execs ? round(errs / execs, 4) : 0;
      if (er >= thresholds.error_rate.critical) { status = 'error'; reasons.push('error rate >= critical 5%'); }
      else if (er >= thresholds.error_rate.warning) { if (status === 'healthy') status = 'warning'; reasons.push('error rate >= warning 1%'); }
      if (pr.cache !== null && pr.cache < thresholds.cache_hit_rate.critical) { status = 'error'; reasons.push('cache hit rate < critical 50%'); }
      else if (pr.cache !== null && pr.cache < thresholds.cache_hit_rate.warning) { if (status === 'healthy') status = 'warning'; reasons.push('cache hit rate < warning 70%'); }
      return {
        coordinator_name: pr.name, memory_bytes: pr.memory, memory_mb: round(pr.memory / 1048576, 1),
        memory_source: 'explicit', cpu_percent: round(rnd() * 8, 1), execution_count: execs,
        total_duration_ms: round(execs * avg, 1), error_count: errs, cache_hits: hits, cache_misses: misses,
        cache_hit_rate: pr.cache, avg_duration_ms: avg, p50_duration_ms: round(avg * 0.9, 1),
        p95_duration_ms: p95, p99_duration_ms: round(p95 * 1.3, 1), window_p95_duration_ms: p95, error_rate: er,
        throughput_per_sec: h.throughput_per_sec, in_flight: i % 3 === 0 ? 1 : 0,
        memory_growth_mb_per_hour: 0.0, status: status, status_reasons: reasons
      };
    });
    var total = 0, totalErr = 0, hitsAll = 0, missAll = 0, tputAll = 0, memAll = 0;
    coordinators.forEach(function (c) {
      total += c.execution_count; totalErr += c.error_count; hitsAll += c.cache_hits;
      missAll += c.cache_misses; tputAll += c.throughput_per_sec; memAll += c.memory_bytes;
    });
    var errorMessages = ['provider timeout after 30 s (demo)', 'rate limited by upstream (demo)',
      'tool returned malformed JSON (demo)', 'context window exceeded (demo)'];
    var recent = [];
    for (var k = 0; k < 6; k++) {
      var who = k % 2 === 0 ? profiles[6].name : profiles[2].name;
      recent.push({
        timestamp: iso(end - (7 + k * 53) * 1000 - Math.round(rnd() * 900)), coordinator: who,
        pid: 4200 + k, message: errorMessages[k % errorMessages.length]
      });
    }
    return {
      schema_version: SCHEMA_VERSION,
      timestamp: iso(end),
      demo: true,
      source: { segment: '(generated in the browser)', segment_id: 'demo', segment_created: iso(end - startUptime * 1000),
        exporter_version: 'demo', interval_seconds: interval },
      exporter: { uptime_seconds: startUptime, snapshot_duration_ms: 0.2, live_writers: 4, dropped_updates: 0, last_error: null },
      thresholds: thresholds,
      overall_stats: {
        total_executions: total, total_coordinators: coordinators.length, total_errors: totalErr,
        overall_error_rate: total ? round(totalErr / total, 5) : 0, uptime_seconds: startUptime,
        analytics_events: { tool_call: 412 }, throughput_per_sec: round(tputAll, 2),
        cache_hits: hitsAll, cache_misses: missAll,
        cache_hit_rate: hitsAll + missAll ? round(hitsAll / (hitsAll + missAll), 3) : null, memory_bytes: memAll
      },
      coordinators: coordinators,
      history: history,
      recent_errors: recent
    };
  }

  /* ------------------------------------------------------------------ loading */

  function describeFetchError(err) {
    if (err && err.name === 'AbortError') return 'request timed out after ' + (FETCH_TIMEOUT_MS / 1000) + ' s';
    if (err && err.dashboardReason) return err.dashboardReason;
    var msg = err && err.message ? err.message : String(err);
    return 'network error: ' + msg;
  }

  function reasonError(reason) {
    var e = new Error(reason);
    e.dashboardReason = reason;
    return e;
  }

  function fetchMetrics() {
    var url = new URL('metrics.json', window.location.href);
    var controller = typeof AbortController === 'function' ? new AbortController() : null;
    var timer = controller ? setTimeout(function () { controller.abort(); }, FETCH_TIMEOUT_MS) : null;
    return fetch(url.href, {
      cache: 'no-store',
      credentials: 'same-origin',
      headers: { 'Accept': 'application/json' },
      signal: controller ? controller.signal : undefined
    }).then(function (res) {
      if (!res.ok) {
        throw reasonError('HTTP ' + res.status + (res.statusText ? ' ' + res.statusText : '') + ' for ' + url.pathname);
      }
      return res.text();
    }).then(function (text) {
      var data;
      try {
        data = JSON.parse(text);
      } catch (e) {
        throw reasonError('invalid JSON in metrics.json: ' + (e && e.message ? e.message : String(e)));
      }
      if (!data || typeof data !== 'object' || Array.isArray(data)) {
        throw reasonError('invalid metrics.json: the top level is not an object');
      }
      if (!Array.isArray(data.coordinators)) {
        throw reasonError('invalid metrics.json: "coordinators" is not an array');
      }
      return data;
    }).finally(function () {
      if (timer) clearTimeout(timer);
    });
  }

  function refresh() {
    if (state.loading) { state.pending = true; return; }
    state.loading = true;
    clearTimer();
    var btn = $('refresh-button');
    btn.disabled = true;
    btn.classList.add('is-loading');
    btn.setAttribute('aria-busy', 'true');
    fetchMetrics().then(function (data) {
      state.mode = 'live';
      state.lastError = null;
      state.lastSuccessAt = Date.now();
      state.data = data;
      announce('Metrics updated.');
    }, function (err) {
      state.lastError = describeFetchError(err);
      if (state.mode !== 'live') {
        // Nothing real to show: fall back to generated demo data, clearly labelled.
        state.mode = 'demo';
        state.data = makeDemoData(Date.now());
        announce('metrics.json could not be loaded; showing demo data.');
      } else {
        announce('Refresh failed; showing the last data loaded.');
      }
    }).then(function () {
      safeRender();
    }).finally(function () {
      state.loading = false;
      btn.disabled = false;
      btn.classList.remove('is-loading');
      btn.removeAttribute('aria-busy');
      if (state.pending) { state.pending = false; refresh(); return; }
      schedule();
    });
  }

  function safeRender() {
    try {
      render();
    } catch (e) {
      // Surface the problem on the page as well as in the console.
      setText($('refresh-error-text'), 'The dashboard could not render this metrics.json: ' + (e && e.message ? e.message : String(e)));
      show($('refresh-error-banner'), true);
      throw e;
    }
  }

  /* ------------------------------------------------------------------ scheduling */

  function clearTimer() {
    if (state.timer) { clearTimeout(state.timer); state.timer = null; }
    state.nextRefreshAt = null;
  }
  function schedule() {
    clearTimer();
    if (state.paused) { updateClock(); return; }
    state.nextRefreshAt = Date.now() + state.refreshSeconds * 1000;
    state.timer = setTimeout(refresh, state.refreshSeconds * 1000);
    updateClock();
  }

  function announce(text) {
    setText($('sr-status'), text);
  }

  /* ------------------------------------------------------------------ derived values */

  // Every coordinator: metrics.json lists those with executions in `coordinators` (as the
  // original collector did) and those with cache traffic only in `coordinators_without_executions`.
  function sortedCoordinators(data) {
    return arr(data.coordinators).concat(arr(data.coordinators_without_executions))
      .filter(function (c) { return c && typeof c === 'object'; })
      .map(function (c) { return Object.assign({}, c, { coordinator_name: str(c.coordinator_name) }); })
      .sort(function (a, b) { return compareNames(a.coordinator_name, b.coordinator_name); });
  }

  function historyEntries(data) {
    return arr(data.history).filter(function (h) { return h && typeof h === 'object'; });
  }

  // Executions over the last minute: cumulative executions now minus those at the newest history
  // point at least ~60 s older than now. Returns {delta, seconds} or {reason}.
  function executionsDelta(data) {
    var now = parseTime(data.timestamp);
    var total = num(obj(data.overall_stats).total_executions);
    var history = historyEntries(data);
    if (now === null || total === null) return { reason: 'no timestamp' };
    var tolerance = 1000;
    for (var i = history.length - 1; i >= 0; i--) {
      var t = parseTime(history[i].timestamp);
      if (t === null) continue;
      if (now - t >= DELTA_WINDOW_S * 1000 - tolerance) {
        var then = 0, seen = false;
        var cs = obj(history[i].coordinators);
        Object.keys(cs).forEach(function (name) {
          var v = num(obj(cs[name]).executions);
          if (v !== null) { then += v; seen = true; }
        });
        if (!seen) return { reason: 'history has no executions' };
        var delta = total - then;
        if (delta < 0) return { reason: 'counters were reset' };
        return { delta: delta, seconds: Math.round((now - t) / 1000) };
      }
    }
    return { reason: 'history shorter than ' + DELTA_WINDOW_S + ' s' };
  }

  function thresholdPair(data, key) {
    var t = obj(obj(data.thresholds)[key]);
    return { warning: num(t.warning), critical: num(t.critical) };
  }

  // Higher is worse (latency, error rate).
  function levelHigh(v, t) {
    if (v === null) return null;
    if (t.critical !== null && v >= t.critical) return 'critical';
    if (t.warning !== null && v >= t.warning) return 'warning';
    return 'ok';
  }
  // Lower is worse (cache hit rate): >= warning ok, between critical and warning amber, < critical red.
  function levelLow(v, t) {
    if (v === null) return null;
    if (t.warning !== null && v >= t.warning) return 'ok';
    if (t.critical !== null && v < t.critical) return 'critical';
    if (t.warning === null && t.critical === null) return 'ok';
    return t.warning === null ? 'ok' : 'warning';
  }
  function levelColor(level, th) {
    if (level === 'critical') return th.crit;
    if (level === 'warning') return th.warn;
    if (level === 'ok') return th.ok;
    return th.muted;
  }

  /* ------------------------------------------------------------------ rendering */

  function render() {
    var data = state.data;
    if (!data) return;
    var coords = sortedCoordinators(data);
    var root = document.documentElement;
    root.setAttribute('data-state', state.mode);

    renderBanners(data);
    renderHeader(data);
    renderCards(data, coords);
    renderCharts(data, coords);
    renderTable(coords);
    renderErrors(data);
    updateClock();

    state.renderCount += 1;
    root.setAttribute('data-render-count', String(state.renderCount));
  }

  function renderBanners(data) {
    var demoFallback = state.mode === 'demo';
    show($('demo-banner'), demoFallback);
    show($('demo-badge'), demoFallback);
    setText($('demo-reason'), demoFallback ? state.lastError : '');

    var sample = !demoFallback && data.demo === true;
    show($('sample-banner'), sample);
    show($('sample-badge'), sample);

    var refreshFailed = state.mode === 'live' && state.lastError !== null;
    show($('refresh-error-banner'), refreshFailed);
    if (refreshFailed) {
      setText($('refresh-error-text'), 'metrics.json could not be reloaded (' + state.lastError +
        '). Showing the data loaded at ' + fmtLocalTime(state.lastSuccessAt) + '.');
    }

    var exporterError = demoFallback ? null : obj(data.exporter).last_error;
    var hasExporterError = exporterError !== null && exporterError !== undefined && str(exporterError) !== '';
    show($('exporter-error-banner'), hasExporterError);
    setText($('exporter-error-text'), hasExporterError ? str(typeof exporterError === 'object' ? JSON.stringify(exporterError) : exporterError) : '');

    var sv = data.schema_version;
    var schemaProblem = !demoFallback && sv !== SCHEMA_VERSION;
    show($('schema-banner'), schemaProblem);
    if (schemaProblem) {
      setText($('schema-text'), 'metrics.json has schema_version ' + JSON.stringify(sv === undefined ? null : sv) +
        '; this dashboard was written for version ' + SCHEMA_VERSION + '. Some values may be missing or wrong.');
    }
  }

  function renderHeader(data) {
    var ts = parseTime(data.timestamp);
    var lu = $('last-updated');
    if (ts !== null) {
      setText(lu, fmtLocalDateTime(ts));
      lu.setAttribute('datetime', str(data.timestamp));
      lu.title = str(data.timestamp);
    } else {
      setText(lu, 'unknown');
      lu.removeAttribute('datetime');
    }
    var exp = obj(data.exporter);
    var up = $('exporter-uptime');
    setText(up, fmtDuration(exp.uptime_seconds));
    up.setAttribute('data-value', str(num(exp.uptime_seconds)));

    var src = obj(data.source);
    var parts = [];
    if (src.exporter_version !== undefined) parts.push('exporter ' + str(src.exporter_version));
    if (num(src.interval_seconds) !== null) parts.push('snapshot every ' + num(src.interval_seconds) + ' s');
    if (src.segment !== undefined) parts.push(str(src.segment));
    setText($('source-info'), parts.length ? parts.join(' \u00b7 ') : DASH);
    setText($('footer-version'), state.mode === 'demo' ? 'coordmetrics (demo data)' :
      'coordmetrics exporter ' + (src.exporter_version !== undefined ? str(src.exporter_version) : ''));
    setText($('footer-tz'), 'times in local time (' + tzLabel() + ')');
  }

  function setCard(valueId, text, raw) {
    var e = $(valueId);
    setText(e, text);
    e.setAttribute('data-value', raw === null || raw === undefined ? '' : String(raw));
  }

  function renderCards(data, coords) {
    var os = obj(data.overall_stats);
    var total = num(os.total_executions);
    setCard('total-executions', fmtInt(total), total);

    var d = executionsDelta(data);
    var deltaEl = $('executions-delta');
    deltaEl.textContent = '';
    if (d.delta !== undefined) {
      deltaEl.appendChild(el('span', 'delta-up', '+' + fmtInt(d.delta)));
      deltaEl.appendChild(document.createTextNode(' in the last ' + d.seconds + ' s'));
      deltaEl.setAttribute('data-value', String(d.delta));
    } else {
      deltaEl.appendChild(document.createTextNode('Last minute: n/a (' + d.reason + ')'));
      deltaEl.setAttribute('data-value', '');
    }

    var active = num(os.total_coordinators);
    if (active === null) active = coords.length;
    setCard('active-coordinators', fmtInt(active), active);
    var counts = { healthy: 0, warning: 0, error: 0 };
    var inFlight = 0;
    coords.forEach(function (c) {
      if (Object.prototype.hasOwnProperty.call(counts, c.status)) counts[c.status] += 1;
      inFlight += num(c.in_flight) || 0;
    });
    setText($('coordinator-statuses'), counts.healthy + ' healthy \u00b7 ' + counts.warning + ' warning \u00b7 ' +
      counts.error + ' error');
    var card = $('card-coordinators');
    card.setAttribute('data-level', counts.error ? 'critical' : (counts.warning ? 'warning' : 'ok'));

    var er = num(os.overall_error_rate);
    setCard('error-rate', fmtPct(er, 2), er);
    var errors = num(os.total_errors);
    setText($('error-count'), fmtInt(errors) + ' ' + plural(errors, 'error', 'errors') + ' of ' + fmtInt(total) + ' ' +
      plural(total, 'execution', 'executions'));
    var erLevel = levelHigh(er, thresholdPair(data, 'error_rate'));
    $('card-error-rate').setAttribute('data-level', erLevel || 'none');

    var tp = num(os.throughput_per_sec);
    setCard('throughput', tp === null ? DASH : fmtFixed(tp, tp >= 100 ? 0 : 2) + ' req/s', tp);
    setText($('throughput-sub'), 'all coordinators \u00b7 ' + fmtInt(inFlight) + ' in flight');
  }

  /* ---------- charts */

  // Dashed vertical lines at the warning / critical thresholds of a horizontal bar chart.
  var thresholdLinesPlugin = {
    id: 'coordmetricsThresholds',
    afterDatasetsDraw: function (chart, args, opts) {
      var lines = opts && opts.lines;
      var scale = chart.scales.x;
      if (!lines || !lines.length || !scale) return;
      var ctx = chart.ctx, area = chart.chartArea;
      ctx.save();
      lines.forEach(function (line) {
        if (line.value === null || line.value < scale.min || line.value > scale.max) return;
        var x = Math.round(scale.getPixelForValue(line.value)) + 0.5;
        ctx.strokeStyle = line.color;
        ctx.lineWidth = 1.5;
        ctx.setLineDash([5, 4]);
        ctx.beginPath();
        ctx.moveTo(x, area.top);
        ctx.lineTo(x, area.bottom);
        ctx.stroke();
      });
      ctx.restore();
    }
  };

  function ensureCharts() {
    if (state.charts.p95 || state.chartError) return !state.chartError;
    if (typeof window.Chart !== 'function') {
      state.chartError = 'Chart.js (vendor/chart.umd.min.js) did not load';
      document.querySelectorAll('.chart-empty').forEach(function (p) {
        p.textContent = 'Charts unavailable: ' + state.chartError + '.';
        p.hidden = false;
      });
      return false;
    }
    var Chart = window.Chart;
    applyChartDefaults();
    var reduced = window.matchMedia && window.matchMedia('(prefers-reduced-motion: reduce)').matches;
    var animation = reduced ? false : { duration: 350 };

    var hbarOptions = function (tickFormat, tooltipLabel) {
      return {
        indexAxis: 'y',
        responsive: true,
        maintainAspectRatio: false,
        animation: animation,
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              title: function (items) { return items.length ? items[0].label : ''; },
              label: tooltipLabel
            }
          },
          coordmetricsThresholds: { lines: [] }
        },
        scales: {
          x: { beginAtZero: true, ticks: { callback: tickFormat, maxRotation: 0, autoSkipPadding: 12 }, grid: {} },
          y: { ticks: { autoSkip: false, callback: function (value) {
            return truncate(String(this.getLabelForValue(value)), this.chart.width < 420 ? 15 : 24);
          } }, grid: { display: false } }
        }
      };
    };

    state.charts.p95 = new Chart($('chart-p95'), {
      type: 'bar',
      data: { labels: [], datasets: [] },
      options: hbarOptions(fmtMsTick, function (item) {
        return 'p95 ' + fmtMs(item.raw);
      }),
      plugins: [thresholdLinesPlugin]
    });

    state.charts.cache = new Chart($('chart-cache'), {
      type: 'bar',
      data: { labels: [], datasets: [] },
      options: (function () {
        var o = hbarOptions(function (v) { return v + '%'; }, function (item) {
          return 'cache hit rate ' + (item.raw === null ? DASH : item.raw.toFixed(1) + '%');
        });
        o.scales.x.min = 0;
        o.scales.x.max = 100;
        return o;
      })(),
      plugins: [thresholdLinesPlugin]
    });

    state.charts.throughput = new Chart($('chart-throughput'), {
      type: 'line',
      data: { labels: [], datasets: [] },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: animation,
        interaction: { mode: 'index', intersect: false },
        elements: { point: { radius: 0, hoverRadius: 3 }, line: { borderWidth: 1.75, tension: 0.25 } },
        plugins: {
          legend: { position: 'bottom', labels: { boxWidth: 12, boxHeight: 2, padding: 10,
            generateLabels: truncatedLegendLabels(Chart.defaults.plugins.legend.labels.generateLabels) } },
          tooltip: { callbacks: { label: function (item) { return item.dataset.label + ': ' + fmtRate(item.raw); } } }
        },
        scales: {
          x: { ticks: { maxRotation: 0, autoSkip: true, autoSkipPadding: 16 }, grid: { display: false } },
          y: { beginAtZero: true, title: { display: true, text: 'req/s' } }
        }
      }
    });

    state.charts.memory = new Chart($('chart-memory'), {
      type: 'doughnut',
      data: { labels: [], datasets: [] },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: animation,
        cutout: '58%',
        onResize: function (chart, size) {
          var pos = size.width >= 480 ? 'right' : 'bottom';
          if (chart.options.plugins.legend.position !== pos) {
            chart.options.plugins.legend.position = pos;
            chart.update('none');
          }
        },
        plugins: {
          legend: { position: 'right', labels: { boxWidth: 12, padding: 8,
            generateLabels: truncatedLegendLabels(Chart.overrides.doughnut.plugins.legend.labels.generateLabels) } },
          tooltip: {
            callbacks: {
              label: function (item) {
                var sum = item.dataset.data.reduce(function (a, b) { return a + (b || 0); }, 0);
                var share = sum > 0 ? ' (' + ((item.raw || 0) / sum * 100).toFixed(1) + '%)' : '';
                return item.label + ': ' + fmtBytes(item.raw) + share;
              }
            }
          }
        }
      }
    });
    return true;
  }

  function truncatedLegendLabels(base) {
    return function (chart) {
      return base.call(this, chart).map(function (l) {
        l.text = truncate(String(l.text), chart.width < 420 ? 20 : 26);
        return l;
      });
    };
  }

  function applyChartDefaults() {
    var Chart = window.Chart;
    if (!Chart) return;
    var th = theme();
    Chart.defaults.color = th.muted;
    Chart.defaults.borderColor = th.grid;
    Chart.defaults.font.family = th.font;
    Chart.defaults.font.size = 12;
    Chart.defaults.plugins.tooltip.backgroundColor = 'rgba(17, 24, 39, 0.92)';
  }

  // Scale colours are resolved once per chart, so set them explicitly (at creation and on a
  // colour-scheme change) instead of relying on Chart.defaults alone.
  function themeCharts() {
    var th = theme();
    Object.keys(state.charts).forEach(function (k) {
      var chart = state.charts[k];
      var scales = chart.options.scales || {};
      Object.keys(scales).forEach(function (id) {
        var sc = scales[id];
        if (sc.ticks) sc.ticks.color = th.muted;
        if (sc.grid) sc.grid.color = th.grid;
        if (sc.border) sc.border.color = th.grid;
        if (sc.title) sc.title.color = th.muted;
      });
      if (chart.options.plugins && chart.options.plugins.legend && chart.options.plugins.legend.labels) {
        chart.options.plugins.legend.labels.color = th.muted;
      }
    });
  }

  function setEmpty(boxId, empty) {
    var p = document.querySelector('#' + boxId + ' .chart-empty');
    if (p && !state.chartError) p.hidden = !empty;
  }

  // A horizontal bar chart of one value per coordinator, coloured by threshold level, with the
  // thresholds drawn as lines; says "no data" when no coordinator has a value.
  function updateThresholdBars(chart, boxId, minDesktop, names, label, values, colors, lines) {
    sizeBarBox(boxId, names.length, minDesktop);
    chart.data = {
      labels: names.slice(),
      datasets: [{ label: label, data: values, backgroundColor: colors, borderRadius: 3,
        maxBarThickness: 18, categoryPercentage: 0.8, barPercentage: 0.9 }]
    };
    chart.options.plugins.coordmetricsThresholds.lines = lines;
    chart.update('none');
    setEmpty(boxId, !values.some(function (v) { return v !== null; }));
  }

  function sizeBarBox(boxId, n, minDesktop) {
    // Horizontal bars: give every coordinator a readable row; on wide screens be at least as tall
    // as the chart beside it so the two panels of a row line up.
    var h = Math.max(window.innerWidth <= 600 ? 220 : minDesktop, 34 + n * 26);
    $(boxId).style.height = h + 'px';
    $(boxId).setAttribute('data-bars', String(n));
  }
  function resizeBarBoxes() {
    [['chart-p95-box', 320], ['chart-cache-box', 300]].forEach(function (b) {
      var n = parseInt($(b[0]).getAttribute('data-bars'), 10);
      if (isFinite(n)) sizeBarBox(b[0], n, b[1]);
    });
  }

  function renderCharts(data, coords) {
    var th = theme();
    var names = coords.map(function (c) { return c.coordinator_name; });
    var p95t = thresholdPair(data, 'p95_ms');
    var cachet = thresholdPair(data, 'cache_hit_rate');

    setText($('chart-p95-note'), 'p95 since the segment was created. The status follows the recent p95 (since the previous ' +
      'snapshot) instead, so a coordinator that was slow is healthy again once it is fast. Green below the warning threshold (' +
      fmtMs(p95t.warning) + '), amber from warning, red from critical (' + fmtMs(p95t.critical) + '). No bar: no executions.');
    setText($('chart-cache-note'), 'Green at or above ' + fmtPct(cachet.warning, 0) + ', amber from ' + fmtPct(cachet.critical, 0) +
      ' to ' + fmtPct(cachet.warning, 0) + ', red below ' + fmtPct(cachet.critical, 0) + '. No bar: no cache traffic.');
    var memSources = {};
    coords.forEach(function (c) { if (c.memory_source) memSources[str(c.memory_source)] = true; });
    setText($('chart-memory-note'), 'Resident or client-reported memory per coordinator' +
      (memSources.process ? '; process memory is shared among the coordinators a process hosts' : '') +
      (memSources.none ? '; 0 for a coordinator no live process hosts.' : '.'));

    if (!ensureCharts()) return;
    themeCharts();

    // p95 latency
    var p95 = coords.map(function (c) { return num(c.p95_duration_ms); });
    updateThresholdBars(state.charts.p95, 'chart-p95-box', 320, names, 'p95 latency (ms)', p95,
      p95.map(function (v) { return levelColor(levelHigh(v, p95t), th); }),
      [{ value: p95t.warning, color: th.warn }, { value: p95t.critical, color: th.crit }]);

    // cache hit rate
    var cache = coords.map(function (c) { var v = num(c.cache_hit_rate); return v === null ? null : Math.round(v * 10000) / 100; });
    updateThresholdBars(state.charts.cache, 'chart-cache-box', 300, names, 'cache hit rate (%)', cache,
      coords.map(function (c) { return levelColor(levelLow(num(c.cache_hit_rate), cachet), th); }),
      [{ value: cachet.warning === null ? null : cachet.warning * 100, color: th.warn },
       { value: cachet.critical === null ? null : cachet.critical * 100, color: th.crit }]);

    // throughput over time: one line per coordinator (all names seen now or in history).
    var history = historyEntries(data);
    var seen = {};
    names.forEach(function (n) { seen[n] = true; });
    history.forEach(function (h) { Object.keys(obj(h.coordinators)).forEach(function (n) { seen[n] = true; }); });
    var lineNames = Object.keys(seen).sort(compareNames);
    var labels = history.map(function (h) {
      var t = parseTime(h.timestamp);
      return t === null ? str(h.timestamp) : fmtLocalTime(t);
    });
    var ct = state.charts.throughput;
    ct.data = {
      labels: labels,
      datasets: lineNames.map(function (name, i) {
        var color = PALETTE[i % PALETTE.length];
        return {
          label: name,
          data: history.map(function (h) { return num(obj(obj(h.coordinators)[name]).throughput_per_sec); }),
          borderColor: color,
          backgroundColor: color,
          borderDash: DASHES[Math.floor(i / PALETTE.length) % DASHES.length],
          spanGaps: false
        };
      })
    };
    ct.update('none');
    setEmpty('chart-throughput-box', history.length === 0);

    // memory doughnut
    var mem = coords.map(function (c) { var v = num(c.memory_bytes); return v === null ? 0 : Math.max(0, v); });
    var cm = state.charts.memory;
    cm.data = {
      labels: names.slice(),
      datasets: [{
        label: 'memory',
        data: mem,
        backgroundColor: names.map(function (n, i) { return PALETTE[i % PALETTE.length]; }),
        borderColor: th.surface,
        borderWidth: 2,
        hoverOffset: 4
      }]
    };
    cm.update('none');
    setEmpty('chart-memory-box', !mem.some(function (v) { return v > 0; }));
  }

  /* ---------- breakdown table */

  var STATUS_RANK = { healthy: 0, warning: 1, error: 2 };
  var STATUS_LABEL = { healthy: 'Healthy', warning: 'Warning', error: 'Error' };

  var COLUMNS = [
    { key: 'coordinator', text: true, get: function (c) { return c.coordinator_name; }, fmt: function (v) { return v; } },
    { key: 'executions', label: 'Executions', get: function (c) { return num(c.execution_count); }, fmt: fmtInt },
    { key: 'avg_latency', label: 'Avg latency', get: function (c) { return num(c.avg_duration_ms); }, fmt: fmtMs },
    { key: 'p95_latency', label: 'p95 latency', get: function (c) { return num(c.p95_duration_ms); }, fmt: fmtMs },
    { key: 'p99_latency', label: 'p99 latency', get: function (c) { return num(c.p99_duration_ms); }, fmt: fmtMs },
    { key: 'errors', label: 'Errors', get: function (c) { return num(c.error_count); }, fmt: fmtInt },
    { key: 'error_rate', label: 'Error rate', get: function (c) { return num(c.error_rate); }, fmt: function (v) { return fmtPct(v, 2); } },
    { key: 'cache_hit_rate', label: 'Cache hit rate', get: function (c) { return num(c.cache_hit_rate); }, fmt: function (v) { return fmtPct(v, 1); } },
    { key: 'throughput', label: 'Throughput', get: function (c) { return num(c.throughput_per_sec); }, fmt: fmtRate },
    { key: 'memory', label: 'Memory', get: function (c) { return num(c.memory_bytes); }, fmt: fmtBytes },
    { key: 'status', label: 'Status', text: true, get: function (c) { return str(c.status); } }
  ];

  function columnByKey(key) {
    for (var i = 0; i < COLUMNS.length; i++) if (COLUMNS[i].key === key) return COLUMNS[i];
    return COLUMNS[0];
  }

  function compareRows(a, b) {
    var col = columnByKey(state.sort.key);
    var dir = state.sort.dir === 'desc' ? -1 : 1;
    var va = col.get(a), vb = col.get(b);
    var r;
    if (col.key === 'status') {
      va = Object.prototype.hasOwnProperty.call(STATUS_RANK, va) ? STATUS_RANK[va] : -1;
      vb = Object.prototype.hasOwnProperty.call(STATUS_RANK, vb) ? STATUS_RANK[vb] : -1;
    }
    if (va === null && vb === null) r = 0;
    else if (va === null) return 1;      // nulls last in both directions
    else if (vb === null) return -1;
    else if (typeof va === 'string') r = compareNames(va, vb);
    else r = va < vb ? -1 : (va > vb ? 1 : 0);
    if (r === 0) return compareNames(a.coordinator_name, b.coordinator_name);
    return r * dir;
  }

  function renderTable(coords) {
    var body = $('breakdown-body');
    var rows = coords.slice().sort(compareRows);
    var frag = document.createDocumentFragment();
    rows.forEach(function (c) {
      var tr = document.createElement('tr');
      tr.setAttribute('data-coordinator', c.coordinator_name);
      COLUMNS.forEach(function (col) {
        var td;
        var v = col.get(c);
        if (col.key === 'coordinator') {
          td = el('th', 'col-text');
          td.setAttribute('scope', 'row');
          td.textContent = v;
        } else if (col.key === 'status') {
          td = el('td', 'col-text');
          var known = Object.prototype.hasOwnProperty.call(STATUS_LABEL, v);
          var badge = el('span', 'status status-' + (known ? v : 'unknown'), known ? STATUS_LABEL[v] : (v || DASH));
          td.appendChild(badge);
          var reasons = arr(c.status_reasons).map(str).filter(Boolean);
          if (reasons.length) {
            var list = el('span', 'status-reasons');
            reasons.forEach(function (r) { list.appendChild(el('span', 'status-reason', r)); });
            td.appendChild(list);
          }
          td.setAttribute('data-value', v);
        } else {
          td = el('td', 'col-num', col.fmt(v));
          td.setAttribute('data-value', v === null ? '' : String(v));
          if (v === null) td.classList.add('null');
        }
        td.setAttribute('data-col', col.key);
        td.setAttribute('data-label', col.label);
        tr.appendChild(td);
      });
      frag.appendChild(tr);
    });
    body.textContent = '';
    body.appendChild(frag);
    show($('breakdown-empty'), rows.length === 0);
    updateSortHeaders();
  }

  function updateSortHeaders() {
    document.querySelectorAll('#breakdown-table th[data-sort]').forEach(function (th) {
      var key = th.getAttribute('data-sort');
      if (key === state.sort.key) th.setAttribute('aria-sort', state.sort.dir === 'desc' ? 'descending' : 'ascending');
      else th.setAttribute('aria-sort', 'none');
    });
  }

  function onSort(key) {
    if (state.sort.key === key) {
      state.sort.dir = state.sort.dir === 'asc' ? 'desc' : 'asc';
    } else {
      state.sort.key = key;
      // text columns start A..Z, numbers start with the largest (the usual interest)
      state.sort.dir = (key === 'coordinator') ? 'asc' : 'desc';
    }
    storeSet(STORE_SORT, state.sort.key + ':' + state.sort.dir);
    if (state.data) renderTable(sortedCoordinators(state.data));
    else updateSortHeaders();
  }

  /* ---------- error log */

  function renderErrors(data) {
    var errors = arr(data.recent_errors).filter(function (e) { return e && typeof e === 'object'; });
    var body = $('error-log-body');
    var frag = document.createDocumentFragment();
    errors.forEach(function (e) {
      var tr = document.createElement('tr');
      var tdTime = el('td', 'col-text');
      var t = parseTime(e.timestamp);
      var time = el('time', null, t === null ? (str(e.timestamp) || DASH) : fmtLocalDateTime(t));
      if (t !== null) {
        time.setAttribute('datetime', str(e.timestamp));
        time.title = str(e.timestamp);
      }
      tdTime.appendChild(time);
      tdTime.setAttribute('data-col', 'time');
      tdTime.setAttribute('data-value', str(e.timestamp));
      var tdCoord = el('td', 'col-text', str(e.coordinator) || DASH);
      tdCoord.setAttribute('data-col', 'coordinator');
      var pid = num(e.pid);
      var tdPid = el('td', 'col-num', pid === null ? DASH : String(pid));
      tdPid.setAttribute('data-col', 'pid');
      var tdMsg = el('td', 'col-text', str(e.message));
      tdMsg.setAttribute('data-col', 'message');
      tr.appendChild(tdTime);
      tr.appendChild(tdCoord);
      tr.appendChild(tdPid);
      tr.appendChild(tdMsg);
      frag.appendChild(tr);
    });
    body.textContent = '';
    body.appendChild(frag);
    show($('error-log-empty'), errors.length === 0);
    setText($('error-log-count'), errors.length ? String(errors.length) : '');
  }

  /* ------------------------------------------------------------------ 1 s clock: ages, staleness, countdown */

  function stalePeriodSeconds(data) {
    var interval = num(obj(obj(data).source).interval_seconds) || 0;
    return Math.max(state.refreshSeconds, interval);
  }

  function updateClock() {
    var now = Date.now();
    var countdown = $('next-refresh');
    if (state.loading) setText(countdown, 'loading\u2026');
    else if (state.paused) setText(countdown, 'auto-refresh paused');
    else if (state.nextRefreshAt) setText(countdown, 'next in ' + Math.max(0, Math.ceil((state.nextRefreshAt - now) / 1000)) + ' s');
    else setText(countdown, '');

    var data = state.data;
    if (!data) return;
    var ts = parseTime(data.timestamp);
    var age = ts === null ? null : (now - ts) / 1000;
    setText($('last-updated-ago'), age === null ? '' : '(' + fmtAgo(age) + ')');

    var staleBanner = $('stale-banner');
    if (state.mode !== 'live') { show(staleBanner, false); return; }
    var period = stalePeriodSeconds(data);
    var limit = STALE_PERIODS * period;
    var stale = age === null || age > limit;
    show(staleBanner, stale);
    staleBanner.setAttribute('data-limit-seconds', String(limit));
    if (stale) {
      setText($('stale-text'), age === null ?
        'metrics.json has no valid timestamp, so its age is unknown.' :
        'metrics.json was last written ' + fmtDuration(age) + ' ago, more than ' + STALE_PERIODS + ' refresh periods (' +
        STALE_PERIODS + ' \u00d7 ' + period + ' s). ' +
        (state.paused ? 'Auto-refresh is paused: press Refresh or Resume to load newer data.' : 'Is the exporter running?'));
    }
  }

  /* ------------------------------------------------------------------ controls */

  function initControls() {
    var storedInterval = parseInt(storeGet(STORE_INTERVAL), 10);
    if (INTERVAL_CHOICES.indexOf(storedInterval) >= 0) state.refreshSeconds = storedInterval;
    state.paused = storeGet(STORE_PAUSED) === 'true';
    var storedSort = str(storeGet(STORE_SORT)).split(':');
    if (storedSort.length === 2 && COLUMNS.some(function (c) { return c.key === storedSort[0]; }) &&
        (storedSort[1] === 'asc' || storedSort[1] === 'desc')) {
      state.sort = { key: storedSort[0], dir: storedSort[1] };
    }

    var select = $('refresh-interval');
    select.value = String(state.refreshSeconds);
    select.addEventListener('change', function () {
      var v = parseInt(select.value, 10);
      if (INTERVAL_CHOICES.indexOf(v) < 0) return;
      state.refreshSeconds = v;
      storeSet(STORE_INTERVAL, String(v));
      if (!state.loading) schedule();
    });

    var pause = $('pause-button');
    var syncPause = function () {
      pause.setAttribute('aria-pressed', state.paused ? 'true' : 'false');
      pause.textContent = state.paused ? 'Resume' : 'Pause';
      pause.title = state.paused ? 'Resume auto-refresh' : 'Pause auto-refresh';
    };
    syncPause();
    pause.addEventListener('click', function () {
      state.paused = !state.paused;
      storeSet(STORE_PAUSED, state.paused ? 'true' : 'false');
      syncPause();
      if (!state.loading) schedule();
    });

    $('refresh-button').addEventListener('click', function () { refresh(); });

    document.querySelectorAll('#breakdown-table th[data-sort]').forEach(function (th) {
      var btn = th.querySelector('button');
      // <button> already turns Enter and Space into click.
      btn.addEventListener('click', function () { onSort(th.getAttribute('data-sort')); });
    });
    updateSortHeaders();

    if (window.matchMedia) {
      var mq = window.matchMedia('(prefers-color-scheme: dark)');
      var onTheme = function () {
        applyChartDefaults();
        if (state.data) safeRender();
      };
      if (mq.addEventListener) mq.addEventListener('change', onTheme);
      else if (mq.addListener) mq.addListener(onTheme);
    }

    // Catch up right away when a background tab becomes visible and a refresh is overdue.
    document.addEventListener('visibilitychange', function () {
      if (document.visibilityState === 'visible' && !state.paused && state.nextRefreshAt && Date.now() >= state.nextRefreshAt) {
        refresh();
      }
    });

    var resizeTimer = null;
    window.addEventListener('resize', function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(resizeBarBoxes, 150);
    });

    setInterval(updateClock, 1000);
  }

  function start() {
    initControls();
    refresh();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
