//! `slope gradbench` end to end: a short session piped through the binary.
//! One response line per message on stdout, in order; logs on stderr only;
//! exit status 0 at end of input, even after a failed message.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn piped_session_answers_every_message() {
    // Run from the workspace root so that the default `--dir` is used.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("compiler/ is in the workspace");
    let mut child = Command::new(env!("CARGO_BIN_EXE_slope"))
        .arg("gradbench")
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the slope binary starts");
    let session = concat!(
        r#"{"id":0,"kind":"start","eval":"hello"}"#,
        "\n",
        r#"{"id":1,"kind":"define","module":"hello"}"#,
        "\n",
        r#"{"id":2,"kind":"evaluate","module":"hello","function":"square","input":3.0}"#,
        "\n",
        "not json\n",
        "\n",
        r#"{"id":3,"kind":"evaluate","module":"hello","function":"double","input":{"x":9.0,"min_runs":2,"min_seconds":0}}"#,
        "\n",
        r#"{"id":4,"kind":"analysis","valid":true}"#,
        "\n",
    );
    child.stdin.take().expect("stdin is piped").write_all(session.as_bytes()).expect("input is written");
    let out = child.wait_with_output().expect("slope gradbench finishes");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    assert_eq!(lines.len(), 6, "one answer per non-blank line:\n{stdout}\nstderr: {stderr}");
    assert_eq!(stdout.lines().next(), Some(r#"{"id":0,"tool":"slope"}"#));
    assert_eq!(lines[1]["success"], true);
    assert_eq!(lines[1]["timings"][0]["name"], "compile");
    assert!(lines[1]["timings"][0]["nanoseconds"].is_u64());
    assert_eq!(lines[2]["output"], 9.0);
    assert_eq!(lines[3]["id"], serde_json::Value::Null);
    assert_eq!(lines[3]["success"], false);
    assert_eq!(lines[4]["output"], 18.0);
    assert_eq!(lines[4]["timings"].as_array().map(|t| t.len()), Some(2));
    assert_eq!(stdout.lines().last(), Some(r#"{"id":4}"#));
    assert!(stderr.contains("not valid JSON"), "the malformed line is logged: {stderr}");
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
}

/// GradBench sends the next message only after reading the previous answer:
/// each answer must be flushed while stdin is still open.
#[test]
fn answers_are_flushed_one_by_one() {
    use std::io::BufRead;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("compiler/ is in the workspace");
    let mut child = Command::new(env!("CARGO_BIN_EXE_slope"))
        .args(["gradbench", "--dir"])
        .arg(root.join("examples/gradbench"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the slope binary starts");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut exchange = |message: &str| {
        writeln!(stdin, "{message}").expect("message is written");
        stdin.flush().expect("message is flushed");
        let mut line = String::new();
        stdout.read_line(&mut line).expect("an answer arrives");
        line
    };
    assert_eq!(exchange(r#"{"id":0,"kind":"start","eval":"hello"}"#), "{\"id\":0,\"tool\":\"slope\"}\n");
    let answer = exchange(r#"{"id":1,"kind":"evaluate","module":"hello","function":"square","input":5.0}"#);
    assert!(answer.starts_with(r#"{"id":1,"success":true,"output":25.0,"#), "{answer}");
    drop(stdin);
    assert_eq!(child.wait().expect("slope gradbench exits").code(), Some(0));
}

/// Bad lines each get a failure response with E0306 and the session goes on;
/// ids come back exactly as sent, even beyond 64 bits.
#[test]
fn bad_lines_are_answered_and_ids_are_echoed_exactly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("compiler/ is in the workspace");
    let mut child = Command::new(env!("CARGO_BIN_EXE_slope"))
        .args(["--max-input-bytes", "200", "gradbench", "--dir"])
        .arg(root.join("examples/gradbench"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the slope binary starts");
    let mut session: Vec<u8> = Vec::new();
    session.extend_from_slice(b"{\"id\":123456789012345678901234567890,\"kind\":\"start\"}\n");
    session.extend_from_slice(b"{\"id\":1,\"kind\":\"evaluate\",\"\xff\":2}\n");
    session.extend_from_slice(b"[1, 2]\n");
    session.extend_from_slice(format!("{{\"id\":2,\"kind\":\"{}\"}}\n", "x".repeat(300)).as_bytes());
    session.extend_from_slice(b"{\"id\":\"three\",\"kind\":\"evaluate\",\"module\":\"hello\"}\n");
    session.extend_from_slice(
        b"{\"id\":-0.5e3,\"kind\":\"evaluate\",\"module\":\"hello\",\"function\":\"square\",\"input\":3.0}\n",
    );
    child.stdin.take().expect("stdin is piped").write_all(&session).expect("input is written");
    let out = child.wait_with_output().expect("slope gradbench finishes");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "one answer per line:\n{stdout}\nstderr: {stderr}");
    assert_eq!(lines[0], r#"{"id":123456789012345678901234567890,"tool":"slope"}"#);
    let failures =
        [(1, "E0306", "not valid UTF-8"), (2, "E0306", "not a JSON object"), (3, "E0308", "more than the limit")];
    for (i, code, what) in failures {
        let answer: serde_json::Value = serde_json::from_str(lines[i]).expect("answers are JSON");
        assert_eq!(answer["id"], serde_json::Value::Null, "{}", lines[i]);
        assert_eq!(answer["success"], false, "{}", lines[i]);
        let error = answer["error"].as_str().expect("an error text");
        assert!(error.contains(&format!("error[{code}]")) && error.contains(what), "{error}");
    }
    assert!(lines[4].starts_with(r#"{"id":"three","success":false,"error":"error[E0306]"#), "{}", lines[4]);
    assert!(lines[5].starts_with(r#"{"id":-0.5e3,"success":true,"output":9.0,"#), "{}", lines[5]);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
}
