// Resume a suspended flow run through the real Prefect UI form, as a reviewer would.
//
// usage: node resume_form.mjs '<json>' where json is
//   {"url": "http://127.0.0.1:PORT", "auth": "user:pass" | null, "flowRunId": "...",
//    "fields": [{"label": "Decision", "value": "confirm_icsr"}, ...], "screenshot": "/path.png"}
// Prints one JSON line on stdout: {"ok": bool, "step": "...", "error": "...", "description": "...",
// "outcome": "submitted" | "refused" | "no answer", "submitted": bool, "messages": [...],
// "screenshot": "..."}. On failure a screenshot of the page is saved at the given path.
// Debian's chromium, never a browser download: playwright-core only drives it.
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.PHARMALANE_CHROMIUM || '/usr/bin/chromium';
const STEP_TIMEOUT_MS = 30_000;

const args = JSON.parse(process.argv[2]);
const report = { ok: false, step: 'launch', messages: [] };
const started = Date.now();

async function logIn(page) {
  // The UI with a server behind basic auth asks for the auth string on its login page; it keeps
  // it in the browser's local storage and sends it with every API call.
  report.step = 'login';
  const runPath = `/runs/flow-run/${args.flowRunId}`;
  await page.goto(`${args.url}${runPath}`);
  const password = page.getByPlaceholder('admin:pass');
  const resume = page.getByRole('button', { name: 'Resume', exact: true });
  await password.or(resume).first().waitFor({ timeout: STEP_TIMEOUT_MS }).catch(() => {});
  if (!(await resume.isVisible()) && args.auth) {
    if (!(await password.isVisible())) {
      await page.goto(`${args.url}/login?redirect=${encodeURIComponent(runPath)}`);
    }
    await password.fill(args.auth);
    await page.getByRole('button', { name: 'Login', exact: true }).click();
    await page.waitForURL((url) => url.pathname === runPath, { timeout: STEP_TIMEOUT_MS });
  }
}

async function openForm(page) {
  report.step = 'open the form';
  await page.getByRole('button', { name: 'Resume', exact: true }).click({ timeout: STEP_TIMEOUT_MS });
  const modal = page.locator('.p-modal__card').filter({ hasText: 'Resume Flow Run' });
  await modal.waitFor({ timeout: STEP_TIMEOUT_MS });
  const description = modal.locator('.p-modal__body > .markdown-renderer').first();
  await description.waitFor({ timeout: STEP_TIMEOUT_MS }).catch(() => {});
  report.description = (await description.innerText().catch(() => '')).trim();
  return modal;
}

// A field's label: its title, and " (Optional)" when the form has a default for it.
function labelled(title) {
  const escaped = title.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${escaped}( \\(Optional\\))?$`);
}

async function fill(page, modal, field) {
  report.step = `fill ${field.label}`;
  const property = modal.locator('.schema-form-property').filter({
    has: page.locator('.schema-form-property__label', { hasText: labelled(field.label) }),
  });
  const select = property.locator('.p-select-button__control');
  if (await select.count()) {
    // The select opens on a click or, as for a keyboard user, on the down arrow.
    await select.click();
    const options = page.getByRole('listbox');
    if (!(await options.isVisible())) await select.press('ArrowDown');
    await options.getByRole('option', { name: field.value, exact: true }).click({ timeout: STEP_TIMEOUT_MS });
  } else {
    await property.locator('textarea, input').first().fill(field.value);
  }
}

async function submit(page, modal) {
  report.step = 'submit';
  await modal.getByRole('button', { name: 'Submit', exact: true }).click();
  // The modal closes when the server took the input; it stays open and marks the fields when
  // the form refuses it.
  const refused = modal.locator('.p-label__message--failed').first();
  report.outcome = await Promise.race([
    modal.waitFor({ state: 'detached', timeout: STEP_TIMEOUT_MS }).then(() => 'submitted'),
    refused.waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS }).then(() => 'refused'),
  ]).catch(() => 'no answer');
  report.submitted = report.outcome === 'submitted';
  report.messages = (await page.locator('.p-label__message--failed, .p-toast__card')
    .allInnerTexts().catch(() => [])).map((text) => text.trim()).filter(Boolean);
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
try {
  await logIn(page);
  const modal = await openForm(page);
  for (const field of args.fields) await fill(page, modal, field);
  await submit(page, modal);
  report.ok = true;
} catch (error) {
  report.error = String(error && error.message ? error.message : error).split('\n')[0];
} finally {
  if (!report.ok || !report.submitted || args.alwaysScreenshot) {
    await page.screenshot({ path: args.screenshot, fullPage: true }).catch(() => {});
    report.screenshot = args.screenshot;
  }
  await browser.close();
  report.elapsedMs = Date.now() - started;
}
process.stdout.write(`${JSON.stringify(report)}\n`);
