//! What PROVEN means (README, "The verdict"): runs that proved nothing are never PROVEN. Each
//! case is a small server written for it (`support::fixture`) and a described system aimed at
//! it: a closed port and an unreachable Redis are refused before any load (exit 4); refusals
//! while tickets are left are FAILED naming the answer; a login the client cannot follow is
//! INVALID naming the step; a missed threshold says so in the verdict line and the banner; a
//! Ctrl-C is INTERRUPTED in the exit code and the saved summary alike; numbers out of range are
//! refused with file:line.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::cli::{Grab, MARK, assert_nothing_left, check, describe, json, marker};
use crate::support::fixture::{self, Reply};
use crate::support::variant::{Variant, replace_once, toml};

/// A described system at `addr`: GET /buy answered `{"code":0}` (ok), `{"code":-1}` (sold out),
/// `{"code":500504}` (the rule `rate limited`: rejected) or 429 (rejected); with `redis`, its
/// stock is the string `stock` there. `extra` is appended
/// (more tables, or overrides of none of these).
fn scenario(
    dir: &Path,
    addr: &str,
    tickets: u64,
    users: u64,
    redis: Option<&str>,
    extra: &str,
) -> std::path::PathBuf {
    let (redis, store) = match redis {
        Some(url) => (
            format!("redis = \"{url}\"\n"),
            "[system.store]\nremaining = { key = \"stock\" }\n",
        ),
        None => (String::new(), ""),
    };
    let text = format!(
        r#"name = "verdict"
[sale]
tickets = {tickets}
[target]
url = "http://{addr}/"
{redis}[users]
count = {users}
[load]
mode = "closed"
connections = 4
[timeouts]
request = "2s"
settle = "0s"
max_duration = "30s"
[system.buy]
method = "GET"
path = "/buy?user={{user}}"
[[system.buy.answers]]
status = 200
pointer = "/code"
equals = 0
outcome = "ok"
[[system.buy.answers]]
status = 200
pointer = "/code"
equals = -1
outcome = "sold_out"
[[system.buy.answers]]
name = "rate limited"
status = 200
pointer = "/code"
equals = 500504
outcome = "rejected"
[[system.buy.answers]]
status = 429
outcome = "rejected"
{store}{extra}"#
    );
    let path = dir.join("verdict.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `grab-bench run SCENARIO --out OUT` with its processes marked; asserts none survives.
fn run(scenario: &Path, out: &Path) -> Output {
    Grab::run(scenario, out)
        .marked(&format!("verdict-{}", out.display()))
        .output()
}

/// A shop with `tickets` tickets that sells each once and then answers sold out.
fn honest_shop(tickets: u64) -> fixture::Server {
    let sold = Arc::new(AtomicU64::new(0));
    fixture::start(move |_| {
        if sold.fetch_add(1, Ordering::SeqCst) < tickets {
            Reply::ok(r#"{"code":0}"#)
        } else {
            Reply::ok(r#"{"code":-1}"#)
        }
    })
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_closed_port_is_refused_before_any_load_and_leaves_no_folder() {
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(
        dir.path(),
        &format!("127.0.0.1:{}", closed_port()),
        50,
        100,
        None,
        "",
    );
    let out = dir.path().join("out");
    let started = Instant::now();
    let o = run(&sc, &out);
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        stderr(&o).contains("cannot connect to the target")
            && stderr(&o).contains("no load was sent"),
        "{}",
        describe(&o)
    );
    assert!(!stdout(&o).contains("PROVEN"));
    assert!(!out.exists(), "the failed set-up left {}", out.display());
}

#[test]
fn an_unreachable_redis_is_refused_before_any_load() {
    let shop = honest_shop(50);
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(
        dir.path(),
        &shop.addr.to_string(),
        50,
        100,
        Some(&format!("redis://127.0.0.1:{}/0", closed_port())),
        "",
    );
    let out = dir.path().join("out");
    let o = run(&sc, &out);
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(stderr(&o).contains("does not answer"), "{}", describe(&o));
    assert_eq!(
        shop.requests.load(Ordering::SeqCst),
        0,
        "no request reached the shop"
    );
    assert!(!out.exists());
}

#[test]
fn refusals_while_tickets_are_left_are_failed_naming_the_rule() {
    // Five buyers get a ticket; every later one is rate-limited (code 500504, the rule `rate
    // limited` → rejected) while 295 of 300 tickets are left.
    let granted = Arc::new(AtomicU64::new(0));
    let shop = fixture::start(move |_| {
        if granted.fetch_add(1, Ordering::SeqCst) < 5 {
            Reply::ok(r#"{"code":0}"#)
        } else {
            Reply::ok(r#"{"code":500504}"#)
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(dir.path(), &shop.addr.to_string(), 300, 100, None, "");
    let out = dir.path().join("out");
    let o = run(&sc, &out);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let audit = json(&out.join("audit.json"));
    let undersell = check(&audit, "no_undersell");
    assert_eq!(undersell["status"], "false", "{}", describe(&o));
    let says = undersell["witnesses"][0]["says"].as_str().unwrap();
    assert!(
        says.contains("95 refusals by buy rule 3 (`rate limited`), `rejected` (HTTP 200)")
            && says.contains("295 tickets"),
        "{says}"
    );
    // The terminal shows the evidence and the word.
    assert!(
        stdout(&o).contains("false no_undersell: 95 refusals"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("verdict: FAILED"), "{}", stdout(&o));
}

#[test]
fn a_login_the_client_cannot_follow_is_invalid_naming_the_step() {
    // The login answers ok but carries no token: no buy can be made as described. The first
    // user's login works (so the load goes on); every other user's does not.
    let login = |first_works: bool| {
        fixture::start(move |r| {
            if r.target.starts_with("/login") {
                if first_works && r.target.ends_with("user=0") {
                    Reply::ok(r#"{"code":0,"data":{"token":"t0"}}"#)
                } else {
                    Reply::ok(r#"{"code":0,"data":{}}"#)
                }
            } else {
                Reply::ok(r#"{"code":0}"#)
            }
        })
    };
    let scenario_for = |dir: &Path, shop: &fixture::Server| {
        let sc = scenario(
            dir,
            &shop.addr.to_string(),
            300,
            100,
            None,
            r#"[[system.before]]
name = "login"
method = "GET"
path = "/login?user={user}"
capture = { token = "/data/token" }
[[system.before.answers]]
status = 200
outcome = "ok"
"#,
        );
        Variant::file(&sc)
            .set("system.buy.path", "/buy?token={capture.token}")
            .write_to(&sc);
        sc
    };
    let dir = tempfile::tempdir().unwrap();
    let shop = login(true);
    let sc = scenario_for(dir.path(), &shop);
    let out = dir.path().join("out");
    let o = run(&sc, &out);
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    let text = stdout(&o);
    assert!(
        text.contains("verdict: INVALID") && text.contains("step `login` stopped 99 attempts"),
        "{}",
        describe(&o)
    );
    let summary = json(&out.join("summary.json"));
    assert_eq!(summary["verdict_word"], "INVALID");
    // A login that never works: the first user, tried alone, shows it, and nothing else is sent.
    let dead = tempfile::tempdir().unwrap();
    let shop = login(false);
    let sc = scenario_for(dead.path(), &shop);
    let out = dead.path().join("out");
    let o = run(&sc, &out);
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(
        describe(&o).contains("the first user (0), tried alone before the load, was answered HTTP 200 at the step \"login\""),
        "{}",
        describe(&o)
    );
    assert!(!out.exists(), "a refused run leaves no folder");
}

#[test]
fn a_missed_threshold_says_so_in_the_verdict_line_and_the_banner() {
    let shop = honest_shop(20);
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(
        dir.path(),
        &shop.addr.to_string(),
        20,
        60,
        None,
        "[thresholds]\nmin_rps = 1000000000\n",
    );
    let out = dir.path().join("out");
    let o = run(&sc, &out);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(
        stdout(&o).contains("verdict: PROVEN · 1 threshold missed: min_rps"),
        "{}",
        describe(&o)
    );
    let summary = json(&out.join("summary.json"));
    assert_eq!(summary["verdict_word"], "PROVEN");
    assert_eq!(summary["thresholds_met"], false);
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(
        index.contains("<section class=\"verdict missed\""),
        "not a green banner"
    );
    assert!(index.contains("1 threshold missed: min_rps"));
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(
        junit.contains("name=\"verdict\" value=\"PROVEN\""),
        "{junit}"
    );
}

#[test]
fn an_interrupted_run_is_interrupted_everywhere() {
    // A slow shop, so the load is still going when Ctrl-C comes.
    let shop = fixture::start(|_| Reply {
        delay: Duration::from_millis(20),
        ..Reply::ok(r#"{"code":-1}"#)
    });
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(dir.path(), &shop.addr.to_string(), 10, 100_000, None, "");
    let out = dir.path().join("out");
    let mark = marker("verdict-interrupted");
    let child = Grab::new()
        .arg("run")
        .arg(&sc)
        .arg("--out")
        .arg(&out)
        .env(MARK, &mark)
        .spawn();
    // Ready: the load has begun when the shop has answered.
    let deadline = Instant::now() + Duration::from_secs(20);
    while shop.requests.load(Ordering::SeqCst) < 20 {
        assert!(Instant::now() < deadline, "the load never began");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill sends a signal to the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    assert_nothing_left(&mark);
    assert_eq!(o.status.code(), Some(130), "{}", describe(&o));
    assert!(
        stdout(&o).contains("verdict: INTERRUPTED"),
        "{}",
        describe(&o)
    );
    let summary = json(&out.join("summary.json"));
    assert_eq!(summary["verdict_word"], "INTERRUPTED");
    assert_eq!(summary["exit_code"], 130);
}

#[test]
fn numbers_out_of_range_are_refused_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let addr = "127.0.0.1:9";
    let cases: &[(&str, &str, &str)] = &[
        (
            "tickets = 50",
            "tickets = 9223372036854775808",
            "verdict.toml:3:",
        ),
        (
            "connections = 4",
            "connections = 1000000000",
            "verdict.toml:10:",
        ),
        (
            "count = 100",
            "count = 100\nid_offset = 9007199254740990",
            "verdict.toml:8:",
        ),
        ("count = 100", "count = 1000000000000", "verdict.toml:7:"),
    ];
    for (from, to, place) in cases {
        let sc = scenario(dir.path(), addr, 50, 100, None, "");
        let text = replace_once(&std::fs::read_to_string(&sc).unwrap(), from, to);
        std::fs::write(&sc, &text).unwrap();
        let out = dir.path().join("out");
        let o = run(&sc, &out);
        assert_eq!(o.status.code(), Some(4), "{to}: {}", describe(&o));
        assert!(stderr(&o).contains(place), "{to}: {}", describe(&o));
        assert!(!out.exists(), "{to}");
    }
}

#[test]
fn a_shop_that_answers_503_to_every_buy_is_an_undersell() {
    // The stock is a Redis string the test sets (the shop never touches it): every buyer got
    // only an error, and the counter shows none of those errors took a ticket.
    let redis = grab_bench::sut::redis::RedisProcess::start().unwrap();
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_connection().unwrap();
    redis::cmd("SET")
        .arg("stock")
        .arg(50)
        .query::<()>(&mut conn)
        .unwrap();
    let shop = fixture::start(|_| Reply {
        status: 503,
        ..Reply::ok("{}")
    });
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(
        dir.path(),
        &shop.addr.to_string(),
        50,
        80,
        Some(&redis.url),
        "",
    );
    let out = dir.path().join("out");
    let o = run(&sc, &out);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let audit = json(&out.join("audit.json"));
    let undersell = check(&audit, "no_undersell");
    assert_eq!(undersell["status"], "false", "{}", describe(&o));
    assert!(
        undersell["summary"]
            .as_str()
            .unwrap()
            .contains("UNDERSOLD: 50 of 50 tickets left"),
        "{undersell:#}"
    );
    // Read only: the stock is as the test left it.
    let left: i64 = redis::cmd("GET").arg("stock").query(&mut conn).unwrap();
    assert_eq!(left, 50);
}

#[test]
fn a_stock_key_that_does_not_exist_is_refused_before_any_load() {
    // The description reads the stock from `stock`, which nobody seeded (or whose name is
    // wrong): the run would be audited against nothing. Exit 4 naming the key, no load sent,
    // and the Redis is as it was (nothing written).
    let redis = grab_bench::sut::redis::RedisProcess::start().unwrap();
    let shop = fixture::start(|_| Reply::ok(r#"{"code":0}"#));
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(
        dir.path(),
        &shop.addr.to_string(),
        50,
        80,
        Some(&redis.url),
        "",
    );
    let out = dir.path().join("out");
    let o = run(&sc, &out);
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(
        stderr(&o).contains("the key stock does not exist") && stderr(&o).contains("no load"),
        "{}",
        describe(&o)
    );
    assert_eq!(shop.requests.load(Ordering::SeqCst), 0, "no buy was sent");
    assert!(!out.exists());
    let mut conn = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[test]
fn passwords_with_form_and_json_specials_arrive_as_they_are() {
    // Passwords a form or a JSON body breaks unless each value is escaped for where it goes.
    let passwords = [
        "p+1",
        "a&b=c",
        "100%",
        "say \"hi\"",
        "two words",
        "back\\slash",
        "50%2B",
        "ünï",
    ];
    let expected: std::collections::HashMap<String, String> = passwords
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("1380000{i:04}"), p.to_string()))
        .collect();
    let decode = |s: &str| -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    };
    let wrong = Arc::new(AtomicU64::new(0));
    let (logins, buys) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (w, l, b) = (wrong.clone(), logins.clone(), buys.clone());
    let shop = fixture::start(move |r| {
        let body = String::from_utf8_lossy(&r.body).into_owned();
        if r.target.starts_with("/login") {
            let form: std::collections::HashMap<String, String> = body
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (decode(k), decode(v)))
                .collect();
            let ok = form.get("mobile").and_then(|m| expected.get(m)) == form.get("password");
            if !ok {
                w.fetch_add(1, Ordering::SeqCst);
                return Reply::ok(r#"{"code":401}"#);
            }
            l.fetch_add(1, Ordering::SeqCst);
            let mobile = &form["mobile"];
            return Reply::ok(format!(r#"{{"code":0,"data":{{"token":"t{mobile}"}}}}"#));
        }
        // The buy: a JSON body that repeats the password, and the token in the query.
        let v: serde_json::Value = match serde_json::from_str(&body) {
            Ok(v) => v,
            Err(_) => {
                w.fetch_add(1, Ordering::SeqCst);
                return Reply::ok(r#"{"code":400}"#);
            }
        };
        let mobile = r.target.split("token=t").nth(1).unwrap_or("").to_string();
        if expected.get(&mobile).map(String::as_str) != v["pw"].as_str() {
            w.fetch_add(1, Ordering::SeqCst);
            return Reply::ok(r#"{"code":400}"#);
        }
        b.fetch_add(1, Ordering::SeqCst);
        Reply::ok(r#"{"code":0}"#)
    });
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.csv");
    let mut csv = csv::Writer::from_path(&users).unwrap();
    csv.write_record(["id", "mobile", "password"]).unwrap();
    for (i, p) in passwords.iter().enumerate() {
        csv.write_record([(i + 1).to_string(), format!("1380000{i:04}"), p.to_string()])
            .unwrap();
    }
    csv.flush().unwrap();
    let sc = scenario(
        dir.path(),
        &shop.addr.to_string(),
        100,
        passwords.len() as u64,
        None,
        r#"[[system.before]]
name = "login"
method = "POST"
path = "/login"
headers = { content-type = "application/x-www-form-urlencoded" }
body = "mobile={user.mobile}&password={user.password}"
capture = { token = "/data/token" }
[[system.before.answers]]
status = 200
pointer = "/code"
equals = 0
outcome = "ok"
[[system.before.answers]]
status = 200
outcome = "rejected"
"#,
    );
    Variant::file(&sc)
        .remove("users.count")
        .add("users.csv", users.display().to_string())
        .set("system.buy.method", "POST")
        .set("system.buy.path", "/buy?token={capture.token}")
        .add("system.buy.body", r#"{{"pw":"{user.password}"}}"#)
        .write_to(&sc);
    let o = run(&sc, &dir.path().join("out"));
    assert_eq!(wrong.load(Ordering::SeqCst), 0, "{}", describe(&o));
    assert_eq!(logins.load(Ordering::SeqCst), passwords.len() as u64);
    assert_eq!(buys.load(Ordering::SeqCst), passwords.len() as u64);
}

#[test]
fn a_login_of_scope_user_is_made_once_per_user_whatever_the_retries_and_extra_buys() {
    let users = 40u64;
    let (logins, bad_tokens, buys) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let (l, bt, b) = (logins.clone(), bad_tokens.clone(), buys.clone());
    let shop = fixture::start(move |r| {
        if let Some(user) = r.target.strip_prefix("/login?user=") {
            l.fetch_add(1, Ordering::SeqCst);
            return Reply::ok(format!(r#"{{"code":0,"data":{{"token":"tok-{user}"}}}}"#));
        }
        // /buy?user=U&token=T: the token must be the one U's login gave.
        let q = r.target.split_once('?').map_or("", |(_, q)| q);
        let get = |k: &str| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .unwrap_or("")
                .to_string()
        };
        if get("token") != format!("tok-{}", get("user")) {
            bt.fetch_add(1, Ordering::SeqCst);
            return Reply::ok(r#"{"code":401}"#);
        }
        // Every third buy is a 503: retried as a new attempt.
        if b.fetch_add(1, Ordering::SeqCst) % 3 == 2 {
            return Reply {
                status: 503,
                body: String::new(),
                delay: Duration::ZERO,
                headers: Vec::new(),
            };
        }
        Reply::ok(r#"{"code":-1}"#)
    });
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(
        dir.path(),
        &shop.addr.to_string(),
        10,
        users,
        None,
        r#"[[system.before]]
name = "login"
scope = "user"
method = "GET"
path = "/login?user={user}"
capture = { token = "/data/token" }
[[system.before.answers]]
status = 200
outcome = "ok"
"#,
    );
    Variant::file(&sc)
        .set("system.buy.path", "/buy?user={user}&token={capture.token}")
        .add("users.retries", 2)
        .add("users.retry_sold_out", 2)
        .add("users.extra_buys", 1)
        .insert(
            "system.buy.answers[status=429]",
            "status = 503\noutcome = \"info\"",
        )
        .write_to(&sc);
    let out = dir.path().join("out");
    let o = run(&sc, &out);
    assert_eq!(bad_tokens.load(Ordering::SeqCst), 0, "{}", describe(&o));
    assert_eq!(
        logins.load(Ordering::SeqCst),
        users,
        "one login per user: {}",
        describe(&o)
    );
    let buys = buys.load(Ordering::SeqCst);
    assert!(buys > users, "later attempts were made ({buys} buys)");
    // The per-step table says the same: N logins, more buys.
    let summary = json(&out.join("summary.json"));
    let steps = summary["steps"].as_array().unwrap();
    let login = steps.iter().find(|s| s["name"] == "login").unwrap();
    assert_eq!(login["requests"].as_u64(), Some(users), "{login}");
}

#[test]
fn a_cookie_session_a_header_and_a_regex_carry_an_attempt_through() {
    // A shop whose login answers with a cookie and nothing in the body, whose hidden path comes
    // in a body read by regex, and whose captcha id comes in a header.
    let bad = Arc::new(AtomicU64::new(0));
    let (logins, sold) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (b, l, so) = (bad.clone(), logins.clone(), sold.clone());
    let tickets = 30;
    let shop = fixture::start(move |r| {
        let cookie_user = r.header("cookie").and_then(|c| {
            c.split("; ")
                .find_map(|kv| kv.strip_prefix("userTicket=T"))
                .map(str::to_string)
        });
        // The analytics cookie is for /analytics only: never sent to the shop's API.
        if r.header("cookie").is_some_and(|c| c.contains("tracking=")) {
            b.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(user) = r.target.strip_prefix("/login?mobile=") {
            l.fetch_add(1, Ordering::SeqCst);
            return Reply {
                headers: vec![
                    (
                        "Set-Cookie".into(),
                        format!("userTicket=T{user}; Path=/; HttpOnly"),
                    ),
                    ("Set-Cookie".into(), "tracking=1; Path=/analytics".into()),
                ],
                ..Reply::ok(r#"{"code":0,"data":null}"#)
            };
        }
        let Some(user) = cookie_user else {
            b.fetch_add(1, Ordering::SeqCst);
            return Reply::ok(r#"{"code":401}"#);
        };
        if r.target.starts_with("/seckill/path") {
            return Reply {
                headers: vec![("X-Captcha-Id".into(), format!("c{user}"))],
                ..Reply::ok(format!(r#"{{"code":0,"data":"{user}a1b2c3"}}"#))
            };
        }
        let want = format!("/seckill/{user}a1b2c3/doSeckill");
        if r.target != want || r.header("x-captcha") != Some(&format!("c{user}")) {
            b.fetch_add(1, Ordering::SeqCst);
            return Reply::ok(r#"{"code":400}"#);
        }
        if so.fetch_add(1, Ordering::SeqCst) < tickets {
            Reply::ok(r#"{"code":0}"#)
        } else {
            Reply::ok(r#"{"code":-1}"#)
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let users = 60;
    let sc = scenario(
        dir.path(),
        &shop.addr.to_string(),
        tickets,
        users,
        None,
        r#"[[system.before]]
name = "login"
scope = "user"
method = "POST"
path = "/login?mobile={user}"
[[system.before.answers]]
status = 200
pointer = "/code"
equals = 0
outcome = "ok"
[[system.before]]
name = "path"
path = "/seckill/path?goodsId=1"
capture = { hidden = 'regex:"data":"([0-9a-f]+)"', captcha = "header:x-captcha-id" }
[[system.before.answers]]
status = 200
pointer = "/code"
equals = 0
outcome = "ok"
"#,
    );
    Variant::file(&sc)
        .set("system.buy.method", "POST")
        .set("system.buy.path", "/seckill/{capture.hidden}/doSeckill")
        .add(
            "system.buy.headers",
            toml(r#"{ X-Captcha = "{capture.captcha}" }"#),
        )
        .add("users.extra_buys", 1)
        .add("users.retry_sold_out", 1)
        .write_to(&sc);
    let out = dir.path().join("out");
    let o = run(&sc, &out);
    assert_eq!(bad.load(Ordering::SeqCst), 0, "{}", describe(&o));
    assert_eq!(logins.load(Ordering::SeqCst), users, "{}", describe(&o));
    let summary = json(&out.join("summary.json"));
    assert_eq!(
        summary["requests"]["ok"].as_u64(),
        Some(tickets),
        "{}",
        describe(&o)
    );
}

#[test]
fn a_service_that_verifies_hs256_tokens_takes_the_minted_ones_and_a_wrong_key_is_refused_before_the_load()
 {
    use base64::Engine as _;
    use hmac::Mac as _;
    let key = "test-only-key-3f9a";
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (good, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (g, b) = (good.clone(), bad.clone());
    // Verified with RustCrypto's HMAC: signature, `sub` against the user asked for, `exp`.
    let shop = fixture::start(move |r| {
        let user = r.target.split("user=").nth(1).unwrap_or("").to_string();
        let token = r
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "));
        let verified = token.and_then(|t| {
            let (signed, sig) = t.rsplit_once('.')?;
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).ok()?;
            mac.update(signed.as_bytes());
            mac.verify_slice(&b64.decode(sig).ok()?).ok()?;
            let claims: serde_json::Value =
                serde_json::from_slice(&b64.decode(signed.split('.').nth(1)?).ok()?).ok()?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_secs();
            (claims["sub"] == user.as_str() && claims["exp"].as_u64()? > now).then_some(())
        });
        match verified {
            Some(()) => {
                g.fetch_add(1, Ordering::SeqCst);
                Reply::ok(r#"{"code":-1}"#)
            }
            None => {
                b.fetch_add(1, Ordering::SeqCst);
                Reply {
                    status: 401,
                    ..Reply::ok("")
                }
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let users = 20;
    let sc = scenario(
        dir.path(),
        &shop.addr.to_string(),
        10,
        users,
        None,
        "[users.derive]\njwt = { template = '{{\"sub\":\"{user}\"}}', jwt = \"HS256\", secret_env = \"SHOP_JWT_KEY\", expires_in = \"10m\" }\n",
    );
    Variant::file(&sc)
        .add(
            "system.buy.headers",
            toml(r#"{ Authorization = "Bearer {user.jwt}" }"#),
        )
        .write_to(&sc);
    let with_key = |k: Option<&str>| {
        let run = Grab::run(
            &sc,
            &dir.path().join(format!("out-{}", k.map_or(0, str::len))),
        );
        match k {
            Some(k) => run.env("SHOP_JWT_KEY", k),
            None => run.env_remove("SHOP_JWT_KEY"),
        }
        .output()
    };
    let o = with_key(Some(key));
    assert_eq!(
        (good.load(Ordering::SeqCst), bad.load(Ordering::SeqCst)),
        (users, 0),
        "{}",
        describe(&o)
    );
    let out = dir.path().join(format!("out-{}", key.len()));
    // The key is in no file of the run folder, nor in what the run printed.
    for e in std::fs::read_dir(&out).unwrap() {
        let text = std::fs::read(e.unwrap().path()).unwrap();
        assert!(!text.windows(key.len()).any(|w| w == key.as_bytes()));
    }
    assert!(!describe(&o).contains(key));
    // A wrong key: the first user, tried alone, is refused (401), so the run is refused before
    // the load: one request, exit 4, a message naming the step, and no run folder left.
    let o = with_key(Some("another-key"));
    assert_eq!(bad.load(Ordering::SeqCst), 1, "{}", describe(&o));
    assert_eq!(
        good.load(Ordering::SeqCst),
        users,
        "nothing more was bought"
    );
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "the first user (0), tried alone before the load, was answered HTTP 401 at the step \"buy\""
        )
            && err.contains("no load was sent"),
        "{err}"
    );
    assert!(
        !dir.path().join("out-11").exists(),
        "a refused run leaves no folder"
    );
    // No key: refused when the scenario is read, naming the variable.
    let o = with_key(None);
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("${SHOP_JWT_KEY} is not set"));
}

#[test]
fn throttled_answers_are_limited_retried_and_counted_on_their_own() {
    // Each user's first request is throttled (429); its retry buys or finds the sale sold out.
    let seen = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let sold = Arc::new(AtomicU64::new(0));
    let (s2, so) = (seen.clone(), sold.clone());
    let tickets = 10;
    let shop = fixture::start(move |r| {
        let user = r.target.split("user=").nth(1).unwrap_or("").to_string();
        if s2.lock().unwrap().insert(user) {
            return Reply {
                status: 429,
                ..Reply::ok(r#"{"msg":"slow down"}"#)
            };
        }
        if so.fetch_add(1, Ordering::SeqCst) < tickets {
            Reply::ok(r#"{"code":0}"#)
        } else {
            Reply::ok(r#"{"code":-1}"#)
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let users = 30;
    let sc = scenario(dir.path(), &shop.addr.to_string(), tickets, users, None, "");
    Variant::file(&sc)
        .set("system.buy.answers[status=429].outcome", "limited")
        .add("system.buy.answers[status=429].name", "throttled")
        .add("users.retries", 1)
        .write_to(&sc);
    let out = dir.path().join("out");
    let o = run(&sc, &out);
    let summary = json(&out.join("summary.json"));
    let r = &summary["requests"];
    assert_eq!(r["limited"].as_u64(), Some(users), "{}", describe(&o));
    assert_eq!(
        r["ok"].as_u64(),
        Some(tickets),
        "every user was tried again"
    );
    assert_eq!(r["sold_out"].as_u64(), Some(users - tickets));
    assert!(
        stdout(&o).contains(&format!("limited {users}")),
        "{}",
        stdout(&o)
    );
    // A definite refusal: the sale sold out all the same, so nothing was undersold.
    assert_eq!(
        check(&summary, "no_undersell")["status"],
        "true",
        "{}",
        describe(&o)
    );
}
