#!/usr/bin/env node
// Drives the sharepulse live page (daemon/dashboard.html, served at GET /) in
// Debian's system Chromium through playwright-core. It never downloads a browser.
//
//   node dashboard.mjs --url http://127.0.0.1:PORT/ --token TOKEN --video VIDEO_ID \
//        --screenshot PATH [--timeout-ms 30000]
//
// 1. opens the page, fills #token, clicks #connect;
// 2. waits until a [data-testid=row] is visible (the leaderboard loaded) and
//    prints "ready" on stdout: the caller injects a burst of shares for VIDEO_ID
//    only after that line;
// 3. waits until the first [data-testid=row] has data-video-id == VIDEO_ID and a
//    [data-testid=alert] with data-video-id == VIDEO_ID is visible, saves a
//    full-page screenshot to PATH, prints "ok <ms since ready>" and exits 0.
// On a timeout (either wait) it saves the screenshot anyway, prints on stderr what
// the page showed (first 5 row ids, alert video ids, status text) and exits 1.
// Bad arguments exit 2. The browser is always closed.
//
// Ids are compared as strings in the page, never put into a CSS selector, so an
// id may contain any character.

import { chromium } from 'playwright-core';

const USAGE = 'usage: node dashboard.mjs --url URL --token TOKEN --video VIDEO_ID --screenshot PATH [--timeout-ms 30000] [--executable /usr/bin/chromium]';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

function parseArgs(argv) {
  const opts = { timeoutMs: 30000, executable: '/usr/bin/chromium' };
  const names = { '--url': 'url', '--token': 'token', '--video': 'video', '--screenshot': 'screenshot',
    '--timeout-ms': 'timeoutMs', '--executable': 'executable' };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i], v;
    if (a === '-h' || a === '--help') { process.stdout.write(USAGE + '\n'); process.exit(0); }
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) { v = a.slice(eq + 1); a = a.slice(0, eq); }
    const key = names[a];
    if (!key) throw new Error(`unknown argument ${a}`);
    if (v === undefined) {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      v = argv[++i];
    }
    opts[key] = v;
  }
  for (const k of ['url', 'token', 'video', 'screenshot']) {
    if (opts[k] === undefined || opts[k] === '') throw new Error(`--${k} is required`);
  }
  opts.timeoutMs = Number(opts.timeoutMs);
  if (!Number.isFinite(opts.timeoutMs) || opts.timeoutMs <= 0) throw new Error('--timeout-ms must be a positive number');
  return opts;
}

function writeOut(stream, text) {
  return new Promise((resolve) => stream.write(text, () => resolve()));
}

// What the page shows, for the failure report. Runs in the page.
function pageState() {
  const attr = (el) => el.getAttribute('data-video-id');
  const rows = Array.from(document.querySelectorAll('[data-testid=row]'));
  const alerts = Array.from(document.querySelectorAll('[data-testid=alert]'));
  const status = document.querySelector('[data-testid=status]');
  const banner = document.getElementById('banner');
  const loginMsg = document.getElementById('login-msg');
  return {
    rows: rows.slice(0, 5).map(attr),
    rowCount: rows.length,
    alerts: alerts.map(attr),
    status: status ? status.textContent.trim() : null,
    statusTitle: status ? status.getAttribute('title') : null,
    banner: banner && !banner.hidden ? banner.textContent.trim() : null,
    loginMessage: loginMsg && !loginMsg.hidden ? loginMsg.textContent.trim() : null,
  };
}

// The success condition. Runs in the page, polled.
function burstShown(video) {
  const visible = (el) => (typeof el.checkVisibility === 'function'
    ? el.checkVisibility({ visibilityProperty: true, opacityProperty: false })
    : el.getClientRects().length > 0);
  const first = document.querySelector('[data-testid=row]');
  if (!first || first.getAttribute('data-video-id') !== video) return false;
  for (const a of document.querySelectorAll('[data-testid=alert]')) {
    if (a.getAttribute('data-video-id') === video && visible(a)) return true;
  }
  return false;
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    await writeOut(process.stderr, `dashboard.mjs: ${e.message}\n${USAGE}\n`);
    return 2;
  }

  const started = Date.now();
  const deadline = () => Math.max(1, opts.timeoutMs - (Date.now() - started));
  const pageErrors = [];
  let browser = null;
  let page = null;
  let phase = 'launch';

  const closeBrowser = async () => {
    const b = browser;
    browser = null;
    if (b) { try { await b.close(); } catch { /* already gone */ } }
  };
  const onSignal = (sig, code) => {
    process.on(sig, () => {
      closeBrowser().finally(() => process.exit(code));
    });
  };
  onSignal('SIGTERM', 143);
  onSignal('SIGINT', 130);

  const fail = async (why) => {
    let state = null;
    if (page) {
      try { state = await page.evaluate(pageState); } catch (e) { state = { error: `could not read the page: ${e.message}` }; }
      try { await page.screenshot({ path: opts.screenshot, fullPage: true, timeout: 10000 }); } catch (e) {
        pageErrors.push(`screenshot failed: ${e.message}`);
      }
    }
    let msg = `dashboard.mjs: FAILED during ${phase}: ${why}\n`;
    if (state) {
      msg += `  first rows: ${JSON.stringify(state.rows ?? [])} (${state.rowCount ?? 0} rows)\n`;
      msg += `  alert video ids: ${JSON.stringify(state.alerts ?? [])}\n`;
      msg += `  status: ${JSON.stringify(state.status ?? null)}${state.statusTitle ? ` (${state.statusTitle})` : ''}\n`;
      if (state.banner) msg += `  banner: ${JSON.stringify(state.banner)}\n`;
      if (state.loginMessage) msg += `  login message: ${JSON.stringify(state.loginMessage)}\n`;
      if (state.error) msg += `  ${state.error}\n`;
    }
    msg += `  expected: first row and an alert for ${JSON.stringify(opts.video)}\n`;
    for (const e of pageErrors.slice(-10)) msg += `  page: ${e}\n`;
    if (page) msg += `  screenshot: ${opts.screenshot}\n`;
    await writeOut(process.stderr, msg);
    return 1;
  };

  try {
    browser = await chromium.launch({
      executablePath: opts.executable,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: Math.max(opts.timeoutMs, 30000),
    });
    const context = await browser.newContext({
      viewport: { width: 1440, height: 900 },
      deviceScaleFactor: 1,
      serviceWorkers: 'block',
    });
    page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(`error: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(`console: ${m.text()}`); });
    page.on('requestfailed', (r) => {
      const f = r.failure();
      // the event stream is aborted on purpose when the page closes; keep the rest
      if (!(f && /ERR_ABORTED/.test(f.errorText))) pageErrors.push(`request failed: ${r.url()} ${f ? f.errorText : ''}`);
    });

    phase = 'load';
    await page.goto(opts.url, { waitUntil: 'domcontentloaded', timeout: deadline() });
    await page.locator('#token').fill(opts.token, { timeout: deadline() });
    await page.locator('#connect').click({ timeout: deadline() });

    phase = 'wait for the leaderboard';
    await page.locator('[data-testid=row]').first().waitFor({ state: 'visible', timeout: deadline() });
    await writeOut(process.stdout, 'ready\n');
    const readyAt = Date.now();

    phase = 'wait for the burst';
    await page.waitForFunction(burstShown, opts.video, { timeout: opts.timeoutMs, polling: 100 });
    const waited = Date.now() - readyAt;

    phase = 'screenshot';
    await page.screenshot({ path: opts.screenshot, fullPage: true, timeout: 15000 });
    await writeOut(process.stdout, `ok ${waited}\n`);
    return 0;
  } catch (e) {
    const why = e && e.name === 'TimeoutError' ? `timed out after ${opts.timeoutMs} ms` : (e && e.message ? e.message : String(e));
    return await fail(why);
  } finally {
    await closeBrowser();
  }
}

main().then(
  (code) => process.exit(code),
  async (e) => {
    await writeOut(process.stderr, `dashboard.mjs: ${e && e.stack ? e.stack : e}\n`);
    process.exit(1);
  },
);
