//! issue 28, bounded fuzzing of the scenario parser: a few thousand seeded mutations of the
//! shipped scenarios (bytes flipped, lines dropped, doubled or swapped, numbers made huge,
//! negative or fractional), each parsed by `scenario::parse`. None may panic, and every refusal
//! must say where, as a line of the file (`ScenarioError::line` not 0). Deterministic (a fixed
//! xorshift seed) and bounded in count and time; the raw HTTP parser's counterpart is a unit
//! test in `src/engine/raw.rs`.

use std::time::{Duration, Instant};

use crate::support::cli::shipped;

/// xorshift64: a small deterministic generator (no dependency, same cases every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Values a mutation puts in place of a number.
const NUMBERS: [&str; 8] = [
    "0",
    "-1",
    "18446744073709551616",
    "1000000000",
    "1e308",
    "0.5",
    "\"7\"",
    "nan",
];

/// One mutation of `text`.
fn mutate(text: &str, rng: &mut Rng) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let i = rng.below(lines.len());
    match rng.below(6) {
        0 => {
            lines.remove(i);
        }
        1 => {
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        2 => {
            let j = rng.below(lines.len());
            lines.swap(i, j);
        }
        3 => {
            // A number (the first run of digits on the line) replaced.
            let l = &lines[i];
            if let Some(start) = l.find(|c: char| c.is_ascii_digit()) {
                let end = l[start..]
                    .find(|c: char| !c.is_ascii_digit())
                    .map_or(l.len(), |e| start + e);
                let n = NUMBERS[rng.below(NUMBERS.len())];
                lines[i] = format!("{}{n}{}", &l[..start], &l[end..]);
            }
        }
        4 => {
            // A byte of the line replaced by a TOML-significant or odd one.
            let odd = ['[', ']', '"', '=', '#', '\\', '{', ',', '\u{0}', 'é'];
            let mut chars: Vec<char> = lines[i].chars().collect();
            let c = odd[rng.below(odd.len())];
            if chars.is_empty() {
                chars.push(c);
            } else {
                let at = rng.below(chars.len());
                chars[at] = c;
            }
            lines[i] = chars.into_iter().collect();
        }
        _ => {
            // The line cut short.
            let l = &lines[i];
            let cut = rng.below(l.len() + 1);
            let cut = (0..=cut)
                .rev()
                .find(|&c| l.is_char_boundary(c))
                .unwrap_or(0);
            lines[i] = l[..cut].to_string();
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

#[test]
fn mutated_scenarios_never_panic_and_refusals_say_where() {
    let started = Instant::now();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut refused, mut accepted) = (0, 0);
    let mut unplaced = Vec::new();
    for name in [
        "described.toml",
        "smoke.toml",
        "reservation.toml",
        "multi-item.toml",
    ] {
        let path = shipped(name);
        let valid = std::fs::read_to_string(&path).unwrap();
        grab_bench::scenario::parse(&path, &valid).expect("the shipped scenario is valid");
        for _ in 0..750 {
            // One to three mutations on top of each other.
            let mut text = valid.clone();
            for _ in 0..=rng.below(3) {
                text = mutate(&text, &mut rng);
            }
            let got = std::panic::catch_unwind(|| grab_bench::scenario::parse(&path, &text));
            match got {
                Err(_) => panic!("the parser panicked on:\n{text}"),
                Ok(Ok(_)) => accepted += 1,
                Ok(Err(e)) if e.line == 0 => {
                    unplaced.push(format!("{e}"));
                    refused += 1;
                }
                Ok(Err(_)) => refused += 1,
            }
        }
    }
    eprintln!(
        "fuzz: {refused} refused, {accepted} accepted, in {:?}",
        started.elapsed()
    );
    assert!(refused > 1000, "the mutations should mostly be refused");
    unplaced.sort();
    unplaced.dedup();
    assert!(
        unplaced.is_empty(),
        "refusals without a line: {unplaced:#?}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}
