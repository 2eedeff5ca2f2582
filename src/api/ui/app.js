// drengine's operator dashboard. Read-only: every figure comes from this
// node's public API (/v1), read with fetch and a bearer token; nothing is
// written. No framework, no build step: the DOM is built with el() below,
// text always as text (never parsed as HTML).
'use strict';
(() => {
  const TOKEN_KEY = 'drengine.token';
  const API = new URL('../v1/', location.origin + location.pathname);
  const PAGE_ROWS = 50; // services rendered at once (one page of the table)
  const LIST_PAGE = 1000; // services per API request (the API's maximum)
  const MAX_SERVICES = 200000; // stop reading the list beyond this many
  // A peer's report of its own links is sent every anti-entropy interval
  // (5 s by default); older than this, the page shows those links as '?'.
  const REPORT_STALE_MS = 20000;
  const STATUS_POLL_MS = 2000; // peers and links are not on the feed: polled
  const LIST_REFRESH_MS = 60000; // RPO levels change with time: re-read the list
  const TICK_MS = 5000; // re-render ages
  const FEED_STALL_MS = 40000; // the feed sends a keep-alive every 15 s
  const RECONNECT_MIN_MS = 500;
  const RECONNECT_MAX_MS = 10000;
  const BURST_RELOAD = 200; // more services changed at once: re-read the whole list
  const MIN_FULL_RELOAD_MS = 10000; // but not more often than this (10,000 services: 10 requests)
  const FETCH_CONCURRENCY = 4;
  const MAX_SSE_BUFFER = 1 << 20;
  const HISTORY_PAGE = 100;

  const $ = (id) => document.getElementById(id);

  // ---- DOM helpers -------------------------------------------------------

  function el(tag, attrs, ...children) {
    const svg = tag.startsWith('svg:');
    const e = svg
      ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
      : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = String(v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return '?';
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }

  function utc(ms) {
    if (typeof ms !== 'number') return String(ms);
    const d = new Date(ms);
    return isNaN(d) ? String(ms) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  }

  function ago(ms) {
    return `${age((Date.now() - ms) / 1000)} ago`;
  }

  // A word for a shell: as is when it is plainly safe, else single-quoted.
  function sh(word) {
    const s = String(word);
    return /^[A-Za-z0-9_.:\/@=,+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
  }

  function sleep(ms) {
    return new Promise((r) => setTimeout(r, ms));
  }

  async function pool(items, n, f) {
    const queue = [...items];
    const workers = Array.from({ length: Math.min(n, queue.length) }, async () => {
      while (queue.length) await f(queue.shift());
    });
    await Promise.all(workers);
  }

  // ---- state ---------------------------------------------------------------

  const S = {
    token: null,
    status: null,
    statusError: null,
    services: new Map(), // id -> row (see rowOf)
    listLoaded: false,
    listTruncated: false,
    listLoading: false,
    conflicts: [],
    rps: new Map(), // id -> Map(zone -> newest complete RP there), for shown rows
    rpsWanted: new Set(),
    sort: { key: 'id', dir: 1 },
    filter: { text: '', conflict: false, rpo: false, zone: '' },
    page: 0,
    route: { name: 'overview' },
    servicePage: null, // {id, view, rps, history, nextBefore, error}
    feedCtl: null,
    generation: 0, // bumped when the token changes: old loops stop
  };

  // ---- API -------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function headers(accept) {
    return { Authorization: `Bearer ${S.token}`, Accept: accept };
  }

  async function api(path) {
    let res;
    try {
      res = await fetch(new URL(path, API), { headers: headers('application/json'), cache: 'no-store' });
    } catch (e) {
      throw new ApiError(0, 'unreachable', `the node did not answer (${e.message})`);
    }
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      body = null;
    }
    if (res.status === 401) {
      unauthorized();
      throw new ApiError(401, 'unauthorized', 'the node refused the token');
    }
    if (!res.ok) {
      const err = body && body.error ? body.error : {};
      throw new ApiError(res.status, err.code || 'error', err.message || `HTTP ${res.status}`);
    }
    return body;
  }

  // ---- token -----------------------------------------------------------------

  function takeTokenFromFragment() {
    const m = location.hash.match(/^#token=([^&]*)/);
    if (!m) return;
    let t = '';
    try {
      t = decodeURIComponent(m[1]);
    } catch (_) {
      t = '';
    }
    // Out of the address bar (and the history) at once.
    history.replaceState(null, '', location.pathname + location.search + '#/');
    if (t) setToken(t);
  }

  function setToken(t) {
    S.token = t;
    S.generation++;
    if (S.feedCtl) S.feedCtl.abort();
    try {
      sessionStorage.setItem(TOKEN_KEY, t);
    } catch (_) {
      /* storage off: keep it in memory */
    }
  }

  function unauthorized() {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      /* ignore */
    }
    if (S.token === null) return; // already asked for another
    S.token = null;
    S.generation++;
    if (S.feedCtl) S.feedCtl.abort();
    showLogin('The node refused this token.');
  }

  function showLogin(error) {
    $('login').hidden = false;
    $('main').hidden = true;
    $('forget').hidden = true;
    $('login-error').textContent = error || '';
    setFeed('idle', 'no token');
  }

  // ---- loading -----------------------------------------------------------------

  function rowOf(v) {
    const rpo = v.rpo || null;
    return {
      id: v.id,
      active: v.active_zones || [],
      recovery: v.policy ? v.policy.recovery_zone : null,
      slots: Object.keys(v.slots || {}),
      level: rpo ? rpo.level : null,
      age: rpo ? rpo.rpo_age_s : null,
      target: rpo ? rpo.rpo_target_s : null,
      keptOnlyIn: rpo ? rpo.kept_only_in : [],
      at: Date.now(),
      conflicts: (v.conflicts || []).length,
      error: v.last_error || null,
    };
  }

  async function loadStatus() {
    try {
      S.status = await api('status');
      S.statusAt = Date.now();
      S.statusError = null;
    } catch (e) {
      S.statusError = e;
    }
    renderGraph();
    renderBanner();
  }

  async function loadServices() {
    S.listLoading = true;
    try {
      const out = new Map();
      let after = null;
      let truncated = false;
      do {
        const q = new URLSearchParams({ limit: String(LIST_PAGE) });
        if (after) q.set('after', after);
        const page = await api(`services?${q}`);
        for (const v of page.services) out.set(v.id, rowOf(v));
        after = page.next_after;
        if (after && out.size >= MAX_SERVICES) truncated = true;
      } while (after && !truncated);
      S.services = out;
      S.rps.clear();
      S.listTruncated = truncated;
      S.listLoaded = true;
    } finally {
      S.listLoading = false;
    }
  }

  async function refreshService(id) {
    try {
      const v = await api(`services/${encodeURIComponent(id)}`);
      if (v.deleted) S.services.delete(id);
      else S.services.set(id, rowOf(v));
    } catch (e) {
      if (e.status === 404) S.services.delete(id);
      else throw e;
    }
    S.rps.delete(id);
  }

  async function loadConflicts() {
    S.conflicts = (await api('conflicts')).conflicts;
  }

  // The newest RP complete in each zone, for the rows on screen only.
  async function loadRps(id) {
    const list = (await api(`services/${encodeURIComponent(id)}/rps`)).rps;
    const newest = new Map();
    for (const rp of list) {
      for (const z of rp.complete_in) {
        const cur = newest.get(z);
        if (!cur || rp.taken.wall_ms > cur.taken.wall_ms) newest.set(z, rp);
      }
    }
    S.rps.set(id, newest);
  }

  let rpsTimer = null;
  function wantRps(ids) {
    for (const id of ids) if (!S.rps.has(id)) S.rpsWanted.add(id);
    if (!rpsTimer && S.rpsWanted.size) {
      rpsTimer = setTimeout(async () => {
        rpsTimer = null;
        const ids = [...S.rpsWanted];
        S.rpsWanted.clear();
        try {
          await pool(ids, FETCH_CONCURRENCY, async (id) => {
            try {
              await loadRps(id);
            } catch (e) {
              if (e.status !== 404) throw e;
            }
          });
        } catch (e) {
          showError(e);
        }
        renderServices();
      }, 50);
    }
  }

  async function loadServicePage(id, keepOlder) {
    const enc = encodeURIComponent(id);
    try {
      const [view, rps, hist] = await Promise.all([
        api(`services/${enc}`),
        api(`services/${enc}/rps`),
        api(`services/${enc}/history?limit=${HISTORY_PAGE}`),
      ]);
      const prev = S.servicePage;
      let entries = hist.entries;
      let nextBefore = hist.next_before;
      if (keepOlder && prev && prev.id === id && prev.olderLoaded) {
        // Keep the older pages the operator opened; drop overlap.
        const seen = new Set(entries.map(entryKey));
        entries = entries.concat(prev.history.filter((e) => !seen.has(entryKey(e))));
        nextBefore = prev.nextBefore;
      }
      S.servicePage = {
        id,
        view,
        rps: rps.rps,
        history: entries,
        nextBefore,
        olderLoaded: keepOlder && prev ? prev.olderLoaded : false,
        error: null,
      };
    } catch (e) {
      if (e.status === 401) return;
      S.servicePage = { id, error: e };
    }
    if (S.route.name === 'service' && S.route.id === id) renderServicePage();
  }

  function entryKey(e) {
    return `${e.at}|${e.zone}|${e.action}|${e.rp}|${e.summary}`;
  }

  async function loadOlderHistory() {
    const p = S.servicePage;
    if (!p || !p.nextBefore) return;
    const q = new URLSearchParams({ limit: String(HISTORY_PAGE), before: p.nextBefore });
    try {
      const h = await api(`services/${encodeURIComponent(p.id)}/history?${q}`);
      p.history = p.history.concat(h.entries);
      p.nextBefore = h.next_before;
      p.olderLoaded = true;
      renderServicePage();
    } catch (e) {
      showError(e);
    }
  }

  // ---- what changed: batched re-reads ------------------------------------------

  let dirty = new Set();
  let needAll = false; // re-read the whole list now (a reconnect, the periodic refresh)
  let needBurst = false; // re-read it, but rate-limited (a resync: the feed is busy)
  let flushTimer = null;
  let flushing = false;
  let lastFullMs = 0;

  function scheduleFlush(ms) {
    if (!flushTimer) flushTimer = setTimeout(flush, ms === undefined ? 150 : ms);
  }

  async function flush() {
    flushTimer = null;
    if (!S.token) return;
    if (flushing) {
      scheduleFlush(300);
      return;
    }
    const burst = needBurst || dirty.size > BURST_RELOAD;
    const all = needAll || burst;
    // A busy feed costs at most one whole-list re-read per
    // MIN_FULL_RELOAD_MS; the service on screen is re-read at once.
    if (!needAll && burst && Date.now() - lastFullMs < MIN_FULL_RELOAD_MS) {
      if (S.route.name === 'service' && dirty.has(S.route.id)) loadServicePage(S.route.id, true);
      scheduleFlush(lastFullMs + MIN_FULL_RELOAD_MS - Date.now());
      return;
    }
    flushing = true;
    const ids = [...dirty];
    dirty = new Set();
    needAll = false;
    needBurst = false;
    try {
      if (all) {
        lastFullMs = Date.now();
        await loadServices();
      } else {
        await pool(ids, FETCH_CONCURRENCY, refreshService);
      }
      await loadConflicts();
      S.lastError = null;
      if (S.route.name === 'service' && (all || ids.includes(S.route.id))) {
        await loadServicePage(S.route.id, true);
      }
    } catch (e) {
      // Try again later with what was asked.
      if (all) needBurst = true;
      for (const id of ids) dirty.add(id);
      if (e.status !== 401) {
        showError(e);
        scheduleFlush(2000);
      }
    } finally {
      flushing = false;
    }
    render();
  }

  function onFeedEvent(name, data) {
    if (name === 'resync') {
      needBurst = true;
    } else if (name === 'event') {
      let ev = null;
      try {
        ev = JSON.parse(data);
      } catch (_) {
        return;
      }
      if (ev && typeof ev.service === 'string') dirty.add(ev.service);
      else return; // messages: nothing shown here
    } else {
      return;
    }
    scheduleFlush();
  }

  // ---- the change feed, read with fetch (EventSource cannot send a header) ------

  function setFeed(state, detail) {
    const f = $('feed');
    f.dataset.state = state;
    const words = {
      idle: 'feed: not connected',
      connecting: 'feed: connecting…',
      live: 'feed: live',
      down: 'feed disconnected',
    };
    f.textContent = words[state] + (detail && state !== 'live' ? ` (${detail})` : '');
  }

  function parseSse(block, deliver) {
    let name = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? '' : line.slice(i + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') name = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length) deliver(name, data.join('\n'));
  }

  async function runFeed(gen) {
    let backoff = RECONNECT_MIN_MS;
    while (gen === S.generation) {
      const ctl = new AbortController();
      S.feedCtl = ctl;
      let stall = null;
      const arm = () => {
        clearTimeout(stall);
        stall = setTimeout(() => ctl.abort(), FEED_STALL_MS);
      };
      let reason = '';
      setFeed('connecting');
      try {
        const res = await fetch(new URL('events', API), {
          headers: headers('text/event-stream'),
          signal: ctl.signal,
          cache: 'no-store',
        });
        if (res.status === 401) {
          unauthorized();
          return;
        }
        if (!res.ok || !res.body) {
          let msg = `HTTP ${res.status}`;
          try {
            const b = await res.json();
            if (b && b.error) msg = b.error.code;
          } catch (_) {
            /* not JSON */
          }
          throw new Error(msg);
        }
        setFeed('live');
        backoff = RECONNECT_MIN_MS;
        // Whatever changed while we were not listening.
        needAll = true;
        scheduleFlush(0);
        arm();
        const reader = res.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          arm();
          buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            parseSse(block, onFeedEvent);
          }
          if (buf.length > MAX_SSE_BUFFER) throw new Error('an event over 1 MiB');
        }
        reason = 'the node closed it';
      } catch (e) {
        reason = ctl.signal.aborted ? 'no keep-alive' : e.message || String(e);
      } finally {
        clearTimeout(stall);
      }
      if (gen !== S.generation) return;
      const wait = backoff;
      backoff = Math.min(backoff * 2, RECONNECT_MAX_MS);
      setFeed('down', `${reason}; retrying in ${Math.ceil(wait / 1000)} s`);
      await sleep(wait);
    }
  }

  // ---- rendering: banner ---------------------------------------------------------

  function showError(e) {
    S.lastError = e;
    renderBanner();
  }

  function renderBanner() {
    const b = $('banner');
    const e = S.statusError || S.lastError;
    b.hidden = !e;
    if (e) {
      b.textContent = S.statusError
        ? `This node's API did not answer: ${e.message}. Showing what it said last.`
        : `A read failed: ${e.message}. Retrying.`;
    }
  }

  // ---- rendering: zones graph -------------------------------------------------------

  function knownZones(st) {
    const z = new Set([st.zone]);
    for (const p of st.peers) z.add(p.zone);
    for (const k of Object.keys(st.vv || {})) z.add(k);
    if (st.storage_links) {
      for (const k of st.storage_links.reachable) z.add(k);
      for (const k of st.storage_links.unreachable) z.add(k);
    }
    return [...z].sort();
  }

  function renderGraph() {
    const st = S.status;
    const box = $('graph');
    box.replaceChildren();
    if (!st) {
      box.append(el('p', { text: S.statusError ? S.statusError.message : 'loading…' }));
      return;
    }
    $('zone-name').textContent = `— zone ${st.zone}`;
    document.title = `drengine ${st.zone}`;
    const zones = knownZones(st);
    const peers = new Map(st.peers.map((p) => [p.zone, p]));
    // Zones in a row (three or fewer) or on a ring; link labels sit above
    // and below the line, clear of the boxes.
    const W = Math.max(900, 300 * zones.length);
    const H = zones.length <= 3 ? 200 : 200 + 60 * zones.length;
    const pos = new Map();
    zones.forEach((z, i) => {
      if (zones.length <= 3) {
        pos.set(z, { x: (W * (i + 0.5)) / zones.length, y: H / 2 });
      } else {
        const a = (2 * Math.PI * i) / zones.length - Math.PI / 2;
        pos.set(z, { x: W / 2 + (W / 2 - 120) * Math.cos(a), y: H / 2 + (H / 2 - 60) * Math.sin(a) });
      }
    });
    const stale = !!S.statusError;
    const svg = el('svg:svg', {
      viewBox: `0 0 ${W} ${H}`,
      class: 'zones',
      role: 'img',
      'aria-label': 'zones and control links',
      'data-stale': stale ? 'true' : 'false',
    });
    // Links first, under the zones.
    for (const [z, p] of peers) {
      const a = pos.get(st.zone);
      const b = pos.get(z);
      // With this node's API not answering, its last answer is no evidence.
      const state = stale ? 'unknown' : p.connected ? 'up' : 'down';
      const pair = [st.zone, z].sort();
      const rtt = rttText(p.rtt_ms);
      svg.append(
        linkGroup(a, b, { class: `link ${state}`, 'data-link': pair.join('|'), 'data-state': state }, state, [
          state === 'up' ? rtt : seen(p),
          `${z} behind ${p.behind_events}`,
          `${z} ahead ${p.ahead_events}`,
        ], `${st.zone} ↔ ${z}: ${state}; ${rtt}; ${seen(p)}`),
      );
    }
    // Then the links between other zones, as a peer at one end last
    // reported them; unknown once that report is old or the peer is gone.
    const drawn = new Set([...peers.keys()].map((z) => [st.zone, z].sort().join('|')));
    for (const [r, p] of peers) {
      const fresh = !stale && p.connected && p.links_reported_ms_ago !== null && p.links_reported_ms_ago <= REPORT_STALE_MS;
      for (const l of p.links || []) {
        const pair = [r, l.zone].sort();
        const key = pair.join('|');
        const a = pos.get(r);
        const b = pos.get(l.zone);
        if (l.zone === st.zone || drawn.has(key) || !a || !b) continue;
        drawn.add(key);
        const state = !fresh ? 'unknown' : l.connected ? 'up' : 'down';
        const rtt = rttText(l.rtt_ms);
        const when = p.links_reported_ms_ago === null ? '' : `, ${age(p.links_reported_ms_ago / 1000)} ago`;
        const attrs = { class: `link reported ${state}`, 'data-link': key, 'data-state': state, 'data-reported-by': r };
        svg.append(
          linkGroup(a, b, attrs, state, [state === 'up' ? rtt : '', `as ${r} reported${when}`], `${pair[0]} ↔ ${pair[1]}: ${state}, as ${r} reported it${when}; ${rtt}`),
        );
      }
    }
    for (const z of zones) {
      const { x, y } = pos.get(z);
      const p = peers.get(z);
      let state;
      let note;
      if (z === st.zone) {
        state = stale ? 'down' : 'local';
        note = stale ? 'API not answering' : 'this node';
      } else if (stale) {
        state = 'unknown';
        note = 'unknown';
      } else if (p) {
        state = p.connected ? 'up' : 'down';
        note = state === 'up' ? 'connected' : 'UNREACHABLE';
      } else {
        state = 'indirect';
        note = `no link to ${st.zone}`;
      }
      const g = el('svg:g', { class: `zone ${state}`, 'data-zone': z, 'data-state': state });
      g.append(el('svg:rect', { x: x - 62, y: y - 24, width: 124, height: 48, rx: 8 }));
      g.append(el('svg:text', { x, y: y - 3, class: 'zone-name', text: z }));
      g.append(el('svg:text', { x, y: y + 14, class: 'zone-note', text: note }));
      svg.append(g);
    }
    box.append(svg);
    renderFacts(st, peers);
  }

  function rttText(ms) {
    return ms === null ? 'RTT ?' : `RTT ${ms < 10 ? ms.toFixed(2) : Math.round(ms)} ms`;
  }

  // One link between points a and b: its line, its state above it, then
  // `lines` (the first above the line, the rest below), and a tooltip.
  function linkGroup(a, b, attrs, state, lines, title) {
    const g = el('svg:g', attrs);
    g.append(el('svg:line', { x1: a.x, y1: a.y, x2: b.x, y2: b.y }));
    const mx = (a.x + b.x) / 2;
    const my = (a.y + b.y) / 2;
    g.append(el('svg:text', { x: mx, y: my - 48, class: 'link-state', text: { up: 'up', down: 'DOWN', unknown: '?' }[state] }));
    lines.forEach((text, i) => g.append(el('svg:text', { x: mx, y: i === 0 ? my - 32 : my + 28 + 16 * i, text })));
    g.append(el('svg:title', { text: title }));
    return g;
  }

  function seen(p) {
    return p.last_seen_ms_ago === null ? 'never heard from' : `last heard ${age(p.last_seen_ms_ago / 1000)} ago`;
  }

  function renderFacts(st, peers) {
    const rows = [...peers.values()].map((p) =>
      el(
        'tr',
        { 'data-peer': p.zone },
        el('td', { text: p.zone }),
        el('td', { class: p.connected ? 'ok' : 'bad', text: p.connected ? 'up' : 'down' }),
        el('td', { text: p.rtt_ms === null ? '—' : `${p.rtt_ms.toFixed(2)} ms` }),
        el('td', { text: p.behind_events }),
        el('td', { text: p.ahead_events }),
        el('td', { text: p.last_seen_ms_ago === null ? 'never' : `${age(p.last_seen_ms_ago / 1000)} ago` }),
      ),
    );
    const links = st.storage_links;
    $('zone-facts').replaceChildren(
      S.statusError ? el('p', { class: 'error', text: `As this node last answered, ${age((Date.now() - S.statusAt) / 1000)} ago:` }) : '',
      el(
        'table',
        { class: 'peers' },
        el(
          'thead',
        {},
          el(
            'tr',
            {},
            ['peer', 'control link', 'RTT', 'peer behind (events)', 'peer ahead (events)', 'last heard'].map((h) =>
              el('th', { text: h }),
            ),
          ),
        ),
        el('tbody', {}, rows),
      ),
      el(
        'p',
        { class: 'small' },
        `Node ${st.zone}: ${st.rebuild.state}`,
        ` · engine ${st.engine_running ? 'running' : 'off'} · sync ${st.sync_running ? 'running' : 'off'}`,
        ` · ${st.services} services · ${st.conflicts} conflicts · ${st.pending_events} events waiting`,
        links
          ? ` · StorPool sends RPs to: ${links.reachable.join(', ') || 'none'}` +
              (links.unreachable.length ? ` (no link to ${links.unreachable.join(', ')})` : '')
          : '',
        ` · links between other zones as a zone at one end last reported them (? once that report is ${REPORT_STALE_MS / 1000} s old).`,
      ),
    );
  }

  // ---- rendering: conflicts ----------------------------------------------------------

  function renderConflicts() {
    const n = S.conflicts.length;
    const badge = $('conflict-count');
    badge.dataset.n = String(n);
    badge.textContent = n === 0 ? 'no conflicts' : `${n} conflict${n === 1 ? '' : 's'}`;
    const box = $('conflicts');
    box.replaceChildren();
    if (!n) {
      box.append(el('p', { class: 'small', text: 'No conflict in this zone.' }));
      return;
    }
    const shown = S.conflicts.slice(0, 100);
    for (const c of shown) box.append(conflictCard(c));
    if (n > shown.length) box.append(el('p', { text: `… and ${n - shown.length} more (drengine conflicts).` }));
  }

  function conflictTarget(c) {
    return c.kind === 'active_vms' ? 'active_vms' : String(c.field);
  }

  function conflictCard(c) {
    const target = conflictTarget(c);
    const title =
      c.kind === 'active_vms'
        ? `active in ${c.sides.length} zones: ${c.sides.map((s) => s.zone).join(', ')}`
        : `concurrent writes to ${target}`;
    const node = location.origin;
    const seenDots = c.sides.map((s) => ({ origin: s.dot.origin, seq: s.dot.seq }));
    const sides = c.sides.map((s) => {
      let cli;
      let body;
      if (c.kind === 'active_vms') {
        cli = `drengine --api ${sh(node)} resolve ${sh(c.service)} active_vms --keep-zone ${sh(s.zone)}`;
        body = { field: 'active_vms', keep_zone: s.zone, seen: seenDots };
      } else {
        cli = `drengine --api ${sh(node)} resolve ${sh(c.service)} ${sh(target)} --choose ${sh(`${s.dot.origin}:${s.dot.seq}`)}`;
        body = { field: target, choose: { origin: s.dot.origin, seq: s.dot.seq }, seen: seenDots };
      }
      const curl =
        `curl -XPOST ${sh(`${node}/v1/services/${encodeURIComponent(c.service)}/resolve`)} ` +
        `-H "Authorization: Bearer $DRENGINE_TOKEN" -H 'Content-Type: application/json' -d ${sh(JSON.stringify(body))}`;
      return el(
        'tr',
        { class: 'side', 'data-zone': s.zone },
        el('td', { text: s.zone }),
        el('td', {}, el('pre', { class: 'value', text: JSON.stringify(s.value, null, 1) })),
        el('td', { text: `${s.dot.origin}:${s.dot.seq}` }),
        el('td', { text: utc(s.hlc.wall_ms) }),
        el(
          'td',
          { class: 'resolve' },
          el('div', { class: 'small', text: c.kind === 'active_vms' ? `keep ${s.zone}'s VM active:` : 'keep this side:' }),
          el('code', { class: 'cli', text: cli }),
          el('code', { class: 'curl', text: curl }),
        ),
      );
    });
    return el(
      'div',
      { class: 'conflict', 'data-service': c.service, 'data-kind': c.kind, 'data-field': target },
      el('h3', {}, el('a', { href: `#/service/${encodeURIComponent(c.service)}`, text: c.service }), ` — ${title}`),
      el(
        'table',
        {},
        el(
          'thead',
        {},
          el('tr', {}, ['side (zone)', 'value', 'written by (origin:seq)', 'at (UTC)', 'to resolve (operator token)'].map((h) => el('th', { text: h }))),
        ),
        el('tbody', {}, sides),
      ),
      c.kind === 'active_vms'
        ? el(
            'p',
            { class: 'small' },
            'Or mark one zone\'s VM inactive: ',
            el('code', { text: `drengine --api ${sh(node)} deactivate ${sh(c.service)} --zone ZONE` }),
            '. The CLI shows the preflight and asks for the service id; --dry-run only shows it.',
          )
        : el('p', { class: 'small', text: 'Or write a new value: --value JSON instead of --choose. The CLI shows the preflight and asks first.' }),
    );
  }

  // ---- rendering: services table -------------------------------------------------------

  const LEVEL_RANK = { paused: -1, ok: 0, warning: 1, critical: 2 };

  function rowAge(r) {
    return r.age === null ? null : r.age + (Date.now() - r.at) / 1000;
  }

  function filteredSorted() {
    const f = S.filter;
    const out = [];
    for (const r of S.services.values()) {
      if (f.conflict && !r.conflicts) continue;
      if (f.rpo && !(r.level === 'warning' || r.level === 'critical')) continue;
      if (f.zone && !(r.slots.includes(f.zone) || r.recovery === f.zone)) continue;
      if (f.text && !r.id.includes(f.text)) continue;
      out.push(r);
    }
    const { key, dir } = S.sort;
    const val = {
      id: (r) => r.id,
      active: (r) => r.active.join(','),
      recovery: (r) => r.recovery || '',
      rpo: (r) => (r.level === null ? -1 : LEVEL_RANK[r.level] * 1e12 + (r.age === null ? 1e11 : r.age)),
      conflicts: (r) => r.conflicts,
      error: (r) => r.error || '',
    }[key];
    out.sort((a, b) => {
      const x = val(a);
      const y = val(b);
      const c = x < y ? -1 : x > y ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
      return c * dir;
    });
    return out;
  }

  function renderZoneOptions() {
    const sel = $('f-zone');
    const zones = S.status ? knownZones(S.status) : [];
    const have = [...sel.options].map((o) => o.value).filter((v) => v);
    if (have.join() === zones.join()) return;
    const cur = sel.value;
    sel.replaceChildren(el('option', { value: '', text: 'any' }), ...zones.map((z) => el('option', { value: z, text: z })));
    sel.value = zones.includes(cur) ? cur : '';
  }

  function renderServices() {
    renderZoneOptions();
    const all = filteredSorted();
    const pages = Math.max(1, Math.ceil(all.length / PAGE_ROWS));
    S.page = Math.min(S.page, pages - 1);
    const rows = all.slice(S.page * PAGE_ROWS, (S.page + 1) * PAGE_ROWS);
    for (const th of document.querySelectorAll('#services th[data-sort]')) {
      const k = th.dataset.sort;
      th.setAttribute('aria-sort', k === S.sort.key ? (S.sort.dir > 0 ? 'ascending' : 'descending') : 'none');
    }
    const tbody = document.querySelector('#services tbody');
    tbody.replaceChildren(
      ...rows.map((r) => {
        const a = rowAge(r);
        const level = r.level || 'none';
        const newest = S.rps.get(r.id);
        let rpCell;
        if (!newest) rpCell = el('td', { class: 'small', text: '…' });
        else if (!newest.size) rpCell = el('td', { class: 'small', text: 'none complete' });
        else
          rpCell = el(
            'td',
            { class: 'small' },
            [...newest.entries()].sort().map(([z, rp]) =>
              el('div', { title: rp.id }, `${z}: ${ago(rp.taken.wall_ms)}`),
            ),
          );
        return el(
          'tr',
          { 'data-service': r.id, 'data-level': level, 'data-conflicts': r.conflicts },
          el('td', {}, el('a', { href: `#/service/${encodeURIComponent(r.id)}`, text: r.id })),
          el('td', { class: r.active.length > 1 ? 'bad' : '', text: r.active.join(', ') || 'none' }),
          el('td', { text: r.recovery || '—' }),
          el(
            'td',
            { title: r.target === null ? 'not graded in this zone' : `target ${r.target} s` },
            el('span', { class: `rpo rpo-${level}`, text: r.level || 'n/a' }),
            r.level ? ` ${age(a)}` : '',
            r.keptOnlyIn.length ? el('div', { class: 'small', text: `kept only in ${r.keptOnlyIn.join(', ')}` }) : '',
          ),
          rpCell,
          el('td', { class: r.conflicts ? 'bad' : '', text: r.conflicts || '' }),
          el('td', { class: r.error ? 'bad small' : 'small', text: r.error || '' }),
        );
      }),
    );
    if (!rows.length) {
      tbody.append(
        el('tr', {}, el('td', { colspan: 7, class: 'small', text: S.listLoaded ? 'No service matches.' : 'loading…' })),
      );
    }
    const from = all.length ? S.page * PAGE_ROWS + 1 : 0;
    $('page-info').textContent = `${from}–${S.page * PAGE_ROWS + rows.length} of ${all.length}, page ${S.page + 1} of ${pages}`;
    $('page-prev').disabled = S.page === 0;
    $('page-next').disabled = S.page >= pages - 1;
    $('services-count').textContent =
      `${S.services.size} services` + (S.listTruncated ? ` (only the first ${MAX_SERVICES} read)` : '');
    wantRps(rows.map((r) => r.id));
  }

  // ---- rendering: one service ---------------------------------------------------------

  function renderServicePage() {
    const box = $('service-page');
    const p = S.servicePage;
    if (!p || p.id !== S.route.id) {
      box.replaceChildren(el('p', { text: 'loading…' }));
      return;
    }
    if (p.error) {
      box.replaceChildren(el('p', { class: 'error', text: `${p.id}: ${p.error.message}` }), el('a', { href: '#/', text: '← overview' }));
      return;
    }
    const v = p.view;
    const pol = v.policy;
    const rpo = v.rpo;
    const zones = new Set(Object.keys(v.slots));
    if (pol) zones.add(pol.recovery_zone);
    for (const rp of p.rps) for (const z of Object.keys(rp.copies)) zones.add(z);
    const zoneList = [...zones].sort();
    const facts = [
      ['active in', v.active_zones.join(', ') || 'none'],
      ['recovery zone', pol ? pol.recovery_zone : '—'],
      ['RP interval', pol ? `${pol.interval_s} s` : '—'],
      [
        'retention',
        pol
          ? `local: last ${pol.local_retention.keep_last}, ${age(pol.local_retention.keep_for_s)}; remote: last ${pol.remote_retention.keep_last}, ${age(pol.remote_retention.keep_for_s)}`
          : '—',
      ],
      ['RPs go', v.protection.map((x) => `${x.zone} → ${x.rps_go_to || 'kept only there'}`).join('; ') || '—'],
      [
        'RPO',
        rpo
          ? `${rpo.level}, ${age(rpo.rpo_age_s)} (target ${rpo.rpo_target_s} s)` +
            (rpo.kept_only_in.length ? `; kept only in ${rpo.kept_only_in.join(', ')}` : '')
          : 'not graded in this zone',
      ],
      ['newest recoverable RP', v.newest_recoverable_rp || 'none'],
      ['last StorPool error', v.last_error || 'none'],
      ['created by', v.created_by.join(', ')],
      ['version', v.version + (v.deleted ? ' (deleted)' : '')],
    ];
    const slotRows = Object.entries(v.slots).map(([z, s]) =>
      el(
        'tr',
        { 'data-zone': z },
        el('td', { text: z }),
        el('td', { text: s.cmp_vm_id }),
        el('td', { text: (s.disks || []).join(', ') }),
        el('td', { class: s.active ? 'ok' : '', text: s.active ? 'active' : 'inactive' }),
      ),
    );
    const rpRows = p.rps
      .slice()
      .sort((a, b) => b.taken.wall_ms - a.taken.wall_ms)
      .map((rp) =>
        el(
          'tr',
          { 'data-rp': rp.id },
          el('td', { text: rp.id }),
          el('td', { text: rp.origin }),
          el('td', { text: `${utc(rp.taken.wall_ms)} (${ago(rp.taken.wall_ms)})` }),
          el('td', { text: rp.held ? 'held' : '' }),
          zoneList.map((z) => {
            const c = rp.copies[z];
            return el('td', {
              class: c ? `copy copy-${c.state}` : 'copy',
              'data-zone': z,
              title: c && c.error ? c.error : '',
              text: c ? c.state + (c.error ? `: ${c.error}` : '') : '—',
            });
          }),
        ),
      );
    const histRows = p.history.map((e) =>
      el(
        'tr',
        {},
        el('td', { text: e.at.replace('T', ' ') }),
        el('td', { text: e.zone }),
        el('td', { text: e.actor }),
        el('td', { text: e.action }),
        el('td', { text: e.rp || '' }),
        el('td', { text: e.summary }),
      ),
    );
    // el() flattens the nested lists; replaceChildren would not.
    box.replaceChildren(
      el(
        'div',
        {},
        el('p', {}, el('a', { href: '#/', text: '← overview' })),
        el('h2', { 'data-service': v.id }, `Service ${v.id}`),
        el('table', { class: 'facts-table' }, el('tbody', {}, facts.map(([k, x]) => el('tr', {}, el('th', { text: k }), el('td', { text: x }))))),
        v.conflicts.length ? [el('h3', { text: 'Conflicts' }), v.conflicts.map(conflictCard)] : '',
        el('h3', { text: 'VM slots' }),
        el(
          'table',
          { class: 'slots' },
          el('thead', {}, el('tr', {}, ['zone', 'VM', 'disks', 'state'].map((h) => el('th', { text: h })))),
          el('tbody', {}, slotRows),
        ),
        el('h3', { text: `Recovery points (${p.rps.length})` }),
        el(
          'table',
          { class: 'rps' },
          el(
            'thead',
            {},
            el('tr', {}, ['RP', 'origin', 'taken (UTC)', 'hold', ...zoneList.map((z) => `copy in ${z}`)].map((h) => el('th', { text: h }))),
          ),
          el('tbody', {}, rpRows),
        ),
        el('h3', { text: 'History (newest first)' }),
        el(
          'table',
          { class: 'history' },
          el('thead', {}, el('tr', {}, ['at (UTC)', 'zone', 'who', 'action', 'RP', 'what'].map((h) => el('th', { text: h })))),
          el('tbody', {}, histRows),
        ),
        p.nextBefore ? el('button', { type: 'button', onclick: loadOlderHistory, text: 'older…' }) : '',
      ),
    );
  }

  // ---- routing and the whole page -----------------------------------------------------

  function route() {
    const m = location.hash.match(/^#\/service\/(.+)$/);
    if (m) {
      let id = m[1];
      try {
        id = decodeURIComponent(id);
      } catch (_) {
        /* as typed */
      }
      S.route = { name: 'service', id };
    } else {
      S.route = { name: 'overview' };
    }
    $('view-overview').hidden = S.route.name !== 'overview';
    $('view-service').hidden = S.route.name !== 'service';
    if (S.route.name === 'service') {
      renderServicePage();
      if (S.token) loadServicePage(S.route.id, false);
    }
  }

  function render() {
    renderBanner();
    renderConflicts();
    if (S.route.name === 'overview') renderServices();
    else renderServicePage();
  }

  async function start() {
    const gen = S.generation;
    $('login').hidden = true;
    $('main').hidden = false;
    $('forget').hidden = false;
    route();
    runFeed(gen);
    await loadStatus();
    needAll = true;
    scheduleFlush(0);
    while (gen === S.generation) {
      await sleep(STATUS_POLL_MS);
      if (gen !== S.generation) return;
      await loadStatus();
      renderZoneOptions();
    }
  }

  function wire() {
    $('login-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const t = $('token-input').value.trim();
      if (!t) return;
      $('token-input').value = '';
      setToken(t);
      start();
    });
    $('forget').addEventListener('click', () => {
      unauthorized();
      showLogin('');
    });
    $('f-text').addEventListener('input', (e) => {
      S.filter.text = e.target.value.trim();
      S.page = 0;
      renderServices();
    });
    $('f-conflict').addEventListener('change', (e) => {
      S.filter.conflict = e.target.checked;
      S.page = 0;
      renderServices();
    });
    $('f-rpo').addEventListener('change', (e) => {
      S.filter.rpo = e.target.checked;
      S.page = 0;
      renderServices();
    });
    $('f-zone').addEventListener('change', (e) => {
      S.filter.zone = e.target.value;
      S.page = 0;
      renderServices();
    });
    for (const th of document.querySelectorAll('#services th[data-sort]')) {
      th.addEventListener('click', () => {
        const k = th.dataset.sort;
        S.sort = { key: k, dir: S.sort.key === k ? -S.sort.dir : 1 };
        renderServices();
      });
    }
    $('page-prev').addEventListener('click', () => {
      S.page = Math.max(0, S.page - 1);
      renderServices();
    });
    $('page-next').addEventListener('click', () => {
      S.page += 1;
      renderServices();
    });
    window.addEventListener('hashchange', () => {
      if (/^#token=/.test(location.hash)) {
        takeTokenFromFragment();
        start();
        return;
      }
      route();
    });
    setInterval(() => {
      if (!S.token) return;
      if (S.route.name === 'overview') renderServices();
    }, TICK_MS);
    setInterval(() => {
      if (!S.token) return;
      needAll = true;
      scheduleFlush();
    }, LIST_REFRESH_MS);
  }

  wire();
  takeTokenFromFragment();
  if (!S.token) {
    try {
      S.token = sessionStorage.getItem(TOKEN_KEY);
    } catch (_) {
      S.token = null;
    }
  }
  if (S.token) start();
  else showLogin('');
})();
