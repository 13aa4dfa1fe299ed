import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { chromium, type Browser, type Page } from 'playwright-core';
import { ADMIN_PASSWORD, ADMIN_USER, adminClient, startServer, stopServer, type Running } from '../support/standalone';
import { screenshotPath } from '../support/screenshots';

/**
 * The Node-RED editor of `npm start` in headless Chromium (conventions A12): log in, find every
 * OTA node in the palette, import the full example through Import > Examples and deploy it, pick a
 * profile and a package in ota-assign's dialog from the server's lists, and see the package list in
 * ota-package-store's; no page errors. Saves docs/flow.png (and docs/assign-dialog.png, the pickers).
 */
const ROOT = path.resolve(__dirname, '..', '..', '..');
const MODULE = '@otanr/node-red-ota';
const FULL_EXAMPLE = 'ThingsBoard-compatible OTA server';
const SCREENSHOT = screenshotPath('flow.png');
const DIALOG_SCREENSHOT = screenshotPath('assign-dialog.png');

/** The editor's `RED`, as far as these specs use it. */
interface EditorNode {
  id: string;
  type: string;
  z?: string;
  name?: string;
  valid?: boolean;
  status?: { fill?: string; shape?: string; text?: string };
  [key: string]: unknown;
}
interface Red {
  nodes: {
    getType(type: string): unknown;
    filterNodes(filter: Record<string, unknown>): EditorNode[];
    node(id: string): EditorNode | null;
    eachConfig(cb: (n: EditorNode) => boolean | void): void;
    dirty(): boolean;
  };
  actions: { invoke(name: string): void };
  editor: { edit(node: EditorNode): void };
  view: { importNodes(nodes: unknown, options: Record<string, unknown>): void };
  workspaces: { active(): string };
}
declare const RED: Red;
/** jQuery in the editor: its requests carry the editor's login. */
declare const $: { getJSON(url: string): PromiseLike<unknown> };

/** Our node types that show in the palette: every node set of the package but the config nodes. */
function paletteTypes(): string[] {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { 'node-red': { nodes: Record<string, string> } };
  return Object.keys(pkg['node-red'].nodes).filter((t) => !/category:\s*"config"/.test(readFileSync(path.join(ROOT, 'dist', 'nodes', `${t}.html`), 'utf8')));
}

describe('the Node-RED editor of npm start (headless Chromium)', function () {
  this.timeout(120_000);
  let dataDir: string;
  let server: Running;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ota-editor-'));
    // An empty flow file: the editor starts empty, and the full example is imported by hand.
    await mkdir(path.join(dataDir, 'node-red'), { recursive: true });
    await writeFile(path.join(dataDir, 'node-red', 'flows.json'), '[]');
    server = await startServer(dataDir);

    // Something for the pickers to list: a second profile and a firmware package for it.
    const admin = await adminClient(server.api);
    const profile = await admin.request<{ id: { id: string } }>('POST', '/deviceProfile', { name: 'thermostats' });
    await admin.firmware(profile.id.id, 'thermo-fw', '1.2.0', Buffer.alloc(20_000, 1));

    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await browser.newPage({ viewport: { width: 1440, height: 820 } });
    page.on('pageerror', (err) => pageErrors.push(err.message));
  });

  after(async () => {
    await browser?.close();
    if (server) await stopServer(server);
    await rm(dataDir, { recursive: true, force: true });
  });

  it("asks for the admin's login, and opens the editor with it", async () => {
    await page.goto(`${server.editor}/`);
    await page.locator('#node-dialog-login-username').fill(ADMIN_USER);
    await page.locator('#node-dialog-login-password').fill(ADMIN_PASSWORD);
    await page.locator('#node-dialog-login-submit').click();
    await page.locator('#red-ui-palette-search').waitFor({ state: 'visible' });
  });

  it('shows every OTA node in the palette, under OTA', async () => {
    const types = paletteTypes();
    expect(types).to.include.members(['ota-package-store', 'ota-assign', 'ota-rate-queue', 'ota-notify', 'ota-http', 'ota-state-tracker']);
    for (const type of types) {
      await page.locator(`.red-ui-palette-node[data-palette-type='${type}']`).waitFor({ state: 'attached' });
      expect(await page.evaluate((t) => !!RED.nodes.getType(t), type), type).to.equal(true);
    }
    const inOta = await page.locator("#red-ui-palette-container-OTA .red-ui-palette-node[data-palette-type^='ota-']").count();
    expect(inOta).to.equal(types.length);
  });

  it('imports the full example through Import > Examples and deploys it', async () => {
    await page.evaluate(() => RED.actions.invoke('core:show-examples-import-dialog'));
    const dialog = page.locator('#red-ui-clipboard-dialog');
    await dialog.locator('.red-ui-treeList-label', { hasText: MODULE }).first().click();
    await dialog.locator('.red-ui-treeList-label', { hasText: FULL_EXAMPLE }).first().click();
    await page.locator('#red-ui-clipboard-dialog-ok').click();
    // The imported nodes hang on the mouse until a click on the canvas drops them.
    const chart = page.locator('#red-ui-workspace-chart');
    const box = await chart.boundingBox();
    if (!box) throw new Error('no canvas');
    await page.mouse.move(box.x + 80, box.y + 60);
    await page.mouse.click(box.x + 80, box.y + 60);
    await page.waitForFunction(() => RED.nodes.filterNodes({ type: 'ota-assign' }).length === 1);
    const imported = await page.evaluate(() => RED.nodes.filterNodes({ z: RED.workspaces.active() }).map((n) => ({ type: n.type, valid: n.valid })));
    expect(imported.map((n) => n.type)).to.include.members(['ota-package-store', 'ota-assign', 'ota-rate-queue', 'ota-notify', 'ota-http', 'ota-state-tracker']);
    expect(imported.filter((n) => n.valid === false)).to.deep.equal([]);

    await page.locator('#red-ui-header-button-deploy').click();
    await page.waitForFunction(() => !RED.nodes.dirty());
    // The editor stays shaded until the deploy request has answered.
    await page.locator('#red-ui-editor-shade').waitFor({ state: 'hidden' });
    // Deployed and running: the nodes report their status from the server.
    await page.waitForFunction(() => RED.nodes.filterNodes({ type: 'ota-assign' })[0]?.status?.fill === 'green');
    await page.waitForFunction(() => RED.nodes.filterNodes({ type: 'ota-http' })[0]?.status?.text?.startsWith('listening'));
    await page.waitForFunction(() => RED.nodes.filterNodes({ type: 'ota-package-store' })[0]?.status?.text === '1 package');

    // For docs/flow.png: the flow with its status, the OTA palette beside it, no sidebar or notices.
    await page.mouse.click(box.x + box.width - 40, box.y + box.height - 40);
    await page.evaluate(() => RED.actions.invoke('core:toggle-sidebar'));
    // The palette filters on key presses.
    await page.locator('#red-ui-palette-search input').pressSequentially('ota');
    await page.locator(".red-ui-palette-node[data-palette-type='inject']").waitFor({ state: 'hidden' });
    // Closed as Node-RED closes them, then gone: removed by hand, one already sliding up (or closed
    // by its own timer later) threw "Cannot read properties of null (reading 'removeChild')" in
    // Node-RED's callback once its animation ended, which the load made likely.
    await page.evaluate(() => document.querySelectorAll<HTMLElement & { close(): void }>('.red-ui-notification').forEach((n) => n.close()));
    await page.waitForFunction(() => !document.querySelector('.red-ui-notification'));
    await mkdir(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
    await page.locator('#red-ui-palette-search .red-ui-searchBox-clear').click();
    await page.locator(".red-ui-palette-node[data-palette-type='inject']").waitFor({ state: 'visible' });
    await page.evaluate(() => RED.actions.invoke('core:toggle-sidebar'));
  });

  it("fills ota-assign's target and package from the server's lists", async () => {
    await page.evaluate(() => RED.editor.edit(RED.nodes.filterNodes({ type: 'ota-assign' })[0] as EditorNode));
    const tray = page.locator('.red-ui-tray').last();
    await tray.locator('#node-input-packageTitle').waitFor({ state: 'visible' });

    // The target: a profile, typed or picked from the server's profiles.
    const target = tray.locator('.red-ui-typedInput-container input.red-ui-typedInput-input').first();
    await target.click();
    await target.press('ArrowDown');
    const menu = page.locator('.red-ui-autoComplete-container');
    await menu.waitFor({ state: 'visible' });
    expect(await menu.locator('li').allInnerTexts()).to.satisfy((items: string[]) => items.some((t) => t.startsWith('default')) && items.some((t) => t.startsWith('thermostats')));
    await menu.locator('li', { hasText: 'thermostats' }).click();
    await menu.waitFor({ state: 'hidden' });

    // The package: the firmware packages of that profile; picking a title brings its version.
    await tray.locator('#ota-assign-pick-package').click();
    await menu.waitFor({ state: 'visible' });
    expect(await menu.locator('li').allInnerTexts()).to.deep.equal(['thermo-fw\nFIRMWARE · thermostats']);
    // A trial click waits until the list has stopped sliding in.
    await menu.locator('li').first().click({ trial: true });
    await page.screenshot({ path: DIALOG_SCREENSHOT });
    await menu.locator('li', { hasText: 'thermo-fw' }).click();
    expect(await tray.locator('#node-input-packageVersion').inputValue()).to.equal('1.2.0');
    expect(await tray.locator('#ota-assign-picker-hint').isVisible()).to.equal(false);

    await tray.locator('#node-dialog-ok').click();
    const saved = await page.evaluate(() => {
      const n = RED.nodes.filterNodes({ type: 'ota-assign' })[0] as EditorNode;
      return { targetType: n.targetType, target: n.target, otaType: n.otaType, packageTitle: n.packageTitle, packageVersion: n.packageVersion, valid: n.valid };
    });
    expect(saved).to.deep.equal({ targetType: 'deviceProfile', target: 'thermostats', otaType: 'FIRMWARE', packageTitle: 'thermo-fw', packageVersion: '1.2.0', valid: true });
  });

  it("lists the server's packages in ota-package-store's dialog", async () => {
    await page.evaluate(() => RED.editor.edit(RED.nodes.filterNodes({ type: 'ota-package-store' })[0] as EditorNode));
    const tray = page.locator('.red-ui-tray').last();
    const rows = tray.locator('#ota-package-store-packages tbody tr');
    await rows.first().waitFor({ state: 'visible' });
    expect(await rows.count()).to.equal(1);
    expect(await rows.first().locator('td').allInnerTexts()).to.deep.equal(['thermo-fw', '1.2.0', 'FIRMWARE', 'thermostats', '20 kB']);
    expect(await tray.locator('#ota-package-store-packages-count').innerText()).to.equal('(1)');
    await tray.locator('#node-dialog-cancel').click();
  });

  it('imports every numbered example with no invalid node', async () => {
    // The admin API lists a module's examples as [{fn}] (conventions A2).
    const names = await page.evaluate(async (module) => ((await $.getJSON(`library/examples/flows/${module}`)) as Array<{ fn: string }>).map((e) => e.fn), MODULE);
    const numbered = names.filter((n) => /^\d\d - /.test(n));
    expect(numbered).to.have.length.at.least(6);
    for (const name of numbered) {
      const invalid = await page.evaluate(
        async ({ module, name }) => {
          const flow = (await $.getJSON(`library/examples/flows/${module}/${encodeURIComponent(name)}`)) as EditorNode[];
          RED.view.importNodes(flow, { addFlow: true, generateIds: true });
          const tab = RED.workspaces.active();
          const bad = RED.nodes
            .filterNodes({ z: tab })
            .filter((n) => n.valid === false)
            .map((n) => `${n.type} ${n.id}`);
          RED.nodes.eachConfig((n) => {
            if (n.valid === false && n.type.startsWith('ota-')) bad.push(`${n.type} ${n.id}`);
          });
          return bad;
        },
        { module: MODULE, name },
      );
      expect(invalid, name).to.deep.equal([]);
    }
  });

  it('raised no error in the page', () => {
    expect(pageErrors).to.deep.equal([]);
  });
});
