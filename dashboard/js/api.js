// The REST API with ThingsBoard's login: the token pair lives in sessionStorage (gone with the tab),
// goes out as `X-Authorization: Bearer`, and is refreshed once when the server says it expired.

const KEY = 'ota.dashboard.session';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let onLoggedOut = () => {};

/** Called when the session ends (logout, or a refresh that failed). */
export function whenLoggedOut(fn) {
  onLoggedOut = fn;
}

export function session() {
  try {
    const s = JSON.parse(sessionStorage.getItem(KEY) ?? 'null');
    return s && typeof s.token === 'string' ? s : null;
  } catch {
    return null;
  }
}

function keep(s) {
  sessionStorage.setItem(KEY, JSON.stringify(s));
}

async function readError(res) {
  const text = await res.text();
  try {
    const body = JSON.parse(text);
    if (body && typeof body.message === 'string') return body.message;
  } catch {
    // not JSON
  }
  return text || `${res.status} ${res.statusText}`;
}

export async function login(username, password) {
  const res = await fetch('/api/auth/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  if (!res.ok) throw new ApiError(res.status, await readError(res));
  const pair = await res.json();
  keep({ token: pair.token, refreshToken: pair.refreshToken, username });
}

export function logout() {
  const s = session();
  sessionStorage.removeItem(KEY);
  if (s) {
    // ThingsBoard's logout is advisory (tokens are stateless); nothing waits for it.
    fetch('/api/auth/logout', { method: 'POST', headers: { 'X-Authorization': `Bearer ${s.token}` } }).catch(() => {});
  }
  onLoggedOut();
}

async function refresh(s) {
  const res = await fetch('/api/auth/token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ refreshToken: s.refreshToken }),
  });
  if (!res.ok) return false;
  const pair = await res.json();
  keep({ ...s, token: pair.token, refreshToken: pair.refreshToken });
  return true;
}

/** A JSON call; `body` is sent as JSON. Answers the parsed body (or null when empty). */
export async function api(path, { method = 'GET', body } = {}, retried = false) {
  const s = session();
  if (!s) {
    onLoggedOut();
    throw new ApiError(401, 'Not logged in');
  }
  const headers = { 'X-Authorization': `Bearer ${s.token}`, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401 && !retried) {
    if (await refresh(s)) return api(path, { method, body }, true);
    sessionStorage.removeItem(KEY);
    onLoggedOut();
    throw new ApiError(401, 'Your session has ended; please log in again');
  }
  if (!res.ok) throw new ApiError(res.status, await readError(res));
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

/** A query string from the defined, non-empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  return q.toString();
}
