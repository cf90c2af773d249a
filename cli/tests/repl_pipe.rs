//! `slope repl` with piped input: no prompts, replies on stdout, diagnostics
//! on stderr, and a failing input makes the exit status 1.

use std::io::Write;
use std::process::{Command, Stdio};

/// `slope ARGS… repl` with every stream piped.
fn spawn_repl(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_slope"))
        .args(args)
        .arg("repl")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the slope binary starts")
}

/// Feeds `input` to `slope ARGS… repl`: stdout, stderr and the exit status.
fn repl_with(args: &[&str], input: impl AsRef<[u8]>) -> (String, String, Option<i32>) {
    let mut child = spawn_repl(args);
    child.stdin.take().expect("stdin is piped").write_all(input.as_ref()).expect("input is written");
    let out = child.wait_with_output().expect("slope repl finishes");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

fn repl(input: impl AsRef<[u8]>) -> (String, String, Option<i32>) {
    repl_with(&[], input)
}

#[test]
fn piped_session_prints_values() {
    let (stdout, stderr, code) =
        repl("def sq (x: f64) : f64 = x * x\nsq 3.0\ndef poly (x: f64) : f64 =\n  sq x + 1.0\npoly 2.0\n");
    assert_eq!(
        stdout, "defined sq : f64 -> f64\n9.0 : f64\ndefined poly : f64 -> f64\n5.0 : f64\n",
        "stderr: {stderr}"
    );
    assert_eq!(code, Some(0));
}

#[test]
fn piped_errors_go_to_stderr_and_the_session_goes_on() {
    let (stdout, stderr, code) = repl("[1.0, 2.0][5]\nnope\n1 + 1\n:quit\n2 + 2\n");
    assert!(stderr.contains("E0201") && stderr.contains("E0101"), "stderr: {stderr}");
    assert_eq!(stdout, "2 : i64\n");
    assert_eq!(code, Some(1));
}

#[test]
fn a_line_that_is_not_utf8_gets_a_diagnostic_and_the_session_goes_on() {
    let (stdout, stderr, code) = repl(b"1.0 + \xff\n1.0 + 1.0\n".as_slice());
    assert!(stderr.contains("error[E0003]: this line is not valid UTF-8"), "stderr: {stderr}");
    assert!(stderr.contains("byte 0xff"), "the bad byte is named: {stderr}");
    assert_eq!(stdout, "2.0 : f64\n", "the next line is evaluated; stderr: {stderr}");
    assert_eq!(code, Some(1));
}

#[test]
fn a_line_over_the_input_limit_gets_e0308() {
    let input = format!("1.0 + {}1.0\n2 + 2\n", "1.0 + ".repeat(10));
    let (stdout, stderr, code) = repl_with(&["--max-input-bytes", "16"], input);
    assert!(stderr.contains("error[E0308]"), "stderr: {stderr}");
    assert_eq!(stdout, "4 : i64\n", "stderr: {stderr}");
    assert_eq!(code, Some(1));
}

/// Ctrl-C (SIGINT) during an evaluation stops it with E0208; the session keeps
/// its definitions and evaluates the next input.
#[cfg(unix)]
#[test]
fn an_interrupt_stops_the_evaluation_and_the_session_goes_on() {
    use std::io::{BufRead, BufReader};
    let mut child = spawn_repl(&[]);
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    // Nine trillion iterations: only the interrupt ends this loop in time.
    let input = "def inc (n: i64) : i64 = n + 1\nloop s = 0 for i < 9000000000000 do s + i\ninc 41\n";
    stdin.write_all(input.as_bytes()).expect("input is written");
    stdin.flush().expect("input is flushed");
    let mut line = String::new();
    stdout.read_line(&mut line).expect("the definition is acknowledged");
    assert_eq!(line, "defined inc : i64 -> i64\n");
    // The loop is the next input, already in the pipe: it is running now.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill runs");
    assert!(kill.success());
    line.clear();
    stdout.read_line(&mut line).expect("the session goes on");
    assert_eq!(line, "42 : i64\n", "the definition survives the interrupt");
    drop(stdin);
    let out = child.wait_with_output().expect("slope repl finishes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error[E0208]: interrupted"), "stderr: {stderr}");
    assert_eq!(out.status.code(), Some(1), "a failed input makes the exit status 1");
}
