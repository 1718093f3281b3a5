//! `shenpi calendar add|is-workday`, run as a user would: exact stdout, exit codes, messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root, where the default `workflows/calendars/cn-mainland.yaml` is found.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn shenpi_in(dir: &Path, args: &[&str]) -> Output {
    match Command::new(env!("CARGO_BIN_EXE_shenpi"))
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!("cannot run shenpi: {e}"),
    }
}

fn shenpi(args: &[&str]) -> Output {
    shenpi_in(&root(), args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `calendar add`, expects success, returns stdout.
fn add(date: &str, n: &str) -> String {
    let o = shenpi(&["calendar", "add", date, n]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert_eq!(stderr(&o), "");
    stdout(&o)
}

fn is_workday(date: &str) -> String {
    let o = shenpi(&["calendar", "is-workday", date]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    stdout(&o)
}

#[test]
fn add_counts_working_days_on_the_official_calendar() {
    // Friday before 春节 2026 + 1 = the make-up Saturday.
    assert_eq!(add("2026-02-13", "1"), "2026-02-14\n");
    assert_eq!(add("2026-02-14", "1"), "2026-02-24\n");
    assert_eq!(add("2025-09-30", "1"), "2025-10-09\n");
    assert_eq!(add("2026-09-30", "1"), "2026-10-08\n");
    assert_eq!(add("2025-12-31", "1"), "2026-01-04\n");
    assert_eq!(add("2026-03-06", "20"), "2026-04-03\n");
    assert_eq!(add("2026-10-03", "0"), "2026-10-03\n");
}

#[test]
fn is_workday_prints_workday_or_off() {
    assert_eq!(is_workday("2026-01-04"), "workday\n");
    assert_eq!(is_workday("2026-10-01"), "off\n");
    assert_eq!(is_workday("2026-03-07"), "off\n");
    assert_eq!(is_workday("2026-03-09"), "workday\n");
    assert_eq!(is_workday("2025-01-26"), "workday\n");
}

#[test]
fn a_date_outside_the_calendar_exits_2() {
    for args in [
        &["calendar", "is-workday", "2024-12-31"][..],
        &["calendar", "is-workday", "2042-01-06"],
        &["calendar", "add", "2042-03-03", "1"],
    ] {
        let o = shenpi(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert_eq!(stdout(&o), "", "{args:?}");
        let err = stderr(&o);
        assert!(
            err.contains("不在工作日日历 `cn-mainland` 的范围内"),
            "{err}"
        );
        assert!(err.contains("2025–2041"), "{err}");
    }
    // Starting inside but running past the last provisional day.
    let o = shenpi(&["calendar", "add", "2041-12-01", "40"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("cannot add 40 working days to 2041-12-01"),
        "{err}"
    );
    assert!(err.contains("2042-01-01 不在"), "{err}");
}

#[test]
fn a_provisional_answer_keeps_stdout_and_says_so_on_stderr() {
    // 2027 has no official arrangement in the shipped file: the statute's days are used.
    let o = shenpi(&["calendar", "add", "2026-12-01", "40"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "2027-01-27\n");
    assert!(
        stderr(&o).starts_with("provisional: 2027-2041"),
        "{}",
        stderr(&o)
    );
    let o = shenpi(&["calendar", "is-workday", "2027-02-09"]);
    assert_eq!(
        stdout(&o),
        "off\n",
        "春节 2027 made up for its weekend days"
    );
    assert!(stderr(&o).contains("provisional"), "{}", stderr(&o));
    let o = shenpi(&["calendar", "is-workday", "2027-02-11"]);
    assert_eq!(stdout(&o), "workday\n");
    // An answer on official days alone says nothing on stderr.
    assert_eq!(add("2026-03-06", "20"), "2026-04-03\n");
}

#[test]
fn a_malformed_date_exits_2() {
    for bad in [
        "2026-02-30",
        "2026-2-3",
        "20260203",
        "tomorrow",
        "2026-13-01",
    ] {
        let o = shenpi(&["calendar", "is-workday", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert_eq!(stdout(&o), "");
        let err = stderr(&o);
        assert!(err.contains(&format!("`{bad}` is not a date")), "{err}");
        assert!(err.contains("YYYY-MM-DD"), "{err}");
    }
    // A negative or non-numeric N is rejected by argument parsing, also with 2.
    let o = shenpi(&["calendar", "add", "2026-02-13", "x"]);
    assert_eq!(o.status.code(), Some(2));
}

/// A scratch folder of its own per test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli_calendar")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {e}", dir.display());
    }
    dir
}

#[test]
fn calendar_option_overrides_the_default() {
    let dir = scratch("override");
    let file = dir.join("test-cal.yaml");
    // 2030: 2030-01-01 is a Tuesday. Make 01-02 a holiday and Sat 01-05 a working day.
    let src = "name: test\nyears:\n  - year: 2030\n    holidays:\n      - { name: X, date: 2030-01-02 }\n    workdays:\n      - { date: 2030-01-05 }\n";
    if let Err(e) = std::fs::write(&file, src) {
        panic!("{e}");
    }
    let f = file.to_string_lossy().into_owned();
    let o = shenpi(&["calendar", "add", "2030-01-01", "2", "--calendar", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "2030-01-04\n");
    let o = shenpi(&["calendar", "add", "2030-01-04", "1", "--calendar", &f]);
    assert_eq!(stdout(&o), "2030-01-05\n");
    let o = shenpi(&["calendar", "is-workday", "2030-01-02", "--calendar", &f]);
    assert_eq!(stdout(&o), "off\n");
    // This one does not know 2026 (before its first year).
    let o = shenpi(&["calendar", "is-workday", "2026-01-05", "--calendar", &f]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("日历 `test-cal` 的范围内（该日历覆盖 2030–2045 年"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_invalid_calendar_file_prints_located_diagnostics_and_exits_1() {
    let dir = scratch("invalid");
    let file = dir.join("bad.yaml");
    // 2026-01-05 is a Monday: not a possible make-up working day.
    let src = "years:\n  - year: 2026\n    workdays:\n      - { date: 2026-01-05 }\n";
    if let Err(e) = std::fs::write(&file, src) {
        panic!("{e}");
    }
    let f = file.to_string_lossy().into_owned();
    let o = shenpi(&["calendar", "is-workday", "2026-01-05", "--calendar", &f]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    let err = stderr(&o);
    assert!(err.contains(&format!("{f}:4:")), "{err}");
    assert!(err.contains("error[C006]"), "{err}");
}

#[test]
fn a_missing_default_calendar_exits_2() {
    let dir = scratch("missing");
    let o = shenpi_in(&dir, &["calendar", "is-workday", "2026-01-05"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("cannot read calendar file workflows/calendars/cn-mainland.yaml"),
        "{err}"
    );
}
