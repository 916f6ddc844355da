// @ts-check
/**
 * The monitor page: renders `/api/status` snapshots (see coordinator/monitor/state.ts, MonitorSnapshot),
 * pushed once a second over server-sent events, polled when those are unavailable. Every value from the
 * server goes into the page as text (textContent), never as markup.
 */

const STATES = ['stale', 'fatal', 'quarantine', 'stopping', 'init', 'starting', 'tasking', 'done'];
const COLORS = ['#0969da', '#1a7f37', '#8250df', '#bf8700', '#cf222e', '#1b7c83', '#953800', '#6e7781'];

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/**
 * Make an element with text and attributes.
 * @param {string} tag
 * @param {Record<string, string> | null} [attrs]
 * @param {(Node | string | null | undefined)[]} children
 */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) node.setAttribute(k, v);
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

/** @param {number} n */
const int = (n) => Math.round(n).toLocaleString('en-US');
/** @param {number} r */
const rate = (r) => (r >= 10 ? r.toFixed(0) : r >= 1 ? r.toFixed(1) : r.toFixed(2));
/** @param {number | undefined} s */
function duration(s) {
  if (s === undefined || !Number.isFinite(s)) return '–';
  const t = Math.round(s);
  if (t >= 3600) return `${Math.floor(t / 3600)}h${String(Math.floor((t % 3600) / 60)).padStart(2, '0')}m`;
  if (t >= 60) return `${Math.floor(t / 60)}m${String(t % 60).padStart(2, '0')}s`;
  return `${t}s`;
}
/** @param {number} p 0..1 */
const pct = (p) => `${(100 * p).toFixed(p >= 1 || p === 0 ? 0 : 1)} %`;

/**
 * @param {HTMLElement} bar
 * @param {number} progress 0..1 of everything settled
 * @param {number} failedShare 0..1 of the total that failed
 */
function setBar(bar, progress, failedShare = 0) {
  const fill = /** @type {HTMLElement} */ (bar.querySelector('.fill'));
  fill.style.width = `${Math.min(100, 100 * progress)}%`;
  let bad = /** @type {HTMLElement | null} */ (bar.querySelector('.fill.bad'));
  if (failedShare > 0) {
    if (!bad) bar.insertBefore((bad = el('div', { class: 'fill bad' })), bar.querySelector('.pct'));
    bad.style.left = `${Math.max(0, 100 * (progress - failedShare))}%`;
    bad.style.width = `${100 * failedShare}%`;
  } else bad?.remove();
  const label = /** @type {HTMLElement} */ (bar.querySelector('.pct'));
  label.textContent = pct(progress);
  bar.setAttribute('aria-valuenow', (100 * progress).toFixed(1));
}

/** @param {string} label @param {string} value */
const num = (label, value) => el('span', null, `${label} `, el('b', null, value));

function renderRun(s) {
  const box = $('run');
  if (!s.run) return void (box.hidden = true);
  box.hidden = false;
  const settled = s.run.results + s.run.deadLetters;
  const total = s.run.expected ?? s.run.published;
  setBar($('run-bar'), s.run.progress, total > 0 ? s.run.deadLetters / total : 0);
  $('run-text').replaceChildren(
    num('collected', `${int(settled)} / ${s.run.expected === undefined ? `${int(s.run.published)}+ (publishing)` : int(total)}`),
    num('results', int(s.run.results)),
    num('dead letters', int(s.run.deadLetters)),
  );
}

function renderTasks(s) {
  const box = $('tasks');
  box.replaceChildren(
    ...s.tasks.map((t) => {
      const bar = el('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100' }, el('div', { class: 'fill' }), el('span', { class: 'pct' }));
      setBar(bar, t.progress, t.total > 0 ? t.failed / t.total : 0);
      const chips = STATES.filter((st) => (t.pilots[st] ?? 0) > 0).map((st) => el('span', { class: `badge ${st}` }, `${t.pilots[st]} ${st}`));
      return el(
        'div',
        { class: 'task', 'data-task': t.name },
        el('h3', null, t.name, t.queue ? el('span', { class: 'queue' }, t.queue) : null),
        bar,
        el(
          'p',
          { class: 'numbers' },
          num('done', int(t.done)),
          num('failed', int(t.failed)),
          num('in flight', int(t.inFlight)),
          num('queued', t.queued === undefined ? '?' : int(t.queued)),
          num('rate', `${rate(t.ratePerSecond)}/s`),
          num('ETA', t.progress >= 1 ? 'done' : duration(t.etaSeconds)),
          t.attemptsFailed > t.failed ? num('retried attempts', int(t.attemptsFailed - t.failed)) : null,
        ),
        chips.length ? el('div', { class: 'chips' }, ...chips) : el('p', { class: 'muted' }, 'no pilots yet'),
      );
    }),
  );
}

function renderChart(s) {
  const points = s.throughput;
  const tasks = s.tasks.map((t) => t.name);
  // Drawn at the box's own size, so text is never stretched.
  const W = Math.max(240, Math.round($('chart').clientWidth || 600));
  const H = 170;
  const pad = { l: 34, r: 6, t: 8, b: 18 };
  const ns = 'http://www.w3.org/2000/svg';
  /** @param {string} tag @param {Record<string, string | number>} attrs */
  const svgEl = (tag, attrs) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  };
  const svg = svgEl('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img' });
  const max = Math.max(1, ...points.flatMap((p) => tasks.map((t) => p.perTask[t] ?? 0)));
  const t0 = points[0]?.at ?? 0;
  const t1 = points[points.length - 1]?.at ?? 1;
  const x = (at) => pad.l + ((W - pad.l - pad.r) * (at - t0)) / Math.max(1, t1 - t0);
  const y = (v) => H - pad.b - ((H - pad.t - pad.b) * v) / max;
  svg.append(svgEl('line', { class: 'axis', x1: pad.l, y1: H - pad.b, x2: W - pad.r, y2: H - pad.b }));
  svg.append(svgEl('line', { class: 'axis', x1: pad.l, y1: pad.t, x2: pad.l, y2: H - pad.b }));
  const top = svgEl('text', { x: pad.l - 4, y: pad.t + 8, 'text-anchor': 'end' });
  top.textContent = rate(max);
  const zero = svgEl('text', { x: pad.l - 4, y: H - pad.b, 'text-anchor': 'end' });
  zero.textContent = '0';
  const span = svgEl('text', { x: W - pad.r, y: H - 4, 'text-anchor': 'end' });
  span.textContent = points.length > 1 ? `last ${duration((t1 - t0) / 1000)}` : 'waiting for data';
  svg.append(top, zero, span);
  tasks.forEach((task, i) => {
    if (points.length < 2) return;
    const d = points.map((p, j) => `${j ? 'L' : 'M'}${x(p.at).toFixed(1)},${y(p.perTask[task] ?? 0).toFixed(1)}`).join('');
    svg.append(svgEl('path', { d, fill: 'none', stroke: COLORS[i % COLORS.length], 'stroke-width': 2, 'stroke-linejoin': 'round' }));
  });
  $('chart').replaceChildren(svg);
  $('legend').replaceChildren(
    ...tasks.map((task, i) => {
      const swatch = el('i');
      swatch.style.background = COLORS[i % COLORS.length];
      const last = points[points.length - 1]?.perTask[task] ?? 0;
      return el('span', null, swatch, `${task}: ${rate(last)}/s now`);
    }),
  );
}

function renderPilots(s) {
  const counts = {};
  for (const p of s.pilots) counts[p.status] = (counts[p.status] ?? 0) + 1;
  $('pilot-summary').textContent = STATES.filter((st) => counts[st]).map((st) => `${counts[st]} ${st}`).join(' · ');
  $('no-pilots').hidden = s.pilots.length > 0;
  const now = s.generatedAt;
  const rows = s.pilots.map((p) => {
    const running = p.inFlight > 0 && p.oldestTaskStartedAt ? `${p.inFlight} (oldest ${duration((now - p.oldestTaskStartedAt) / 1000)})` : String(p.inFlight);
    const title = p.stopReason ? `${p.state}; stopped: ${p.stopReason}${p.exitCode !== undefined ? `, exit ${p.exitCode}` : ''}` : p.state;
    return el(
      'tr',
      { class: p.status === 'stale' || p.status === 'fatal' ? 'trouble' : p.status === 'quarantine' ? 'warned' : '', 'data-pilot': p.id },
      el('td', null, el('span', { class: `badge ${p.status}`, title }, p.status)),
      el('td', { title: p.id }, p.host),
      el('td', null, p.condorJobId ?? '–'),
      el('td', null, p.task),
      el('td', { class: 'n' }, int(p.succeeded)),
      el('td', { class: 'n' }, int(p.deadLettered)),
      el('td', { class: 'n' }, running),
      el('td', { class: 'n' }, `${rate(p.ratePerSecond)}/s`),
      el('td', { class: 'n' }, `${duration(p.lastSeenSecondsAgo)} ago`),
      el('td', { class: 'err' }, p.lastError ?? ''),
    );
  });
  /** @type {HTMLTableSectionElement} */ ($('pilots').querySelector('tbody')).replaceChildren(...rows);
}

function renderDeadLetters(s) {
  $('no-dead-letters').hidden = s.deadLetters.length > 0;
  $('dead-letters').replaceChildren(
    ...s.deadLetters.map((d) =>
      el(
        'div',
        { class: 'dl' },
        el(
          'div',
          { class: 'head' },
          el('span', { class: 'count' }, int(d.count)),
          el('span', { class: 'reason' }, d.reason),
          el('span', { class: 'meta' }, [d.task, d.errorType].filter(Boolean).join(' · ')),
        ),
        d.sampleStderrTail ? el('details', null, el('summary', null, 'stderr tail (latest)'), el('pre', null, d.sampleStderrTail)) : null,
      ),
    ),
  );
}

function renderQueues(s) {
  /** @type {HTMLTableSectionElement} */ ($('queues').querySelector('tbody')).replaceChildren(
    ...s.queues.map((q) => el('tr', null, el('td', null, q.name), el('td', { class: 'n' }, q.depth === undefined ? 'gone' : int(q.depth)))),
  );
  const hb = s.heartbeats;
  $('heartbeats').textContent = `${int(hb.accepted)} heartbeats read${hb.rejected ? `; ${int(hb.rejected)} other messages dropped (${hb.lastRejection ?? ''})` : ''}`;
}

function render(s) {
  $('workflow').textContent = s.workflow;
  document.title = `${s.run ? pct(s.run.progress) + ' · ' : ''}${s.workflow} · ewms monitor`;
  renderRun(s);
  renderTasks(s);
  renderChart(s);
  renderPilots(s);
  renderDeadLetters(s);
  renderQueues(s);
  $('updated').textContent = `updated ${new Date(s.generatedAt).toLocaleTimeString()}`;
}

/** @param {'live' | 'lost'} how */
function link(how) {
  $('link').className = `dot ${how}`;
  if (how === 'lost') $('updated').textContent = `${$('updated').textContent.replace(/ · connection lost.*/, '')} · connection lost, retrying`;
}

function poll() {
  fetch('/api/status', { cache: 'no-store' })
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`))))
    .then((s) => {
      render(s);
      link('live');
    })
    .catch(() => link('lost'))
    .finally(() => setTimeout(poll, 2000));
}

function start() {
  if (!('EventSource' in window)) return poll();
  const source = new EventSource('/api/events');
  source.addEventListener('status', (e) => {
    render(JSON.parse(/** @type {MessageEvent} */ (e).data));
    link('live');
  });
  // EventSource reconnects by itself (the server asks for 2 s); the dot says when it is away.
  source.addEventListener('error', () => link('lost'));
}

start();
