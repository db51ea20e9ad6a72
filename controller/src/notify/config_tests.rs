//! Tests of the notifications file: what is accepted, and that every problem is named with its path.

use std::collections::HashMap;

use super::*;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| map.get(name).cloned()
}

fn errors(text: &str) -> Vec<String> {
    match parse(text.as_bytes(), &env(&[])) {
        Ok(targets) => panic!("expected errors, got {targets:?}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn parse_should_read_a_full_target_with_secrets_from_env_and_file() {
    let dir = std::env::temp_dir().join(format!("drover-notify-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let secret = dir.join("token");
    std::fs::write(&secret, "s3cret\n").expect("write secret");
    let text = format!(
        "targets:
  - name: ops-slack
    url: https://hooks.example.com/services/T0/B0
    format: slack
    events: [RolloutAborted, AnalysisFailed]
    selector: {{namespaces: [prod-*], apps: [web, \"payments/*\"]}}
    headers:
      Authorization: {{env: OPS_TOKEN}}
      X-Secret: {{file: {}}}
      X-Team: platform
  - name: audit
    url: http://127.0.0.1:9000/hook
",
        secret.display()
    );
    let targets = parse(text.as_bytes(), &env(&[("OPS_TOKEN", "Bearer abc")])).expect("a valid file");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(targets.len(), 2);
    let t = &targets[0];
    assert_eq!((t.name.as_str(), t.format), ("ops-slack", Format::Slack));
    assert_eq!(t.url.as_str(), "https://hooks.example.com/services/T0/B0");
    assert_eq!(t.headers.get("authorization").map(|v| v.as_bytes()), Some(&b"Bearer abc"[..]));
    assert_eq!(t.headers.get("x-secret").map(|v| v.as_bytes()), Some(&b"s3cret"[..]), "trailing newline dropped");
    assert!(t.headers.get("authorization").is_some_and(|v| v.is_sensitive()));
    assert!(t.headers.get("x-team").is_some_and(|v| !v.is_sensitive()));
    assert!(!format!("{t:?}").contains("Bearer"), "Debug never shows header values: {t:?}");
    assert!(t.wants(EventKind::RolloutAborted, &AppKey::new("prod-eu", "web")));
    assert!(t.wants(EventKind::AnalysisFailed, &AppKey::new("prod-eu", "web")));
    assert!(!t.wants(EventKind::RolloutCompleted, &AppKey::new("prod-eu", "web")), "not in events");
    assert!(!t.wants(EventKind::RolloutAborted, &AppKey::new("staging", "web")), "namespace not selected");
    assert!(!t.wants(EventKind::RolloutAborted, &AppKey::new("prod-eu", "api")), "app not selected");
    // `payments/*` names namespace/name, and the namespace must still match `prod-*`.
    assert!(!t.wants(EventKind::RolloutAborted, &AppKey::new("payments", "api")));
    let audit = &targets[1];
    assert_eq!((audit.format, audit.events.is_none()), (Format::Drover, true), "defaults: drover, every event");
    assert!(audit.wants(EventKind::Scaled, &AppKey::new("any", "thing")), "no selector selects everything");
}

#[test]
fn parse_should_name_every_problem_with_its_path() {
    let text = "targets:
  - name: a
    url: ftp://example.com/x
    events: []
    headers: {Authorization: {env: MISSING}, \"bad header\": x, X-Both: {env: A, file: B}}
    selector: {namespaces: [\"\"], apps: [a/b/c]}
  - name: a
    url: http://example.com
  - name: \"has space\"
    url: not a url
";
    let got = errors(text);
    let want = [
        "targets[0].url: scheme \"ftp\" is not supported",
        "targets[0].headers.Authorization.env: environment variable MISSING is not set",
        "targets[0].headers[\"bad header\"]: \"bad header\" is not a valid HTTP header name",
        "targets[0].headers.X-Both: must be a string, {env: VAR} or {file: PATH}",
        "targets[0].events: lists no event",
        "targets[0].selector.namespaces[0]: must be a name or glob",
        "targets[0].selector.apps[0]: must be a name or glob",
        "targets[1].name: \"a\" is also the name of targets[0]",
        "targets[2].name: \"has space\" must be 1 to 63 characters",
        "targets[2].url: not a URL",
    ];
    for w in want {
        assert!(got.iter().any(|g| g.starts_with(w)), "missing {w:?} in {got:#?}");
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
}

#[test]
fn parse_should_reject_unknown_keys_and_wrong_types_with_their_paths() {
    let got = errors("targets:\n  - name: a\n    url: http://x\n    selectr: {apps: [web]}\n");
    assert!(got.len() == 1 && got[0].starts_with("targets[0].selectr: unknown field `selectr`"), "{got:?}");
    let got = errors("targets:\n  - name: a\n    url: http://x\n    events: [RolloutStarted, Exploded]\n");
    assert!(got[0].starts_with("targets[0].events[1]: unknown variant `Exploded`"), "{got:?}");
    let got = errors("targets:\n  - name: a\n    url: http://x\n    format: teams\n");
    assert!(got[0].starts_with("targets[0].format: unknown variant `teams`"), "{got:?}");
    let got = errors("targets:\n  - url: http://x\n  - name: b\n    url: http://y\n    selector: {apps: web}\n");
    assert!(got.iter().any(|g| g.starts_with("targets[0]: missing field `name`")), "{got:?}");
    assert!(got.iter().any(|g| g.starts_with("targets[1].selector.apps: invalid type")), "{got:?}");
    let got = errors("target: []\n");
    assert!(got[0].contains("unknown field `target`"), "{got:?}");
    let got = errors("targets: []\n");
    assert!(got[0].starts_with("targets: lists no target"), "{got:?}");
    let got = errors("targets: [\n");
    assert!(got[0].contains("not valid YAML"), "{got:?}");
}

#[test]
fn load_should_say_which_file_and_list_one_problem_per_line() {
    let path = std::env::temp_dir().join(format!("drover-notify-load-{}.yaml", std::process::id()));
    std::fs::write(&path, "targets:\n  - name: a\n    url: nope\n  - name: b\n    url: http://x\n    events: []\n")
        .expect("write file");
    let err = load(&path, &env(&[])).expect_err("invalid file");
    let _ = std::fs::remove_file(&path);
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].contains("2 problem(s)"), "{text}");
    assert!(lines[1].starts_with("  targets[0].url: not a URL"), "{text}");
    assert!(lines[2].starts_with("  targets[1].events: lists no event"), "{text}");
    let missing = load(Path::new("/nonexistent/notifications.yaml"), &env(&[])).expect_err("missing file");
    assert!(matches!(missing, LoadError::ReadFailed { .. }), "{missing:?}");
}

#[test]
fn pattern_should_match_globs_and_exact_names() {
    let cases = [
        ("web", "web", true),
        ("web", "web2", false),
        ("web*", "web", true),
        ("web*", "web-canary", true),
        ("*-canary", "web-canary", true),
        ("*-canary", "web-canary-2", false),
        ("w?b", "wab", true),
        ("w?b", "wb", false),
        ("*a*b*", "xxaxxbxx", true),
        ("*a*b", "ba", false),
        ("prod-*/web", "prod-eu/web", true),
        ("", "", true),
        ("*", "", true),
    ];
    for (pattern, text, want) in cases {
        assert_eq!(Pattern::new(pattern).matches(text), want, "{pattern:?} vs {text:?}");
    }
}

#[test]
fn example_file_should_load() {
    // manifests/examples/notifications.yaml is the README's example: it must stay valid.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples/notifications.yaml");
    let vars = env(&[("OPS_WEBHOOK_TOKEN", "Bearer x")]);
    let targets = load(&path, &vars).unwrap_or_else(|e| panic!("{e}"));
    assert!(targets.len() >= 2, "{targets:?}");
}
