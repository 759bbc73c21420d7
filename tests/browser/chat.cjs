// Two browser pages join the same chat room on the gateway's demo page; each
// must see the other's message, and neither its own message come back.
// Usage: node chat.cjs http://127.0.0.1:PORT [http://127.0.0.1:PORT2]: with a
// second gateway (another node of the same cluster), the second page joins
// there. WASMGATE_PLAYWRIGHT names the playwright-core module to load.
"use strict";
const { chromium } = require(process.env.WASMGATE_PLAYWRIGHT || "playwright-core");

const [first, second] = [process.argv[2], process.argv[3] || process.argv[2]];

async function join(browser, base, room) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  await page.goto(`${base}/demo/chat`);
  await page.fill("#room", room);
  await page.click("#connect");
  await page.waitForSelector("body[data-state=connected]");
  await page.waitForSelector('#log p.notice:has-text("you are anon-")');
  return page;
}

async function say(page, text) {
  await page.fill("#message", text);
  await page.click("#send-button");
}

(async () => {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    const room = `browser-${process.pid}`;
    const a = await join(browser, first, room);
    const b = await join(browser, second, room);
    await a.waitForSelector(`#log p.notice:has-text("joined #${room}")`);

    await say(a, "hello from page A ☕");
    await b.waitForSelector('#log p.theirs:has-text("hello from page A ☕")');
    await say(b, "and hello from page B");
    await a.waitForSelector('#log p.theirs:has-text("and hello from page B")');

    for (const [page, own] of [[a, "hello from page A"], [b, "and hello from page B"]]) {
      const echoes = await page.locator(`#log p.theirs:has-text("${own}")`).count();
      if (echoes !== 0) throw new Error(`a page got its own message back: ${own}`);
    }
    await b.close();
    await a.waitForSelector('#log p.notice:has-text(" left")');
    console.log("browser chat: OK");
  } finally {
    await browser.close();
  }
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
