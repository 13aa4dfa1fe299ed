// The fleet dashboard: login, metric cards, the state chart, the device list with its filters, the
// failed devices, a device's history, and the two actions (assign a package, retry a device).
// Everything changes live from the server-sent events; nothing reloads the page.

import { api, ApiError, login, logout, query, session, whenLoggedOut } from './api.js';
import { renderChart } from './chart.js';
import { badge, el, num, percent, preciseTime, slotOf, stateGroup, typeLabel, version, when } from './format.js';
import { LiveStream } from './live.js';

const $ = (id) => document.getElementById(id);

const state = {
  type: 'FIRMWARE',
  list: { textSearch: '', state: '', deviceProfileId: '', packageId: '', sortProperty: 'name', sortOrder: 'ASC', page: 0, pageSize: 20 },
  total: 0,
  metrics: null,
  series: [],
  /** Milliseconds, or 'auto': from the first snapshot of the last hour (at least a minute). */
  range: 'auto',
  /** Where the loaded series starts: a point exactly there is the state held before it, not activity. */
  seriesFrom: 0,
  profiles: [],
  packages: [],
  history: null,
  /** Bytes served of the target package, per device shown (of `type`): kept when a live row replaces its row. */
  served: new Map(),
};

/** Runs `fn` at most once per `ms`; calls meanwhile are covered by the run already scheduled (it reads the state then). */
function throttle(fn, ms) {
  let timer = null;
  let last = 0;
  return () => {
    if (timer) return;
    timer = setTimeout(
      async () => {
        timer = null;
        last = Date.now();
        try {
          await fn();
        } catch (err) {
          report(err);
        }
      },
      Math.max(0, last + ms - Date.now()),
    );
  };
}

let toastTimer = null;
function toast(message, bad = false) {
  const t = $('toast');
  t.textContent = message;
  t.classList.toggle('bad', bad);
  t.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove('show'), 4000);
}

function report(err) {
  if (err instanceof ApiError && err.status === 401) return; // the login form is back already
  toast(err instanceof Error ? err.message : String(err), true);
}

// ---- login ------------------------------------------------------------------------------------

const live = new LiveStream(onLive, (s) => {
  $('live').dataset.state = s;
  $('live-label').textContent = s === 'on' ? 'Live' : s === 'retry' ? 'Reconnecting…' : 'Not connected';
});

function showLogin() {
  live.stop();
  closeHistory();
  $('app-view').hidden = true;
  $('user-box').hidden = true;
  $('login-view').hidden = false;
  $('password').value = '';
  $('username').focus();
}

$('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const button = e.submitter ?? $('login-form').querySelector('button');
  const error = $('login-error');
  error.textContent = '';
  const username = $('username').value.trim();
  const password = $('password').value;
  if (!username || !password) {
    error.textContent = 'Enter your username and password.';
    return;
  }
  button.disabled = true;
  try {
    await login(username, password);
    await showApp();
  } catch (err) {
    error.textContent = err instanceof ApiError && err.status === 401 ? 'Wrong username or password.' : `Could not log in: ${err.message}`;
  } finally {
    button.disabled = false;
  }
});

$('logout').addEventListener('click', () => logout());
whenLoggedOut(showLogin);

async function showApp() {
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  $('user-box').hidden = false;
  $('user-name').textContent = session()?.username ?? '';
  await loadCatalog();
  await Promise.all([loadMetrics(), loadChart(), loadDevices(), loadFailures(), loadRollouts()]);
  live.start();
}

// ---- profiles and packages ----------------------------------------------------------------------

async function loadCatalog() {
  const [profiles, packages] = await Promise.all([
    api(`/api/deviceProfiles?${query({ pageSize: 1000, page: 0, sortProperty: 'name', sortOrder: 'ASC' })}`),
    api(`/api/otaPackages?${query({ pageSize: 1000, page: 0, sortProperty: 'title', sortOrder: 'ASC' })}`),
  ]);
  state.profiles = profiles.data;
  state.packages = packages.data;
  fillFilterOptions();
  const assign = $('assign-profile');
  const chosen = assign.value;
  assign.replaceChildren(...state.profiles.map((p) => el('option', { value: p.id.id }, p.name)));
  if (chosen && state.profiles.some((p) => p.id.id === chosen)) assign.value = chosen;
  await loadAssignPackages();
}

function fillFilterOptions() {
  const profile = $('f-profile');
  const keepProfile = profile.value;
  profile.replaceChildren(el('option', { value: '' }, 'Any profile'), ...state.profiles.map((p) => el('option', { value: p.id.id }, p.name)));
  profile.value = state.profiles.some((p) => p.id.id === keepProfile) ? keepProfile : '';
  const pkg = $('f-package');
  const keepPackage = pkg.value;
  const ofType = state.packages.filter((p) => p.type === state.type);
  pkg.replaceChildren(el('option', { value: '' }, 'Any package'), ...ofType.map((p) => el('option', { value: p.id.id }, `${p.title} ${p.version}`)));
  pkg.value = ofType.some((p) => p.id.id === keepPackage) ? keepPackage : '';
  state.list.deviceProfileId = profile.value;
  state.list.packageId = pkg.value;
}

async function loadAssignPackages() {
  const profileId = $('assign-profile').value;
  const select = $('assign-package');
  const none = el('option', { value: '' }, '— None (unassign) —');
  if (!profileId) return select.replaceChildren(none);
  const page = await api(`/api/otaPackages/${profileId}/${state.type}?${query({ pageSize: 1000, page: 0, sortProperty: 'createdTime', sortOrder: 'DESC' })}`);
  select.replaceChildren(...page.data.map((p) => el('option', { value: p.id.id }, `${p.title} ${p.version}`)), none);
  const profile = state.profiles.find((p) => p.id.id === profileId);
  const current = (state.type === 'FIRMWARE' ? profile?.firmwareId : profile?.softwareId)?.id ?? '';
  select.value = current && page.data.some((p) => p.id.id === current) ? current : (page.data[0]?.id.id ?? '');
  $('assign-status').textContent = current ? `Now assigned: ${packageName(current)}` : 'Nothing assigned yet.';
  $('assign-status').className = 'form-status';
}

function packageName(id) {
  const p = state.packages.find((x) => x.id.id === id);
  return p ? `${p.title} ${p.version}` : 'a package';
}

$('assign-profile').addEventListener('change', () => loadAssignPackages().catch(report));

$('assign-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const profileId = $('assign-profile').value;
  const packageId = $('assign-package').value;
  const status = $('assign-status');
  const button = $('assign-submit');
  const field = state.type === 'FIRMWARE' ? 'firmwareId' : 'softwareId';
  const profile = state.profiles.find((p) => p.id.id === profileId);
  button.disabled = true;
  try {
    // ThingsBoard's own call: the profile's package slot, the rest of the profile untouched.
    const body = { [field]: packageId ? { id: packageId, entityType: 'OTA_PACKAGE' } : null };
    let saved;
    try {
      saved = await api(`/api/deviceProfile/${profileId}`, { method: 'POST', body });
    } catch (err) {
      // Downgrade protection: the server names the devices running a newer version; ask before forcing.
      if (!/forceDowngrade=true/.test(err.message) || !window.confirm(`${err.message.replace(/ Save with forceDowngrade=true.*$/, '')}\n\nAssign it anyway (downgrade)?`))
        throw err;
      saved = await api(`/api/deviceProfile/${profileId}?forceDowngrade=true`, { method: 'POST', body });
    }
    state.profiles = state.profiles.map((p) => (p.id.id === profileId ? saved : p));
    status.className = 'form-status ok';
    status.textContent = packageId
      ? `Assigned ${packageName(packageId)} to ${profile?.name ?? 'the profile'}: its devices are queued.`
      : `Unassigned the ${typeLabel(state.type).toLowerCase()} of ${profile?.name ?? 'the profile'}.`;
  } catch (err) {
    status.className = 'form-status bad';
    status.textContent = err.message;
  } finally {
    button.disabled = false;
  }
});

// ---- metrics ----------------------------------------------------------------------------------

async function loadMetrics() {
  const m = await api('/api/ota/metrics');
  // The live stream adds the state distribution; until then the cards need only the counts.
  renderMetrics({ ...m, distribution: state.metrics?.distribution });
}

function stat(key, label, value) {
  return el('div', { class: `stat ${key}`, 'data-stat': key }, el('span', { class: 'label' }, label), el('span', { class: 'value' }, value));
}

function coverageBar(c) {
  const total = Math.max(1, c.targeted);
  const part = (cls, n, label) => {
    const s = el('span', { class: cls, title: `${label}: ${num(n)}` });
    s.style.width = `${(100 * n) / total}%`;
    return s;
  };
  return el(
    'div',
    { class: 'bar', 'aria-hidden': 'true' },
    part('updated', c.updated, 'Updated'),
    part('progress', c.inProgress, 'In progress'),
    part('pending', c.pending, 'Pending'),
    part('failed', c.failed, 'Failed'),
  );
}

function metricCard(kind, id, title, sub, c) {
  const item = (key, label) => el('div', {}, el('dt', {}, label), el('dd', { 'data-metric': key }, num(c[key])));
  return el(
    'article',
    { class: 'metric-card', 'data-card': kind, 'data-id': id, 'aria-label': `${title}: ${num(c.updated)} of ${num(c.targeted)} updated` },
    el('h3', {}, title),
    el('p', { class: 'sub' }, sub),
    el('dl', {}, item('pending', 'Pending'), item('inProgress', 'In progress'), item('updated', 'Updated'), item('failed', 'Failed')),
    el('div', { class: 'coverage-line' }, coverageBar(c), el('span', { 'data-metric': 'coverage' }, `Coverage ${percent(c.coverage)}`)),
  );
}

function renderMetrics(m) {
  state.metrics = m;
  const type = state.type;
  const packages = m.packages.filter((p) => p.type === type);
  const profiles = m.profiles.filter((p) => p.type === type);
  const sum = (k) => packages.reduce((a, p) => a + p[k], 0);
  const targeted = sum('targeted');
  $('summary').replaceChildren(
    stat('pending', 'Pending', num(sum('pending'))),
    stat('progress', 'In progress', num(sum('inProgress'))),
    stat('updated', 'Updated', num(sum('updated'))),
    stat('failed', 'Failed', num(sum('failed'))),
    stat('coverage', `Coverage of ${num(targeted)} targeted`, percent(targeted ? sum('onTarget') / targeted : 0)),
  );
  const paused = m.queue.paused ? ' (paused)' : '';
  $('queue-info').textContent = `Queue: ${num(m.queue.depth)} waiting${paused} · ${num(m.notifications.sent)} notified · ${num(m.notifications.dropped)} stale dropped`;
  const none = (what) => el('p', { class: 'empty' }, `No ${typeLabel(type).toLowerCase()} is assigned to any ${what} yet.`);
  $('package-cards').replaceChildren(
    ...(packages.length ? packages.map((p) => metricCard('package', p.packageId, `${p.title} ${p.version}`, `${num(p.targeted)} devices targeted`, p)) : [none('device')]),
  );
  $('profile-cards').replaceChildren(
    ...(profiles.length ? profiles.map((p) => metricCard('profile', p.deviceProfileId, p.name, `${num(p.targeted)} devices targeted`, p)) : [none('profile')]),
  );
}

// ---- rollouts ---------------------------------------------------------------------------------

const ROLLOUT_STATE_GROUP = { DRAFT: 'none', RUNNING: 'progress', PAUSED: 'pending', COMPLETED: 'updated', ABORTED: 'failed', CANCELLED: 'none' };
const WAVE_STATE_GROUP = { PENDING: 'none', RUNNING: 'progress', PASSED: 'updated', FAILED: 'failed' };

function rolloutBadge(value, groups) {
  return el('span', { class: `badge ${groups[value] ?? 'none'}` }, value);
}

function waveItem(w, i, current) {
  const c = { targeted: w.devices, updated: w.updated, inProgress: w.inProgress, pending: w.pending + w.skipped, failed: w.failed };
  const skipped = w.skipped ? `, ${num(w.skipped)} left out` : '';
  return el(
    'li',
    { class: i === current ? 'wave current' : 'wave', 'data-wave': i, 'data-wave-state': w.state },
    el('span', { class: 'wave-name' }, `Wave ${i + 1}`),
    rolloutBadge(w.state, WAVE_STATE_GROUP),
    coverageBar(c),
    el('span', { class: 'wave-counts' }, `${num(w.updated)} of ${num(w.devices)} updated, ${num(w.failed)} failed, ${num(w.inProgress)} in progress${skipped}`),
  );
}

function rolloutCard(r) {
  const pkg = r.package.title ? `${r.package.title} ${r.package.version}` : 'deleted package';
  const done = r.devices ? r.updated / r.devices : 0;
  return el(
    'article',
    { class: 'rollout-card', 'data-rollout-id': r.id, 'data-state': r.state, 'aria-label': `${r.name}: ${r.state}` },
    el('h3', {}, r.name, ' ', rolloutBadge(r.state, ROLLOUT_STATE_GROUP)),
    el('p', { class: 'sub' }, `${typeLabel(r.package.type)} ${pkg} · ${num(r.devices)} devices · ${percent(done)} updated · started `, when(r.createdTime)),
    r.reason ? el('p', { class: 'reason', 'data-reason': '' }, r.state === 'RUNNING' ? `Waiting: ${r.reason}` : `Stopped: ${r.reason}`) : null,
    el(
      'ol',
      { class: 'waves' },
      r.waves.map((w, i) => waveItem(w, i, r.state === 'RUNNING' || r.state === 'PAUSED' ? r.currentWave : -1)),
    ),
  );
}

async function loadRollouts() {
  const { data } = await api('/api/ota/dashboard/rollouts');
  $('rollout-count').textContent = data.length ? `(${num(data.length)})` : '';
  $('rollout-list').replaceChildren(...data.map(rolloutCard));
  $('rollouts-empty').hidden = data.length > 0;
  state.rolloutsActive = data.some((r) => r.state === 'RUNNING' || r.state === 'PAUSED');
}

const reloadRollouts = throttle(loadRollouts, 1000);
// A rollout moves on between device state changes too (a gate's wait, an abort, a window): look again while one runs.
setInterval(() => !$('app-view').hidden && state.rolloutsActive && reloadRollouts(), 3000);

// ---- chart ------------------------------------------------------------------------------------

const AUTO_WINDOW = 3600_000;

async function loadChart() {
  const endTs = Date.now();
  const startTs = endTs - (state.range === 'auto' ? AUTO_WINDOW : state.range);
  const res = await api(`/api/ota/distribution?${query({ type: state.type, startTs, endTs, points: 240 })}`);
  state.series = res.points;
  state.seriesFrom = startTs;
  drawChart();
}

function drawChart() {
  const last = state.series.at(-1)?.ts ?? 0;
  const now = Math.max(Date.now(), last);
  let span;
  let title;
  if (state.range === 'auto') {
    const first = state.series.find((p) => p.ts > state.seriesFrom && p.ts >= now - AUTO_WINDOW)?.ts ?? now;
    span = Math.max(10_000, (now - first) * 1.1);
    title = `${typeLabel(state.type)} update states during the recent activity`;
  } else {
    span = state.range;
    title = `${typeLabel(state.type)} update states over the last ${$('chart-range').selectedOptions[0].textContent}`;
  }
  const startTs = now - span;
  // The state just reported stays visible: it holds at least a sliver of the width.
  const endTs = Math.max(now, last + span * 0.03);
  // Keep one point before the window: the state the window starts in.
  const keepFrom = state.range === 'auto' ? now - AUTO_WINDOW : startTs;
  const firstInside = state.series.findIndex((p) => p.ts >= keepFrom);
  if (firstInside > 1) state.series.splice(0, firstInside - 1);
  renderChart($('chart'), state.series, { startTs, endTs, title });
}

$('chart-range').addEventListener('change', () => {
  const v = $('chart-range').value;
  state.range = v === 'auto' ? 'auto' : Number(v);
  loadChart().catch(report);
});
setInterval(() => !$('app-view').hidden && state.series.length && drawChart(), 10_000);

// ---- device list ------------------------------------------------------------------------------

function actions(row) {
  const s = slotOf(row, state.type);
  return el(
    'td',
    { class: 'actions' },
    el('button', { type: 'button', class: 'small', 'aria-label': `History of ${row.name}`, onclick: (e) => openHistory(row.id, e.currentTarget) }, 'History'),
    s.state === 'FAILED' && s.target
      ? el('button', { type: 'button', class: 'small danger', 'aria-label': `Retry ${row.name}`, onclick: (e) => retry(row, e.currentTarget) }, 'Retry')
      : null,
  );
}

// How a device authenticates, by type only: the dashboard never shows tokens, passwords or certificates.
const CREDENTIALS_LABELS = { MQTT_BASIC: 'MQTT basic', X509_CERTIFICATE: 'X.509', LWM2M_CREDENTIALS: 'LwM2M', ACCESS_TOKEN: 'Access token' };
function credentialsTag(type) {
  const label = CREDENTIALS_LABELS[type] ?? type;
  return label ? el('span', { class: 'label', 'data-credentials-type': type, title: 'Credentials type' }, label) : null;
}

function deviceRow(row) {
  const s = slotOf(row, state.type);
  const other = slotOf(row, state.type === 'FIRMWARE' ? 'SOFTWARE' : 'FIRMWARE');
  return el(
    'tr',
    { 'data-device-id': row.id, 'data-state': s.state ?? 'NONE', 'data-target-package': s.target?.packageId },
    el(
      'td',
      {},
      el('span', { class: 'name' }, row.name),
      row.label ? el('span', { class: 'label' }, row.label) : null,
      credentialsTag(row.credentialsType),
      row.provisioned ? el('span', { class: 'label', 'data-provisioned': 'true', title: 'Provisioned itself with its profile’s provision key' }, 'provisioned') : null,
    ),
    el('td', {}, row.deviceProfileName),
    el('td', {}, version(s.current)),
    el('td', {}, version(s.target)),
    el('td', { 'data-col': 'state' }, badge(s.state), s.retries ? el('span', { class: 'muted' }, ` retry ${s.retries}`) : null, servedBar(servedOf(row.id, s), s.state)),
    el('td', {}, when(s.stateTs)),
    el('td', { class: 'error-text' }, s.error ?? ''),
    el('td', {}, other.state ? badge(other.state) : el('span', { class: 'muted' }, '—'), other.current ? el('span', { class: 'label' }, version(other.current)) : null),
    actions(row),
  );
}

/** What the server sent of the row's target package: from the list, or from the live stream since. */
function servedOf(deviceId, s) {
  const p = s.served ? { ...s.served, packageId: s.target?.packageId } : state.served.get(deviceId);
  return p && s.target && p.packageId === s.target.packageId ? p : null;
}

/** What the server sent of the target package, whatever the device reports (issue 14). */
function servedBar(p, updateState) {
  if (!p || updateState === 'UPDATED') return null;
  return el(
    'span',
    { class: 'served muted', 'data-served': String(p.percent), title: `${num(p.bytes)} of ${num(p.size)} bytes served` },
    el('progress', { max: p.size, value: p.bytes, 'aria-label': `${p.percent} % served` }),
    ` ${p.percent} % served`,
  );
}

/** Loads of the list started: an answer to an older one (filters changed meanwhile) is dropped. */
let listLoads = 0;

async function loadDevices() {
  const l = state.list;
  const load = ++listLoads;
  const page = await api(`/api/ota/devices?${query({ type: state.type, ...l, state: l.state })}`);
  if (load !== listLoads) return;
  if (page.data.length === 0 && l.page > 0 && page.totalElements > 0) {
    l.page = Math.max(0, page.totalPages - 1);
    return loadDevices();
  }
  state.total = page.totalElements;
  state.served = new Map();
  for (const row of page.data) {
    const p = servedOf(row.id, slotOf(row, state.type));
    if (p) state.served.set(row.id, p);
  }
  $('device-table').tBodies[0].replaceChildren(...page.data.map(deviceRow));
  live.follow(page.data.map((row) => row.id));
  $('devices-empty').hidden = page.data.length > 0;
  $('device-count').textContent = `(${num(page.totalElements)})`;
  const from = page.totalElements ? l.page * l.pageSize + 1 : 0;
  $('page-info').textContent = `${num(from)}–${num(l.page * l.pageSize + page.data.length)} of ${num(page.totalElements)}`;
  $('page-prev').disabled = l.page === 0;
  $('page-next').disabled = !page.hasNext;
  for (const th of $('device-table').tHead.querySelectorAll('th[data-sort]')) {
    if (th.dataset.sort === l.sortProperty) th.setAttribute('aria-sort', l.sortOrder === 'ASC' ? 'ascending' : 'descending');
    else th.removeAttribute('aria-sort');
  }
}
const reloadDevices = throttle(loadDevices, 2000);

function listChanged() {
  state.list.page = 0;
  loadDevices().catch(report);
}

let typing = null;
$('f-text').addEventListener('input', () => {
  clearTimeout(typing);
  typing = setTimeout(() => {
    state.list.textSearch = $('f-text').value.trim();
    listChanged();
  }, 300);
});
$('filters').addEventListener('submit', (e) => e.preventDefault());
for (const [id, key] of [
  ['f-state', 'state'],
  ['f-profile', 'deviceProfileId'],
  ['f-package', 'packageId'],
]) {
  $(id).addEventListener('change', () => {
    state.list[key] = $(id).value;
    listChanged();
  });
}
$('f-size').addEventListener('change', () => {
  state.list.pageSize = Number($('f-size').value);
  listChanged();
});
for (const th of $('device-table').tHead.querySelectorAll('th[data-sort]')) {
  th.querySelector('button').addEventListener('click', () => {
    const l = state.list;
    if (l.sortProperty === th.dataset.sort) l.sortOrder = l.sortOrder === 'ASC' ? 'DESC' : 'ASC';
    else {
      l.sortProperty = th.dataset.sort;
      l.sortOrder = th.dataset.sort === 'stateTs' ? 'DESC' : 'ASC';
    }
    listChanged();
  });
}
$('page-prev').addEventListener('click', () => {
  state.list.page = Math.max(0, state.list.page - 1);
  loadDevices().catch(report);
});
$('page-next').addEventListener('click', () => {
  state.list.page += 1;
  loadDevices().catch(report);
});

// ---- failed devices ---------------------------------------------------------------------------

async function loadFailures() {
  const page = await api(`/api/ota/failures?${query({ type: state.type, pageSize: 10, page: 0 })}`);
  const rows = page.data.map((row) => {
    const s = slotOf(row, state.type);
    return el(
      'tr',
      { 'data-device-id': row.id },
      el('td', {}, el('span', { class: 'name' }, row.name)),
      el('td', {}, row.deviceProfileName),
      el('td', {}, version(s.target)),
      el('td', {}, when(s.stateTs)),
      el('td', { class: 'error-text' }, s.error ?? 'No error given'),
      actions(row),
    );
  });
  $('failed-table').tBodies[0].replaceChildren(...rows);
  $('failed-table').hidden = rows.length === 0;
  $('failed-empty').hidden = rows.length > 0;
  $('failed-count').textContent = page.totalElements > rows.length ? `(latest ${rows.length} of ${num(page.totalElements)})` : `(${num(page.totalElements)})`;
}
const reloadFailures = throttle(loadFailures, 1000);

async function retry(row, button) {
  button.disabled = true;
  try {
    await api(`/api/ota/devices/${row.id}/retry`, { method: 'POST', body: { type: state.type } });
    toast(`${row.name} is queued again.`);
  } catch (err) {
    button.disabled = false;
    report(err);
  }
}

// ---- history ----------------------------------------------------------------------------------

let historyOpener = null;

async function openHistory(deviceId, opener) {
  historyOpener = opener ?? null;
  state.history = deviceId;
  const dialog = $('history');
  $('history-title').textContent = 'History';
  $('history-summary').textContent = 'Loading…';
  $('history-list').replaceChildren();
  $('history-bar').replaceChildren();
  if (!dialog.open) dialog.showModal();
  $('history-close').focus();
  await loadHistory().catch(report);
}

function closeHistory() {
  const dialog = $('history');
  state.history = null;
  if (dialog.open) dialog.close();
}

$('history-close').addEventListener('click', closeHistory);
$('history').addEventListener('close', () => {
  state.history = null;
  historyOpener?.focus?.();
});

async function loadHistory() {
  const id = state.history;
  if (!id) return;
  const [row, history] = await Promise.all([api(`/api/ota/devices/${id}`), api(`/api/ota/devices/${id}/history?type=ALL&limit=500`)]);
  if (state.history !== id) return;
  $('history-title').textContent = `History of ${row.name}`;
  const s = slotOf(row, state.type);
  $('history-summary').replaceChildren(
    `${typeLabel(state.type)}: `,
    badge(s.state),
    s.current ? ` running ${version(s.current)}` : '',
    s.target ? ` · target ${version(s.target)}` : '',
    s.error ? el('span', { class: 'error-text' }, ` · ${s.error}`) : '',
  );
  // The bar: how long the device spent in each state of the chosen type, up to now.
  const states = history.events.filter((e) => e.type === state.type && e.state);
  const end = Date.now();
  const first = states[0]?.ts ?? end;
  const span = Math.max(1, end - first);
  $('history-bar').replaceChildren(
    ...states.map((e, i) => {
      const until = states[i + 1]?.ts ?? end;
      const seg = el('span', { class: stateGroup(e.state), title: `${e.state} at ${preciseTime(e.ts)}` });
      seg.style.flexGrow = String(Math.max(0.004, (until - e.ts) / span));
      return seg;
    }),
  );
  $('history-bar').hidden = states.length === 0;
  // What the device runs is repeated with every report: shown when it changes.
  const running = { FIRMWARE: '', SOFTWARE: '' };
  $('history-list').replaceChildren(
    ...history.events.map((e) => {
      const current = e.current ? version(e.current) : '';
      const changed = typeof current === 'string' && current !== '' && current !== running[e.type];
      if (changed) running[e.type] = current;
      return el(
        'li',
        { class: stateGroup(e.state), 'data-state': e.state ?? '' },
        el('time', { datetime: new Date(e.ts).toISOString() }, preciseTime(e.ts)),
        el('span', { class: 'type', title: typeLabel(e.type) }, e.type === 'FIRMWARE' ? 'FW' : 'SW'),
        e.state ? badge(e.state) : el('span', { class: 'muted' }, 'report'),
        e.error ? el('span', { class: 'detail error-text' }, e.error) : null,
        e.target ? el('span', { class: 'detail' }, `Target ${version(e.target)}`) : null,
        changed ? el('span', { class: 'detail muted' }, `Running ${current}`) : null,
      );
    }),
  );
  if (history.events.length === 0) $('history-list').replaceChildren(el('li', {}, 'No update history yet.'));
}
const reloadHistory = throttle(loadHistory, 1000);

// ---- live -------------------------------------------------------------------------------------

function onLive(event, data) {
  if (event === 'metrics') {
    renderMetrics(data);
    // A rollout's waves move with its devices' states.
    reloadRollouts();
    const counts = data.distribution?.[state.type];
    if (counts && data.ts > (state.series.at(-1)?.ts ?? 0)) {
      state.series.push({ ts: data.ts, counts });
      drawChart();
    }
    return;
  }
  if (event === 'progress') return showProgress(data.devices);
  if (event !== 'devices') return;
  const body = $('device-table').tBodies[0];
  let missing = data.more;
  for (const row of data.rows) {
    const tr = body.querySelector(`tr[data-device-id="${row.id}"]`);
    if (tr) {
      const fresh = deviceRow(row);
      fresh.classList.add('flash');
      tr.replaceWith(fresh);
    } else missing = true;
    if (row.id === state.history) reloadHistory();
  }
  for (const id of data.removed) {
    body.querySelector(`tr[data-device-id="${id}"]`)?.remove();
    missing = true;
  }
  // Rows that came or went, or moved between pages: the page is asked again (at most every 2 s).
  if (missing || state.list.state || state.list.sortProperty === 'state' || state.list.sortProperty === 'stateTs') reloadDevices();
  const failedShown = new Set([...$('failed-table').tBodies[0].rows].map((r) => r.dataset.deviceId));
  if (data.more || data.rows.some((r) => slotOf(r, state.type).state === 'FAILED' || failedShown.has(r.id)) || data.removed.some((id) => failedShown.has(id))) reloadFailures();
}

/** Moves the progress bars of the rows shown; the stream carries only the devices they show. */
function showProgress(devices) {
  const body = $('device-table').tBodies[0];
  for (const p of devices) {
    if (p.type !== state.type) continue;
    const tr = body.querySelector(`tr[data-device-id="${p.deviceId}"]`);
    if (!tr || tr.dataset.targetPackage !== p.packageId) continue;
    state.served.set(p.deviceId, p);
    const cell = tr.querySelector('td[data-col="state"]');
    const bar = servedBar(p, tr.dataset.state);
    const old = cell.querySelector('.served');
    if (old && bar) old.replaceWith(bar);
    else if (bar) cell.append(bar);
    else old?.remove();
  }
}

// ---- package type -----------------------------------------------------------------------------

for (const radio of document.querySelectorAll('input[name="type"]')) {
  radio.addEventListener('change', () => {
    if (!radio.checked) return;
    state.type = radio.value;
    $('other-type-head').textContent = state.type === 'FIRMWARE' ? 'Software' : 'Firmware';
    fillFilterOptions();
    state.list.page = 0;
    if (state.metrics) renderMetrics(state.metrics);
    Promise.all([loadAssignPackages(), loadChart(), loadDevices(), loadFailures()]).catch(report);
  });
}

if (session()) showApp().catch(report);
else showLogin();
