import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { chromium, type Browser, type Page } from 'playwright-core';
import { HttpDevice } from '../support/http-device';
import { ADMIN_PASSWORD, ADMIN_USER, adminClient, startServer, stopServer, type Admin, type Running } from '../support/standalone';

interface Ref {
  id: { id: string };
}

/** Where the screenshot goes: `docs/` at the package root (this file runs from dist/test/browser). */
const SCREENSHOT = path.resolve(__dirname, '..', '..', '..', 'docs', 'dashboard.png');
const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * The fleet dashboard in headless Chromium (shared/reference/node-red-conventions.md A12) against
 * `npm start` with a paced queue: log in, assign a package, watch 20 HTTP devices update live, open a
 * failed device's history, retry it.
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
  const fleet: Array<{ id: string; name: string; device: HttpDevice }> = [];
  const pageErrors: string[] = [];
  const consoleErrors: string[] = [];
  const foreignRequests: string[] = [];

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ota-dashboard-'));
    server = await startServer(dataDir, { TB_QUEUE_CORE_OTA_PACK_SIZE: '5', TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '200', OTA_DASHBOARD_SNAPSHOT_S: '0.5' });
    admin = await adminClient(server.api);
    profileId = (await admin.request<Ref>('POST', '/deviceProfile', { name: 'thermostats' })).id.id;
    const info = await admin.request<Ref>('POST', '/otaPackage', { title: 'thermo-fw', version: '2.0.0', type: 'FIRMWARE', deviceProfileId: { id: profileId, entityType: 'DEVICE_PROFILE' } });
    packageId = ((await admin.upload(info.id.id, randomBytes(120_000), 'SHA256', 'thermo-fw-2.0.0.bin')) as unknown as Ref).id.id;
    for (let i = 0; i < 20; i++) {
      const name = `thermo-${String(i).padStart(2, '0')}`;
      const d = await admin.request<Ref>('POST', '/device', { name, deviceProfileId: { id: profileId, entityType: 'DEVICE_PROFILE' } });
      const creds = await admin.request<{ credentialsId: string }>('GET', `/device/${d.id.id}/credentials`);
      fleet.push({ id: d.id.id, name, device: new HttpDevice(server.api, creds.credentialsId) });
    }
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

  /** A device as the example script runs it: long polls, asks for its attributes after an empty poll. */
  async function awaitFirmware(device: HttpDevice): Promise<Record<string, unknown>> {
    for (let i = 0; i < 90; i++) {
      const update = await device.waitForUpdate(1000);
      if (update && typeof update.fw_title === 'string') return update;
      const { body } = await device.attributes('?sharedKeys=fw_title,fw_version,fw_size,fw_checksum,fw_checksum_algorithm');
      if (body.shared?.fw_title) return body.shared;
    }
    throw new Error('no firmware assigned');
  }

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
    expect(await page.locator('#device-table tbody tr').count()).to.equal(20);
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

    // Queued and notified at the configured pace: all twenty wait for their devices.
    await page.waitForFunction((id) => document.querySelector(`[data-card="package"][data-id="${id}"] [data-metric="pending"]`)?.textContent === '20', packageId, WAIT);

    // Now the devices: they download, verify and report; the first three fail.
    const runs = fleet.map(async ({ device }, i) => device.update(await awaitFirmware(device), { chunkSize: 4096, ...(i < 3 ? { fail: 'Flash write failed' } : {}) }));
    await Promise.all(runs);

    await page.waitForFunction(
      (id) => {
        const card = document.querySelector(`[data-card="package"][data-id="${id}"]`);
        return card?.querySelector('[data-metric="updated"]')?.textContent === '17' && card?.querySelector('[data-metric="failed"]')?.textContent === '3';
      },
      packageId,
      WAIT,
    );
    expect(await cardNumbers()).to.deep.equal({ pending: 0, inProgress: 0, updated: 17, failed: 3 });
    expect(await page.locator(`[data-card="package"][data-id="${packageId}"] [data-metric="coverage"]`).textContent()).to.equal('Coverage 85%');
    expect(await page.locator('[data-stat="updated"] .value').textContent()).to.equal('17');

    const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen);
    expect(seen.findIndex((t) => t.includes('pending=20')), `the card showed the fleet waiting: ${seen.join(' | ')}`).to.be.at.least(0);
    expect(seen.at(-1)).to.equal('pending=0 inProgress=0 updated=17 failed=3');
    expect(seen.length, `the card changed as devices reported: ${seen.join(' | ')}`).to.be.at.least(2);
    expect(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded), 'same page, never reloaded').to.equal(true);
    expect(await page.evaluate(() => performance.getEntriesByType('navigation').length)).to.equal(1);

    // The rows followed too: states in the device list and the three failures in their panel.
    await page.waitForFunction(() => document.querySelectorAll('#device-table tbody tr[data-state="UPDATED"]').length === 17, undefined, WAIT);
    await page.waitForFunction(() => document.querySelectorAll('#failed-table tbody tr').length === 3, undefined, WAIT);
    expect(await page.locator('#failed-table tbody').textContent()).to.include('Flash write failed');
    // The chart drew the states it was sent.
    await page.locator('#chart svg path[data-series="updated"]').waitFor(WAIT);
  });

  it('saves a screenshot of the dashboard', async () => {
    await mkdir(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect((await stat(SCREENSHOT)).size).to.be.greaterThan(20_000);
  });

  it("opens a failed device's history: its states in order and its error", async () => {
    await page.locator('#failed-table').getByRole('button', { name: 'History of thermo-00' }).click();
    const dialog = page.locator('#history');
    await dialog.locator('#history-title', { hasText: 'History of thermo-00' }).waitFor(WAIT);
    await dialog.locator('#history-list li[data-state="FAILED"]').waitFor(WAIT);
    const states = await dialog.locator('#history-list li[data-state]:not([data-state=""])').evaluateAll((items) => items.map((li) => li.getAttribute('data-state')));
    expect(states).to.deep.equal(['QUEUED', 'INITIATED', 'DOWNLOADING', 'DOWNLOADED', 'VERIFIED', 'FAILED']);
    expect(await dialog.locator('#history-list li[data-state="FAILED"] .error-text').textContent()).to.equal('Flash write failed');
    expect(await dialog.locator('#history-summary').textContent()).to.include('FAILED');
    await page.screenshot({ path: SCREENSHOT.replace(/\.png$/, '-history.png') });
    await dialog.getByRole('button', { name: 'Close the history' }).click();
    await page.waitForFunction(() => !(document.getElementById('history') as HTMLDialogElement).open, undefined, WAIT);
  });

  it('retries a failed device from the failed panel', async () => {
    await page.locator('#failed-table').getByRole('button', { name: 'Retry thermo-01' }).click();
    await page.locator('#toast', { hasText: 'thermo-01 is queued again.' }).waitFor(WAIT);
    await page.waitForFunction((id) => document.querySelector(`[data-card="package"][data-id="${id}"] [data-metric="failed"]`)?.textContent === '2', packageId, WAIT);
    await page.waitForFunction(() => document.querySelectorAll('#failed-table tbody tr').length === 2, undefined, WAIT);
  });

  it('filters, sorts and pages the device list', async () => {
    const names = () => page.locator('#device-table tbody tr .name').allTextContents();
    const rowsAre = (n: number) => page.waitForFunction((count) => document.querySelectorAll('#device-table tbody tr').length === count, n, WAIT);

    await page.getByLabel('Name', { exact: true }).fill('thermo-0');
    await page.locator('#f-state').selectOption({ label: 'Failed' });
    await rowsAre(2);
    expect(await names()).to.deep.equal(['thermo-00', 'thermo-02']);
    await page.locator('#device-table thead th[data-sort="name"] button').click();
    await page.waitForFunction(() => document.querySelector('#device-table tbody tr .name')?.textContent === 'thermo-02', undefined, WAIT);
    expect(await page.locator('#device-table thead th[data-sort="name"]').getAttribute('aria-sort')).to.equal('descending');

    await page.getByLabel('Name', { exact: true }).fill('');
    await page.locator('#f-state').selectOption({ label: 'Any state' });
    await page.locator('#f-size').selectOption('10');
    await rowsAre(10);
    await page.locator('#page-info', { hasText: '1–10 of 20' }).waitFor(WAIT);
    expect((await names())[0]).to.equal('thermo-19');
    await page.getByRole('button', { name: 'Next' }).click();
    await page.locator('#page-info', { hasText: '11–20 of 20' }).waitFor(WAIT);
    expect(await page.getByRole('button', { name: 'Next' }).isDisabled()).to.equal(true);
    expect((await names()).at(-1)).to.equal('thermo-00');

    // Software: nothing assigned, the same devices without a software update.
    await page.locator('label[for="type-sw"]').click();
    await page.locator('#package-cards', { hasText: 'No software is assigned' }).waitFor(WAIT);
    await page.locator('#other-type-head', { hasText: 'Firmware' }).waitFor(WAIT);
    await page.waitForFunction(() => [...document.querySelectorAll('#device-table tbody tr')].every((tr) => tr.getAttribute('data-state') === 'NONE'), undefined, WAIT);
    await page.locator('label[for="type-fw"]').click();
    await page.locator(`[data-card="package"][data-id="${packageId}"]`).waitFor(WAIT);
  });

  it('loaded nothing from elsewhere, and had no page or console errors', async () => {
    expect(foreignRequests).to.deep.equal([]);
    expect(pageErrors).to.deep.equal([]);
    expect(consoleErrors).to.deep.equal([]);
  });
});
