//! Stored histories are forever: these are events as the engine stored them, and every version
//! must still read them.
//!
//! `fixtures/events/v<N>/<kind>.json` holds one stored event of each kind in format N (generated
//! once from real runs: the shipped workflows' scenarios through the simulator, and a calendar
//! re-timing through the durable path), `fixtures/events/v<N>/histories/*.jsonl` whole stored
//! histories, one event a line. A change to [`Event`] that breaks them fails here: then it is a
//! new format (see [`EVENT_FORMAT`]), its upcaster makes the old files pass again, and today's
//! events go in a new `v<N+1>/` (`BLESS=1` writes the expected state of a history that has none).

use std::fs;
use std::path::{Path, PathBuf};

use shenpi_engine::model::Outcome;
use shenpi_engine::runtime::event::{DecodeError, EVENT_FORMAT, Event, decode_event};
use shenpi_engine::runtime::state::{Status, TaskStatus};
use shenpi_engine::runtime::{InstanceState, evolve};

fn format_dir(format: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/events/v{format}"))
}

/// `(file stem, text)` of the files in `dir` ending with `.ext`, by name.
fn files(dir: &Path, ext: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .map(|p| {
            let stem = p
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (stem, text)
        })
        .collect();
    out.sort();
    out
}

/// Every format ever written, oldest first.
fn formats() -> std::ops::RangeInclusive<u32> {
    1..=EVENT_FORMAT
}

#[test]
fn every_stored_event_reads_back_and_writes_again_as_stored() {
    for format in formats() {
        let events = files(&format_dir(format), "json");
        assert!(!events.is_empty(), "no stored events of format {format}");
        for (kind, text) in events {
            let event = decode_event(format, &text)
                .unwrap_or_else(|e| panic!("v{format}/{kind}.json no longer reads: {e}"));
            assert_eq!(
                event.kind(),
                kind,
                "v{format}/{kind}.json reads as another kind"
            );
            if format == EVENT_FORMAT {
                // Today's format writes back what it read, field for field.
                let stored: serde_json::Value = serde_json::from_str(&text).expect("fixture JSON");
                let again = serde_json::to_value(&event).expect("event serialises");
                assert_eq!(
                    again, stored,
                    "v{format}/{kind}.json writes back differently"
                );
            }
        }
    }
}

/// The kinds an [`Event`] has today; a new variant needs its stored example (and its name here).
const KINDS: &[&str] = &[
    "applicant_resubmitted",
    "carbon_copied",
    "channel_chosen",
    "clock_resumed",
    "clock_stopped",
    "commented",
    "consult_answered",
    "consulted",
    "copy_read",
    "credit_marked",
    "element_attached",
    "end_reached",
    "formal_approval",
    "instance_ended",
    "instance_started",
    "item_supervised",
    "join_fired",
    "letter_issued",
    "letter_signed",
    "limit_extended",
    "material_supplied",
    "material_verified",
    "migrated",
    "node_entered",
    "node_skipped",
    "notification_requested",
    "outstanding_carried",
    "outstanding_resolved",
    "pre_approved",
    "promise_breached",
    "promise_made",
    "rejected_back",
    "resumed",
    "retimed",
    "returned_to_applicant",
    "signer_added",
    "signer_removed",
    "stage_closed",
    "stage_entered",
    "stage_left",
    "step_opened",
    "supervised",
    "supervision_resolved",
    "suspended",
    "task_cancelled",
    "task_claimed",
    "task_decided",
    "task_delegated",
    "task_opened",
    "taken_back",
    "timer_armed",
    "timer_cancelled",
    "timer_fired",
    "urged",
    "warning",
    "withdrawn",
];

#[test]
fn every_kind_of_event_has_a_stored_example_in_todays_format() {
    let stored: Vec<String> = files(&format_dir(EVENT_FORMAT), "json")
        .into_iter()
        .map(|(kind, _)| kind)
        .collect();
    let missing: Vec<&&str> = KINDS
        .iter()
        .filter(|k| !stored.iter().any(|s| s == *k))
        .collect();
    assert!(missing.is_empty(), "no stored example of {missing:?}");
    assert_eq!(
        stored.len(),
        KINDS.len(),
        "a stored example of a kind not listed: {stored:?}"
    );
}

/// Replays a stored history of `format` event by event, as a store's reader does.
fn replay_stored(format: u32, text: &str) -> (InstanceState, Vec<Event>) {
    let mut state = InstanceState::default();
    let mut events = Vec::new();
    for (n, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let event = decode_event(format, line)
            .unwrap_or_else(|e| panic!("event {} of the history no longer reads: {e}", n + 1));
        state = evolve(state, &event);
        events.push(event);
    }
    (state, events)
}

#[test]
fn a_stored_history_replays_to_the_state_it_reached() {
    for format in formats() {
        let dir = format_dir(format).join("histories");
        for (name, text) in files(&dir, "jsonl") {
            let (state, events) = replay_stored(format, &text);
            // What the history says happened: the project approved at the end of the flow,
            // every task closed, every timer spent.
            assert_eq!(state.version, events.len() as u64, "{name}");
            assert_eq!(state.status, Status::Ended, "{name}");
            assert_eq!(state.outcome, Some(Outcome::Approved), "{name}");
            assert!(!state.tasks.is_empty(), "{name}: no tasks");
            assert!(
                state.tasks.iter().all(|t| t.status != TaskStatus::Open),
                "{name}: a task left open"
            );
            assert!(state.timers.is_empty(), "{name}: timers left armed");
            // And the whole state, as it was when the history was stored.
            let expected_path = dir.join(format!("{name}.state.json"));
            let got = serde_json::to_value(&state).expect("state serialises");
            if std::env::var_os("BLESS").is_some() && !expected_path.exists() {
                let text = serde_json::to_string_pretty(&got).expect("state serialises");
                fs::write(&expected_path, text + "\n").expect("write the expected state");
            }
            let expected: serde_json::Value = serde_json::from_str(
                &fs::read_to_string(&expected_path)
                    .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display())),
            )
            .expect("expected state JSON");
            assert_eq!(got, expected, "{name}: the replayed state differs");
        }
    }
}

#[test]
fn a_format_no_version_wrote_is_refused_not_misread() {
    let text = r#"{"type":"node_entered","node":"intake"}"#;
    assert!(decode_event(EVENT_FORMAT, text).is_ok());
    assert!(matches!(
        decode_event(EVENT_FORMAT + 1, text),
        Err(DecodeError::Newer(f)) if f == EVENT_FORMAT + 1
    ));
    assert!(matches!(
        decode_event(0, text),
        Err(DecodeError::Unknown(0))
    ));
    assert!(matches!(
        decode_event(EVENT_FORMAT, r#"{"type":"node_entered"}"#),
        Err(DecodeError::Invalid { .. })
    ));
}
