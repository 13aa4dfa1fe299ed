// Small helpers: building DOM without innerHTML, ThingsBoard's states and their groups, numbers and times.

/** An element with attributes (`class`, `data-*`, `aria-*`, properties for the rest) and children. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'role' || k === 'scope' || k === 'datetime' || k === 'title' || k === 'for')
      node.setAttribute(k, v === true ? '' : String(v));
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else node[k] = v;
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) node.append(c instanceof Node ? c : String(c));
  return node;
}

export const PENDING = ['QUEUED', 'INITIATED'];
export const IN_PROGRESS = ['DOWNLOADING', 'DOWNLOADED', 'VERIFIED', 'UPDATING'];

/** `pending`, `progress`, `updated`, `failed` or `none`: the colour family of a state. */
export function stateGroup(state) {
  if (PENDING.includes(state)) return 'pending';
  if (IN_PROGRESS.includes(state)) return 'progress';
  if (state === 'UPDATED') return 'updated';
  if (state === 'FAILED') return 'failed';
  return 'none';
}

export function badge(state) {
  return el('span', { class: `badge ${stateGroup(state)}` }, state ?? 'No update');
}

const numberFormat = new Intl.NumberFormat('en-US');
export const num = (n) => numberFormat.format(n ?? 0);
export const percent = (x) => `${Math.round((x ?? 0) * 100)}%`;

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });

/** A `<time>`: the clock time today, the date and time before. */
export function when(ts) {
  if (ts === null || ts === undefined) return el('span', { class: 'muted' }, '—');
  const d = new Date(ts);
  const today = new Date().toDateString() === d.toDateString();
  return el('time', { datetime: d.toISOString(), title: d.toLocaleString() }, today ? timeFormat.format(d) : dateTimeFormat.format(d));
}

const preciseFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', fractionalSecondDigits: 3 });

/** Precise to the millisecond, for the history where states follow each other fast. */
export const preciseTime = (ts) => preciseFormat.format(new Date(ts));

export function version(v) {
  if (!v || (!v.title && !v.version)) return el('span', { class: 'muted' }, '—');
  return `${v.title ?? ''} ${v.version ?? ''}`.trim();
}

export const typeLabel = (type) => (type === 'SOFTWARE' ? 'Software' : 'Firmware');
export const slotOf = (row, type) => (type === 'SOFTWARE' ? row.software : row.firmware);
