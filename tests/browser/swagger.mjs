// Swagger UI in a real browser: Debian's headless Chromium driven by playwright-core. Opens /docs,
// expands POST /predict, "Try it out", Execute, and prints the status and body the page shows.
// Usage: node swagger.mjs BASE_URL SCREENSHOT.png
import fs from "node:fs";
import { chromium } from "playwright-core";

const [base, screenshot] = process.argv.slice(2);
// A fresh profile per run, removed after it: Chromium writes a few megabytes into it.
const userDataDir = fs.mkdtempSync(`${(process.env.TMPDIR || "/tmp").replace(/\/$/, "")}/xgserve-chromium-`);
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.XGSERVE_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // As root, without the sandbox; and no background traffic to hosts this machine cannot reach.
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await context.newPage();
  await page.goto(`${base}/docs/`, { waitUntil: "networkidle" });
  const operation = page.locator(".opblock-post", { has: page.locator('[data-path="/predict"]') }).first();
  await operation.locator(".opblock-summary").click();
  await operation.getByRole("button", { name: "Try it out" }).click();
  await operation.getByRole("button", { name: "Execute" }).click();
  const live = operation.locator(".live-responses-table .response").first();
  await live.waitFor({ timeout: 15000 });
  const status = (await live.locator(".response-col_status").innerText()).trim();
  const body = (await live.locator(".response-col_description pre").first().innerText()).trim();
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ status, body }));
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
