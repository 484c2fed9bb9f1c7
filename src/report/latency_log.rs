//! Reading the latency log back ([`crate::run_dir::LATENCY_HLOG`]): its intervals (for `merge`), and the per-second histograms merged
//! into whole-run totals (for the percentile spectrum and the summary).

use std::path::Path;

use anyhow::{Context, anyhow};
use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

/// Whole-run latency histograms (µs), one per tag of the log.
pub(crate) struct Totals {
    /// Tag `intended`: from the intended send time.
    pub intended: Histogram<u64>,
    /// Tag `raw`: service time.
    pub raw: Histogram<u64>,
    /// Tags `step:NAME`: each step's service times, in the log's order.
    pub steps: Vec<(String, Histogram<u64>)>,
}

impl Totals {
    /// Merges every interval of `path` by tag (`intended`, `raw`, `step:NAME`); other tags are
    /// ignored.
    pub fn load(path: &Path) -> anyhow::Result<Totals> {
        let new = || Histogram::<u64>::new(3).expect("valid histogram");
        let mut t = Totals {
            intended: new(),
            raw: new(),
            steps: Vec::new(),
        };
        for (_, tag, h) in intervals(path)? {
            let target = match tag.as_str() {
                "intended" => &mut t.intended,
                "raw" => &mut t.raw,
                step if step.starts_with("step:") => {
                    let name = &step["step:".len()..];
                    let i = match t.steps.iter().position(|(n, _)| n == name) {
                        Some(i) => i,
                        None => {
                            t.steps.push((name.to_string(), new()));
                            t.steps.len() - 1
                        }
                    };
                    &mut t.steps[i].1
                }
                _ => continue,
            };
            target
                .add(&h)
                .map_err(|e| anyhow!("{}: merging: {e:?}", path.display()))?;
        }
        Ok(t)
    }
}

/// Every interval of an HDR interval log: (seconds since the log's start, rounded; tag;
/// histogram). `merge` places each agent's intervals on the common clock with these.
pub fn intervals(path: &Path) -> anyhow::Result<Vec<(u32, String, Histogram<u64>)>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(&data) {
        let entry = entry.map_err(|e| anyhow!("{}: {e:?}", path.display()))?;
        let LogEntry::Interval(h) = entry else {
            continue;
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(h.encoded_histogram())
            .with_context(|| format!("{}: bad base64", path.display()))?;
        let decoded: Histogram<u64> = de
            .deserialize(&mut &bytes[..])
            .map_err(|e| anyhow!("{}: bad histogram: {e:?}", path.display()))?;
        out.push((
            h.start_timestamp().as_secs_f64().round() as u32,
            h.tag().map(|t| t.as_str().to_string()).unwrap_or_default(),
            decoded,
        ));
    }
    Ok(out)
}
