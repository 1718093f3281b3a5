// Browser test of the shenpi UI: a person's path through the product in headless Chromium.
//
//  1. An approver (zhang, 发改委受理窗口) logs in, opens the inbox, opens the green-channel task
//     at 受理审查, approves it with a 容缺 commitment (the red-line material cannot be picked),
//     and sees the instance's state and the promise with its due date.
//  2. Policy staff (wang) opens the workflow editor, puts a mistake in the YAML, presses 校验 and
//     sees the error at its line.
//     Then imports next year's official holiday arrangement on the 工作日历 page: a wrong one is
//     refused at its line, the right one is previewed (the days that change) and published.
//  3. A supervisor (zhao) opens the dashboard.
//
// Every page's header shows the server clock's date (`--clock-start`, SHENPI_CLOCK_START).
//
// Screenshots of every page go to web/tests/artifacts/. Needs a server started with `--demo`
// at SHENPI_URL (run.sh does that) and Chromium at CHROMIUM (default /usr/bin/chromium).
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const base = process.env.SHENPI_URL ?? "http://127.0.0.1:18080";
const artifacts = process.env.ARTIFACTS ?? path.join(here, "..", "tests", "artifacts");
mkdirSync(artifacts, { recursive: true });
const PASSWORD = "demo-shenpi";
// The server's clock starts here (`serve --clock-start`, UTC+08:00): the header's date.
const clockStart = process.env.SHENPI_CLOCK_START ?? "2026-03-02T10:00:00+08:00";
const [y, m, d] = clockStart.slice(0, 10).split("-").map(Number);
const weekday = "日一二三四五六"[new Date(Date.UTC(y, m - 1, d)).getUTCDay()];
const today = `今天：${y}年${m}月${d}日 星期${weekday}`;

let passed = 0;
let failed = 0;
function check(cond, what) {
  if (cond) {
    passed++;
    console.log(`ok - ${what}`);
  } else {
    failed++;
    console.log(`not ok - ${what}`);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
});

// The server sends a Content-Security-Policy (scripts and styles from /static/ only); Chromium
// reports what it blocks on the console, and a page that needs something blocked is broken.
const cspViolations = [];
function watchCsp(page) {
  page.on("console", (m) => {
    if (m.text().includes("Content Security Policy")) cspViolations.push(`${page.url()}: ${m.text()}`);
  });
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });
}

async function login(page, name) {
  await page.goto(`${base}/login`);
  await page.fill('input[name="name"]', name);
  await page.fill('input[name="password"]', PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);
}

try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "zh-CN" });
  const page = await ctx.newPage();
  watchCsp(page);

  // --- the approver ---
  await page.goto(`${base}/login`);
  await shot(page, "01-login");
  await login(page, "zhang");
  check(page.url().endsWith("/inbox"), "approver lands on the inbox");
  check((await page.locator("header .today").innerText()) === today, `the header says ${today} (the server's clock)`);
  const rows = page.locator("table.inbox tbody tr");
  check((await rows.count()) >= 1, "the inbox lists tasks");
  check((await page.locator("table.inbox .badge").count()) >= 1, "tasks carry a colour badge");
  const days = await page.locator("table.inbox td.days").allInnerTexts();
  check(days.some((t) => t.includes("个工作日")), "working days left are shown");
  // The 即报即审 filing opened this morning is due at the end of today: 0 left, as on its page.
  check(days.some((t) => t.startsWith("今日到期")), "a same-day task is due today");
  check((await page.locator("table.inbox tr:has(span.green-channel)").count()) >= 1, "green-channel tasks are marked");
  const green = page.locator('table.inbox tr:has(span.green-channel):has-text("受理审查")').first();
  check((await green.count()) === 1, "the green-channel 受理审查 task is in the inbox");
  await shot(page, "02-inbox");

  await Promise.all([page.waitForNavigation(), green.locator("a.open").click()]);
  check(/\/instances\/I[0-9a-f]+\/tasks\/\d+$/.test(page.url()), "the task page opens");
  check((await page.locator("h1").innerText()).includes("受理"), "the task is 受理审查");
  check((await page.locator("table.materials tr[data-material=land_site] .redline").count()) === 1, "red-line material is marked");
  check(await page.locator('#act-conditional input[value="land_site"]').isDisabled(), "red-line material cannot be waived");
  check((await page.locator("svg.flow g.node.current").count()) >= 1, "diagram highlights the current node");
  await shot(page, "03-task");

  await page.check('#act-conditional input[value="eia"]');
  await page.check('#act-conditional input[value="social_risk"]');
  await page.fill('#act-conditional input[name="comment"]', "同意容缺受理，请按承诺补交");
  await Promise.all([page.waitForNavigation(), page.click('#act-conditional button[type="submit"]')]);
  check(/\/instances\/I[0-9a-f]+\?done=approve_conditional$/.test(page.url()), "conditional approval recorded");
  check((await page.locator(".flash.ok").count()) === 1, "success message shown");
  check((await page.locator("strong.outcome").innerText()).includes("办理中"), "instance state is shown");
  const promise = page.locator("table.promises tr.promise[data-material=eia]");
  check((await promise.count()) === 1, "the promise for eia is listed");
  const due = (await promise.locator("td.due").innerText()).trim();
  check(/^\d{4}-\d{2}-\d{2}/.test(due), `the promise has a due date (${due})`);
  check((await page.locator("text=预批复").count()) >= 1, "a pre-approval is recorded");
  check((await page.locator("ol.timeline li").count()) >= 3, "the history timeline is shown");
  await shot(page, "04-instance-after-conditional");

  // --- policy staff ---
  await page.click("header form button");
  await page.waitForURL(/\/login$/);
  await login(page, "wang");
  check(page.url().endsWith("/workflows"), "policy staff land on the workflows");
  await shot(page, "05-workflows");
  await page.goto(`${base}/workflows/editor?id=enterprise-filing`);
  const yaml = await page.inputValue("#yaml");
  const lines = yaml.split("\n");
  const target = lines.findIndex((l) => l.includes("role: fgw_filing") && l.includes("assignee"));
  check(target >= 0, "the editor shows the workflow YAML");
  lines[target] = lines[target].replace("fgw_filing", "fgw_filling");
  await page.fill("#yaml", lines.join("\n"));
  await Promise.all([page.waitForNavigation(), page.click("#btn-validate")]);
  const line = target + 1;
  const diag = page.locator(`#diagnostics li.diag.error[data-line="${line}"]`);
  check((await diag.count()) >= 1, `the error is reported at line ${line}`);
  check((await diag.first().innerText()).includes("fgw_filling"), "the message names the unknown role");
  check((await page.locator(`pre.listing span.line.err#L${line}`).count()) === 1, `line ${line} is marked in the listing`);
  await diag.first().locator("a.goto").click();
  await shot(page, "06-editor-error");

  // Policy staff import next year's official arrangement on the 工作日历 page.
  await page.goto(`${base}/calendars`);
  check((await page.locator("h1").innerText()) === "工作日历", "the calendar page opens");
  check((await page.locator("text=暂定年度：2027–2041").count()) === 1, "the provisional years are listed");
  await shot(page, "08-calendars");
  const notice = [
    "years:",
    "  - year: 2027",
    "    source: 国务院办公厅关于2027年部分节假日安排的通知（测试）",
    "    holidays:",
    "      - { name: 元旦, from: 2027-01-01, to: 2027-01-03 }",
    "      - { name: 春节, from: 2027-02-05, to: 2027-02-12 }",
    "      - { name: 清明节, from: 2027-04-03, to: 2027-04-05 }",
    "      - { name: 劳动节, from: 2027-05-01, to: 2027-05-05 }",
    "      - { name: 端午节, date: 2027-06-09 }",
    "      - { name: 中秋节, date: 2027-09-15 }",
    "      - { name: 国庆节, from: 2027-10-01, to: 2027-10-07 }",
    "    workdays:",
    "      - { date: 2027-02-20, for: 春节 }",
    "      - { date: 2027-10-09, for: 国庆节 }",
  ];
  // A weekday as a make-up working day: refused at its line, nothing published.
  const wrong = notice.map((l) => l.replace("2027-02-20", "2027-02-22")).join("\n");
  await page.fill('textarea[name="yaml"]', wrong);
  await Promise.all([page.waitForNavigation(), page.click('form[action$="/preview"] button')]);
  const err = page.locator("section.diagnostics li").first();
  check((await err.innerText()).includes("第 13 行") && (await err.innerText()).includes("C006"), "a weekday make-up day is refused at its line");
  await page.fill('textarea[name="yaml"]', notice.join("\n"));
  await Promise.all([page.waitForNavigation(), page.click('form[action$="/preview"] button')]);
  check((await page.locator("section.preview table").first().locator("tbody tr").count()) === 7, "the preview lists the 7 days that change");
  await shot(page, "09-calendar-preview");
  await Promise.all([page.waitForNavigation(), page.click('form[action$="/publish"] button')]);
  check((await page.locator(".flash.ok").innerText()).includes("已发布第 2 版"), "the arrangement is published as revision 2");
  check((await page.locator("text=暂定年度：2028–2042").count()) === 1, "2027 is official now, the provisional years move on");
  await shot(page, "10-calendars-published");
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, locale: "zh-CN" });
  const small = await phone.newPage();
  watchCsp(small);
  await login(small, "wang");
  await small.goto(`${base}/calendars`);
  await shot(small, "11-calendars-390");
  await phone.close();

  // --- a supervisor ---
  await page.click("header form button");
  await page.waitForURL(/\/login$/);
  await login(page, "zhao");
  check(page.url().endsWith("/dashboard"), "supervisors land on the dashboard");
  check((await page.locator("svg.chart").count()) >= 1, "the dashboard draws charts");
  await shot(page, "07-dashboard");
  check(cspViolations.length === 0, `no page breaks the Content-Security-Policy ${cspViolations.join("; ")}`);
  const headers = (await page.goto(`${base}/dashboard`)).headers();
  check(headers["x-frame-options"] === "DENY" && headers["cache-control"] === "no-store", "pages may not be framed or cached");
} catch (e) {
  failed++;
  try {
    const pages = browser.contexts().flatMap((c) => c.pages());
    if (pages.length) await shot(pages[0], "99-failure");
  } catch {}
  console.log(`not ok - exception: ${e.stack ?? e}`);
} finally {
  await browser.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
