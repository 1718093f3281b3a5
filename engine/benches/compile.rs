//! Benchmark: parse + validate + compile of a generated 200-node workflow (target < 5 ms).
//!
//! A bench binary rather than criterion: `cargo bench -p shenpi-engine --bench compile` prints
//! the median time per iteration of each phase. The workflow is a chain of tasks with a parallel
//! step every 20 nodes and a gateway every 25, each task able to reject back to the one before,
//! and conditions to type-check: close to the shape of the real examples, ten times longer.

use std::hint::black_box;
use std::time::{Duration, Instant};

use shenpi_engine::compile::compile;
use shenpi_engine::parse::parse_workflow;
use shenpi_engine::validate::{ValidateContext, validate};

const NODES: usize = 200;
const ITERATIONS: usize = 200;

fn workflow_yaml(n: usize) -> String {
    let mut y = String::from(
        "id: generated\nname: 生成的流程\ncalendar: cn-mainland\nstart: n0\n\
         fields:\n  - {id: tier, type: enum, values: [重中之重, 省级重大, 一般]}\n\
         \x20 - {id: investment, type: number}\n  - {id: officer, type: user}\n\
         departments:\n  - {id: fgw}\n  - {id: zrzy}\n  - {id: sthj}\n  - {id: zjj}\n\
         roles:\n  - {id: clerk, department: fgw}\n  - {id: head, department: fgw}\n\
         materials:\n  - {id: application, red_line: true}\n  - {id: eia}\n\
         channels:\n  - {id: green, when: 'project.tier in [\"重中之重\", \"省级重大\"]', limit_scale: 50%}\n\
         warnings:\n  yellow_at: 75%\n  escalation:\n    - {after: 0wd, action: remind}\n\
         \x20   - {after: 2wd, action: supervisor}\nnodes:\n",
    );
    for i in 0..n {
        let next = if i + 1 == n {
            "done".to_string()
        } else {
            format!("n{}", i + 1)
        };
        if i % 20 == 10 {
            y += &format!(
                "  - id: n{i}\n    type: parallel\n    limit: 10wd\n    lead: fgw\n    branches:\n\
                 \x20     - {{id: fgw, department: fgw, limit: 5wd}}\n\
                 \x20     - {{id: zrzy, department: zrzy}}\n\
                 \x20     - {{id: sthj, department: sthj, when: 'project.investment > 1000.0'}}\n\
                 \x20     - {{id: zjj, department: zjj}}\n    join: {{policy: vote, share: 2/3}}\n\
                 \x20   next: {next}\n"
            );
        } else if i % 25 == 5 {
            y += &format!(
                "  - id: n{i}\n    type: gateway\n    routes:\n\
                 \x20     - {{when: 'project.investment >= 50000.0 && project.tier != \"一般\"', to: {next}}}\n\
                 \x20     - {{to: {next}}}\n"
            );
        } else {
            let back = if i > 0 && (i - 1) % 25 != 5 && (i - 1) % 20 != 10 {
                format!("    reject_to: [n{}]\n", i - 1)
            } else {
                String::new()
            };
            y += &format!(
                "  - id: n{i}\n    type: task\n    assignee: {{role: clerk}}\n\
                 \x20   actions: [approve, reject, conditional]\n    limit: 5wd\n\
                 \x20   materials: [application, eia]\n\
                 \x20   conditional: {{waivable: [eia], limit: 20wd}}\n{back}    next: {next}\n"
            );
        }
    }
    y += "  - {id: done, type: end, outcome: approved}\n";
    y
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn time<T>(mut f: impl FnMut() -> T) -> Duration {
    for _ in 0..10 {
        black_box(f());
    }
    let samples = (0..ITERATIONS)
        .map(|_| {
            #[allow(
                clippy::disallowed_methods,
                reason = "a benchmark times itself; the engine it measures reads no clock"
            )]
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .collect();
    median(samples)
}

fn main() {
    let yaml = workflow_yaml(NODES);
    let ctx = ValidateContext {
        calendars: vec!["cn-mainland".into()],
        templates: Vec::new(),
        ..Default::default()
    };
    let parsed = match parse_workflow(&yaml) {
        Ok(w) => w,
        Err(d) => panic!("generated workflow does not parse: {d:?}"),
    };
    let diags = validate(&parsed, &ctx);
    assert!(
        diags.is_empty(),
        "generated workflow is not clean: {diags:?}"
    );

    let parse = time(|| parse_workflow(&yaml));
    let check = time(|| validate(&parsed, &ctx));
    let clone = time(|| parsed.clone());
    let validate_compile = time(|| compile(parsed.clone(), &ctx).ok());
    let all = time(|| {
        let w = parse_workflow(&yaml).ok()?;
        compile(w, &ctx).ok()
    });
    println!(
        "{} nodes ({} bytes of YAML), median of {ITERATIONS} iterations:",
        parsed.nodes.len(),
        yaml.len()
    );
    println!("  parse                     {parse:>10.3?}");
    println!("  validate                  {check:>10.3?}");
    println!(
        "  validate+compile          {validate_compile:>10.3?}   (includes a clone of the parsed workflow: {clone:.3?})"
    );
    println!("  parse+validate+compile    {all:>10.3?}   (target < 5 ms)");
}
