// Resume a suspended flow run through the real Prefect UI form, as a reviewer would.
//
// usage: node resume_form.mjs '<json>' where json is
//   {"url": "http://127.0.0.1:PORT", "auth": "user:pass" | null, "flowRunId": "...",
//    "fields": [{"label": "Decision", "value": "confirm_icsr"}, ...], "screenshot": "/path.png",
//    "ui": "v1" | "v2"}   (v1, Prefect's classic UI at /, by default; v2 is the React UI at /v2)
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
  const runPath = `${UI.base}/runs/flow-run/${args.flowRunId}`;
  await page.goto(`${args.url}${runPath}`);
  const password = page.getByPlaceholder('admin:pass');
  const runPage = UI.runPageReady(page);
  // V2 redirects to its login page; V1 lands on its dashboard with "Authentication failed."
  const refused = page.getByText('Authentication failed.', { exact: true });
  await password.or(runPage).or(refused).first().waitFor({ timeout: STEP_TIMEOUT_MS }).catch(() => {});
  if (!(await runPage.isVisible()) && args.auth) {
    if (!(await password.isVisible())) {
      await page.goto(`${args.url}${UI.base}/login?redirect=${encodeURIComponent(runPath)}`);
    }
    await password.fill(args.auth);
    await page.getByRole('button', { name: 'Login', exact: true }).click();
    await page.waitForURL((url) => url.pathname === runPath, { timeout: STEP_TIMEOUT_MS });
  }
}

// Click submit; the outcome is the first of: the form closed (the server took the input), a
// field marked (refused), or neither. A reviewer clicks again after a server error (5xx, e.g.
// SQLite busy on a loaded machine): so does this, at most twice, and counts it.
async function submitAndWait(page, modal, button, refused) {
  report.retries = 0;
  for (;;) {
    const serverError = page.waitForResponse(
      (r) => r.url().endsWith('/resume') && r.status() >= 500, { timeout: STEP_TIMEOUT_MS });
    await button.click();
    report.outcome = await Promise.race([
      modal.waitFor({ state: 'detached', timeout: STEP_TIMEOUT_MS }).then(() => 'submitted'),
      refused.waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS }).then(() => 'refused'),
      serverError.then(() => 'server error'),
    ]).catch(() => 'no answer');
    serverError.catch(() => {});
    if (report.outcome !== 'server error' || report.retries === 2) break;
    report.retries += 1;
  }
  report.submitted = report.outcome === 'submitted';
}

// The V1 UI (the classic one, served at /): a Resume button opens the form in a modal.
async function openFormV1(page) {
  report.step = 'open the form';
  await page.getByRole('button', { name: 'Resume', exact: true }).click({ timeout: STEP_TIMEOUT_MS });
  const modal = page.locator('.p-modal__card').filter({ hasText: 'Resume Flow Run' });
  await modal.waitFor({ timeout: STEP_TIMEOUT_MS });
  const description = modal.locator('.p-modal__body > .markdown-renderer').filter({ hasText: /\S/ }).first();
  await description.waitFor({ timeout: STEP_TIMEOUT_MS }).catch(() => {});
  report.description = (await description.innerText().catch(() => '')).trim();
  return modal;
}

// A field's label: its title, and " (Optional)" when the form has a default for it.
function labelled(title) {
  const escaped = title.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${escaped}( \\(Optional\\))?$`);
}

async function fillV1(page, modal, field) {
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

async function submitV1(page, modal) {
  report.step = 'submit';
  // The modal closes when the server took the input; it stays open and marks the fields when
  // the form refuses it.
  const refused = modal.locator('.p-label__message--failed').first();
  await submitAndWait(page, modal, modal.getByRole('button', { name: 'Submit', exact: true }), refused);
  report.messages = (await page.locator('.p-label__message--failed, .p-toast__card')
    .allInnerTexts().catch(() => [])).map((text) => text.trim()).filter(Boolean);
}

// The V2 UI (React, under /v2): Resume is in the run's menu, fields are labelled controls.
async function openFormV2(page) {
  report.step = 'open the form';
  await page.getByRole('button', { name: 'Open menu', exact: true }).first().click({ timeout: STEP_TIMEOUT_MS });
  await page.getByRole('menuitem', { name: 'Resume' }).click({ timeout: STEP_TIMEOUT_MS });
  const modal = page.getByRole('dialog').filter({ hasText: 'Resume Flow Run' });
  await modal.waitFor({ timeout: STEP_TIMEOUT_MS });
  const description = modal.locator('div.overflow-y-auto > div:first-child').filter({ hasText: /\S/ });
  await description.waitFor({ timeout: STEP_TIMEOUT_MS }).catch(() => {});
  report.description = (await description.innerText().catch(() => '')).trim();
  return modal;
}

async function fillV2(page, modal, field) {
  report.step = `fill ${field.label}`;
  const label = modal.locator('label', { hasText: labelled(field.label) }).first();
  const control = modal.locator(`[id="${await label.getAttribute('for', { timeout: STEP_TIMEOUT_MS })}"]`);
  if ((await control.getAttribute('aria-haspopup')) === 'listbox') {
    await control.click();
    await page.getByRole('option', { name: field.value, exact: true }).click({ timeout: STEP_TIMEOUT_MS });
  } else {
    await control.fill(field.value);
  }
}

async function submitV2(page, modal) {
  report.step = 'submit';
  const refused = modal.locator('[aria-invalid=true], .text-destructive').first();
  await submitAndWait(page, modal, modal.getByRole('button', { name: 'Resume', exact: true }), refused);
  report.messages = (await modal.locator('.text-destructive').allInnerTexts().catch(() => []))
    .map((text) => text.trim()).filter(Boolean);
}

const UIS = {
  v1: {
    base: '',
    runPageReady: (page) => page.getByRole('button', { name: 'Resume', exact: true }),
    openForm: openFormV1, fill: fillV1, submit: submitV1,
  },
  v2: {
    base: '/v2',
    runPageReady: (page) => page.getByRole('button', { name: 'Open menu', exact: true }).first(),
    openForm: openFormV2, fill: fillV2, submit: submitV2,
  },
};
const UI = UIS[args.ui || 'v1'];

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
report.httpErrors = [];
page.on('response', (response) => {
  if (response.status() >= 400) report.httpErrors.push(`${response.status()} ${response.request().method()} ${response.url()}`);
});
try {
  await logIn(page);
  const modal = await UI.openForm(page);
  for (const field of args.fields) await UI.fill(page, modal, field);
  await UI.submit(page, modal);
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
