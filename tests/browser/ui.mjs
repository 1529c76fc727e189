// The /ui page in a real browser: Debian's headless Chromium driven by playwright-core. Explains the
// first preset car and reads the waterfall's bars, then sends a bad mileage and reads the error next
// to its field, then uploads a CSV and reads the table's prices. Prints what the page showed as JSON.
// Usage: node ui.mjs BASE_URL SCREENSHOT.png CSV_FILE
import fs from "node:fs";
import { chromium } from "playwright-core";

const [base, screenshot, csv] = process.argv.slice(2);
// A fresh profile per run, removed after it: Chromium writes a few megabytes into it.
const userDataDir = fs.mkdtempSync(`${(process.env.TMPDIR || "/tmp").replace(/\/$/, "")}/xgserve-chromium-`);
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.XGSERVE_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1000, height: 900 },
  // As root, without the sandbox; and no background traffic to hosts this machine cannot reach.
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await context.newPage();
  // Every request the page makes, to prove it needs nothing but this server.
  const requested = [];
  page.on("request", request => requested.push(request.url()));
  await page.goto(`${base}/ui`, { waitUntil: "networkidle" });
  await page.locator("body[data-ready=true]").waitFor({ timeout: 15000 });

  await page.getByRole("button", { name: "Explain" }).click();
  await page.locator("#chart rect.price").waitFor({ timeout: 15000 });
  const bars = await page.locator("#chart rect.bar").evaluateAll(rects =>
    rects.map(r => ({ label: r.dataset.label, kind: r.getAttribute("class").split(" ")[1], value: Number(r.dataset.value) })));
  const price = Number(await page.locator("#price").getAttribute("data-value"));
  await page.screenshot({ path: screenshot, fullPage: true });

  await page.locator("#input-mileage").fill("lots");
  await page.getByRole("button", { name: "Explain" }).click();
  await page.locator("#error-mileage:not(:empty)").waitFor({ timeout: 15000 });
  const mileageError = await page.locator("#error-mileage").innerText();

  await page.locator("#csv").setInputFiles(csv);
  await page.locator("#rows tr.explained").first().waitFor({ timeout: 15000 });
  const csvPrices = await page.locator("#rows tr.explained").evaluateAll(rows => rows.map(r => Number(r.dataset.prediction)));

  const elsewhere = requested.filter(url => !url.startsWith(base));
  console.log(JSON.stringify({ price, bars, mileageError, csvPrices, elsewhere }));
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
