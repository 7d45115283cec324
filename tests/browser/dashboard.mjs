// The dashboard in a real browser: Debian's chromium driven by playwright-core.
// Run by tests/dashboard.rs against a real 3-node cluster; talks to it by lines:
// it prints one JSON object per step on stdout, and reads the migration's target
// node from stdin when it has printed {"step":"deployed"}.
//
// Environment: DASHBOARD_URL (with #token=...), NODE_IDS (comma-separated),
// SPEC (a job spec), ACTOR (the actor the spec places), SCREENSHOTS (a folder).
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const { DASHBOARD_URL, NODE_IDS, SPEC, ACTOR, SCREENSHOTS } = process.env;
const nodeIds = NODE_IDS.split(",");
mkdirSync(SCREENSHOTS, { recursive: true });
const say = (o) => console.log(JSON.stringify(o));
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const failures = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") failures.push(`console: ${m.text()}`); });
  page.on("response", (r) => { if (r.status() >= 400) failures.push(`${r.status()} ${r.url()}`); });
  await page.goto(DASHBOARD_URL);
  // The token left the address bar; the feed is live.
  await page.waitForFunction(() => document.getElementById("connection").textContent === "live",
    null, { timeout: 20000 });
  if (page.url().includes("token=")) throw new Error(`the token stayed in the URL: ${page.url()}`);

  // Nodes: every node of the cluster, each in the map too.
  await page.waitForFunction((ids) => {
    const rows = [...document.querySelectorAll('[data-testid="node-row"]')].map((r) => r.dataset.node);
    const dots = [...document.querySelectorAll('[data-testid="map-node"]')].map((g) => g.dataset.node);
    return ids.every((id) => rows.includes(id) && dots.includes(id)) && rows.length === ids.length;
  }, nodeIds, { timeout: 20000 });
  const nodeRows = await page.$$eval('[data-testid="node-row"]', (rows) => rows.map((r) => r.innerText));
  say({ step: "nodes", rows: nodeRows });

  // Deploy through the page's form (the same API the CLI uses).
  await page.click('a[data-page="jobs"]');
  await page.fill('[data-testid="spec"]', SPEC);
  await page.click('[data-testid="deploy"]');
  await page.waitForFunction(() => document.getElementById("deploy-result").textContent.startsWith("ok:"),
    null, { timeout: 30000 });
  await page.waitForSelector(`[data-testid="actor-row"][data-actor="${ACTOR}"]`, { timeout: 60000 });
  await page.click('a[data-page="cluster"]');
  const actor = `[data-testid="map-actor"][data-actor="${ACTOR}"]`;
  await page.waitForSelector(`${actor}:not(.inactive)`, { timeout: 60000 });
  const host = await page.getAttribute(actor, "data-node");
  await page.screenshot({ path: join(SCREENSHOTS, "cluster.png") });
  // A marker that a reload would wipe: the move must arrive live.
  await page.evaluate(() => { window.plexusNoReload = true; });
  say({ step: "deployed", node: host });

  const { value: target } = await lines.next();
  const moved = await page.waitForFunction(({ sel, to }) => {
    const g = document.querySelector(sel);
    return g && g.dataset.node === to ? g.style.transform : null;
  }, { sel: actor, to: target.trim() }, { timeout: 30000 });
  const logged = await page.waitForFunction((key) => [...document.querySelectorAll('#log li[data-kind="moved"]')]
    .map((li) => li.textContent).find((t) => t.includes(key)) || null, ACTOR, { timeout: 10000 });
  const live = await page.evaluate(() => window.plexusNoReload === true);
  if (!live) throw new Error("the page reloaded");
  await page.waitForTimeout(1300); // the move's animation, for the screenshot only
  await page.screenshot({ path: join(SCREENSHOTS, "cluster-migrated.png") });
  say({ step: "migrated", transform: await moved.jsonValue(), log: await logged.jsonValue() });

  // Every other page renders from the live data.
  const pages = {};
  for (const name of ["jobs", "epochs", "receipts", "storage", "models"]) {
    await page.click(`a[data-page="${name}"]`);
    await page.waitForSelector(`#page-${name}:not([hidden])`);
    pages[name] = (await page.innerText(`#page-${name}`)).slice(0, 400);
    await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
  }
  say({ step: "pages", pages, failures });
} catch (e) {
  say({ step: "failed", error: String(e && e.stack || e), failures });
  process.exitCode = 1;
} finally {
  await browser.close();
}
// stdin stays open (the test may still hold it): end now.
process.exit(process.exitCode ?? 0);
