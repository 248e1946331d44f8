// Opens a report page in headless Chromium through the DevTools protocol
// (over --remote-debugging-pipe: no port, no dependency) and prints one JSON
// document of what it saw, for spec/report_browser_spec.lua to assert on:
// console errors, exceptions and CSP violations, every network request,
// dialogs (a planted alert() would open one), the overview's rows, the
// charts' canvas sizes, the order after sorting, the rows after filtering,
// the hover line, the dependency graph's size, and a screenshot (written to
// the given file) with its number of distinct colours.
//   node check_report.js REPORT.html SHOT.png [WIDTHxHEIGHT] [light|dark]
"use strict";
const { spawn } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");
const zlib = require("zlib");

const [file, shot, size = "1280x900", scheme = "light"] = process.argv.slice(2);
const [width, height] = size.split("x").map(Number);
const url = "file://" + path.resolve(file);
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "matviews-chromium-"));
const browser = process.env.MATVIEWS_CHROMIUM || "chromium";

const chrome = spawn(browser, [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-extensions", "--disable-default-apps", "--no-default-browser-check", "--mute-audio",
  "--hide-scrollbars", "--remote-debugging-pipe", "--user-data-dir=" + profile, "about:blank",
], { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] });

let stderr = "";
chrome.stderr.on("data", (d) => { stderr += d; });

const out = { errors: [], requests: [], dialogs: [] };
let done = false;
// Prints the result, then stops the browser and removes its profile once
// it has exited (it may still be writing there).
function finish(code, fatal) {
  if (done) return;
  done = true;
  if (fatal) out.fatal = String(fatal && fatal.stack || fatal);
  process.stdout.write(JSON.stringify(out) + "\n");
  if (fatal && stderr) process.stderr.write(stderr.slice(-4000));
  const cleanup = () => {
    try { fs.rmSync(profile, { recursive: true, force: true }); } catch (e) { /* left in tmp */ }
    process.exit(code);
  };
  if (chrome.exitCode !== null || chrome.signalCode !== null) return cleanup();
  chrome.once("exit", cleanup);
  chrome.kill("SIGKILL");
}
// a bound for a browser that hangs, not a measure of speed
const deadline = setTimeout(() => finish(1, "no answer from chromium within 90 s"), 90000);
chrome.on("error", (e) => finish(1, e));
chrome.on("exit", (c) => { if (!done) finish(1, "chromium exited (" + c + ")"); });

// ---- the protocol: NUL-terminated JSON messages on fds 3 (to) and 4 (from) ----
let nextId = 1, buf = "";
const pending = new Map(), listeners = [];
chrome.stdio[4].on("data", (d) => {
  buf += d.toString("utf8");
  let i;
  while ((i = buf.indexOf("\0")) >= 0) {
    const msg = JSON.parse(buf.slice(0, i));
    buf = buf.slice(i + 1);
    if (msg.id && pending.has(msg.id)) {
      const { resolve, reject } = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) reject(new Error(JSON.stringify(msg.error))); else resolve(msg.result);
    } else if (msg.method) {
      listeners.forEach((l) => l(msg));
    }
  }
});
function send(method, params = {}, sessionId) {
  const id = nextId++;
  const msg = { id, method, params };
  if (sessionId) msg.sessionId = sessionId;
  chrome.stdio[3].write(JSON.stringify(msg) + "\0");
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}
function waitFor(method) {
  return new Promise((resolve) => {
    const l = (m) => { if (m.method === method) { listeners.splice(listeners.indexOf(l), 1); resolve(m.params); } };
    listeners.push(l);
  });
}

listeners.push((m) => {
  const p = m.params;
  if (m.method === "Runtime.exceptionThrown") out.errors.push("exception: " + (p.exceptionDetails.exception && p.exceptionDetails.exception.description || p.exceptionDetails.text));
  if (m.method === "Runtime.consoleAPICalled" && (p.type === "error" || p.type === "warning" || p.type === "assert")) {
    out.errors.push("console." + p.type + ": " + p.args.map((a) => a.value !== undefined ? a.value : a.description).join(" "));
  }
  if (m.method === "Log.entryAdded" && (p.entry.level === "error" || p.entry.level === "warning")) out.errors.push("log: " + p.entry.text);
  if (m.method === "Network.requestWillBeSent" && p.request.url !== url) out.requests.push(p.request.url);
  if (m.method === "Page.javascriptDialogOpening") out.dialogs.push(p.message);
});

// ---- the PNG: distinct colours of the decoded pixels ----
function pngColours(png) {
  let pos = 8, w = 0, h = 0, type = 0;
  const idat = [];
  while (pos < png.length) {
    const len = png.readUInt32BE(pos), kind = png.toString("ascii", pos + 4, pos + 8);
    const body = png.subarray(pos + 8, pos + 8 + len);
    if (kind === "IHDR") { w = body.readUInt32BE(0); h = body.readUInt32BE(4); type = body[9]; }
    if (kind === "IDAT") idat.push(body);
    pos += 12 + len;
  }
  const bpp = type === 6 ? 4 : 3, stride = w * bpp, raw = zlib.inflateSync(Buffer.concat(idat));
  const img = Buffer.alloc(h * stride);
  for (let y = 0; y < h; y++) {
    const f = raw[y * (stride + 1)], line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? img[y * stride + x - bpp] : 0, b = y > 0 ? img[(y - 1) * stride + x] : 0;
      const c = x >= bpp && y > 0 ? img[(y - 1) * stride + x - bpp] : 0;
      let v = line[x];
      if (f === 1) v += a; else if (f === 2) v += b; else if (f === 3) v += (a + b) >> 1;
      else if (f === 4) { const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c); v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c; }
      img[y * stride + x] = v & 255;
    }
  }
  const colours = new Set();
  for (let i = 0; i < img.length; i += bpp) colours.add(img.readUIntBE(i, 3));
  return { width: w, height: h, colours: colours.size };
}

// What the page shows, measured in the page.
const PROBE = `(() => {
  const q = (s) => Array.from(document.querySelectorAll(s));
  const order = () => q("#overview-table tbody tr").map((r) => r.getAttribute("data-view"));
  const r = { rows: q("#overview-table tbody tr").length, initial: order() };
  r.charts = q(".chart").map((c) => { const cv = c.querySelector("canvas"); return cv ? [cv.width, cv.height] : [0, 0]; });
  const g = document.querySelector(".graph svg");
  r.graph = g ? { renderer: document.querySelector(".graph").getAttribute("data-renderer"),
    width: g.getBoundingClientRect().width, height: g.getBoundingClientRect().height,
    nodes: g.querySelectorAll("rect, polygon").length } : null;
  const th = q("#overview-table thead th");
  const col = th.findIndex((t) => t.textContent === "Median");
  th[col].click(); r.median_asc = order();
  r.median_keys = q("#overview-table tbody tr").map((t) => Number(t.cells[col].getAttribute("data-sort")));
  th[col].click(); r.median_desc = order();
  th[0].click(); r.name_asc = order();
  const f = document.getElementById("filter");
  f.value = "REP_B"; f.dispatchEvent(new Event("input"));
  r.filtered = q("#overview-table tbody tr").filter((t) => !t.hidden).map((t) => t.getAttribute("data-view"));
  r.views_shown = q("article.view").filter((a) => !a.hidden).length;
  r.shown = document.getElementById("shown").textContent;
  f.value = ""; f.dispatchEvent(new Event("input"));
  r.unfiltered = q("#overview-table tbody tr").filter((t) => !t.hidden).length;
  r.scripts = q("script").length;
  r.planted_text = document.body.textContent.includes("<script>alert(1)</script>");
  return r;
})()`;

(async () => {
  const { targetId } = await send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
  const s = (m, p) => send(m, p, sessionId);
  await Promise.all([s("Runtime.enable"), s("Log.enable"), s("Network.enable"), s("Page.enable")]);
  await s("Emulation.setDeviceMetricsOverride", { width, height, deviceScaleFactor: 1, mobile: width < 600 });
  await s("Emulation.setEmulatedMedia", { features: [{ name: "prefers-color-scheme", value: scheme }] });
  const loaded = waitFor("Page.loadEventFired");
  await s("Page.navigate", { url });
  await loaded;
  const probe = await s("Runtime.evaluate", { expression: PROBE, returnByValue: true });
  if (probe.exceptionDetails) throw new Error("probe: " + JSON.stringify(probe.exceptionDetails));
  Object.assign(out, probe.result.value);
  const over = await s("Runtime.evaluate", { expression: "(() => { const o = document.querySelector('.chart .u-over'); o.scrollIntoView({ block: 'center' }); const b = o.getBoundingClientRect(); return { x: b.left + b.width * 0.6, y: b.top + b.height / 2 }; })()", returnByValue: true });
  const at = over.result.value;
  await s("Input.dispatchMouseEvent", { type: "mouseMoved", x: at.x, y: at.y });
  const hover = await s("Runtime.evaluate", { expression: "new Promise((r) => requestAnimationFrame(() => r(document.querySelector('.chart').parentNode.querySelector('.hover').textContent)))", awaitPromise: true, returnByValue: true });
  out.hover = hover.result.value;
  await s("Runtime.evaluate", { expression: "window.scrollTo(0, 0)" });
  const pic = await s("Page.captureScreenshot", { format: "png" });
  const png = Buffer.from(pic.data, "base64");
  fs.writeFileSync(shot, png);
  out.screenshot = pngColours(png);
  clearTimeout(deadline);
  finish(0);
})().catch((e) => finish(1, e));
