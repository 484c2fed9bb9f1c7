//! Scenario files: the shipped ones validate; bad ones fail with file, line, column and reason.

use std::path::Path;

use grab_bench::scenario::{self, Balancer, System};

use crate::support::variant::{Variant, replace_once};

#[test]
fn shipped_scenarios_validate() {
    // Through `validate`, with the secrets the shipped scenarios read from the environment set
    // for the child only (sneaker's JWT key: an unset one is refused, as it should be).
    let mut files = Vec::new();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    let o = crate::support::cli::Grab::new()
        .arg("validate")
        .args(&files)
        .env("SNEAKER_JWT_KEY", "a-test-key")
        .output();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let onem = scenario::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/1m.toml"
    )))
    .unwrap();
    assert_eq!(onem.users.count, 1_000_000);
    let System::Cluster(c) = onem.system else {
        panic!("built-in cluster")
    };
    assert_eq!(c.weights, [1, 2, 3, 4]);
    assert_eq!(
        c.quotas,
        [1100, 2200, 3300, 4400],
        "share by weight plus 10 % buffer"
    );
    assert_eq!(c.balancer, Balancer::Nginx);
}

const GOOD: &str = r#"
[sale]
tickets = 10
[cluster]
nodes = 2
weights = [1, 1]
[users]
count = 100
[load]
mode = "closed"
connections = 4
"#;

fn error_of(text: &str) -> String {
    scenario::parse(Path::new("bad.toml"), text)
        .unwrap_err()
        .to_string()
}

#[test]
fn errors_name_file_line_column_and_reason() {
    scenario::parse(Path::new("good.toml"), GOOD).unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (
            "tickets = 10",
            "tickets = 10\nbogus = 1",
            "bad.toml:4:1: unknown field `bogus`",
        ),
        ("tickets = 10", "tickets = -5", "bad.toml:3:11:"),
        ("tickets = 10", "tickets = \"ten\"", "bad.toml:3:11:"),
        (
            "weights = [1, 1]",
            "weights = [0, 0]",
            "bad.toml:6:11: all weights are zero",
        ),
        (
            "weights = [1, 1]",
            "weights = [1]",
            "bad.toml:6:11: 1 weights for 2 nodes",
        ),
        (
            "connections = 4",
            "connections = 0",
            "bad.toml:11:15: connections must be at least 1",
        ),
        (
            "count = 100",
            "count = 0",
            "bad.toml:8:9: users.count must be at least 1",
        ),
        (
            "mode = \"closed\"",
            "mode = \"sideways\"",
            "bad.toml:10:8: mode \"sideways\"",
        ),
        (
            "nodes = 2",
            "nodes = 2\nflaws = [\"nope\"]",
            "bad.toml:6:10: unknown flaw \"nope\"",
        ),
        ("[users]", "[users\n", "bad.toml:7:7: unclosed table"),
    ];
    for (from, to, want) in cases {
        let text = replace_once(GOOD, from, to);
        let got = error_of(&text);
        assert!(
            got.starts_with(want),
            "for {to:?}: got {got:?}, want {want:?}"
        );
    }
}

#[test]
fn target_must_be_loopback_and_exclusive_with_cluster() {
    let external = Variant::text(GOOD, "good.toml")
        .remove("cluster")
        .add("target.url", "http://10.0.0.1/buy/ticket")
        .to_text();
    assert!(
        error_of(&external).contains("loopback only"),
        "{}",
        error_of(&external)
    );
    let both = format!("{GOOD}\n[target]\nurl = \"http://127.0.0.1:1/buy/ticket\"\n");
    assert!(error_of(&both).contains("not both"));
}

#[test]
fn open_loop_needs_arrivals_for_every_user() {
    let open = format!(
        "{}\n[[load.stages]]\nkind = \"constant\"\nrate = 10\nduration = \"2s\"\n",
        Variant::text(GOOD, "good.toml")
            .set("load.mode", "open")
            .to_text()
    );
    let err = error_of(&open);
    assert!(err.contains("20 arrivals but users.count is 100"), "{err}");
}

/// The scenario shipped inside the Kubernetes ConfigMap (deploy/k8s/scenario.yaml) validates.
#[test]
fn the_kubernetes_scenario_validates() {
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/k8s/scenario.yaml"
    ))
    .unwrap();
    let toml: String = yaml
        .lines()
        .skip_while(|l| !l.contains("sale.toml: |"))
        .skip(1)
        .take_while(|l| !l.starts_with("---"))
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sale.toml");
    std::fs::write(&path, toml).unwrap();
    let sc = scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(sc.system, System::External(_)));
    assert_eq!(sc.users.count, 1_000_000);
}

/// A described target: buy request, answer rules, store.
const DESCRIBED: &str = r#"[sale]
tickets = 10
[target]
url = "http://127.0.0.1:9/"
[users]
count = 100
[load]
mode = "closed"
connections = 4
[system.buy]
method = "POST"
path = "/api/seckill/{item}"
[[system.buy.answers]]
status = 200
pointer = "/code"
equals = 0
outcome = "ok"
[system.store]
remaining = { key = "seckill:{{{item}}}:stock" }
"#;

#[test]
fn a_description_with_mistakes_names_the_place() {
    scenario::parse(Path::new("good.toml"), DESCRIBED).unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (
            "path = \"/api/seckill/{item}\"",
            "path = \"/api/seckill/{itme}\"",
            "bad.toml:12:22: unknown placeholder {itme}",
        ),
        (
            "pointer = \"/code\"",
            "pointer = \"code\"",
            "bad.toml:15:11: \"code\" is not a JSON Pointer",
        ),
        (
            "pointer = \"/code\"\nequals = 0",
            "regex = \"sold(out\"",
            "bad.toml:15:9: the regex does not compile",
        ),
        (
            "outcome = \"ok\"",
            "outcome = \"sold\"",
            "bad.toml:17:11: unknown outcome \"sold\"; known: ok, sold_out, already_bought, rejected, info",
        ),
        (
            "key = \"seckill:{{{item}}}:stock\"",
            "key = \"seckill:{{{user}}}:stock\"",
            "bad.toml:19:32: unknown placeholder {user}",
        ),
        (
            "path = \"/api/seckill/{item}\"",
            "path = \"/api/seckill/{user.token}\"",
            "needs a users file with a column \"token\"",
        ),
        (
            "[system.store]",
            "[audit]\nrequire = [\"successes_orders\"]\n[system.store]",
            "bad.toml:19:12: successes_orders is required but cannot be checked: the store description keeps no order records",
        ),
        (
            "url = \"http://127.0.0.1:9/\"",
            "url = \"http://127.0.0.1:9/\"\nprofile = \"seed\"",
            "bad.toml:5:11: profile is gone",
        ),
    ];
    for (from, to, want) in cases {
        let text = replace_once(DESCRIBED, from, to);
        let got = error_of(&text);
        assert!(got.contains(want), "for {to:?}: got {got:?}, want {want:?}");
    }
}

#[test]
fn the_presets_compile_and_speak_their_protocols() {
    for name in ["reference", "article"] {
        let d = scenario::preset(name, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(d.name, name);
        assert!(!d.buy.answers.is_empty());
    }
    let reference = scenario::preset("reference", &[]).unwrap();
    assert!(reference.pay.is_some() && reference.store.orders.is_some());
    let article = scenario::preset("article", &[]).unwrap();
    assert!(article.store.orders.is_none() && article.store.buyers.is_none());
}

/// `remaining = "/…"` on an answer rule: the stock left after the sale, recorded as the
/// sequence number tickets − r (the last ticket, r = 0, is seq 10 of 10); the reference preset
/// captures its seq as it is. One counter: a rule may not count up while another counts down.
#[test]
fn a_remaining_capture_counts_down_from_the_stock() {
    use grab_bench::protocol::{Kind, Reason};
    let text = replace_once(
        DESCRIBED,
        "outcome = \"ok\"",
        "outcome = \"ok\"\nremaining = \"/data/left\"",
    );
    let sc = scenario::parse(Path::new("down.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    let answers = &sc.description.buy.answers;
    assert!(answers.counts_down() && answers.captures_seq());
    let seq = |body: &[u8]| answers.classify(Kind::Buy, 200, body).seq;
    assert_eq!(seq(br#"{"code":0,"data":{"left":9}}"#), 1);
    assert_eq!(seq(br#"{"code":0,"data":{"left":0}}"#), 10);
    assert_eq!(
        seq(br#"{"code":0,"data":{"left":10}}"#),
        0,
        "none: r ≥ stock"
    );
    assert_eq!(
        sc.description.seq_from(),
        grab_bench::record::SeqFrom::Remaining
    );
    let c = answers.classify(Kind::Buy, 200, br#"{"code":0,"data":{"left":3}}"#);
    assert_eq!((c.reason, c.seq), (Reason::Grabbed, 7));

    let both = replace_once(
        &text,
        "remaining = \"/data/left\"",
        "seq = \"/seq\"\nremaining = \"/data/left\"",
    );
    assert!(error_of(&both).contains("not both"), "{}", error_of(&both));
    let mixed =
        format!("{text}\n[[system.buy.answers]]\nstatus = 201\noutcome = \"ok\"\nseq = \"/seq\"\n");
    let got = error_of(&mixed);
    assert!(got.contains("another rule captures remaining"), "{got}");

    let reference = scenario::preset("reference", &[]).unwrap();
    assert!(reference.buy.answers.captures_seq() && !reference.buy.answers.counts_down());
}

#[test]
fn a_step_scope_is_user_or_attempt_and_user_steps_come_first() {
    let base = |steps: &str| {
        format!(
            "[sale]\ntickets = 5\n[target]\nurl = \"http://127.0.0.1:9/\"\n[users]\ncount = 5\n\
             [load]\nmode = \"closed\"\nconnections = 1\n{steps}[system.buy]\npath = \"/buy\"\n\
             [[system.buy.answers]]\nstatus = 200\noutcome = \"ok\"\n"
        )
    };
    let step = |name: &str, scope: &str| {
        format!(
            "[[system.before]]\nname = \"{name}\"\n{scope}path = \"/{name}\"\n\
             [[system.before.answers]]\nstatus = 200\noutcome = \"ok\"\n"
        )
    };
    let parse = |text: &str| grab_bench::scenario::parse(std::path::Path::new("s.toml"), text);
    let ok = parse(&base(
        &(step("login", "scope = \"user\"\n") + &step("path", "")),
    ));
    let sc = ok.unwrap();
    assert!(sc.description.before[0].per_user && !sc.description.before[1].per_user);
    let err = parse(&base(
        &(step("path", "") + &step("login", "scope = \"user\"\n")),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("come before the steps made on every attempt"),
        "{err}"
    );
    let err = parse(&base(&step("login", "scope = \"session\"\n")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("s.toml:") && err.contains("scope is \"user\""),
        "{err}"
    );
}
