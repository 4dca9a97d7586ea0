// The dashboard in a real browser: headless Chromium (Debian's) driven by playwright-core.
// Run by tests/e2e/ui.rs, which applies a project on the local target, starts `mlctl ui`
// and passes: the dashboard's URL, a directory for screenshots, and what it set up (JSON).
// Every step asserts on what a user sees; any failure exits 1 with the reason.
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import assert from "node:assert/strict";

const [base, shots, setupJson] = process.argv.slice(2);
const setup = JSON.parse(setupJson);
const require = createRequire(import.meta.url);
const { chromium } = require(process.env.MLCTL_PLAYWRIGHT_CORE);
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.MLCTL_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
// Actions ask for confirmation; the user says yes.
page.on("dialog", (d) => d.accept());
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });

async function open(path, shot) {
  const resp = await page.goto(base + path);
  assert.equal(resp.status(), 200, `${path} answered ${resp.status()}`);
  if (shot) await page.screenshot({ path: `${shots}/${shot}.png`, fullPage: true });
}
const count = (sel) => page.locator(sel).count();
const attr = (sel, a) => page.locator(sel).first().getAttribute(a);
const text = (sel) => page.locator(sel).first().innerText();
const step = (name) => console.log(`ok: ${name}`);

try {
  // Overview: every resource with its sync and health, like Argo CD's application view.
  await open("/", "overview");
  assert.equal(await count("#resources tbody tr"), setup.resources.length);
  for (const r of setup.resources) {
    const row = `#resources tr[data-resource="${r.resource}"]`;
    assert.equal(await count(row), 1, `overview lists ${r.resource}`);
    assert.equal(await attr(row, "data-sync"), r.sync, `${r.resource} is ${r.sync}`);
    assert.equal(await attr(row, "data-health"), r.health, `${r.resource} is ${r.health}`);
    assert.equal(await text(`${row} .badge.sync`), r.sync);
  }
  assert.match(await text("#card-resources"), new RegExp(`^${setup.resources.length}\\b`));
  assert.match(await text("#card-runs"), new RegExp(`^${setup.runs}\\b`));
  step("overview");

  // The graph: a node per resource, an edge per dependency; a click opens the resource.
  await open("/graph", "graph");
  assert.equal(await count("svg#dag g.node"), setup.resources.length);
  for (const [from, to] of setup.edges) {
    assert.equal(await count(`svg#dag path.edge[data-from="${from}"][data-to="${to}"]`), 1, `edge ${from} -> ${to}`);
  }
  for (const r of setup.resources) {
    const cls = await attr(`svg#dag g.node[data-id="${r.resource}"]`, "class");
    assert.ok(cls.includes(`health-${r.health.toLowerCase()}`), `${r.resource} is coloured ${r.health}: ${cls}`);
  }
  await page.locator(`svg#dag g.node[data-id="Model/${setup.model}"]`).click();
  await page.waitForURL(`**/models/${setup.model}`);
  step("graph");

  // Runs: a table, sortable by a metric; two compared side by side with charts.
  await open("/runs", "runs");
  assert.equal(await count("#runs tbody tr"), setup.runs);
  await page.locator('#runs th[data-sort="metric:accuracy"] a').click();
  await page.waitForURL(/sort=metric%3Aaccuracy/);
  assert.equal(await count("#runs tbody tr"), setup.runs);
  assert.ok(await page.locator("#compare").isDisabled(), "compare needs two runs");
  const boxes = page.locator('#runs input[name="id"]');
  await boxes.nth(0).check();
  await boxes.nth(1).check();
  await page.locator("#compare").click();
  await page.waitForURL(/\/runs\/compare\?/);
  assert.equal(await count("#compare-table thead th a"), 2);
  assert.ok(await count('svg.bars[data-metric="accuracy"] rect.bar') === 2, "a bar per run for accuracy");
  assert.equal(await count("svg#compare-parallel path.pline"), 2, "a line per run in the parallel coordinates");
  const d = await attr("svg#compare-parallel path.pline", "d");
  assert.match(d, /^M[\d.]+,[\d.]+ L/, "the line goes through the axes");
  await page.screenshot({ path: `${shots}/compare.png`, fullPage: true });
  step("runs and compare");

  // The registry: versions, stage, approval, lineage; approve the waiting one.
  await open(`/models/${setup.model}`, "model");
  const waiting = `#versions tr[data-version="${setup.pending}"]`;
  assert.equal(await attr(waiting, "data-approval"), "pendingManualApproval");
  assert.ok(await count("#timeline svg rect.bar") >= 1, "the production timeline has a bar");
  assert.ok(await count("#signature tbody tr") >= 4, "the input signature lists the features");
  await page.locator(`${waiting} form[action="/actions/approve"] button`).click();
  await page.waitForURL("**/actions/approve");
  assert.equal(await attr("#action-result", "class"), "ok", await text("main"));
  await page.locator("#back").click();
  await page.waitForURL(`**/models/${setup.model}`);
  assert.equal(await attr(waiting, "data-approval"), "approved", "the registry records the approval");
  await page.screenshot({ path: `${shots}/model-approved.png`, fullPage: true });
  step("approve through the UI");

  // The endpoint: traffic split and live figures from its own metrics.
  await open(`/endpoints/${setup.endpoint}`, "endpoint");
  assert.ok(await count("svg.split rect.bar") >= 1);
  assert.equal(await attr("svg.split rect.bar", "data-share"), "1.0000");
  const served = Number(await attr("#live-metrics tr[data-variant]", "data-requests"));
  assert.ok(served >= setup.requests, `live metrics count the ${setup.requests} requests sent (saw ${served})`);
  step("endpoint");

  // The monitor: drift per feature over time, the breach and its action, the report.
  await open(`/monitors/${setup.monitor}`, "monitor");
  const chart = `svg[data-feature="${setup.drifted}"]`;
  assert.equal(await count(`${chart} circle.point`), setup.evaluations, "a point per evaluation");
  assert.ok(await count(`${chart} circle.point.flagged`) >= 1, "the breach is marked");
  assert.equal(await count(`${chart} line.threshold`), 1);
  assert.match(await text("#latest"), /breached/);
  assert.ok(await count("#breach-actions tbody tr") >= 1, "the breach action is listed");
  const report = page.frameLocator("iframe#report");
  await report.locator(`[data-feature="${setup.drifted}"]`).first().waitFor();
  step("monitor");

  // The plan for HEAD, from the same plan data as the CLI.
  await open("/plan", "plan");
  assert.match(await text("#plan-text"), setup.planText ? new RegExp(setup.planText) : /./);
  step("plan");

  assert.deepEqual(errors, [], "no script errors in any page");
} catch (e) {
  await page.screenshot({ path: `${shots}/failure.png`, fullPage: true }).catch(() => {});
  console.error(`browser test failed at ${page.url()}: ${e.stack || e}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
