// The settings page in Debian's headless Chromium, as an admin clicks through
// it, inside one PBX frame served by router.php (php -S); tests/browser_page.rs
// sets up the PBX tree and runs it for each PBX.
//
//   node e2e.mjs <base url> <page path> <screenshot dir>
//
// Exit 0 when every step held; a step that failed says which, on stderr.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

const [base, pagePath, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
const errors = [];
page.on('pageerror', (e) => errors.push(String(e)));
let failed = false;
// The whole page in one picture, as a screen that tall shows it: the sticky
// action bar then sits at the bottom where it belongs (a fullPage capture
// would paint it over the middle of the page, where the viewport ended).
async function shot(path) {
  const viewport = page.viewportSize();
  const height = await page.evaluate(() => document.documentElement.scrollHeight);
  await page.setViewportSize({ width: viewport.width, height: Math.max(height, viewport.height) });
  await page.screenshot({ path });
  await page.setViewportSize(viewport);
}
async function step(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    failed = true;
    console.error(`FAIL ${name}: ${e.message}`);
    await shot(`${shots}/failed-${name.replace(/\W+/g, '-')}.png`);
  }
}
const root = '#featpkg-settings';
await step('open the page and see the five features', async () => {
  await page.goto(base + pagePath);
  await page.waitForSelector(`${root} [data-feature="queue-failover"]`, { timeout: 15000 });
  const ids = await page.$$eval(`${root} [data-feature]`, (els) => [...new Set(els.map((e) => e.getAttribute('data-feature')))]);
  for (const id of ['busy-callback', 'call-waiting', 'conference-guest', 'operator-alert', 'queue-failover']) {
    if (!ids.includes(id)) throw new Error(`no card for ${id}: ${ids}`);
  }
  await shot(`${shots}/1-features.png`);
});
await step('fill conference-guest', async () => {
  const card = `${root} [data-feature="conference-guest"]`;
  const install = await page.$(`${card} .fp-install input`);
  if (install && !(await install.isChecked())) await install.check();
  await page.fill(`${card} [data-param="conference"] input, ${card} input[data-param="conference"]`, '800');
  await page.fill(`${card} [data-param="provider"] input, ${card} input[data-param="provider"]`, 'trunk');
  await page.fill(`${card} [data-param="number"] input, ${card} input[data-param="number"]`, '12a');
});
await step('preview shows featpkg\'s error beside the number', async () => {
  await page.click(`${root} .fp-buttons > .fp-btn:first-child`);
  const shown = `${root} .fp-field-error:not([hidden])`;
  await page.waitForSelector(shown, { timeout: 15000 });
  const text = await page.textContent(shown);
  if (!/number/.test(text)) throw new Error(`error shown: ${text}`);
  await shot(`${shots}/2-error.png`);
});
const status = () => JSON.parse(execFileSync(process.env.FEATPKG_E2E_FEATPKG,
  ['status', '--json', ...process.env.FEATPKG_E2E_TARGET_ARGS.split(' ')], { encoding: 'utf8' }));
const installed = () => (status()[0]?.features || []).map((f) => f.id).sort().join(',');
await step('fix the number, add two queue-failover rules, preview the diff', async () => {
  const guest = `${root} [data-feature="conference-guest"]`;
  await page.fill(`${guest} [data-param="number"] input, ${guest} input[data-param="number"]`, '5551234');
  const qf = `${root} [data-feature="queue-failover"]`;
  await page.check(`${qf} .fp-install input`);
  const open = await page.$eval(`${qf} details`, (d) => d.open);
  if (!open) await page.click(`${qf} details > summary`);
  const rules = [['500', 'JOINEMPTY', ['operator', '100', '1']], ['501', 'TIMEOUT', ['voicemail', '200', '1']]];
  const rows = page.locator(`${qf} tr.fp-rule`);
  while ((await rows.count()) < rules.length) await page.click(`${qf} .fp-rules-table-box > button`);
  while ((await rows.count()) > rules.length) await rows.last().locator('.fp-rules-actions button').click();
  for (const [i, [queue, st, dest]] of rules.entries()) {
    const row = rows.nth(i);
    await row.locator('.fp-rule-queue').fill(queue);
    await row.locator('.fp-rule-status').selectOption(st);
    const inputs = row.locator('.fp-rules-dest input');
    for (let j = 0; j < 3; j++) await inputs.nth(j).fill(dest[j]);
  }
  await page.click(`${root} .fp-buttons > .fp-btn:first-child`);
  await page.waitForSelector(`${root} .fp-diff`, { timeout: 20000 });
  const diff = await page.$$eval(`${root} .fp-diff`, (els) => els.map((e) => e.textContent).join('\n'));
  if (!diff.includes('notify-queue-failover') || !diff.includes('featpkg-conference-guest')) throw new Error(`diff: ${diff.slice(0, 400)}`);
  if (installed() !== '') throw new Error(`preview installed something: ${installed()}`);
  await shot(`${shots}/3-preview.png`);
});
await step('apply: steps shown, the tree holds the features', async () => {
  await page.click(`${root} .fp-btn-primary`);
  await page.waitForSelector(`${root} .fp-alert-success`, { timeout: 60000 });
  await shot(`${shots}/4-applied.png`);
  const ids = installed();
  if (ids !== 'conference-guest,queue-failover') throw new Error(`installed: ${ids}`);
});
await step('remove queue-failover', async () => {
  const qf = `${root} [data-feature="queue-failover"]`;
  await page.waitForSelector(`${qf} .fp-card-actions > button`, { timeout: 15000 });
  await page.click(`${qf} .fp-card-actions > button`);
  await page.click(`${qf} .fp-confirm .fp-btn-danger`);
  await page.waitForFunction(() => document.querySelectorAll('#featpkg-settings .fp-alert-success').length > 0, null, { timeout: 60000 });
  await page.waitForTimeout(1500);
  const ids = installed();
  if (ids !== 'conference-guest') throw new Error(`installed: ${ids}`);
});
await step('roll back the removal', async () => {
  await page.click(`${root} .fp-rollback > button`);
  await page.click(`${root} .fp-rollback .fp-confirm .fp-btn-danger`);
  await page.waitForTimeout(4000);
  const ids = installed();
  if (ids !== 'conference-guest,queue-failover') throw new Error(`installed: ${ids}`);
  await shot(`${shots}/5-rolled-back.png`);
});
if (errors.length) {
  failed = true;
  console.error(`page errors: ${errors.join('; ')}`);
}
await browser.close();
process.exit(failed ? 1 : 0);
