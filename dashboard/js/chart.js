// The state distribution over time as an inline SVG: stacked steps (a count holds until the next
// snapshot) of updated, in progress, pending and failed devices. No library, nothing loaded.

const SVG = 'http://www.w3.org/2000/svg';
const W = 760;
const H = 250;
const M = { top: 12, right: 14, bottom: 26, left: 46 };

/** Bottom to top. */
export const SERIES = [
  { key: 'updated', label: 'Updated', color: '#15803d', states: ['UPDATED'] },
  { key: 'progress', label: 'In progress', color: '#2563eb', states: ['DOWNLOADING', 'DOWNLOADED', 'VERIFIED', 'UPDATING'] },
  { key: 'pending', label: 'Pending', color: '#b7791f', states: ['QUEUED', 'INITIATED'] },
  { key: 'failed', label: 'Failed', color: '#dc2626', states: ['FAILED'] },
];

function node(tag, attrs = {}, text) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (text !== undefined) n.textContent = text;
  return n;
}

const groupOf = (counts, series) => series.states.reduce((sum, s) => sum + (counts[s] ?? 0), 0);

/** A round step for the value axis. */
function niceStep(max, ticks) {
  const raw = Math.max(1, max) / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return Math.max(1, (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag);
}

const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const clockShort = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

/**
 * Draws `points` ([{ts, counts}], oldest first) from `startTs` to `endTs` into `container`.
 * The chart is one image to assistive technology, described by its latest numbers.
 */
export function renderChart(container, points, { startTs, endTs, title }) {
  const svg = node('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'chart-svg-title chart-svg-desc', preserveAspectRatio: 'xMidYMid meet' });
  const last = points.at(-1);
  const describe = last ? SERIES.map((s) => `${groupOf(last.counts, s)} ${s.label.toLowerCase()}`).join(', ') : 'no data yet';
  svg.append(node('title', { id: 'chart-svg-title' }, title), node('desc', { id: 'chart-svg-desc' }, `Latest: ${describe}.`));

  const x0 = M.left;
  const x1 = W - M.right;
  const y0 = H - M.bottom;
  const y1 = M.top;
  const span = Math.max(1, endTs - startTs);
  const x = (ts) => x0 + ((Math.min(Math.max(ts, startTs), endTs) - startTs) / span) * (x1 - x0);
  const totals = points.map((p) => SERIES.reduce((sum, s) => sum + groupOf(p.counts, s), 0));
  const step = niceStep(Math.max(0, ...totals), 4);
  const top = Math.max(step, Math.ceil(Math.max(0, ...totals) / step) * step);
  const y = (v) => y0 - (v / top) * (y0 - y1);

  const axis = node('g', { class: 'axis' });
  for (let v = 0; v <= top; v += step) {
    axis.append(node('line', { x1: x0, x2: x1, y1: y(v), y2: y(v), class: 'grid-line' }));
    axis.append(node('text', { x: x0 - 6, y: y(v) + 4, 'text-anchor': 'end' }, v.toLocaleString('en-US')));
  }
  const fmt = span > 6 * 3600_000 ? clockShort : clock;
  for (let i = 0; i <= 4; i++) {
    const ts = startTs + (span * i) / 4;
    axis.append(node('text', { x: x(ts), y: H - 7, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, fmt.format(new Date(ts))));
  }
  svg.append(axis);

  const visible = points.filter((p, i) => p.ts >= startTs || points[i + 1] === undefined || points[i + 1].ts > startTs);
  if (visible.length === 0) {
    svg.append(node('text', { x: (x0 + x1) / 2, y: (y0 + y1) / 2, 'text-anchor': 'middle', class: 'empty-note' }, 'No update activity in this range'));
  } else {
    // Each band is the area between the running total below it and the one including it.
    const below = visible.map(() => 0);
    for (const s of SERIES) {
      const above = visible.map((p, i) => below[i] + groupOf(p.counts, s));
      let top = '';
      let bottom = '';
      visible.forEach((p, i) => {
        const xa = x(p.ts);
        const xb = i + 1 < visible.length ? x(visible[i + 1].ts) : x(endTs);
        top += `${i === 0 ? 'M' : 'L'}${xa.toFixed(1)},${y(above[i]).toFixed(1)}L${xb.toFixed(1)},${y(above[i]).toFixed(1)}`;
        bottom = `L${xb.toFixed(1)},${y(below[i]).toFixed(1)}L${xa.toFixed(1)},${y(below[i]).toFixed(1)}` + bottom;
      });
      svg.append(node('path', { d: `${top}${bottom}Z`, fill: s.color, 'fill-opacity': 0.88, 'data-series': s.key }));
      visible.forEach((_, i) => (below[i] = above[i]));
    }
  }
  svg.append(node('line', { x1: x0, x2: x1, y1: y0, y2: y0, stroke: '#94a3b8' }));
  container.replaceChildren(svg);
}
