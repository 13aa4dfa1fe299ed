import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { expect } from 'chai';
import { chromium, type Browser, type Page } from 'playwright-core';
import { AdminClient } from '../../sim/admin-client';
import { deviceName, failingDevices, runFleet } from '../../sim/fleet';
import { simOptions, type SimOptions } from '../../sim/options';
import { HttpDevice } from '../support/http-device';
import { ADMIN_PASSWORD, ADMIN_USER, adminClient, startServer, stopServer, type Admin, type Running } from '../support/standalone';
import { screenshotPath } from '../support/screenshots';

interface Ref {
  id: { id: string };
}

const SCREENSHOT = screenshotPath('dashboard.png');
const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * The fleet is the simulator's (sim/fleet.ts, as `ota-simulate` runs it): 20 HTTP devices
 * `thermo-0001` .. `thermo-0020` in the profile 'thermostats'. A fail rate of 0.15 with seed 4
 * makes exactly three of them report FAILED: the 1st, 3rd and 5th.
 */
const FLEET_SIZE = 20;
const FAIL_RATE = 0.15;
const SEED = 4;
const PREFIX = 'thermo-';
const FAILING = [0, 2, 4];
const SIM_ERROR = 'Simulated failure: flash write failed';
const nameOf = (index: number): string => deviceName(PREFIX, index, FLEET_SIZE);

/**
 * Beside them, in the same profile and the same package run, 5 LwM2M devices `lwm2m-0001` ..
 * `lwm2m-0005` (issue 12): the simulator's `--transport lwm2m`, found by endpoint name and updated
 * through Object 5. None fails on purpose. By name, the device list shows them first.
 */
const LWM2M_SIZE = 5;
const LWM2M_PREFIX = 'lwm2m-';
const lwm2mNameOf = (index: number): string => deviceName(LWM2M_PREFIX, index, LWM2M_SIZE);
const LWM2M_NAMES = Array.from({ length: LWM2M_SIZE }, (_, i) => lwm2mNameOf(i));
const TOTAL = FLEET_SIZE + LWM2M_SIZE;

/**
 * The fleet dashboard in headless Chromium (shared/reference/node-red-conventions.md A12) against
 * `npm start` with a paced queue: log in, assign a package, watch the simulator's 20 HTTP and 5 LwM2M
 * devices update live, open a failed device's history and an LwM2M device's, retry a failure.
 */
describe('fleet dashboard in Chromium', function () {
  this.timeout(180_000);
  const WAIT = { timeout: 60_000 };
  let dataDir: string;
  let server: Running;
  let admin: Admin;
  let browser: Browser;
  let page: Page;
  let profileId: string;
  let packageId: string;
  let simOpts: SimOptions;
  let lwm2mOpts: SimOptions;
  const simLog: string[] = [];
  const lwm2mLog: string[] = [];
  const pageErrors: string[] = [];
  const consoleErrors: string[] = [];
  const foreignRequests: string[] = [];

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ota-dashboard-'));
    server = await startServer(dataDir, { TB_QUEUE_CORE_OTA_PACK_SIZE: '5', TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '200', OTA_DASHBOARD_SNAPSHOT_S: '0.5' });
    admin = await adminClient(server.api);
    simOpts = simOptions({
      api: server.api,
      password: ADMIN_PASSWORD,
      username: ADMIN_USER,
      profile: 'thermostats',
      prefix: PREFIX,
      devices: FLEET_SIZE,
      transport: 'http',
      failRate: FAIL_RATE,
      seed: SEED,
      assign: false,
      chunk: 4096,
      timeoutS: 90,
    });
    lwm2mOpts = simOptions({
      api: server.api,
      password: ADMIN_PASSWORD,
      username: ADMIN_USER,
      profile: 'thermostats',
      prefix: LWM2M_PREFIX,
      devices: LWM2M_SIZE,
      transport: 'lwm2m',
      failRate: 0,
      assign: false,
      timeoutS: 90,
    });
    expect(
      [...failingDevices(FLEET_SIZE, FAIL_RATE, SEED)].sort((a, b) => a - b),
      'the seed picks the 1st, 3rd and 5th device',
    ).to.deep.equal(FAILING);
    // The simulator's library makes the profile and the devices, one at a time so that their
    // creation order (the queue's order) is thermo-0001 .. thermo-0020, then lwm2m-0001 .. lwm2m-0005.
    const sim = await AdminClient.login(server.api, ADMIN_USER, ADMIN_PASSWORD);
    const profile = await sim.findOrCreateProfile('thermostats');
    profileId = profile.id.id;
    packageId = (await admin.firmware(profileId, 'thermo-fw', '2.0.0', randomBytes(120_000), 'SHA256', 'thermo-fw-2.0.0.bin')).id.id;
    for (let i = 0; i < FLEET_SIZE; i++) {
      const d = await sim.ensureDevice(nameOf(i), profile);
      expect(d.name).to.equal(nameOf(i));
    }
    for (const name of LWM2M_NAMES) expect((await sim.ensureDevice(name, profile)).name).to.equal(name);
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') consoleErrors.push(msg.text());
    });
    page.on('request', (req) => {
      const url = new URL(req.url());
      if (url.protocol !== 'data:' && !LOCAL_HOSTS.has(url.hostname)) foreignRequests.push(req.url());
    });
  });

  after(async () => {
    await page?.close();
    await browser?.close();
    if (server) await stopServer(server);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  /** The package card's numbers as the page shows them. */
  const cardNumbers = () =>
    page.evaluate((id) => {
      const card = document.querySelector(`[data-card="package"][data-id="${id}"]`);
      const n = (k: string) => Number(card?.querySelector(`[data-metric="${k}"]`)?.textContent?.replace(/,/g, '') ?? NaN);
      return card ? { pending: n('pending'), inProgress: n('inProgress'), updated: n('updated'), failed: n('failed') } : null;
    }, packageId);

  it('logs in through the form and connects the live stream', async () => {
    await page.goto(`${server.api}/dashboard/`);
    await page.getByLabel('Username').fill(ADMIN_USER);
    await page.getByLabel('Password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.locator('#live[data-state="on"]').waitFor(WAIT);
    expect(await page.locator('#user-name').textContent()).to.equal(ADMIN_USER);
    // Page one of 20 by name: the LwM2M devices, then thermo-0001 .. thermo-0015.
    expect(await page.locator('#device-table tbody tr').count()).to.equal(20);
    expect(await page.locator('#page-info').textContent()).to.equal(`1–20 of ${TOTAL}`);
    expect(await page.locator('#device-table tbody tr .name').allTextContents()).to.deep.equal([...LWM2M_NAMES, ...Array.from({ length: 15 }, (_, i) => nameOf(i))]);
    expect(await page.evaluate(() => sessionStorage.length)).to.equal(1);
  });

  it('assigns the package to the profile and shows the fleet updating live, without a reload', async () => {
    // Every value the package card shows from now on, to see it move.
    await page.evaluate(() => {
      const w = window as unknown as { seen: string[]; notReloaded: boolean };
      w.notReloaded = true;
      w.seen = [];
      const record = (): void => {
        const card = document.querySelector('[data-card="package"]');
        if (!card) return;
        const text = [...card.querySelectorAll('dd[data-metric]')].map((d) => `${d.getAttribute('data-metric')}=${d.textContent}`).join(' ');
        if (w.seen.at(-1) !== text) w.seen.push(text);
      };
      new MutationObserver(record).observe(document.getElementById('package-cards') as HTMLElement, { childList: true, subtree: true, characterData: true });
    });

    await page.locator('#assign-profile').selectOption({ label: 'thermostats' });
    await page.locator('#assign-package').selectOption({ label: 'thermo-fw 2.0.0' });
    await page.locator('#assign-submit').click();
    await page.locator('#assign-status', { hasText: 'Assigned thermo-fw 2.0.0 to thermostats' }).waitFor(WAIT);

    // Queued and notified at the configured pace: all twenty-five wait for their devices.
    await page.waitForFunction(
      ({ id, total }) => document.querySelector(`[data-card="package"][data-id="${id}"] [data-metric="pending"]`)?.textContent === String(total),
      { id: packageId, total: TOTAL },
      WAIT,
    );

    // Now the simulator's HTTP fleet, without assigning (the dashboard did): it finds the 20 devices,
    // and they download, verify and report; the three the seed picks fail on purpose. The LwM2M
    // devices are not registered yet: their updates wait for them.
    const out = new Writable({
      write(chunk: Buffer, _enc, done) {
        simLog.push(
          ...chunk
            .toString()
            .split('\n')
            .filter((l) => l !== ''),
        );
        done();
      },
    });
    const report = await runFleet(simOpts, out);
    const log = simLog.join('\n');
    expect(report.ok, log).to.equal(true);
    expect(report.package, log).to.include({ id: packageId, title: 'thermo-fw', version: '2.0.0', size: 120_000 });
    expect(log).to.include(`profile 'thermostats': ${FLEET_SIZE} devices (0 created)`);
    expect(report.results.map((r) => r.name)).to.deep.equal(Array.from({ length: FLEET_SIZE }, (_, i) => nameOf(i)));
    expect(report.results.filter((r) => r.phase === 'updated').map((r) => r.name)).to.have.length(17);
    expect(report.results.filter((r) => r.phase === 'failed').map((r) => [r.name, r.intended, r.error])).to.deep.equal(FAILING.map((i) => [nameOf(i), true, SIM_ERROR]));
    expect(report.server, log).to.include({ packageId, updated: 17, failed: 3, pending: LWM2M_SIZE });

    // Then the LwM2M devices register with the server's LwM2M endpoint (the one /api/ota/endpoints
    // lists), are told the Package URI, pull it block-wise and report through Object 5 State and
    // Result. Their run's own server count may be read before the tracker has counted their last
    // reports (it waits only for its own 5 among the package's 22): the card below is exact.
    const lwm2mOut = new Writable({
      write(chunk: Buffer, _enc, done) {
        lwm2mLog.push(
          ...chunk
            .toString()
            .split('\n')
            .filter((l) => l !== ''),
        );
        done();
      },
    });
    const lwm2mReport = await runFleet(lwm2mOpts, lwm2mOut);
    const lwm2mText = lwm2mLog.join('\n');
    expect(lwm2mReport.ok, lwm2mText).to.equal(true);
    expect(lwm2mReport.transport).to.equal('LWM2M');
    expect(lwm2mReport.package, lwm2mText).to.include({ id: packageId, title: 'thermo-fw', version: '2.0.0', size: 120_000 });
    expect(lwm2mText).to.include(`profile 'thermostats': ${LWM2M_SIZE} devices (0 created)`);
    expect(lwm2mText).to.match(/LWM2M devices connect to 127\.0\.0\.1:\d+/);
    expect(lwm2mReport.results.map((r) => [r.name, r.phase, r.bytes])).to.deep.equal(LWM2M_NAMES.map((n) => [n, 'updated', 120_000]));

    await page.waitForFunction(
      (id) => {
        const card = document.querySelector(`[data-card="package"][data-id="${id}"]`);
        return card?.querySelector('[data-metric="updated"]')?.textContent === '22' && card?.querySelector('[data-metric="failed"]')?.textContent === '3';
      },
      packageId,
      WAIT,
    );
    expect(await cardNumbers()).to.deep.equal({ pending: 0, inProgress: 0, updated: 22, failed: 3 });
    expect(await page.locator(`[data-card="package"][data-id="${packageId}"] [data-metric="coverage"]`).textContent()).to.equal('Coverage 88%');
    expect(await page.locator('[data-stat="updated"] .value').textContent()).to.equal('22');

    const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen);
    expect(
      seen.findIndex((t) => t.includes(`pending=${TOTAL}`)),
      `the card showed the fleet waiting: ${seen.join(' | ')}`,
    ).to.be.at.least(0);
    expect(seen.at(-1)).to.equal('pending=0 inProgress=0 updated=22 failed=3');
    expect(seen.length, `the card changed as devices reported: ${seen.join(' | ')}`).to.be.at.least(2);
    expect(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded), 'same page, never reloaded').to.equal(true);
    expect(await page.evaluate(() => performance.getEntriesByType('navigation').length)).to.equal(1);

    // The rows followed too: states in the device list (page one: the LwM2M devices UPDATED like
    // the HTTP ones, thermo-0001, -0003 and -0005 FAILED) and the three failures in their panel.
    const pageOne = [...LWM2M_NAMES.map((n) => `${n} UPDATED`), ...Array.from({ length: 15 }, (_, i) => `${nameOf(i)} ${FAILING.includes(i) ? 'FAILED' : 'UPDATED'}`)];
    await page.waitForFunction(
      (expected) =>
        [...document.querySelectorAll('#device-table tbody tr')].map((tr) => `${tr.querySelector('.name')?.textContent} ${tr.getAttribute('data-state')}`).join(',') ===
        expected.join(','),
      pageOne,
      WAIT,
    );
    await page.waitForFunction(() => document.querySelectorAll('#failed-table tbody tr').length === 3, undefined, WAIT);
    expect(await page.locator('#failed-table tbody').textContent()).to.include(SIM_ERROR);
    expect(await page.locator('#failed-table tbody tr .name').allTextContents()).to.have.members(FAILING.map(nameOf));
    // The chart drew the states it was sent.
    await page.locator('#chart svg path[data-series="updated"]').waitFor(WAIT);
  });

  it('saves a screenshot of the dashboard', async () => {
    await mkdir(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect((await stat(SCREENSHOT)).size).to.be.greaterThan(20_000);
  });

  it("opens a failed device's history: its states in order and its error", async () => {
    await page.locator('#failed-table').getByRole('button', { name: 'History of thermo-0001' }).click();
    const dialog = page.locator('#history');
    await dialog.locator('#history-title', { hasText: 'History of thermo-0001' }).waitFor(WAIT);
    await dialog.locator('#history-list li[data-state="FAILED"]').waitFor(WAIT);
    const states = await dialog.locator('#history-list li[data-state]:not([data-state=""])').evaluateAll((items) => items.map((li) => li.getAttribute('data-state')));
    expect(states).to.deep.equal(['QUEUED', 'INITIATED', 'DOWNLOADING', 'DOWNLOADED', 'VERIFIED', 'FAILED']);
    expect(await dialog.locator('#history-list li[data-state="FAILED"] .error-text').textContent()).to.equal(SIM_ERROR);
    expect(await dialog.locator('#history-summary').textContent()).to.include('FAILED');
    await page.screenshot({ path: screenshotPath('dashboard-history.png') });
    await dialog.getByRole('button', { name: 'Close the history' }).click();
    await page.waitForFunction(() => !(document.getElementById('history') as HTMLDialogElement).open, undefined, WAIT);
  });

  it("opens an LwM2M device's history: the states its Object 5 went through, in order", async () => {
    await page
      .locator('#device-table')
      .getByRole('button', { name: `History of ${lwm2mNameOf(1)}` })
      .click();
    const dialog = page.locator('#history');
    await dialog.locator('#history-title', { hasText: `History of ${lwm2mNameOf(1)}` }).waitFor(WAIT);
    await dialog.locator('#history-list li[data-state="UPDATED"]').waitFor(WAIT);
    const states = await dialog.locator('#history-list li[data-state]:not([data-state=""])').evaluateAll((items) => items.map((li) => li.getAttribute('data-state')));
    // No VERIFIED: Object 5 has no such State (reference §6).
    expect(states).to.deep.equal(['QUEUED', 'INITIATED', 'DOWNLOADING', 'DOWNLOADED', 'UPDATING', 'UPDATED']);
    expect(await dialog.locator('#history-summary').textContent()).to.include('UPDATED');
    await dialog.getByRole('button', { name: 'Close the history' }).click();
    await page.waitForFunction(() => !(document.getElementById('history') as HTMLDialogElement).open, undefined, WAIT);
  });

  it('retries a failed device from the failed panel', async () => {
    await page.locator('#failed-table').getByRole('button', { name: 'Retry thermo-0003' }).click();
    await page.locator('#toast', { hasText: 'thermo-0003 is queued again.' }).waitFor(WAIT);
    await page.waitForFunction((id) => document.querySelector(`[data-card="package"][data-id="${id}"] [data-metric="failed"]`)?.textContent === '2', packageId, WAIT);
    await page.waitForFunction(() => document.querySelectorAll('#failed-table tbody tr').length === 2, undefined, WAIT);
  });

  it('filters, sorts and pages the device list', async () => {
    const names = () => page.locator('#device-table tbody tr .name').allTextContents();
    const rowsAre = (n: number) => page.waitForFunction((count) => document.querySelectorAll('#device-table tbody tr').length === count, n, WAIT);

    await page.getByLabel('Name', { exact: true }).fill('thermo-000');
    await page.locator('#f-state').selectOption({ label: 'Failed' });
    await rowsAre(2);
    expect(await names()).to.deep.equal(['thermo-0001', 'thermo-0005']);
    await page.locator('#device-table thead th[data-sort="name"] button').click();
    await page.waitForFunction(() => document.querySelector('#device-table tbody tr .name')?.textContent === 'thermo-0005', undefined, WAIT);
    expect(await page.locator('#device-table thead th[data-sort="name"]').getAttribute('aria-sort')).to.equal('descending');

    // The name filter applies 300 ms after the last keystroke: cleared last, and awaited, so that it
    // cannot take the list back to its first page after the clicks below.
    await page.locator('#f-state').selectOption({ label: 'Any state' });
    await page.locator('#f-size').selectOption('10');
    await page.locator('#page-info', { hasText: '1–9 of 9' }).waitFor(WAIT);
    await page.getByLabel('Name', { exact: true }).fill('');
    await rowsAre(10);
    await page.locator('#page-info', { hasText: `1–10 of ${TOTAL}` }).waitFor(WAIT);
    expect((await names())[0]).to.equal('thermo-0020');
    await page.getByRole('button', { name: 'Next' }).click();
    await page.locator('#page-info', { hasText: `11–20 of ${TOTAL}` }).waitFor(WAIT);
    expect((await names()).at(-1)).to.equal('thermo-0001');
    await page.getByRole('button', { name: 'Next' }).click();
    await page.locator('#page-info', { hasText: `21–25 of ${TOTAL}` }).waitFor(WAIT);
    expect(await page.getByRole('button', { name: 'Next' }).isDisabled()).to.equal(true);
    expect(await names()).to.deep.equal([...LWM2M_NAMES].reverse());

    // Software: nothing assigned, the same devices without a software update.
    await page.locator('label[for="type-sw"]').click();
    await page.locator('#package-cards', { hasText: 'No software is assigned' }).waitFor(WAIT);
    await page.locator('#other-type-head', { hasText: 'Firmware' }).waitFor(WAIT);
    await page.waitForFunction(() => [...document.querySelectorAll('#device-table tbody tr')].every((tr) => tr.getAttribute('data-state') === 'NONE'), undefined, WAIT);
    await page.locator('label[for="type-fw"]').click();
    await page.locator(`[data-card="package"][data-id="${packageId}"]`).waitFor(WAIT);
  });

  it('shows a rollout with its waves, its progress and why it stopped by itself', async () => {
    const profile = (await admin.request<Ref>('POST', '/deviceProfile', { name: 'canary' })).id.id;
    const pkg = await admin.firmware(profile, 'canary-fw', '3.0.0', randomBytes(4096));
    const tokens: string[] = [];
    for (const name of ['canary-1', 'canary-2', 'canary-3']) {
      const d = await admin.request<Ref>('POST', '/device', { name, deviceProfileId: { id: profile, entityType: 'DEVICE_PROFILE' } });
      tokens.push((await admin.request<{ credentialsId: string }>('GET', `/device/${d.id.id}/credentials`)).credentialsId);
    }
    const rollout = await admin.request<Ref>('POST', '/ota/rollouts', {
      name: 'canary 3.0',
      packageId: { entityType: 'OTA_PACKAGE', id: pkg.id.id },
      target: { deviceProfileId: { entityType: 'DEVICE_PROFILE', id: profile } },
      waves: [{ count: 1 }, { percent: 100 }],
      gate: { minSuccessRate: 100, minFinished: 1, waitSeconds: 0 },
      abort: { maxFailureRate: 50, minFinished: 1 },
    });
    await admin.request('POST', `/ota/rollouts/${rollout.id.id}/start`);
    const card = page.locator(`.rollout-card[data-rollout-id="${rollout.id.id}"]`);
    await card.locator('h3', { hasText: 'canary 3.0' }).waitFor(WAIT);
    // The first device of the first wave reports FAILED: one of one finished failed, the rollout stops by itself.
    const res = await fetch(`${server.api}/api/v1/${tokens[0]}/telemetry`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ fw_state: 'FAILED', fw_error: 'flash' }),
    });
    expect(res.status).to.equal(200);
    await page.locator(`.rollout-card[data-rollout-id="${rollout.id.id}"][data-state="ABORTED"]`).waitFor(WAIT);
    expect(await card.locator('[data-reason]').textContent()).to.equal('Stopped: failure rate 100 % (1 of 1 finished) reached the abort threshold of 50 %');
    expect(await card.locator('.wave').evaluateAll((items) => items.map((li) => li.getAttribute('data-wave-state')))).to.deep.equal(['FAILED', 'PENDING']);
    expect(await card.locator('.wave-counts').allTextContents()).to.deep.equal(['0 of 1 updated, 1 failed, 0 in progress', '0 of 2 updated, 0 failed, 0 in progress']);
    expect(await card.locator('.sub').textContent()).to.match(/^Firmware canary-fw 3\.0\.0 · 3 devices · 0% updated · started /);
    await card.screenshot({ path: screenshotPath('dashboard-rollout.png') });
  });

  it("moves a device's progress bar live as it downloads, without a reload", async () => {
    const profile = (await admin.request<Ref>('POST', '/deviceProfile', { name: 'progress' })).id.id;
    const pkg = (await admin.firmware(profile, 'progress-fw', '1.0.0', randomBytes(64 * 1024))).id.id;
    const d = await admin.request<Ref>('POST', '/device', {
      name: 'progress-1',
      deviceProfileId: { id: profile, entityType: 'DEVICE_PROFILE' },
      firmwareId: { id: pkg, entityType: 'OTA_PACKAGE' },
    });
    const token = (await admin.request<{ credentialsId: string }>('GET', `/device/${d.id.id}/credentials`)).credentialsId;
    await page.evaluate(() => ((window as unknown as { notReloaded: boolean }).notReloaded = true));
    await page.getByLabel('Name', { exact: true }).fill('progress-');
    const row = page.locator(`#device-table tbody tr[data-device-id="${d.id.id}"][data-target-package="${pkg}"]`);
    await row.waitFor(WAIT);
    // A quarter of the package per chunk: the bar follows each before the next is asked for.
    const device = new HttpDevice(server.api, token);
    for (let chunk = 0; chunk < 3; chunk++) {
      expect((await device.chunk('progress-fw', '1.0.0', 16 * 1024, chunk)).status).to.equal(200);
      const percent = String((chunk + 1) * 25);
      await row.locator(`.served[data-served="${percent}"] progress`).waitFor(WAIT);
      expect(await row.locator('.served progress').evaluate((bar) => [(bar as HTMLProgressElement).value, (bar as HTMLProgressElement).max])).to.deep.equal([
        (chunk + 1) * 16 * 1024,
        64 * 1024,
      ]);
      expect(await row.locator('.served').textContent()).to.equal(` ${percent} % served`);
    }
    await row.screenshot({ path: screenshotPath('dashboard-progress.png') });
    expect(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded), 'same page, never reloaded').to.equal(true);
    expect(await page.evaluate(() => performance.getEntriesByType('navigation').length)).to.equal(1);
  });

  it('loaded nothing from elsewhere, and had no page or console errors', async () => {
    expect(foreignRequests).to.deep.equal([]);
    expect(pageErrors).to.deep.equal([]);
    expect(consoleErrors).to.deep.equal([]);
  });
});
