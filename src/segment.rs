//! A segment of a run: one generator's share of a scenario's work when several run it (k6's
//! execution segments). Below the engine, which splits the work by it, and the run record,
//! which keeps it.

use std::collections::BTreeMap;

use anyhow::{Context, ensure};

/// A slice of a scenario's work for one of `count` generators: the units `k` with
/// `k % count == index`, each at the time the whole scenario gives it. Striped rather than
/// contiguous so that every agent's load is spread over the whole schedule; together the
/// segments make exactly the scenario's load, with disjoint user ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    /// Which slice, 0-based.
    pub index: u64,
    /// How many slices.
    pub count: u64,
}

impl Default for Segment {
    fn default() -> Self {
        Segment { index: 0, count: 1 }
    }
}

impl Segment {
    /// Parses `I/N` (0 ≤ I < N).
    pub fn parse(s: &str) -> anyhow::Result<Segment> {
        let (i, n) = s
            .split_once('/')
            .context("a segment is written I/N, e.g. 0/4")?;
        let (index, count): (u64, u64) = (
            i.trim().parse().context("segment index is not a number")?,
            n.trim().parse().context("segment count is not a number")?,
        );
        ensure!(count >= 1, "segment count must be at least 1");
        ensure!(
            index < count,
            "segment index must be below the count ({index}/{count})"
        );
        Ok(Segment { index, count })
    }

    /// How many of the units `0..total` belong to this segment.
    pub fn share(&self, total: u64) -> u64 {
        if total == u64::MAX {
            return u64::MAX;
        }
        total.saturating_sub(self.index).div_ceil(self.count)
    }

    /// The global unit of this segment's `j`-th local unit.
    pub fn unit(&self, j: u64) -> u64 {
        self.index + j * self.count
    }
}

/// "1/4, 3/4": segments for messages.
pub fn list(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| format!("{}/{}", s.index, s.count))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How `run --segment` names an agent's slice: written out (`I/N`), or `auto`, read from the
/// variables of the engine that started the process ([`from_env`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentArg {
    /// `--segment I/N`.
    Given(Segment),
    /// `--segment auto`.
    Auto,
}

impl SegmentArg {
    /// Parses `auto` or `I/N`.
    pub fn parse(s: &str) -> anyhow::Result<SegmentArg> {
        if s.trim() == "auto" {
            return Ok(SegmentArg::Auto);
        }
        Segment::parse(s)
            .map(SegmentArg::Given)
            .context("give I/N (e.g. 0/4) or auto")
    }

    /// The segment and where it came from; `get` reads one environment variable (the
    /// process's own in `run`, a map in tests). An error says what to set.
    pub fn resolve(
        self,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<(Segment, Origin), String> {
        match self {
            SegmentArg::Given(segment) => Ok((
                segment,
                Origin {
                    starter: Starter::CommandLine,
                    variables: BTreeMap::new(),
                },
            )),
            SegmentArg::Auto => from_env(get),
        }
    }
}

/// What started an agent, and so gave it its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Starter {
    /// `--segment I/N` on the command line.
    CommandLine,
    /// A Kubernetes Indexed Job: `JOB_COMPLETION_INDEX`, and the count declared in
    /// [`SEGMENTS_VAR`] (Kubernetes sets no variable with the Job's completions).
    Kubernetes,
    /// Slurm's `srun`: `SLURM_PROCID` of `SLURM_NTASKS`.
    Slurm,
    /// A Nomad task group of `count` allocations: `NOMAD_ALLOC_INDEX`, and the count declared
    /// in [`SEGMENTS_VAR`] (Nomad sets none).
    Nomad,
}

/// The variables each engine sets, for one table of [`from_env`]'s detection and its messages.
struct EngineVars {
    /// The engine.
    starter: Starter,
    /// Its name in messages.
    name: &'static str,
    /// The variable holding this process's index, 0-based.
    index: &'static str,
    /// The variable holding the count, when the engine sets one.
    count: Option<&'static str>,
}

/// The engines `--segment auto` knows, in the order messages list them.
const ENGINES: [EngineVars; 3] = [
    EngineVars {
        starter: Starter::Kubernetes,
        name: "Kubernetes",
        index: "JOB_COMPLETION_INDEX",
        count: None,
    },
    EngineVars {
        starter: Starter::Slurm,
        name: "Slurm",
        index: "SLURM_PROCID",
        count: Some("SLURM_NTASKS"),
    },
    EngineVars {
        starter: Starter::Nomad,
        name: "Nomad",
        index: "NOMAD_ALLOC_INDEX",
        count: None,
    },
];

/// The variable that declares the number of segments where the engine sets none (Kubernetes,
/// Nomad): the Job's `completions`, the group's `count`. With Slurm it may be set too, and must
/// then agree with `SLURM_NTASKS`.
pub const SEGMENTS_VAR: &str = "GRAB_SEGMENTS";

/// Where an agent's segment came from, kept in its run record: the engine and the variables
/// it was read from (empty for `--segment I/N`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    /// What gave the segment.
    pub starter: Starter,
    /// Each variable read, as it was set.
    pub variables: BTreeMap<String, String>,
}

impl Origin {
    /// "Kubernetes: GRAB_SEGMENTS=4, JOB_COMPLETION_INDEX=1", or "the command line".
    pub fn describe(&self) -> String {
        let Some(engine) = ENGINES.iter().find(|e| e.starter == self.starter) else {
            return "the command line".into();
        };
        let vars: Vec<String> = self
            .variables
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{}: {}", engine.name, vars.join(", "))
    }
}

/// `--segment auto`: the segment from the variables of the one engine that started this
/// process (Kubernetes, Slurm or Nomad); `get` reads a variable. Refused, saying what to set,
/// when no engine's variables are there, when two engines' are, or when a value is not a
/// number or not below the count.
pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<(Segment, Origin), String> {
    let set = |var: &'static str| get(var).map(|v| (var, v));
    let present: Vec<&EngineVars> = ENGINES
        .iter()
        .filter(|e| set(e.index).is_some() || e.count.and_then(set).is_some())
        .collect();
    let engine = match present.as_slice() {
        [one] => *one,
        [] => {
            let known: Vec<String> = ENGINES
                .iter()
                .map(|e| match e.count {
                    Some(c) => format!("{} sets {} and {c}", e.name, e.index),
                    None => format!("{} sets {} (with {SEGMENTS_VAR}=N)", e.name, e.index),
                })
                .collect();
            let only_count = get(SEGMENTS_VAR)
                .map(|v| format!(" ({SEGMENTS_VAR}={v} gives the count, not this agent's index)"))
                .unwrap_or_default();
            return Err(format!(
                "--segment auto: no engine's index variable is set{only_count}: {}; outside those, give --segment I/N",
                known.join("; ")
            ));
        }
        several => {
            let seen: Vec<String> = several
                .iter()
                .map(|e| {
                    let vars: Vec<String> = std::iter::once(e.index)
                        .chain(e.count)
                        .filter_map(set)
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    format!("{} ({})", e.name, vars.join(", "))
                })
                .collect();
            return Err(format!(
                "--segment auto: the variables of more than one engine are set: {}; which one started this process is not clear: unset the others' or give --segment I/N",
                seen.join(" and ")
            ));
        }
    };
    let mut variables = BTreeMap::new();
    let mut number = |var: &str, what: &str| -> Result<Option<u64>, String> {
        let Some(value) = get(var) else {
            return Ok(None);
        };
        let n = value.parse::<u64>().map_err(|_| {
            format!(
                "--segment auto ({}): {var}={value:?} is not {what} (a whole number)",
                engine.name
            )
        })?;
        variables.insert(var.to_string(), value);
        Ok(Some(n))
    };
    let index = number(engine.index, "a segment index")?.ok_or_else(|| match engine.count {
        Some(c) => format!(
            "--segment auto ({}): {c} is set but {} is not: run the agents as tasks of one step (srun), each gets its own",
            engine.name, engine.index
        ),
        None => format!("--segment auto ({}): {} is not set", engine.name, engine.index),
    })?;
    let engine_count = match engine.count {
        Some(c) => number(c, "a count of segments")?,
        None => None,
    };
    let declared = number(SEGMENTS_VAR, "a count of segments")?;
    let (count, count_var) = match (engine_count, declared) {
        (Some(n), Some(d)) if n != d => {
            return Err(format!(
                "--segment auto ({}): {}={n} but {SEGMENTS_VAR}={d}: the two counts disagree; unset {SEGMENTS_VAR} or make it {n}",
                engine.name,
                engine.count.unwrap_or_default()
            ));
        }
        (Some(n), _) => (n, engine.count.unwrap_or_default()),
        (None, Some(d)) => (d, SEGMENTS_VAR),
        (None, None) => {
            return Err(format!(
                "--segment auto ({}): {} sets no count of segments: set {SEGMENTS_VAR} to the number of agents ({})",
                engine.name,
                engine.name,
                match engine.starter {
                    Starter::Nomad => "the task group's count",
                    _ => "the Job's completions",
                }
            ));
        }
    };
    if count == 0 {
        return Err(format!(
            "--segment auto ({}): {count_var}=0: the count of segments must be at least 1",
            engine.name
        ));
    }
    if index >= count {
        return Err(format!(
            "--segment auto ({}): {}={index} is not below {count_var}={count}: indexes run from 0 to {}",
            engine.name,
            engine.index,
            count - 1
        ));
    }
    Ok((
        Segment { index, count },
        Origin {
            starter: engine.starter,
            variables,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `from_env` over these variables only.
    fn resolve(vars: &[(&str, &str)]) -> Result<(Segment, Origin), String> {
        let map: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_env(|k| map.get(k).cloned())
    }

    fn ok(vars: &[(&str, &str)]) -> (Segment, Origin) {
        resolve(vars).unwrap_or_else(|e| panic!("{vars:?}: {e}"))
    }

    fn err(vars: &[(&str, &str)]) -> String {
        match resolve(vars) {
            Ok(got) => panic!("{vars:?} gave {got:?}"),
            Err(e) => e,
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kubernetes_reads_the_completion_index_and_the_declared_count() {
        let (s, o) = ok(&[("JOB_COMPLETION_INDEX", "2"), ("GRAB_SEGMENTS", "4")]);
        assert_eq!(s, Segment { index: 2, count: 4 });
        assert_eq!(o.starter, Starter::Kubernetes);
        assert_eq!(
            o.variables,
            vars(&[("JOB_COMPLETION_INDEX", "2"), ("GRAB_SEGMENTS", "4")])
        );
        assert_eq!(
            o.describe(),
            "Kubernetes: GRAB_SEGMENTS=4, JOB_COMPLETION_INDEX=2"
        );
    }

    #[test]
    fn kubernetes_without_a_declared_count_says_to_declare_it() {
        let e = err(&[("JOB_COMPLETION_INDEX", "0")]);
        assert!(e.contains("Kubernetes sets no count"), "{e}");
        assert!(e.contains("set GRAB_SEGMENTS"), "{e}");
        assert!(e.contains("completions"), "{e}");
    }

    #[test]
    fn slurm_reads_procid_of_ntasks() {
        let (s, o) = ok(&[("SLURM_PROCID", "3"), ("SLURM_NTASKS", "5")]);
        assert_eq!(s, Segment { index: 3, count: 5 });
        assert_eq!(o.starter, Starter::Slurm);
        assert_eq!(
            o.variables,
            vars(&[("SLURM_PROCID", "3"), ("SLURM_NTASKS", "5")])
        );
        // A declared count that agrees is accepted and recorded; one that disagrees is not.
        let (s, o) = ok(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("GRAB_SEGMENTS", "2"),
        ]);
        assert_eq!(s, Segment { index: 0, count: 2 });
        assert_eq!(o.variables.len(), 3);
        let e = err(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("GRAB_SEGMENTS", "3"),
        ]);
        assert!(e.contains("SLURM_NTASKS=2 but GRAB_SEGMENTS=3"), "{e}");
    }

    #[test]
    fn slurm_with_a_count_but_no_procid_is_refused() {
        let e = err(&[("SLURM_NTASKS", "4")]);
        assert!(
            e.contains("SLURM_NTASKS is set but SLURM_PROCID is not"),
            "{e}"
        );
    }

    #[test]
    fn nomad_reads_the_alloc_index_and_the_declared_count() {
        let (s, o) = ok(&[("NOMAD_ALLOC_INDEX", "1"), ("GRAB_SEGMENTS", "3")]);
        assert_eq!(s, Segment { index: 1, count: 3 });
        assert_eq!(o.starter, Starter::Nomad);
        assert_eq!(o.describe(), "Nomad: GRAB_SEGMENTS=3, NOMAD_ALLOC_INDEX=1");
        let e = err(&[("NOMAD_ALLOC_INDEX", "1")]);
        assert!(e.contains("Nomad sets no count"), "{e}");
        assert!(e.contains("group's count"), "{e}");
    }

    #[test]
    fn no_engine_lists_what_each_engine_sets() {
        let e = err(&[]);
        for var in [
            "JOB_COMPLETION_INDEX",
            "SLURM_PROCID",
            "SLURM_NTASKS",
            "NOMAD_ALLOC_INDEX",
            "--segment I/N",
        ] {
            assert!(e.contains(var), "{var}: {e}");
        }
        let e = err(&[("GRAB_SEGMENTS", "4")]);
        assert!(e.contains("GRAB_SEGMENTS=4 gives the count, not"), "{e}");
    }

    #[test]
    fn garbled_values_are_named() {
        for (vars, says) in [
            (
                vec![("JOB_COMPLETION_INDEX", "one"), ("GRAB_SEGMENTS", "4")],
                "JOB_COMPLETION_INDEX=\"one\" is not a segment index",
            ),
            (
                vec![("JOB_COMPLETION_INDEX", ""), ("GRAB_SEGMENTS", "4")],
                "JOB_COMPLETION_INDEX=\"\" is not a segment index",
            ),
            (
                vec![("JOB_COMPLETION_INDEX", "-1"), ("GRAB_SEGMENTS", "4")],
                "JOB_COMPLETION_INDEX=\"-1\"",
            ),
            (
                vec![("JOB_COMPLETION_INDEX", "1"), ("GRAB_SEGMENTS", "4x")],
                "GRAB_SEGMENTS=\"4x\" is not a count of segments",
            ),
            (
                vec![("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2.0")],
                "SLURM_NTASKS=\"2.0\" is not a count",
            ),
            (
                vec![("NOMAD_ALLOC_INDEX", " 1"), ("GRAB_SEGMENTS", "2")],
                "NOMAD_ALLOC_INDEX=\" 1\"",
            ),
        ] {
            let e = err(&vars);
            assert!(e.contains(says), "{vars:?}: {e}");
        }
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let e = err(&[("JOB_COMPLETION_INDEX", "4"), ("GRAB_SEGMENTS", "4")]);
        assert!(
            e.contains("JOB_COMPLETION_INDEX=4 is not below GRAB_SEGMENTS=4"),
            "{e}"
        );
        assert!(e.contains("from 0 to 3"), "{e}");
        let e = err(&[("SLURM_PROCID", "2"), ("SLURM_NTASKS", "2")]);
        assert!(
            e.contains("SLURM_PROCID=2 is not below SLURM_NTASKS=2"),
            "{e}"
        );
        let e = err(&[("NOMAD_ALLOC_INDEX", "0"), ("GRAB_SEGMENTS", "0")]);
        assert!(e.contains("GRAB_SEGMENTS=0"), "{e}");
        assert!(e.contains("at least 1"), "{e}");
    }

    #[test]
    fn two_engines_at_once_are_refused_naming_both() {
        let e = err(&[
            ("JOB_COMPLETION_INDEX", "1"),
            ("GRAB_SEGMENTS", "4"),
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "4"),
        ]);
        assert!(e.contains("Kubernetes (JOB_COMPLETION_INDEX=1)"), "{e}");
        assert!(e.contains("Slurm (SLURM_PROCID=0, SLURM_NTASKS=4)"), "{e}");
        let e = err(&[
            ("NOMAD_ALLOC_INDEX", "0"),
            ("SLURM_NTASKS", "2"),
            ("GRAB_SEGMENTS", "2"),
        ]);
        assert!(e.contains("Slurm (SLURM_NTASKS=2) and Nomad"), "{e}");
        assert!(e.contains("--segment I/N"), "{e}");
    }

    #[test]
    fn the_flag_takes_auto_or_i_of_n() {
        assert_eq!(SegmentArg::parse("auto").unwrap(), SegmentArg::Auto);
        assert_eq!(
            SegmentArg::parse("1/3").unwrap(),
            SegmentArg::Given(Segment { index: 1, count: 3 })
        );
        let e = format!("{:#}", SegmentArg::parse("3/3").unwrap_err());
        assert!(e.contains("auto"), "{e}");
        // A given segment ignores the environment and says so.
        let (s, o) = SegmentArg::Given(Segment { index: 0, count: 2 })
            .resolve(|_| Some("7".into()))
            .unwrap();
        assert_eq!(s, Segment { index: 0, count: 2 });
        assert_eq!(o.starter, Starter::CommandLine);
        assert!(o.variables.is_empty());
        assert_eq!(o.describe(), "the command line");
    }
}
