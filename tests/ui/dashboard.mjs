// The dashboard (/ui/) in a real browser: Debian's chromium, driven by
// playwright-core, against three `drengine run` processes (zone-a – zone-b –
// zone-c) and one storpool-emulator, from `drengine devnet --configs-only`
// on free ports. Run by scripts/ui-test.sh, which installs what it needs and
// sets:
//   UI_TEST_DIR   where playwright-core is installed; screenshots go to
//                 UI_TEST_DIR/screenshots
//   UI_WORK       a fresh scratch directory (configs, data, logs, pid files)
//   UI_DRENGINE, UI_EMULATOR   the binaries
// Every wait is a condition with a deadline. The last line is
// `ui: N passed, M failed`.
import { createRequire } from 'node:module';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set (run scripts/ui-test.sh)`);
  return v;
};
const TEST_DIR = env('UI_TEST_DIR');
const WORK = env('UI_WORK');
const DRENGINE = env('UI_DRENGINE');
const EMULATOR = env('UI_EMULATOR');
const require = createRequire(path.join(TEST_DIR, 'package.json'));
const { chromium } = require('playwright-core');

const ZONES = ['zone-a', 'zone-b', 'zone-c'];
const OP_TOKEN = 'devnet';
const VIEW_TOKEN = 'ui-viewer-token'; // role read: the dashboard needs no more
const SP_TOKEN = 'devnet-storpool';
const WAIT_MS = 20000;
const SHOTS = path.join(TEST_DIR, 'screenshots');
const SERVICE = 'ui-vm-1';
const started = Date.now();

// ---- processes ---------------------------------------------------------------

const procs = new Map(); // name -> ChildProcess

function startProc(name, cmd, args) {
  const log = fs.openSync(path.join(WORK, `${name}.log`), 'a');
  const child = spawn(cmd, args, {
    stdio: ['ignore', log, log],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
  });
  fs.closeSync(log);
  // For scripts/ui-test.sh to kill if this test is killed; gone once it exited.
  const pidFile = path.join(WORK, `${name}.pid`);
  fs.writeFileSync(pidFile, String(child.pid));
  child.once('exit', () => fs.rmSync(pidFile, { force: true }));
  procs.set(name, child);
  return child;
}

async function stopProc(name) {
  const child = procs.get(name);
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGINT');
  const t = setTimeout(() => child.kill('SIGKILL'), 15000);
  await exited;
  clearTimeout(t);
  procs.delete(name);
}

async function stopAll() {
  await Promise.all([...procs.keys()].map(stopProc));
}

function tail(name, lines = 25) {
  try {
    const text = fs.readFileSync(path.join(WORK, `${name}.log`), 'utf8').trimEnd().split('\n');
    return text.slice(-lines).join('\n');
  } catch (_) {
    return '(no log)';
  }
}

async function portFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

// A base port whose nine devnet ports (API +0..2, sync +100..102, StorPool
// +200..202) are free now.
async function freeBase() {
  for (let i = 0; i < 200; i++) {
    const base = 20000 + Math.floor(Math.random() * 35000);
    let ok = true;
    for (const off of [0, 1, 2, 100, 101, 102, 200, 201, 202]) {
      if (!(await portFree(base + off))) {
        ok = false;
        break;
      }
    }
    if (ok) return base;
  }
  throw new Error('no free base port found');
}

// ---- HTTP ------------------------------------------------------------------------

async function call(method, url, { token = OP_TOKEN, body, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const res = await fetch(url, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), redirect: 'manual' });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch (_) {
    json = null;
  }
  return { status: res.status, headers: res.headers, text, json };
}

async function ok(method, url, opts) {
  const a = await call(method, url, opts);
  if (a.status < 200 || a.status > 299) throw new Error(`${method} ${url}: ${a.status} ${a.text.slice(0, 300)}`);
  return a.json;
}

async function waitUntil(what, f, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  let last = null;
  for (;;) {
    try {
      if (await f()) return;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

// ---- the devnet ------------------------------------------------------------------

const base = await freeBase();
const api = (i) => `http://127.0.0.1:${base + i}`;
const storpool = (i) => `http://127.0.0.1:${base + 200 + i}`;
const A = api(0);
const B = api(1);

function writeConfigs() {
  execFileSync(DRENGINE, ['devnet', '--data-dir', WORK, '--base-port', String(base), '--configs-only'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  for (const z of ZONES) {
    const file = path.join(WORK, z, 'config.toml');
    let cfg = fs.readFileSync(file, 'utf8');
    // Short intervals, so that links and copies change within seconds, and
    // a read-only token for the browser.
    cfg = cfg.replace(
      /^\[sync\]$/m,
      '[sync]\nanti_entropy_interval_ms = 250\nredial_initial_ms = 50\nredial_max_ms = 300\nping_interval_ms = 500',
    );
    cfg = cfg.replace(/^\[engine\]$/m, '[engine]\ntick_ms = 100\nretry_initial_ms = 200\nretry_max_ms = 2000\nshutdown_grace_ms = 1000');
    cfg = cfg.replace(
      /^tokens = \[(.*)\]$/m,
      `tokens = [$1, { name = "viewer", token = "${VIEW_TOKEN}", role = "read" }]`,
    );
    assert(cfg.includes(VIEW_TOKEN) && cfg.includes('tick_ms'), `could not adjust ${file}`);
    fs.writeFileSync(file, cfg);
  }
}

function startZone(z) {
  startProc(z, DRENGINE, ['run', '--config', path.join(WORK, z, 'config.toml')]);
}

async function waitReady(i) {
  await waitUntil(`${ZONES[i]} ready`, async () => {
    const s = await call('GET', `${api(i)}/v1/status`);
    return s.status === 200 && s.json.rebuild.state !== 'rebuilding';
  });
}

// ---- the checks ------------------------------------------------------------------

const results = [];
let context = null;
let page = null;
const pageErrors = [];

async function shot(name) {
  if (!page) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true }).catch(() => {});
}

async function check(name, f) {
  const t = Date.now();
  try {
    await f();
    results.push({ name, ok: true });
    console.log(`ok   ${name} (${Date.now() - t} ms)`);
    return true;
  } catch (e) {
    results.push({ name, ok: false });
    console.log(`FAIL ${name} (${Date.now() - t} ms): ${e.message}`);
    await shot(`failed-${results.length}`);
    return false;
  }
}

const link = (x, y) => `g.link[data-link="${[x, y].sort().join('|')}"]`;
const zoneNode = (z) => `g.zone[data-zone="${z}"]`;

const steps = [
  [
    'the assets need no token, /ui redirects to /ui/, with a CSP and their content types',
    async () => {
      const r = await call('GET', `${B}/ui`, { token: null });
      assert(r.status === 308 || r.status === 301, `/ui answered ${r.status}`);
      assert(r.headers.get('location') === '/ui/', `/ui redirects to ${r.headers.get('location')}`);
      for (const [p, ct] of [
        ['/ui/', 'text/html'],
        ['/ui/app.js', 'text/javascript'],
        ['/ui/style.css', 'text/css'],
      ]) {
        const a = await call('GET', `${B}${p}`, { token: null });
        assert(a.status === 200, `${p}: ${a.status}`);
        assert((a.headers.get('content-type') || '').startsWith(ct), `${p}: content-type ${a.headers.get('content-type')}`);
        const csp = a.headers.get('content-security-policy') || '';
        assert(csp.includes("script-src 'self'") && !csp.includes('unsafe-inline'), `${p}: CSP ${csp}`);
        assert(/max-age=\d+/.test(a.headers.get('cache-control') || ''), `${p}: cache-control`);
      }
      const html = (await call('GET', `${B}/ui/`, { token: null })).text;
      assert(!/<script>|<script [^>]*>[^<]/.test(html.replace(/<script src="[^"]+" defer><\/script>/g, '')), 'inline script in index.html');
      const data = await call('GET', `${B}/v1/status`, { token: null });
      assert(data.status === 401, `the API without a token answered ${data.status}`);
    },
  ],
  [
    'without a token the page asks for one, and takes it',
    async () => {
      await page.goto(`${B}/ui/`);
      await page.locator('#login').waitFor({ state: 'visible', timeout: WAIT_MS });
      await page.fill('#token-input', 'not-a-token');
      await page.click('#login button[type=submit]');
      await page.waitForFunction(() => /refused/.test(document.getElementById('login-error').textContent), null, { timeout: WAIT_MS });
      await page.fill('#token-input', VIEW_TOKEN);
      await page.click('#login button[type=submit]');
      await page.locator('#main').waitFor({ state: 'visible', timeout: WAIT_MS });
    },
  ],
  [
    'the token from the URL fragment is used and removed from the address bar',
    async () => {
      await page.evaluate(() => sessionStorage.clear());
      await page.goto(`${B}/ui/#token=${VIEW_TOKEN}`);
      await page.locator('#main').waitFor({ state: 'visible', timeout: WAIT_MS });
      const url = page.url();
      assert(!url.includes(VIEW_TOKEN), `the address bar still holds the token: ${url}`);
      const kept = await page.evaluate(() => sessionStorage.getItem('drengine.token'));
      assert(kept === VIEW_TOKEN, 'the token is not in sessionStorage');
      await page.locator('#feed[data-state="live"]').waitFor({ timeout: WAIT_MS });
    },
  ],
  [
    'three zones and their two links, up; the local zone highlighted',
    async () => {
      await page.waitForFunction(
        () => document.querySelectorAll('g.zone').length === 3 && document.querySelectorAll('g.link').length === 2,
        null,
        { timeout: WAIT_MS },
      );
      await page.locator(`${link('zone-a', 'zone-b')}[data-state="up"]`).waitFor({ timeout: WAIT_MS });
      await page.locator(`${link('zone-b', 'zone-c')}[data-state="up"]`).waitFor({ timeout: WAIT_MS });
      await page.locator(`${zoneNode('zone-b')}[data-state="local"]`).waitFor({ timeout: WAIT_MS });
      const rtt = await page.locator(link('zone-a', 'zone-b')).textContent();
      assert(/RTT [\d.]+ ms/.test(rtt), `no RTT on the a–b link: ${rtt}`);
      assert(/behind/.test(rtt) && /ahead/.test(rtt), `no behind/ahead on the a–b link: ${rtt}`);
      await page.evaluate(() => {
        window.__notReloaded = true;
      });
      await shot('01-zones');
    },
  ],
  [
    "zone-a's page shows its own link, zone-c as a zone it has no link to, and the b–c link as zone-b reports it, live",
    async () => {
      const other = await context.newPage();
      try {
        await other.goto(`${A}/ui/#token=${VIEW_TOKEN}`);
        await other.waitForFunction(() => document.querySelectorAll('g.zone').length === 3, null, { timeout: WAIT_MS });
        await other.locator(`${zoneNode('zone-a')}[data-state="local"]`).waitFor({ timeout: WAIT_MS });
        await other.locator(`${link('zone-a', 'zone-b')}[data-state="up"]`).waitFor({ timeout: WAIT_MS });
        await other.locator(`${zoneNode('zone-c')}[data-state="indirect"]`).waitFor({ timeout: WAIT_MS });
        const bc = `${link('zone-b', 'zone-c')}[data-reported-by="zone-b"]`;
        await other.locator(`${bc}[data-state="up"]`).waitFor({ timeout: WAIT_MS });
        assert((await other.locator('g.link').count()) === 2, 'zone-a shows a link that does not exist');
        // zone-c stops: zone-b's next report turns b–c down on zone-a's page.
        await stopProc('zone-c');
        await other.locator(`${bc}[data-state="down"]`).waitFor({ timeout: WAIT_MS });
        await other.screenshot({ path: path.join(SHOTS, '01b-zone-a-sees-b-c-down.png') }).catch(() => {});
        startZone('zone-c');
        await waitReady(2);
        await other.locator(`${bc}[data-state="up"]`).waitFor({ timeout: WAIT_MS });
      } finally {
        await other.close();
      }
    },
  ],
  [
    'a service created through the API appears without a reload',
    async () => {
      await ok('POST', `${storpool(0)}/ctrl/1.0/VolumeCreate`, {
        token: null,
        headers: { Authorization: `Storpool v1:${SP_TOKEN}` },
        body: { name: 'ui-vm-1-root', size: 1048576 },
      });
      await ok('POST', `${A}/v1/services`, {
        body: {
          id: SERVICE,
          cmp_vm_id: 'ui-vm-1',
          disks: ['ui-vm-1-root'],
          metadata: '<domain name="ui-vm-1"/>',
          policy: {
            interval_s: 3600,
            recovery_zone: 'zone-b',
            local_retention: { keep_last: 3, keep_for_s: 86400 },
            remote_retention: { keep_last: 3, keep_for_s: 86400 },
          },
        },
      });
      const row = page.locator(`#services tr[data-service="${SERVICE}"]`);
      await row.waitFor({ timeout: WAIT_MS });
      const text = await row.textContent();
      assert(text.includes('zone-a') && text.includes('zone-b'), `row: ${text}`);
      assert(await page.evaluate(() => window.__notReloaded === true), 'the page was reloaded');
    },
  ],
  [
    'an RP taken through the API shows complete in zone-b without a reload',
    async () => {
      await ok('POST', `${A}/v1/services/${SERVICE}/rps`, { body: {} });
      await waitUntil('the RP complete in zone-b', async () => {
        const r = await ok('GET', `${B}/v1/services/${SERVICE}/rps`);
        return r.rps.some((rp) => rp.complete_in.includes('zone-b'));
      });
      await page.waitForFunction(
        (id) => {
          const tr = document.querySelector(`#services tr[data-service="${id}"]`);
          return tr && /zone-b: \d/.test(tr.textContent) && tr.dataset.level === 'ok';
        },
        SERVICE,
        { timeout: WAIT_MS },
      );
      assert(await page.evaluate(() => window.__notReloaded === true), 'the page was reloaded');
    },
  ],
  [
    'stopping a zone turns its link down on screen',
    async () => {
      await stopProc('zone-a');
      await page.locator(`${link('zone-a', 'zone-b')}[data-state="down"]`).waitFor({ timeout: WAIT_MS });
      await page.locator(`${zoneNode('zone-a')}[data-state="down"]`).waitFor({ timeout: WAIT_MS });
      await page.locator(`${link('zone-b', 'zone-c')}[data-state="up"]`).waitFor({ timeout: WAIT_MS });
      await shot('02-zone-a-down');
    },
  ],
  [
    'an active-VM conflict made through the API appears with both sides and the resolve command',
    async () => {
      // zone-a is down: fail over to zone-b, then bring zone-a back with
      // its VM still marked active.
      await ok('POST', `${B}/v1/services/${SERVICE}/failover`, { body: {} });
      startZone('zone-a');
      await waitReady(0);
      const card = page.locator(`.conflict[data-service="${SERVICE}"][data-kind="active_vms"]`);
      await card.waitFor({ timeout: WAIT_MS });
      await card.locator('.side[data-zone="zone-a"]').waitFor({ timeout: WAIT_MS });
      await card.locator('.side[data-zone="zone-b"]').waitFor({ timeout: WAIT_MS });
      const text = await card.textContent();
      for (const z of ['zone-a', 'zone-b']) {
        const cmd = `drengine --api ${B} resolve ${SERVICE} active_vms --keep-zone ${z}`;
        assert(text.includes(cmd), `no "${cmd}" in: ${text}`);
      }
      assert(text.includes(`/v1/services/${SERVICE}/resolve`), 'no API call shown');
      await page.locator(`#services tr[data-service="${SERVICE}"][data-conflicts="1"]`).waitFor({ timeout: WAIT_MS });
      await page.locator(`${link('zone-a', 'zone-b')}[data-state="up"]`).waitFor({ timeout: WAIT_MS });
      assert(await page.evaluate(() => window.__notReloaded === true), 'the page was reloaded');
      await shot('03-conflict');
    },
  ],
  [
    'the services table filters (in conflict, RPO, zone) and sorts',
    async () => {
      await page.check('#f-conflict');
      await page.locator(`#services tr[data-service="${SERVICE}"]`).waitFor({ timeout: WAIT_MS });
      await page.uncheck('#f-conflict');
      await page.selectOption('#f-zone', { value: 'zone-c' });
      await page.locator(`#services tr[data-service="${SERVICE}"]`).waitFor({ state: 'detached', timeout: WAIT_MS });
      await page.selectOption('#f-zone', { label: 'any' });
      await page.click('#services th[data-sort="rpo"]');
      await page.locator('#services th[data-sort="rpo"][aria-sort="ascending"]').waitFor({ timeout: WAIT_MS });
      await page.locator(`#services tr[data-service="${SERVICE}"]`).waitFor({ timeout: WAIT_MS });
    },
  ],
  [
    "a service's page shows its slots, RPs with per-zone copies and its history",
    async () => {
      await page.click(`#services tr[data-service="${SERVICE}"] a`);
      await page.locator(`#service-page h2[data-service="${SERVICE}"]`).waitFor({ timeout: WAIT_MS });
      await page.locator('#service-page table.slots tr[data-zone="zone-a"]').waitFor({ timeout: WAIT_MS });
      await page.locator('#service-page table.slots tr[data-zone="zone-b"]').waitFor({ timeout: WAIT_MS });
      await page.locator('#service-page table.rps td.copy-complete[data-zone="zone-b"]').first().waitFor({ timeout: WAIT_MS });
      const hist = await page.locator('#service-page table.history').textContent();
      for (const w of ['protect', 'rp-taken', 'failover']) assert(hist.includes(w), `no ${w} in the history`);
      await page.locator(`#service-page .conflict[data-kind="active_vms"]`).waitFor({ timeout: WAIT_MS });
      await shot('04-service');
      await page.click('#service-page a[href="#/"]');
      await page.locator('#view-overview').waitFor({ state: 'visible', timeout: WAIT_MS });
    },
  ],
  [
    'the page says when the feed is disconnected, and reconnects',
    async () => {
      await stopProc('zone-b');
      await page.locator('#feed[data-state="down"]').waitFor({ timeout: WAIT_MS });
      await page.locator('#banner:not([hidden])').waitFor({ timeout: WAIT_MS });
      await shot('05-feed-down');
      startZone('zone-b');
      await page.locator('#feed[data-state="live"]').waitFor({ timeout: WAIT_MS });
      await page.locator('#banner[hidden]').waitFor({ state: 'attached', timeout: WAIT_MS });
    },
  ],
  [
    'no script error and no CSP violation in the page',
    async () => {
      assert(pageErrors.length === 0, pageErrors.join('\n'));
    },
  ],
];

let userDataDir = null;
try {
  writeConfigs();
  startProc('emulator', EMULATOR, [
    '--token',
    SP_TOKEN,
    ...ZONES.flatMap((z, i) => ['--cluster', `${z}=127.0.0.1:${base + 200 + i}`]),
  ]);
  for (const z of ZONES) startZone(z);
  for (let i = 0; i < 3; i++) await waitReady(i);
  await waitUntil('zone-b linked to zone-a and zone-c', async () => {
    const s = await ok('GET', `${B}/v1/peers`);
    return s.peers.length === 2 && s.peers.every((p) => p.connected);
  });

  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'drengine-ui-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-quic',
    ],
  });
  page = context.pages()[0] || (await context.newPage());
  page.on('pageerror', (e) => pageErrors.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/.test(m.text())) pageErrors.push(`console: ${m.text()}`);
  });
  for (const [name, f] of steps) {
    if (!(await check(name, f))) break;
  }
} catch (e) {
  results.push({ name: 'setup', ok: false });
  console.log(`FAIL setup: ${e.stack || e.message}`);
} finally {
  if (context) await context.close().catch(() => {});
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
  const failed = results.filter((r) => !r.ok).length;
  if (failed) for (const name of ['emulator', ...ZONES]) console.log(`--- ${name}.log\n${tail(name)}`);
  await stopAll();
  const passed = results.filter((r) => r.ok).length;
  const notRun = steps.length - results.filter((r) => r.name !== 'setup').length;
  console.log(`screenshots: ${SHOTS}; ${((Date.now() - started) / 1000).toFixed(1)} s${notRun ? `; ${notRun} checks not run` : ''}`);
  console.log(`ui: ${passed} passed, ${failed + notRun} failed`);
  process.exitCode = failed || notRun ? 1 : 0;
}
