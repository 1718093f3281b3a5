//! 政策模拟 in the editor: policy staff run a draft against a population beside the version in
//! force and read the same rows `shenpi whatif` prints; bad input is located and runs nothing.

mod api_common;

use api_common::{Browser, between, server, workflows_dir};
use axum::http::StatusCode;

const WF: &str = "provincial-major";

fn csrf(page: &str) -> String {
    between(page, "name=\"csrf\" value=\"", "\"")
        .expect("csrf")
        .to_string()
}

/// The two cells of a row of the result table (现行, 草案), by the row's name.
fn cells(page: &str, name: &str) -> (String, String) {
    let row = between(page, &format!("<td>{name}</td>"), "</tr>")
        .unwrap_or_else(|| panic!("row {name} in\n{page}"));
    let tds: Vec<String> = row
        .split("<td>")
        .skip(1)
        .map(|c| c.split("</td>").next().unwrap_or("").replace(" ←", ""))
        .collect();
    (tds[0].clone(), tds[1].clone())
}

/// Every task answered on its fourth working day, no 容缺, no rejections.
const STEADY: &str = "seed: 3\nstart: 2027-01-04\nper_month: 6\nmonths: 2\nfields:\n  tier: { value: 省级重大 }\n  investment: { value: 20000 }\n  funding: { value: 政府投资 }\n  industry: { value: 交通 }\n  service_officer: { value: chen }\nrespond:\n  default: { value: 4 }\n  applicant: { value: 4 }\nconditional: 0%\nreject: 0%\n";

#[tokio::test]
async fn a_draft_with_shorter_limits_turns_tasks_red_on_the_page() {
    let s = server("whatif-page").await;
    let wang = Browser::login(&s, "wang").await;
    let form = wang.get(&format!("/workflows/{WF}/whatif")).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text);
    assert!(
        form.text.contains("政策模拟 · 省级重大项目"),
        "{}",
        form.text
    );
    assert!(
        form.text.contains("value=\"file:provincial-major\""),
        "the shipped population is offered"
    );
    let token = csrf(&form.text);
    let yaml =
        std::fs::read_to_string(workflows_dir().join("provincial-major.yaml")).expect("yaml");
    let short = yaml
        .replace("limit: 10wd", "limit: 2wd")
        .replace("limit: 5wd", "limit: 2wd");
    assert_ne!(short, yaml);

    let ran = wang
        .post(
            &format!("/workflows/{WF}/whatif"),
            &[
                ("csrf", &token),
                ("yaml", &short),
                ("source", "custom"),
                ("population", STEADY),
                ("horizon", "1y"),
                ("seed", ""),
            ],
        )
        .await;
    assert_eq!(ran.status, StatusCode::OK, "{}", ran.text);
    assert!(ran.text.contains("模拟完成：12 个项目"), "{}", ran.text);
    let (base_red, draft_red) = cells(&ran.text, "红灯（超期）任务");
    let base_red: u32 = base_red.parse().expect("number");
    let draft_red: u32 = draft_red.parse().expect("number");
    // Tasks answered on their fourth working day go red under the two-day limits only.
    assert!(
        draft_red > base_red,
        "red tasks: {base_red} in force, {draft_red} in the draft"
    );
    assert_eq!(cells(&ran.text, "项目"), ("12".into(), "12".into()));
    // The chart and the form, kept as typed.
    assert!(ran.text.contains("现行与草案的主要指标对比"));
    assert!(
        ran.text.contains("value=\"custom\" checked"),
        "the choice is kept"
    );

    // The same run again gives the same figures (one seed, the same draws).
    let again = wang
        .post(
            &format!("/workflows/{WF}/whatif"),
            &[
                ("csrf", &token),
                ("yaml", &short),
                ("source", "custom"),
                ("population", STEADY),
                ("horizon", "1y"),
            ],
        )
        .await;
    assert_eq!(
        between(&again.text, "<table class=\"whatif\"", "</table>"),
        between(&ran.text, "<table class=\"whatif\"", "</table>")
    );
}

#[tokio::test]
async fn the_editor_button_runs_the_shipped_population() {
    let s = server("whatif-editor").await;
    let wang = Browser::login(&s, "wang").await;
    let editor = wang.get(&format!("/workflows/editor?id={WF}")).await;
    assert!(
        editor
            .text
            .contains("formaction=\"/workflows/provincial-major/whatif\"")
    );
    let token = csrf(&editor.text);
    let yaml =
        std::fs::read_to_string(workflows_dir().join("provincial-major.yaml")).expect("yaml");
    // What the editor's form sends: its id, text and button, no source.
    let ran = wang
        .post(
            &format!("/workflows/{WF}/whatif"),
            &[
                ("csrf", &token),
                ("id", WF),
                ("yaml", &yaml),
                ("op", "validate"),
            ],
        )
        .await;
    assert_eq!(ran.status, StatusCode::OK, "{}", ran.text);
    assert!(
        ran.text
            .contains("总体文件 populations/provincial-major.yaml"),
        "{}",
        ran.text
    );
    // The text in force against itself: every row the same.
    assert!(
        !ran.text.contains("class=\"changed\""),
        "identical versions differ"
    );
    assert!(ran.text.contains("模拟完成：480 个项目"), "{}", ran.text);
}

#[tokio::test]
async fn bad_input_is_located_and_runs_nothing() {
    let s = server("whatif-bad").await;
    let wang = Browser::login(&s, "wang").await;
    let token = csrf(&wang.get(&format!("/workflows/{WF}/whatif")).await.text);
    let yaml =
        std::fs::read_to_string(workflows_dir().join("provincial-major.yaml")).expect("yaml");
    let path = format!("/workflows/{WF}/whatif");

    let impossible = STEADY.replace("default: { value: 4 }", "default: { between: [9, 2] }");
    let r = wang
        .post(
            &path,
            &[
                ("csrf", &token),
                ("yaml", &yaml),
                ("source", "custom"),
                ("population", &impossible),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("未运行模拟"), "{}", r.text);
    assert!(
        r.text.contains("第 12 行"),
        "the error names its line: {}",
        r.text
    );
    assert!(r.text.contains("下限 9 大于上限 2"), "{}", r.text);
    assert!(!r.text.contains("whatif-result"));

    let broken = yaml.replacen("limit: 10wd", "limit: ten days", 1);
    let r = wang
        .post(
            &path,
            &[
                ("csrf", &token),
                ("yaml", &broken),
                ("source", "file:provincial-major"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("草案校验未通过"), "{}", r.text);
    assert!(r.text.contains("草案第 "), "located: {}", r.text);

    let other =
        std::fs::read_to_string(workflows_dir().join("enterprise-filing.yaml")).expect("yaml");
    let r = wang
        .post(
            &path,
            &[
                ("csrf", &token),
                ("yaml", &other),
                ("source", "file:provincial-major"),
            ],
        )
        .await;
    assert!(
        r.text.contains("与本页的流程「provincial-major」不同"),
        "{}",
        r.text
    );
    assert!(!r.text.contains("whatif-result"));

    let r = wang
        .post(
            &path,
            &[("csrf", &token), ("yaml", &yaml), ("source", "file:nope")],
        )
        .await;
    assert!(r.text.contains("没有名为「nope」的总体文件"), "{}", r.text);

    let r = wang
        .post(
            &path,
            &[
                ("csrf", &token),
                ("yaml", &yaml),
                ("source", "file:provincial-major"),
                ("horizon", "99y"),
            ],
        )
        .await;
    assert!(r.text.contains("模拟期限「99y」无法识别"), "{}", r.text);

    // The projects here: none yet, said in the workflow's name.
    let r = wang
        .post(
            &path,
            &[("csrf", &token), ("yaml", &yaml), ("source", "db")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(
        r.text.contains("本服务器还没有「省级重大项目"),
        "{}",
        r.text
    );

    let zhang = Browser::login(&s, "zhang").await;
    let r = zhang.get(&path).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text.contains("政策模拟仅限政策法规人员"));
}
