//! What a simulated container does, read from its command. Nothing runs, but a Pod
//! that runs to completion (`restartPolicy: Never` or `OnFailure`) and a Job end the
//! way their command says, so hooks and batch work behave as on a real cluster:
//!
//! - `false`, or `exit N` (also inside `sh -c "..."`): exits 1, or N;
//! - `sleep N` (seconds, or with a unit: `1.5`, `30s`, `2m`, `1h`): takes that long;
//! - anything else (`true`, a real program): exits 0 after the simulation's delay.
//!
//! The annotation [`DURATION_ANNOTATION`] sets how long any simulated workload takes
//! (`"1h"` keeps a Deployment progressing for an hour).

use std::time::Duration;

use serde_json::Value;

use crate::meta;

/// Annotation setting how long the simulation takes for one object (`"90s"`, `"1h"`).
pub const DURATION_ANNOTATION: &str = "simulate.capstan.dev/duration";

/// How a container run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    /// Its exit code.
    pub exit_code: i64,
    /// How long it runs, when its command says (`sleep`).
    pub takes: Option<Duration>,
}

/// The run of the first container of `containers` that fails, else of all of them
/// (the longest sleep).
pub fn of_containers(containers: &[Value]) -> Program {
    let runs: Vec<Program> = containers.iter().map(of_container).collect();
    let takes = runs.iter().filter_map(|r| r.takes).max();
    let exit_code = runs
        .iter()
        .map(|r| r.exit_code)
        .find(|c| *c != 0)
        .unwrap_or(0);
    Program { exit_code, takes }
}

/// The containers of a Pod, or of a Job's template.
pub fn containers(obj: &Value, pointer: &str) -> Vec<Value> {
    obj.pointer(pointer)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn of_container(c: &Value) -> Program {
    let words: Vec<String> = ["command", "args"]
        .iter()
        .filter_map(|k| c.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(|w| w.as_str().map(str::to_string))
        .collect();
    let is_shell = words.first().is_some_and(|w| {
        matches!(
            w.rsplit('/').next().unwrap_or(""),
            "sh" | "bash" | "ash" | "dash"
        )
    }) && words.get(1).is_some_and(|w| w == "-c");
    let tokens: Vec<String> = if is_shell {
        words[2..]
            .join(" ")
            .split(|ch: char| ch.is_whitespace() || ch == ';' || ch == '&' || ch == '|')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    } else {
        words
    };
    let mut exit_code = 0;
    let mut takes: Option<Duration> = None;
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i].rsplit('/').next().unwrap_or("") {
            "false" => {
                exit_code = 1;
                break;
            }
            "exit" => {
                exit_code = tokens.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(0);
                break;
            }
            "sleep" => {
                if let Some(d) = tokens.get(i + 1).and_then(|n| parse_duration(n)) {
                    takes = Some(takes.unwrap_or_default() + d);
                }
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    Program { exit_code, takes }
}

/// `3`, `1.5`, `250ms`, `30s`, `2m`, `1h`, `1d` (as `sleep` and the annotation take them).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// The duration the annotation asks for, if any.
pub fn annotated(obj: &Value) -> Option<Duration> {
    meta::annotation(obj, DURATION_ANNOTATION).and_then(parse_duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(c: Value) -> Program {
        of_containers(&[c])
    }

    #[test]
    fn commands_say_how_a_container_ends() {
        assert_eq!(run(json!({"command": ["true"]})).exit_code, 0);
        assert_eq!(run(json!({"command": ["false"]})).exit_code, 1);
        assert_eq!(
            run(json!({"command": ["/bin/sh", "-c", "echo hi; exit 3"]})).exit_code,
            3
        );
        assert_eq!(
            run(json!({"command": ["sleep"], "args": ["3"]})).takes,
            Some(Duration::from_secs(3))
        );
        let shell = run(json!({"command": ["/bin/sh", "-c"], "args": ["sleep 10h"]}));
        assert_eq!(shell.takes, Some(Duration::from_secs(36000)));
        assert_eq!(
            run(json!({"image": "nginx"})),
            Program {
                exit_code: 0,
                takes: None
            }
        );
        let two = of_containers(&[
            json!({"command": ["sleep", "1"]}),
            json!({"command": ["false"]}),
        ]);
        assert_eq!(
            (two.exit_code, two.takes),
            (1, Some(Duration::from_secs(1)))
        );
    }

    #[test]
    fn durations_parse_as_sleep_takes_them() {
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("5x"), None);
    }
}
