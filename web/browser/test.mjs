// Browser test of the shenpi UI: people's paths through the product in headless Chromium, at
// 1440 px (a desk) and at 390 px (a phone).
//
//  1. An approver (zhang, 发改委受理窗口) logs in, sees the inbox's tabs with counts, filters it,
//     opens the green-channel task at 受理审查, approves it with a 容缺 commitment (the red-line
//     material cannot be picked) after trying 驳回 and saying no to its confirmation, and sees
//     the instance's state, the promise with its due date, the 预批复 issued for it and its
//     public verification page, 已办 and the message centre.
//  2. The applicant (chen) sees what is missing on the project's page (the promised materials,
//     why and by when), signs the 容缺 commitment letter with their password (a wrong one is
//     refused first), the 我发起的 tab, and the new-project form with its pickers.
//  3. Policy staff (wang) put a mistake in the editor's YAML and see it at its line; import next
//     year's official holiday arrangement on the 工作日历 page.
//  4. A supervisor (zhao) opens the 督办看板: names, no ids; the admin moves the demo clock
//     forward by working days and a yellow, a red and a 挂牌督办 appear on the board.
//
// On every page: no internal id of the workflows (node, stage, role, material, department,
// element, channel ids) in the visible text (the YAML editor aside, whose text is the YAML);
// at 390 px no horizontal scrolling. Every page's header shows the server clock's date.
//
// Screenshots of every page go to web/tests/artifacts/ (NN-name-1440.png, NN-name-390.png).
// Needs a server started with `--demo` at SHENPI_URL (run.sh does that) and Chromium at
// CHROMIUM (default /usr/bin/chromium).
import { chromium } from "playwright-core";
import { mkdirSync, readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const base = process.env.SHENPI_URL ?? "http://127.0.0.1:18080";
const artifacts = process.env.ARTIFACTS ?? path.join(here, "..", "tests", "artifacts");
const workflows = process.env.WORKFLOWS ?? path.join(here, "..", "..", "workflows");
mkdirSync(artifacts, { recursive: true });
const PASSWORD = "demo-shenpi";
// The server's clock starts here (`serve --clock-start`, UTC+08:00): the header's date.
const clockStart = process.env.SHENPI_CLOCK_START ?? "2026-03-02T10:00:00+08:00";
const [y, m, d] = clockStart.slice(0, 10).split("-").map(Number);
const weekday = "日一二三四五六"[new Date(Date.UTC(y, m - 1, d)).getUTCDay()];
const today = `今天：${y}年${m}月${d}日 星期${weekday}`;

// The ids the shipped workflows declare under these top-level keys (nested ones too: branches,
// element fields), read off the YAML text: a line's `id: X` inside the section.
const SECTIONS = new Set(["nodes", "stages", "roles", "materials", "departments", "elements", "channels"]);
const ids = new Set();
for (const f of readdirSync(workflows).filter((f) => f.endsWith(".yaml"))) {
  let section = null;
  for (const line of readFileSync(path.join(workflows, f), "utf8").split("\n")) {
    const top = /^([a-z_]+):/.exec(line);
    if (top) section = top[1];
    if (!SECTIONS.has(section)) continue;
    for (const mm of line.matchAll(/\bid:\s*([A-Za-z0-9_.-]+)/g)) ids.add(mm[1]);
  }
}

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
function watch(page) {
  page.on("console", (msg) => {
    if (msg.text().includes("Content Security Policy")) cspViolations.push(`${page.url()}: ${msg.text()}`);
  });
}

/// The visible text's ASCII words that are ids of the workflows.
async function idsShown(page) {
  const text = await page.evaluate(() => document.body.innerText);
  const words = text.match(/[A-Za-z0-9_.-]+/g) ?? [];
  return [...new Set(words.filter((w) => ids.has(w)))];
}

/// Screenshot, and the checks every page gets: no internal id, no sideways scroll on a phone.
async function shot(page, name, { scan = true } = {}) {
  const width = page.viewportSize().width;
  await page.screenshot({ path: path.join(artifacts, `${name}-${width}.png`), fullPage: true });
  if (scan) {
    const shown = await idsShown(page);
    check(shown.length === 0, `${name} @${width}: no internal id visible${shown.length ? ` (shows ${shown.join(", ")})` : ""}`);
  }
  if (width <= 400) {
    const [sw, iw] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    check(sw <= iw, `${name} @${width}: no horizontal scroll (page ${sw} px, screen ${iw} px)`);
  }
}

async function login(page, name) {
  await page.goto(`${base}/login`);
  await page.fill('input[name="name"]', name);
  await page.fill('input[name="password"]', PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);
}

async function logout(page) {
  await Promise.all([page.waitForNavigation(), page.click("header form button")]);
}

/// The journey at one width. `first` is the run that acts (approves, imports, moves the clock);
/// the other walks the same pages to look at them.
async function journey(width, first) {
  const ctx = await browser.newContext({ viewport: { width, height: 900 }, locale: "zh-CN" });
  const page = await ctx.newPage();
  watch(page);
  // Confirmations: say no to the first 驳回, yes to everything else.
  let refuseNext = false;
  const dialogs = [];
  page.on("dialog", async (dl) => {
    dialogs.push(dl.message());
    if (refuseNext) {
      refuseNext = false;
      await dl.dismiss();
    } else {
      await dl.accept();
    }
  });

  // --- the approver ---
  await page.goto(`${base}/login`);
  await shot(page, "01-login");
  await login(page, "zhang");
  check(page.url().endsWith("/inbox"), "approver lands on the inbox");
  // (The phone's walk comes after the demo clock moved on.)
  if (first) check((await page.locator("header .today").innerText()) === today, `the header says ${today} (the server's clock)`);
  check((await page.locator("header .roles").innerText()).includes("发改委受理窗口"), "the header names the roles, not their ids");
  const tabs = await page.locator("nav.tabs a.tab").allInnerTexts();
  check(["待办", "已办", "我发起的", "抄送我的"].every((t, i) => (tabs[i] ?? "").startsWith(t)) && tabs.every((t) => /\d/.test(t)),
    `the inbox has the tabs 待办 / 已办 / 我发起的 / 抄送我的 with counts (${tabs.join(" | ")})`);
  const rows = page.locator("table.inbox tbody tr");
  check((await rows.count()) >= 1, "the inbox lists tasks");
  check((await page.locator("table.inbox .badge").count()) >= 1, "tasks carry a colour badge");
  const days = await page.locator("table.inbox td.days").allInnerTexts();
  check(days.some((t) => t.includes("个工作日")), "working days left are shown");
  if (first) check(days.some((t) => t.includes("今日到期")), "a same-day task is due today");
  check((await page.locator("table.inbox tr:has(span.green-channel)").count()) >= 1, "green-channel tasks are marked");
  await shot(page, "02-inbox");

  // Search by a Chinese name, and the green-channel filter.
  await page.fill('form.filters input[name="q"]', "智能制造");
  await Promise.all([page.waitForNavigation(), page.click('form.filters button[type="submit"]')]);
  const found = await page.locator("table.inbox tbody tr").allInnerTexts();
  check((found.length >= 1 || !first) && found.every((t) => t.includes("智能制造")), "searching 智能制造 finds that project's tasks only");
  await page.goto(`${base}/inbox?green=true`);
  const greens = page.locator("table.inbox tbody tr");
  check((await greens.count()) >= 1 && (await greens.count()) === (await page.locator("table.inbox tbody tr:has(span.green-channel)").count()),
    "the green-channel filter keeps green-channel tasks only");
  await page.goto(`${base}/inbox`);

  const green = page.locator('table.inbox tr:has(span.green-channel):has-text("受理审查")').first();
  if (first) {
    check((await green.count()) === 1, "the green-channel 受理审查 task is in the inbox");
    await Promise.all([page.waitForNavigation(), green.locator("a.open").click()]);
    check(/\/instances\/I[0-9a-f]+\/tasks\/\d+$/.test(page.url()), "the task page opens");
    check((await page.locator("h1").innerText()).includes("受理"), "the task is 受理审查");
    check((await page.locator("table.materials tr[data-material=land_site] .redline").count()) === 1, "red-line material is marked");
    check(await page.locator('#act-conditional input[value="land_site"]').isDisabled(), "red-line material cannot be waived");
    check((await page.locator("svg.flow g.node.current").count()) >= 1, "diagram highlights the current node");
    check((await page.locator("#act-approve textarea[name=comment]").count()) === 1, "opinions are multi-line");
    await page.click('#act-approve button.phrase:has-text("材料齐全")');
    check((await page.inputValue("#act-approve textarea[name=comment]")).includes("材料齐全"), "a 常用意见 fills the opinion");
    const targets = await page.locator('#act-reject select[name="to"] option').allInnerTexts();
    check(targets.length >= 1 && targets.every((t) => !ids.has(t.trim())), `驳回 offers its targets by name (${targets.join("、")})`);
    await shot(page, "03-task");
    // 驳回 asks first; saying no leaves the task as it was.
    await page.fill('#act-reject textarea[name="reason"]', "测试：不应提交");
    refuseNext = true;
    const before = page.url();
    await page.click('#act-reject button[type="submit"]');
    await page.waitForTimeout(300);
    check(dialogs.some((t) => t.includes("确定驳回")) && page.url() === before, "驳回 asks for confirmation, and no means nothing happens");

    await page.check('#act-conditional input[value="eia"]');
    await page.check('#act-conditional input[value="social_risk"]');
    await page.fill('#act-conditional textarea[name="comment"]', "同意容缺受理，请按承诺补交");
    await Promise.all([page.waitForNavigation(), page.click('#act-conditional button[type="submit"]')]);
    check(/\/instances\/I[0-9a-f]+\?done=approve_conditional$/.test(page.url()), "conditional approval recorded");
    check((await page.locator(".flash.ok").innerText()).includes("容缺通过"), "the flash names the action in Chinese");
    check((await page.locator("strong.outcome").innerText()).includes("办理中"), "instance state is shown");
    const promise = page.locator("table.promises tr.promise[data-material=eia]");
    check((await promise.count()) === 1, "the promise for eia is listed");
    const due = (await promise.locator("td.due").innerText()).trim();
    check(/^\d{4}-\d{2}-\d{2}/.test(due), `the promise has a due date (${due})`);
    check((await page.locator("text=预批复").count()) >= 1, "a pre-approval is recorded");
    check((await page.locator("ol.timeline li").count()) >= 3, "the history timeline is shown");
    await shot(page, "04-instance-after-conditional");
    // The 预批复 is issued after the commit: the instance page lists it (reload until it is
    // there), with its PDF and its public verification page, which the QR code on it opens.
    const instanceUrl = page.url().replace(/\?.*$/, "");
    let verify = page.locator('section.documents a[href^="/verify/"]');
    for (let i = 0; i < 20 && (await verify.count()) === 0; i++) {
      await page.waitForTimeout(200);
      await page.goto(instanceUrl);
      verify = page.locator('section.documents a[href^="/verify/"]');
    }
    check((await verify.count()) >= 1, "the instance page lists the issued 预批复 with its verification link");
    const docRow = (await page.locator("section.documents tbody tr").first().innerText()) || "";
    check(docRow.includes("预批复") && /〔\d{4}〕\d+号/.test(docRow), `… with its title and 文号 (${docRow.replace(/\s+/g, " ")})`);
    check((await page.locator('section.documents a[href$="/pdf"]').count()) >= 1, "… and its PDF");
    const verifyHref = await verify.first().getAttribute("href");
    await page.goto(`${base}${verifyHref}`);
    const verifyText = await page.locator("main, body").first().innerText();
    check(verifyText.includes("公文核验") && verifyText.includes("有效"), "the verification page says the document is valid");
    check(/〔\d{4}〕\d+号/.test(verifyText) && verifyText.includes("项目"), "… with its 文号 and project");
    check(/[0-9a-f]{64}/.test(verifyText), "… and its content digest");
    await shot(page, "04a-verify-document");
    await page.goto(`${base}/verify/ZZZZZZZZZZZZZZZZZZZZ`);
    check((await page.locator("h1").innerText()).includes("未找到"), "an unknown verification code is 未找到");
    await page.goto(`${base}/inbox?tab=done`);
    check((await page.locator("table.cases tbody tr").count()) >= 1, "已办 lists the decision just taken");
  } else {
    // The phone opens a task and its instance too.
    const open = page.locator("table.inbox a.open").first();
    await Promise.all([page.waitForNavigation(), open.click()]);
    await shot(page, "03-task");
    await page.emulateMedia({ media: "print" });
    check(!(await page.locator("section.actions").isVisible()), "the printed task page has no action forms");
    await shot(page, "03b-task-print");
    await page.emulateMedia({ media: "screen" });
    await page.goto(page.url().replace(/\/tasks\/\d+$/, ""));
    await shot(page, "04-instance");
    await page.goto(`${base}/inbox?tab=done`);
  }
  await shot(page, "04b-inbox-done");
  await page.goto(`${base}/messages`);
  check((await page.locator("li.message").count()) >= 1, "the message centre lists the notifications sent to me");
  check((await page.locator("li.message").first().innerText()).includes("【"), "messages read as the notification was sent");
  await shot(page, "04c-messages");
  await logout(page);

  // --- the applicant ---
  await login(page, "chen");
  check(page.url().endsWith("/projects"), "the applicant lands on the projects");
  await shot(page, "05-projects");
  await page.goto(`${base}/inbox?tab=mine`);
  check((await page.locator("table.cases tbody tr").count()) >= 3, "我发起的 lists the applicant's projects");
  await shot(page, "05b-inbox-mine");
  const mine = page.locator('table.cases tr:has-text("智能制造") a.open').first();
  await Promise.all([page.waitForNavigation(), mine.click()]);
  const missing = page.locator("section.missing");
  check((await missing.count()) === 1, "the applicant's page says what is missing");
  const missingText = (await missing.innerText()) || "";
  check(missingText.includes("环境影响") && /截止 \d{4}-\d{2}-\d{2}/.test(missingText), `… which material, and by when (${missingText.split("\n")[1] ?? ""})`);
  await shot(page, "06-instance-applicant");
  if (first) {
    // The 容缺 above yielded a 承诺书: the applicant reads it and signs with their password.
    const letter = page.locator("section.letters article.letter").first();
    check((await letter.count()) === 1, "the instance page shows the commitment letter");
    const text = (await letter.locator("pre.letter-text").innerText()) || "";
    check(text.includes("容缺受理承诺书") && text.includes("环境影响评价审批意见") && /\d{4}年\d{1,2}月\d{1,2}日前/.test(text),
      "the letter names the waived materials and the deadline as a date");
    check((await letter.locator(".letter-unsigned").count()) === 1, "the letter waits for a signature");
    await page.fill('form.sign-letter input[name="password"]', "not-my-password");
    await Promise.all([page.waitForNavigation(), page.click('form.sign-letter button[type="submit"]')]);
    check((await page.locator("body").innerText()).includes("密码不正确"), "a wrong password is refused in Chinese");
    await page.goBack();
    await page.reload();
    await page.fill('form.sign-letter input[name="password"]', PASSWORD);
    await Promise.all([page.waitForNavigation(), page.click('form.sign-letter button[type="submit"]')]);
    check((await page.locator(".flash.ok").innerText()).includes("签署承诺书"), "signing is recorded");
    const signed = page.locator("section.letters article.letter").first();
    check((await signed.locator(".letter-signed").count()) === 1, "the letter shows as signed");
    const signature = (await signed.locator("p.signature").innerText()) || "";
    check(signature.includes("chen") && /[0-9a-f]{64}/.test(signature), `the signature says who and the hash (${signature.slice(0, 40)}…)`);
    await shot(page, "06b-letter-signed");

    // The applicant supplies the promised 社会稳定风险评估: a file dropped on the upload form
    // (drag and drop), sent with the progress bar, then listed with who, size and hash, and
    // previewed inline as the PDF it is.
    const upload = page.locator('form.upload[action$="/materials/social_risk/files"]');
    check((await upload.count()) === 1, "the promised material has an upload form");
    const dropped = await page.evaluateHandle(() => {
      const dt = new DataTransfer();
      dt.items.add(new File(["%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"], "社会稳定风险评估报告.pdf", { type: "application/pdf" }));
      return dt;
    });
    await upload.dispatchEvent("drop", { dataTransfer: dropped });
    check((await upload.locator('input[type=file]').evaluate((i) => i.files.length)) === 1, "a file dropped on the form is taken");
    await upload.locator('button[type="submit"]').click();
    await page.waitForSelector("text=社会稳定风险评估报告.pdf", { timeout: 15000 });
    const fileRow = page.locator('tr:has-text("社会稳定风险评估报告.pdf")').first();
    const rowText = (await fileRow.innerText()) || "";
    check(rowText.includes("chen") && /[0-9a-f]{8}/.test(rowText), `the upload is listed with who and its hash (${rowText.replace(/\s+/g, " ").slice(0, 60)})`);
    const href = await fileRow.locator('a[href*="/files/"]').first().getAttribute("href");
    const preview = await page.request.get(new URL(href, base).toString());
    check(preview.status() === 200 && (preview.headers()["content-type"] || "").startsWith("application/pdf"), "the file opens as a PDF preview");
    await shot(page, "06c-material-uploaded");
  }
  // The dossier (办件档案), on screen and as printed: black on white, no header or buttons, the
  // title and print date on top.
  await Promise.all([page.waitForNavigation(), page.click("text=打印办件档案")]);
  check(/\/instances\/I[0-9a-f]+\/dossier$/.test(page.url()), "the instance page links to its dossier");
  check((await page.locator("[data-chain=intact]").count()) === 1, "the dossier says the record is intact");
  check((await page.locator("table.timeline tbody tr").count()) >= 3, "the dossier lists the history");
  check((await page.locator("table.timeline").innerText()).includes("容缺通过"), "… with the decisions");
  await shot(page, "06b-dossier");
  await page.emulateMedia({ media: "print" });
  check(!(await page.locator("header.top").isVisible()), "printed: no navigation header");
  check(!(await page.locator("button[data-print]").isVisible()), "printed: no buttons");
  check((await page.locator(".print-head").innerText()).includes("打印日期"), "printed: the title and print date on top");
  const ink = await page.evaluate(() => [getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]);
  check(ink[0] === "rgb(255, 255, 255)" && ink[1] === "rgb(0, 0, 0)", `printed: black on white (${ink.join(" on ")})`);
  await shot(page, "06c-dossier-print");
  await page.goBack();
  await shot(page, "06d-instance-print");
  await page.emulateMedia({ media: "screen" });
  await page.goto(`${base}/projects?workflow=provincial-major`);
  const officer = page.locator('select[name="f.service_officer"] option');
  check((await officer.count()) >= 2, "the service officer is picked from the accounts, not typed");
  const workflowNames = await page.locator('select[name="workflow"] option').allInnerTexts();
  check(workflowNames.every((t) => /[\u4e00-\u9fff]/.test(t)), `workflows are offered by name (${workflowNames.join("、")})`);
  await shot(page, "07-new-project");
  await logout(page);

  // --- policy staff ---
  await login(page, "wang");
  check(page.url().endsWith("/workflows"), "policy staff land on the workflows");
  await shot(page, "08-workflows", { scan: false });
  if (first) {
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
    await shot(page, "09-editor-error", { scan: false });
  }
  {
    // 政策模拟: the shipped population through the version in force and itself, as a table and a chart.
    await page.goto(`${base}/workflows/provincial-major/whatif`);
    check((await page.locator("h1").innerText()).startsWith("政策模拟"), "the what-if page opens");
    await Promise.all([page.waitForNavigation({ timeout: 120000 }), page.click("#btn-whatif")]);
    check((await page.locator("#whatif-table tbody tr").count()) > 20, "the what-if table has its rows");
    check((await page.locator(".flash.ok").innerText()).includes("模拟完成"), "the run is reported done");
    check((await page.locator("figure.whatif-chart svg").count()) === 1, "the comparison chart is drawn");
    await shot(page, "09b-whatif");
  }
  if (first) {

    await page.goto(`${base}/calendars`);
    check((await page.locator("h1").innerText()) === "工作日历", "the calendar page opens");
    check((await page.locator("text=暂定年度：2027–2041").count()) === 1, "the provisional years are listed");
    await shot(page, "10-calendars");
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
    await shot(page, "11-calendar-preview");
    await Promise.all([page.waitForNavigation(), page.click('form[action$="/publish"] button')]);
    check((await page.locator(".flash.ok").innerText()).includes("已发布第 2 版"), "the arrangement is published as revision 2");
    check((await page.locator("text=暂定年度：2028–2042").count()) === 1, "2027 is official now, the provisional years move on");
  } else {
    await page.goto(`${base}/calendars`);
  }
  await shot(page, "12-calendars-published");
  await logout(page);

  // --- a supervisor ---
  await login(page, "zhao");
  check(page.url().endsWith("/dashboard"), "supervisors land on the dashboard");
  check((await page.locator("svg.chart").count()) >= 1, "the dashboard draws charts");
  check((await page.locator("table.on-time tbody tr").count()) >= 1, "the dashboard gives each department's on-time rate");
  await shot(page, "13-dashboard");
  await page.emulateMedia({ media: "print" });
  check(!(await page.locator("header.top").isVisible()), "the printed board has no navigation header");
  await shot(page, "13b-dashboard-print");
  await page.emulateMedia({ media: "screen" });
  const drill = page.locator("table.on-time a").first();
  const deptName = (await drill.innerText()).trim();
  await Promise.all([page.waitForNavigation(), drill.click()]);
  check((await page.locator("p.drill").innerText()).includes(deptName), `the board drills down to a department (${deptName})`);
  await shot(page, "14-dashboard-department");
  await logout(page);

  if (first) {
    // --- the admin moves the demo clock; zhao sees what fired ---
    await login(page, "admin");
    await page.goto(`${base}/dashboard`);
    check((await page.locator("form.clock-control").count()) === 1, "the admin has the demo clock control");
    check((await page.locator("table.board").count()) === 0, "before: nothing overdue, nothing supervised");
    await page.fill('form.clock-control input[name="working_days"]', "4");
    await Promise.all([page.waitForNavigation({ timeout: 20000 }), page.click("form.clock-control button")]);
    check((await page.locator(".flash.ok").innerText()).includes("前进 4 个工作日"), "the clock moved forward 4 working days");
    const moved = await page.locator("header .today").innerText();
    check(moved !== today, `the header's date moved on (${moved})`);
    check((await page.locator("rect.bar-yellow").count()) === 1, "a yellow warning fired (the board counts yellow tasks)");
    const overdue = page.locator("section:has(h2:text('超期清单')) table.board tbody tr.row-red");
    check((await overdue.count()) >= 1, "a red (overdue) task is on the board");
    check(/超期 \d+ 个工作日/.test(await overdue.first().locator("td.overdue").innerText()), "… with its days overdue");
    const supervised = page.locator("section:has(h2:text('挂牌督办')) table.board tbody tr");
    check((await supervised.count()) >= 1, "a 挂牌督办 fired and is on the board");
    await shot(page, "15-dashboard-after-clock");
    // Two more working days: the yellow 受理审查 of a provincial project goes red too.
    await page.fill('form.clock-control input[name="working_days"]', "2");
    await Promise.all([page.waitForNavigation({ timeout: 20000 }), page.click("form.clock-control button")]);
    await logout(page);

    await login(page, "zhao");
    const urge = page.locator("section:has(h2:text('超期清单')) table.board tbody tr form:has(input[value=\"urge\"]) button").first();
    check((await urge.count()) === 1, "the board offers 催办 where the supervisor oversees the department");
    await Promise.all([page.waitForNavigation(), urge.click()]);
    check((await page.locator(".flash.ok").innerText()).includes("催办"), "催办 from the board is recorded");
    await logout(page);
  }
  await ctx.close();
}

try {
  await journey(1440, true);
  await journey(390, false);
  check(cspViolations.length === 0, `no page breaks the Content-Security-Policy ${cspViolations.join("; ")}`);
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  const headers = (await p.goto(`${base}/login`)).headers();
  check(headers["x-frame-options"] === "DENY" && headers["cache-control"] === "no-store", "pages may not be framed or cached");
  await ctx.close();
} catch (e) {
  failed++;
  try {
    const pages = browser.contexts().flatMap((c) => c.pages());
    if (pages.length) await pages[0].screenshot({ path: path.join(artifacts, "99-failure.png"), fullPage: true });
  } catch {}
  console.log(`not ok - exception: ${e.stack ?? e}`);
} finally {
  await browser.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
